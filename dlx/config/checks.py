"""Cross-checks: problems that involve two keys or sections at once, run on a Config that
is valid key by key (the loss against the task, the batch against the data, keys the model
does not honour, the model's own shape checks)."""

from __future__ import annotations

from dlx.components.models import MODEL_DEPENDENT_KEYS, MODELS
from dlx.config.schema import Config
from dlx.config.yamlio import KeyPath


def cross_checks(cfg: Config) -> list[tuple[KeyPath, KeyPath, str]]:
    """Problems that involve two keys at once: (key, the other key involved, message).

    Only run on a valid structure. The problem is placed at the first key; if that
    key was left to its default (no line of its own), at the other one.
    """
    out = []
    task = type(cfg.data).task
    if task == "regression" and cfg.train.loss == "cross_entropy":
        out.append((("train", "loss"), ("data",), f"data '{cfg.data.name}' is a regression task; use train.loss: mse"))
    bs = cfg.train.batch_size
    n_train = getattr(cfg.data, "n_train", None)
    if isinstance(bs, int) and n_train and bs > n_train:
        out.append(
            (
                ("train", "batch_size"),
                ("data", "n_train"),
                f"{bs} is larger than data.n_train ({n_train}); use batch_size: full for full-batch gradient descent",
            )
        )
    if cfg.regularization.norm == "batch" and bs == 1:
        out.append(
            (
                ("regularization", "norm"),
                ("train", "batch_size"),
                "batch norm needs batch_size >= 2 (one sample has no batch statistics)",
            )
        )
    out += _unhonoured(cfg)
    out += [(path, ("model",), msg) for path, msg in cfg.model.conflicts(cfg)]
    shape = cfg.data.feature_shape()
    if shape is not None:
        out += [(path, ("data",), msg) for path, msg in cfg.model.check(tuple(shape), cfg)]
    return out


def _unhonoured(cfg: Config) -> list[tuple[KeyPath, KeyPath, str]]:
    """Model-dependent keys set away from their default that the model does not apply.

    The one owner of "which model honours which key": it reads each model's declaration
    (ModelSpec.honours and .unhonoured()), so a model never has to refuse keys itself.
    """
    spec = cfg.model
    name = spec.registry_name
    here = spec.unhonoured()
    out = []
    for key in MODEL_DEPENDENT_KEYS:
        section, field = key.split(".")
        part = getattr(cfg, section)
        if getattr(part, field) == type(part).model_fields[field].default:
            continue
        if key in here:
            out.append(((section, field), ("model",), f"{name} ignores it here: {here[key]}"))
        elif key not in spec.honours:
            by = [n for n in MODELS.names() if key in MODELS.get(n).honours]
            out.append(
                (
                    (section, field),
                    ("model",),
                    f"{name} ignores it; it is honoured by {', '.join(by) or 'no model'}; "
                    f"{spec.instead.get(key, 'remove it')}",
                )
            )
    return out

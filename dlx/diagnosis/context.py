"""What a diagnosis reads: one small Context of plain data (probe series, metrics history,
resolved config, the task's chance-level loss), never the run folder or the trainer, so
tests feed it synthetic series; and the chance-level loss it is read against."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from dlx.core.errors import DlxError


@dataclass
class Context:
    """Everything a diagnosis reads; plain data, so tests build it by hand.

    names/grad: probed layers (input first) and their per-step gradient norms [steps, L];
    last: the latest value of each probe (act_saturated, act_dead, unit_spread, ...);
    act_names: the activation layers those act_* lists are for; dead_check: the
    activation is ReLU (units can die); diverged: the trainer's divergence record;
    metrics: the metrics.jsonl records (step, train_loss, test_loss, ...); config: the
    resolved config dict; task: "classification" | "regression"; chance_loss: the loss
    of the best constant prediction (None when unknown), chance_acc its accuracy; time_grad: ||dL/dh_t||
    [recurrent layer, t] at the last log step (recurrent models only); init_check: the
    step-0 init check rows (initcheck.init_check); first: the probes at the first log step.
    accepts: whether the run's config takes a fix's --set overrides (schema_accepts);
    None takes every fix (a hand-built partial context).
    """

    names: list[str]
    grad: np.ndarray
    last: dict[str, Any] = field(default_factory=dict)
    act_names: list[str] = field(default_factory=list)
    dead_check: bool = False
    diverged: dict[str, Any] | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    task: str | None = None
    chance_loss: float | None = None
    # The accuracy of always answering the most common class (None: unknown, then 1/classes).
    chance_acc: float | None = None
    time_grad: Any = None
    init_check: list[dict[str, Any]] | None = None
    first: dict[str, Any] = field(default_factory=dict)
    instruments: list[dict[str, Any]] = field(default_factory=list)  # dlx.run.instruments records
    classes: dict[str, Any] | None = None  # summary.json "classes": counts, test recall, confusion
    # The config layer's schema, passed in by whoever builds the context (the diagnosis sits
    # below dlx.config and never loads a config itself).
    accepts: Callable[[Sequence[str]], bool] | None = None

    def __post_init__(self):
        grad = np.asarray(self.grad, dtype=float)
        self.grad = grad if grad.ndim == 2 else grad.reshape(0, len(self.names))

    def section(self, key: str) -> dict[str, Any]:
        v = self.config.get(key)
        return v if isinstance(v, dict) else ({"name": v} if isinstance(v, str) else {})

    @property
    def activation(self) -> str:
        return self.section("activation").get("name", "?")

    @property
    def init(self) -> str:
        return self.section("init").get("name", "?")

    @property
    def model(self) -> str:
        return self.section("model").get("name", "?")


def chance_loss(y: np.ndarray, task: str, loss: str, n_classes: int | None, sigmoid_out: bool = False) -> float | None:
    """The training loss of the best constant prediction: the 'learned nothing' level.

    Regression (mse): the targets' variance (predicting their mean). Classification:
    from the class frequencies p: cross-entropy -> entropy of p (ln C when balanced),
    mse on one-hot -> mean of p(1-p), sigmoid outputs -> mean binary entropy.
    """
    y = np.asarray(y)
    if y.size == 0:
        return None
    if task == "regression":
        y = y.astype(np.float64)
        return float(((y - y.mean(axis=0)) ** 2).mean())
    if not n_classes:
        return None
    p = np.bincount(y.reshape(-1).astype(np.int64), minlength=n_classes)[:n_classes] / y.size
    if loss == "mse":
        return float((p * (1 - p)).mean())
    nz = p[(p > 0) & (p < 1)]
    if sigmoid_out:
        return float((-(nz * np.log(nz) + (1 - nz) * np.log(1 - nz))).sum() / n_classes)
    return float(-(nz * np.log(nz)).sum())


def chance_accuracy(y: np.ndarray, task: str, n_classes: int | None) -> float | None:
    """The accuracy of the best constant answer: the most common class's share of the labels
    (1/C only when balanced: on the copy-memory task 'blank' alone scores 0.7, not 0.33)."""
    y = np.asarray(y)
    if task != "classification" or y.size == 0 or not n_classes:
        return None
    return float(np.bincount(y.reshape(-1).astype(np.int64), minlength=n_classes).max() / y.size)


def accuracy_floor(ctx: Context) -> float | None:
    """The accuracy a classifier gets by learning nothing: the context's chance_acc, else 1/C
    from data.classes or from a balanced chance loss (ln C); None for regression."""
    if ctx.task != "classification":
        return None
    if ctx.chance_acc is not None:
        return ctx.chance_acc
    classes = ctx.section("data").get("classes")
    if not isinstance(classes, int) and ctx.chance_loss:
        classes = int(round(np.exp(ctx.chance_loss)))  # balanced classes: chance loss = ln C
    return 1 / classes if isinstance(classes, int) and classes > 1 else None


def schema_accepts(config: dict[str, Any], load: Callable[..., Any]) -> Callable[[Sequence[str]], bool]:
    """Context.accepts for a run's resolved config: whether `load(config, sets)` (the config
    layer's load_config, passed in) takes a fix's --set overrides. The schema decides: an rnn
    takes no leaky_relu, MNIST has no 120000 training samples. A config that does not load by
    itself (a hand-built partial one) takes every fix. It is loaded on the first question only."""
    loads: list[bool] = []

    def accepts(sets: Sequence[str]) -> bool:
        if not loads:
            try:
                load(config)
                loads.append(True)
            except Exception:
                loads.append(False)
        if not loads[0]:
            return True
        try:
            load(config, list(sets))
        except DlxError:
            return False
        return True

    return accepts

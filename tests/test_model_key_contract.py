"""The contract between models and the keys outside `model:`: every registered model,
under every regularization key and the model-dependent train keys, either trains
differently with the key set or refuses it as a config error naming that key. And
it refuses only what it really ignores: trained past the check, a refused key
leaves the run bit-identical.

The oracle is the run itself: a few seeded SGD steps on one thread, compared with
the same config without the key (every parameter and the final loss). A new model
is covered as soon as it is registered: it only needs a tiny config in TINY below.
"""

from __future__ import annotations

import copy

import pytest
import torch
from test_cnn import bars_npz

from dlx.components.models import MODEL_DEPENDENT_KEYS, MODELS
from dlx.config.loader import Config, load_config
from dlx.core.errors import ConfigError
from dlx.run.trainer import Trainer
from dlx.views.report import describe

SPIRALS = {"name": "spirals", "n_train": 16, "n_test": 8}
# Classification (so loss: mse changes the loss) and T = 4 > tbptt: 1 (so truncation cuts).
PARITY = {"name": "parity", "length": 4, "n_train": 16, "n_test": 8}
IMAGES = {"name": "arrays", "path": "IMAGES"}  # 6x6 bars, written once per session

# Per model: tiny configurations, with the data each takes. Where what a model honours
# depends on its own settings (no hidden layer, no blocks, no conv), that case is here too.
TINY: dict[str, list[tuple[dict, dict]]] = {
    "mlp": [({"depth": 1, "width": 8}, SPIRALS), ({"depth": 0}, SPIRALS)],
    "cnn": [
        ({"layers": [{"conv": 2, "kernel": 3}], "head": [4]}, IMAGES),
        ({"layers": [{"conv": 2, "kernel": 3}]}, IMAGES),
        ({"layers": [{"pool": "avg", "size": 2}]}, IMAGES),
    ],
    "resnet": [
        ({"kind": "mlp", "blocks": 1, "width": 8}, SPIRALS),
        ({"kind": "conv", "blocks": 1, "width": 2}, IMAGES),
        ({"kind": "mlp", "blocks": 0, "width": 8}, SPIRALS),
    ],
    "rnn": [({"hidden": 4}, PARITY)],
    "lstm": [({"hidden": 4}, PARITY)],
    "gru": [({"hidden": 4, "layers": 2, "bidirectional": True}, PARITY)],
    "attention": [({"d_model": 8, "blocks": 0}, PARITY), ({"d_model": 8, "heads": 2, "blocks": 1}, PARITY)],
}

# Each key at a value that must change a few steps of SGD wherever it acts: clipping
# thresholds far below the gradients, penalties and drop rates far above rounding.
KEYS = {
    "l1": ("regularization", "l1", 0.01),
    "l2": ("regularization", "l2", 0.01),
    "dropout": ("regularization", "dropout", 0.5),
    "dropconnect": ("regularization", "dropconnect", 0.5),
    "norm-batch": ("regularization", "norm", "batch"),
    "norm-layer": ("regularization", "norm", "layer"),
    "clip_norm": ("regularization", "clip_norm", 1e-3),
    "clip_value": ("regularization", "clip_value", 1e-4),
    "tbptt": ("train", "tbptt", 1),
    "loss-mse": ("train", "loss", "mse"),
}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return bars_npz(tmp_path_factory.mktemp("contract") / "bars.npz", n_train=16, n_test=8, side=6)


def tiny_config(name: str, variant: int, images) -> dict:
    model, data = TINY[name][variant]
    data = {**data, "path": str(images)} if data is IMAGES else data
    return {
        "seed": 0,
        "data": data,
        "model": {"name": name, **model},
        "activation": "tanh",
        "optimizer": {"name": "sgd", "lr": 0.1},
        "train": {"steps": 3, "batch_size": 8, "log_every": 3, "threads": 1},
    }


_data: dict = {}
_baseline: dict = {}


def trained(cfg: Config, key: tuple) -> tuple[list[tuple[str, torch.Tensor]], float]:
    """Every parameter after a few steps, and the last training loss."""
    if key not in _data:  # the data once per tiny config: keys never change it
        _data[key] = cfg.data.load(cfg.seed)
    trainer = Trainer(cfg, data=_data[key])
    outcome = trainer.run()
    return ([(n, p.detach().clone()) for n, p in trainer.model.named_parameters()], outcome.final["train_loss"])


def same_run(a, b) -> bool:
    (pa, la), (pb, lb) = a, b
    return (
        la == lb
        and [n for n, _ in pa] == [n for n, _ in pb]
        and all(x.shape == y.shape and torch.equal(x, y) for (_, x), (_, y) in zip(pa, pb))
    )


CASES = [
    pytest.param(name, i, key, id=f"{name}{i}-{key}")
    for name in MODELS.names()
    for i in range(len(TINY.get(name, [None])))
    for key in KEYS
]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_every_registered_model_has_a_tiny_config_here():
    assert set(TINY) == set(MODELS.names()), "add a tiny config for each new model to TINY"


def test_every_model_dependent_key_is_in_the_contract():
    assert {".".join(k[:2]) for k in KEYS.values()} >= set(MODEL_DEPENDENT_KEYS)


def test_models_declare_only_model_dependent_keys():
    for name in MODELS.names():
        spec = MODELS.get(name)
        assert spec.honours | set(spec.instead) <= set(MODEL_DEPENDENT_KEYS), name


@pytest.mark.parametrize("name, variant, key", CASES)
def test_a_model_honours_a_key_or_refuses_it_and_refuses_only_what_it_ignores(name, variant, key, images):
    assert name in TINY, f"add a tiny config for model '{name}' to TINY"
    section, field, value = KEYS[key]
    plain = tiny_config(name, variant, images)
    keyed = copy.deepcopy(plain)
    keyed.setdefault(section, {})[field] = value
    if (name, variant) not in _baseline:
        _baseline[name, variant] = trained(load_config(plain), (name, variant))
    try:
        cfg = load_config(keyed)
    except ConfigError as e:
        assert [p.path for p in e.problems] == [f"{section}.{field}"], str(e)
        # Past the check (the schema alone), the refused key must change nothing.
        unchecked = trained(Config.model_validate(keyed), (name, variant))
        assert same_run(unchecked, _baseline[name, variant]), f"{name} refuses {section}.{field} but honours it"
        return
    assert not same_run(trained(cfg, (name, variant)), _baseline[name, variant]), (
        f"{name} accepts {section}.{field}: {value} but ignores it"
    )


def test_describe_shows_a_model_dependent_key_only_where_the_model_honours_it():
    # Plain resolved dicts, as a run folder keeps them: one written before the check
    # could hold a key its model ignored, and must not read as if it had been applied.
    def resolved(model, **keys):
        cfg = load_config({"data": PARITY, "model": {"name": "gru"}, "train": {"batch_size": 8}}).resolved()
        cfg["model"] = model
        cfg["regularization"].update(keys)
        cfg["train"]["tbptt"] = 2
        return cfg

    assert describe(resolved({"name": "gru"}, dropout=0.1)).endswith("dropout=0.1, tbptt=2 | data parity")
    lstm = describe(resolved({"name": "lstm"}, l2=0.01, dropout=0.1, dropconnect=0.3, norm="batch"))
    assert "l2=0.01, dropout=0.1, tbptt=2" in lstm
    assert "dropconnect" not in lstm and "norm" not in lstm
    mlp = describe(resolved({"name": "mlp", "depth": 1}, dropconnect=0.3, norm="layer"))
    assert "dropconnect=0.3, layer norm |" in mlp and "tbptt" not in mlp
    assert "dropout" not in describe(resolved({"name": "attention", "blocks": 0}, dropout=0.1))

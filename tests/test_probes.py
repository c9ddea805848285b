"""The probes' contract: per-step statistics without host syncs, read once per interval."""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import torch

import dlx
from dlx.config.loader import load_config
from dlx.run.trainer import Trainer

SYNC_METHODS = ("item", "cpu", "tolist", "numpy", "__float__", "__int__", "__bool__")


def host_reads_during_steps(trainer, monkeypatch) -> list[str]:
    """Run the trainer and list every host read of a tensor made by dlx code inside a step."""
    hits: list[str] = []
    in_step = {"on": False}

    def spy(name, original):
        def wrapper(self, *a, **k):
            caller = sys._getframe(1).f_code
            if in_step["on"] and "/dlx/" in caller.co_filename.replace("\\", "/"):
                hits.append(f"{name} from {caller.co_name}")
            return original(self, *a, **k)

        return wrapper

    for name in SYNC_METHODS:
        monkeypatch.setattr(torch.Tensor, name, spy(name, getattr(torch.Tensor, name)))
    step = trainer._train_step

    def watched(*a, **k):
        in_step["on"] = True
        try:
            return step(*a, **k)
        finally:
            in_step["on"] = False

    trainer._train_step = watched
    trainer.run()
    return hits


def test_a_training_step_never_reads_a_tensor_value_on_the_host(tiny, monkeypatch):
    """dlx's own step code (forward, loss, probes, clipping, penalties) asks the device
    for no value: every read-out happens in the per-interval copy."""
    tiny["regularization"] = {"l1": 1e-4, "l2": 1e-4, "clip_norm": 1.0, "clip_value": 1.0, "dropout": 0.1}
    tiny["train"] = {"steps": 12, "batch_size": 32, "log_every": 4}
    trainer = Trainer(load_config(tiny))
    intervals = []
    interval = trainer._interval
    trainer._interval = lambda *a: intervals.append(1) or interval(*a)
    assert host_reads_during_steps(trainer, monkeypatch) == []
    assert len(intervals) == 3  # 12 steps / log_every 4: one read-out each


def test_interval_record_holds_one_row_per_step_and_every_statistic(tiny):
    tiny["activation"] = "tanh"
    tiny["train"] = {"steps": 10, "batch_size": 32, "log_every": 4}
    records = []
    trainer = Trainer(
        load_config(tiny), callbacks=[type("R", (), {"on_interval": lambda s, t, r: records.append(r)})()]
    )
    trainer.run()
    assert [r["grad_norm"].shape[0] for r in records] == [4, 4, 2]
    assert [r["first_step"] for r in records] == [1, 5, 9]
    last = records[-1]
    assert last["weight_norm"].shape == (3,) and last["update_ratio"].shape == (3,)
    assert (last["update_ratio"] > 0).all() and (last["update_ratio"] < 1).all()
    assert last["act_mean"].shape == (2,) and last["act_pct"].shape == (2, 7)
    # Percentiles are ordered and tanh outputs lie in [-1, 1].
    assert (np.diff(last["act_pct"], axis=1) >= 0).all()
    assert (np.abs(last["act_pct"]) <= 1).all()


def test_non_finite_gradient_is_caught_with_its_step_and_layer(tiny):
    tiny["train"] = {"steps": 20, "batch_size": 32, "log_every": 5, "eval_every": 20}
    trainer = Trainer(load_config(tiny))
    # Poison the output layer's weights at step 7: its gradient and the loss go NaN there.
    step = trainer._train_step

    def poisoned(row, xb, yb):
        if trainer.step == 7:
            with torch.no_grad():
                trainer.model.out.weight[0, 0] = float("nan")
        return step(row, xb, yb)

    trainer._train_step = poisoned
    outcome = trainer.run()
    assert outcome.status == "diverged"
    assert outcome.diverged["step"] == 7
    assert outcome.step == 10  # stopped at the end of the interval that held step 7
    assert "out" in outcome.diverged["layers"]


class _TwoMatrixLayer(torch.nn.Module):
    """A layer with two weight matrices, like a recurrent layer's input and recurrent ones."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.randn(4, 3))
        self.b = torch.nn.Parameter(torch.randn(4, 4))

    def probe_weights(self):
        return [self.a, self.b]


class _TinyModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.two = _TwoMatrixLayer()
        self.out = torch.nn.Linear(4, 2)

    def probe_layers(self):
        return [("two", self.two), ("out", self.out)]

    def activation_modules(self):
        return []

    def time_probe_shape(self):
        return (1, 3)

    def watch_time(self, buf):
        buf.fill_(7.0)


def test_a_layer_with_several_matrices_gets_one_norm_over_all_of_them():
    from dlx.components.activations import ACTIVATIONS
    from dlx.run.probes import Probes

    model = _TinyModel()
    probes = Probes(model, ACTIVATIONS.parse("relu"), log_every=2, device=torch.device("cpu"))
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    probes.record(0, torch.tensor(1.5), torch.tensor(0.5))
    row = probes.buf[0]
    expected_two = torch.sqrt(model.two.a.grad.norm() ** 2 + model.two.b.grad.norm() ** 2)
    assert row[0].item() == pytest.approx(expected_two.item(), rel=1e-6)
    assert row[1].item() == pytest.approx(model.out.weight.grad.norm().item(), rel=1e-6)
    assert row[2:].tolist() == [1.5, 0.5]
    assert probes.shapes == [[[4, 3], [4, 4]], [2, 4]]
    # The time probe buffer is armed at the probe step.
    probes.watch_activations()
    assert probes.time_buf.tolist() == [[7.0, 7.0, 7.0]]
    stats = probes.interval_stats(spread=True)
    assert torch.isnan(stats[2, 0]) and not torch.isnan(stats[2, 1])  # no unit spread for a 2-matrix layer


def test_a_recurrent_training_step_never_reads_a_tensor_value_on_the_host(monkeypatch):
    """The per-time-step gradient probe writes on the device too."""
    cfg = {
        "data": {"name": "parity", "length": 8, "n_train": 64, "n_test": 32},
        "model": {"name": "lstm", "hidden": 8},
        "activation": "tanh",
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"steps": 6, "batch_size": 16, "log_every": 3},
    }
    trainer = Trainer(load_config(cfg))
    records = []
    trainer.callbacks.append(type("R", (), {"on_interval": lambda s, t, r: records.append(r)})())
    assert host_reads_during_steps(trainer, monkeypatch) == []
    assert records[-1]["time_grad"].shape == (1, 8) and (records[-1]["time_grad"] > 0).all()


@pytest.mark.parametrize(
    "activation,field,other",
    [("relu", "dead", "negative"), ("leaky_relu", "negative", "dead"), ("prelu", "negative", "dead")],
)
def test_units_off_for_the_whole_batch_are_dead_only_where_they_cannot_pass_a_gradient(tiny, activation, field, other):
    # A bias of -1 puts some units off for every sample and leaves others on: a count
    # strictly between 0 and 1 in some layer, checked against the untrained model's own outputs.
    tiny["activation"] = activation
    tiny["init"] = {"name": "kaiming_normal", "bias": -1.0}
    tiny["train"] = {"steps": 1, "batch_size": "full", "log_every": 1}
    records = []
    trainer = Trainer(
        load_config(tiny), callbacks=[type("R", (), {"on_interval": lambda s, t, r: records.append(r)})()]
    )
    before = copy.deepcopy(trainer.model)
    trainer.run()
    outs = []
    for _, m in before.activation_modules():
        m.register_forward_hook(lambda _m, _i, o: outs.append(o.detach()))
    with torch.no_grad():
        before(trainer.data.as_float(trainer.data.x_train))
    expected = [float((o <= 0).all(0).float().mean()) for o in outs]
    assert any(0 < e < 1 for e in expected), expected
    np.testing.assert_allclose(records[-1][f"act_{field}"], expected, rtol=1e-6)
    assert np.isnan(records[-1][f"act_{other}"]).all()  # the other count does not apply: null in the files


def test_a_leaky_layer_pushed_below_zero_is_reported_negative_and_not_diagnosed_dead(tiny):
    tiny["activation"] = "leaky_relu"
    tiny["init"] = {"name": "kaiming_normal", "bias": -100.0}
    tiny["train"] = {"steps": 1, "batch_size": "full"}
    r = dlx.train(tiny, save=False)
    assert [a["negative"] for a in r.summary["activations"]] == [1.0, 1.0]
    assert [a["dead"] for a in r.summary["activations"]] == [None, None]
    assert "dead_units" not in {v["kind"] for v in r.summary["verdicts"]}

"""Recurrent models: textbook cells and parameter counts, heads, probes through time, TBPTT."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import dlx
from dlx.config.loader import load_config
from dlx.core.errors import ConfigError
from dlx.run.summary import model_summary
from dlx.run.trainer import Trainer

GATES = {"rnn": 1, "lstm": 4, "gru": 3}

ADDING = {
    "seed": 0,
    "data": {"name": "adding", "length": 12, "n_train": 64, "n_test": 32},
    "model": {"name": "lstm", "hidden": 8},
    "activation": "tanh",
    "optimizer": {"name": "adam", "lr": 0.01},
    "train": {"loss": "mse", "steps": 3, "batch_size": 16, "log_every": 1},
}


def config(**changes):
    """ADDING with sections updated (model={...} updates the model section), or replaced
    (a different data name: its keys differ)."""
    cfg = copy.deepcopy(ADDING)
    for key, value in changes.items():
        other_data = key == "data" and value.get("name", "adding") != "adding"
        if isinstance(value, dict) and isinstance(cfg.get(key), dict) and not other_data:
            cfg[key].update(value)
        else:
            cfg[key] = value
    return cfg


class Records:
    """Keeps the trainer's interval records (host copies of the probes)."""

    def __init__(self):
        self.records = []

    def on_interval(self, trainer, record):
        self.records.append(record)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny recurrent steps are hundreds of small ops: a second thread only adds
    synchronisation (10x slower on a loaded 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def trained(cfg):
    rec = Records()
    result = dlx.train(cfg, save=False, callbacks=[rec])
    assert result.status == "completed", result.summary["reason"]
    return result, rec.records


# ---------------------------------------------------------------- structure


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, False), (2, True)])
def test_parameter_counts_are_the_textbook_formulas(cell, layers, bidirectional):
    hidden, n_in = 8, 2  # adding: 2 features per step
    s = model_summary(
        load_config(config(model={"name": cell, "hidden": hidden, "layers": layers, "bidirectional": bidirectional}))
    )
    dirs = 2 if bidirectional else 1
    rows = {r["name"]: r["params"] for r in s["layers"]}
    expected = {}
    for layer in range(layers):
        d_in = n_in if layer == 0 else dirs * hidden
        per = GATES[cell] * (d_in + hidden + 1) * hidden  # ONE bias vector per gate
        expected[f"{cell}.l{layer}"] = per
        if bidirectional:
            expected[f"{cell}.l{layer}_reverse"] = per
    expected["out"] = dirs * hidden + 1
    assert rows == expected
    assert list(rows) == list(expected)  # input to output, forward before reverse
    assert s["total_params"] == sum(expected.values())


def test_summary_shows_sequence_outputs_and_the_head():
    s = model_summary(load_config(config(model={"name": "gru", "layers": 2})))
    shapes = {r["name"]: r["output"] for r in s["layers"]}
    assert shapes == {"gru.l0": [2, 12, 8], "gru.l1": [2, 8], "out": [2, 1]}
    assert s["input"] == [2, 12, 2] and s["output"] == [2, 1]


@pytest.mark.parametrize("cell,reference", [("rnn", nn.RNN), ("lstm", nn.LSTM), ("gru", nn.GRU)])
def test_cells_compute_what_torch_computes_with_its_second_bias_zero(cell, reference):
    cfg = load_config(config(model={"name": cell, "hidden": 8, "layers": 2, "bidirectional": True}))
    t = Trainer(cfg)
    model = t.model.eval()
    ref = reference(2, 8, num_layers=2, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for layer in range(2):
            for sfx in ("", "_reverse"):
                mine = model.get_submodule(f"{cell}.l{layer}{sfx}")
                getattr(ref, f"weight_ih_l{layer}{sfx}").copy_(mine.W_ih)
                getattr(ref, f"weight_hh_l{layer}{sfx}").copy_(mine.W_hh)
                getattr(ref, f"bias_ih_l{layer}{sfx}").copy_(mine.b)
                getattr(ref, f"bias_hh_l{layer}{sfx}").zero_()
        x = t.data.x_train[:5]
        seq, _ = ref(x)
        # many_to_one: the forward direction's last state and the reverse one's first.
        final = torch.cat([seq[:, -1, :8], seq[:, 0, 8:]], dim=1)
        torch.testing.assert_close(model(x), model.out(final), rtol=1e-5, atol=1e-6)


def test_many_to_one_and_many_to_many_shapes_and_gradients():
    for head, data, shape in [
        ("many_to_one", {"name": "parity", "length": 7}, (4, 2)),
        ("many_to_many", {"name": "copy", "length": 3, "delay": 2, "symbols": 5}, (4, 9, 6)),
    ]:
        cfg = config(
            data={**data, "n_train": 32, "n_test": 8},
            model={"name": "lstm", "hidden": 6, "head": head, "bidirectional": True},
            train={"steps": 1, "batch_size": 16},
        )
        t = Trainer(load_config(cfg))
        out = t.model(t.data.as_float(t.data.x_train[:4]))
        assert tuple(out.shape) == shape
        t.loss_fn(out, t.data.y_train[:4]).backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in t.model.parameters())


def test_probes_have_one_column_per_layer_and_direction_in_order():
    r, records = trained(config(model={"name": "lstm", "layers": 2}))
    assert [l["name"] for l in r.summary["layers"]] == ["lstm.l0", "lstm.l1", "out"]
    assert all(rec["grad_norm"].shape == (1, 3) for rec in records)
    # One gradient norm over both matrices of a layer; and the weight norm likewise.
    assert [l["shape"] for l in r.summary["layers"]][0] == [[32, 2], [32, 8]]
    assert all(np.isfinite(rec["grad_norm"]).all() and (rec["grad_norm"] > 0).all() for rec in records)

    r, records = trained(config(model={"name": "gru", "bidirectional": True}))
    assert [l["name"] for l in r.summary["layers"]] == ["gru.l0", "gru.l0_reverse", "out"]
    assert records[-1]["time_grad"].shape == (2, 12)


def test_probe_grad_norm_is_the_norm_over_both_matrices():
    t = Trainer(load_config(config(model={"name": "rnn"}, train={"steps": 1, "batch_size": "full"})))
    twin = copy.deepcopy(t.model)
    torch.nn.functional.mse_loss(twin(t.data.x_train), t.data.y_train).backward()
    layer = twin.get_submodule("rnn.l0")
    expected = torch.cat([layer.W_ih.grad.flatten(), layer.W_hh.grad.flatten()]).norm().item()
    rec = Records()
    t.callbacks.append(rec)
    t.run()
    assert rec.records[0]["grad_norm"][0, 0] == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------- gradients through time


def test_time_probe_is_the_total_gradient_reaching_each_state():
    t = Trainer(load_config(config(model={"name": "rnn", "hidden": 6}, train={"batch_size": "full"})))
    model = t.model
    x, y = t.data.x_train, t.data.y_train
    buf = torch.zeros(model.time_probe_shape())
    model.watch_time(buf)
    torch.nn.functional.mse_loss(model(x), y).backward()
    # The same by hand: keep every h_t and ask autograd for dL/dh_t.
    layer = model.get_submodule("rnn.l0")
    h, states = torch.zeros(len(x), 6), []
    for step in range(x.shape[1]):
        h = torch.tanh(x[:, step] @ layer.W_ih.T + h @ layer.W_hh.T + layer.b)
        states.append(h)
    loss = torch.nn.functional.mse_loss(model.out(h), y)
    grads = torch.autograd.grad(loss, states)
    np.testing.assert_allclose(buf[0].numpy(), [g.norm().item() for g in grads], rtol=1e-4)
    # Armed for one forward only: the next backward writes nothing.
    buf.zero_()
    torch.nn.functional.mse_loss(model(x), y).backward()
    assert buf.abs().sum() == 0


def test_tbptt_stops_the_gradient_k_steps_before_the_end():
    k, steps = 4, 12
    _, records = trained(config(model={"name": "lstm", "layers": 2}, train={"tbptt": k}))
    tg = records[-1]["time_grad"]
    assert tg.shape == (2, steps)
    assert (tg[:, : steps - k] == 0).all()  # exactly zero beyond the truncation
    assert (tg[:, steps - k :] > 0).all()
    # Without truncation every step gets some gradient.
    _, records = trained(config(model={"name": "lstm", "layers": 2}))
    assert (records[-1]["time_grad"] > 0).all()


def test_tanh_rnn_gradient_through_time_vanishes_far_faster_than_lstm():
    # The adding problem at T = 50: the loss sees only h_T, so ||dL/dh_1|| / ||dL/dh_T||
    # is what backpropagation through 49 steps leaves. Same task, hidden size, init and
    # optimizer (configs/gradients_through_time.yaml). In the first ~20 steps both ratios
    # are ~1e-10 (PyTorch's uniform init: forget gates near 0.5); then a few LSTM cells
    # raise their forget gates and its ratio jumps to ~1e-4, while the RNN's stays ~1e-11.
    ratios, profiles = {}, {}
    for cell in ("rnn", "lstm"):
        cfg = config(
            data={"length": 50, "n_train": 640},
            model={"name": cell, "hidden": 32},
            optimizer={"name": "adam", "lr": 0.001},
            train={"steps": 60, "batch_size": 64, "log_every": 20},
        )
        _, records = trained(cfg)
        tg = records[-1]["time_grad"][0]
        ratios[cell], profiles[cell] = tg[0] / tg[-1], tg
    assert ratios["rnn"] < 1e-8 and ratios["lstm"] > 1e4 * ratios["rnn"], ratios
    # The RNN's decays steadily toward early steps: every 10 steps back is smaller.
    assert (np.diff(profiles["rnn"][::10]) > 0).all(), profiles["rnn"]


# ---------------------------------------------------------------- learning


def test_gru_learns_a_short_adding_problem_below_the_baseline():
    cfg = config(
        data={"length": 10, "n_train": 1024, "n_test": 256},
        model={"name": "gru", "hidden": 16},
        train={"steps": 300, "batch_size": 64, "log_every": 50, "eval_every": 300},
    )
    r, _ = trained(cfg)
    assert r.summary["final"]["test_loss"] < 0.03  # predicting the mean scores ~0.167


def test_dropout_changes_training_outputs_only():
    t = Trainer(load_config(config(model={"name": "gru", "layers": 2}, regularization={"dropout": 0.5})))
    x = t.data.x_train[:8]
    t.model.train()
    assert not torch.equal(t.model(x), t.model(x))
    t.model.eval()
    assert torch.equal(t.model(x), t.model(x))


# ---------------------------------------------------------------- bad input


def problems(cfg):
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    return {p.path: p.message for p in e.value.problems}


def test_lstm_on_flat_images_asks_for_a_sequence_dataset():
    found = problems(config(data={"name": "spirals"}, train={"loss": "cross_entropy"}))
    assert "(T, F)" in found["model"] and "(2,)" in found["model"] and "parity" in found["model"]


def test_lstm_on_mnist_points_at_seq_mnist(mnist_dir, monkeypatch):
    monkeypatch.setenv("DLX_DATA_DIR", str(mnist_dir))
    found = problems(config(data={"name": "mnist", "n_train": 100, "n_test": 100}, train={"loss": "cross_entropy"}))
    assert "seq_mnist" in found["model"] and "(784,)" in found["model"]


def test_rnn_activation_must_be_tanh_or_relu():
    found = problems(config(model={"name": "rnn"}, activation="sigmoid"))
    assert "tanh" in found["activation"] and "relu" in found["activation"]
    # LSTM/GRU gates are fixed: any activation is accepted (and ignored).
    for cell in ("lstm", "gru"):
        load_config(config(model={"name": cell}, activation="sigmoid"))
    load_config(config(model={"name": "rnn"}, activation="relu"))


def test_head_must_match_the_target():
    found = problems(config(data={"name": "copy"}, train={"loss": "cross_entropy"}))
    assert "many_to_many" in found["model.head"]
    found = problems(config(model={"head": "many_to_many"}))
    assert "many_to_one" in found["model.head"]


def test_bad_sizes_are_field_errors():
    found = problems(config(model={"hidden": 0, "layers": 0, "head": "last"}))
    assert set(found) == {"model.hidden", "model.layers", "model.head"}


def test_train_output_shows_the_gradient_through_time_ratio(tmp_path):
    import subprocess
    import sys

    cfg = Path(__file__).resolve().parents[1] / "configs" / "gradients_through_time.yaml"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlx",
            "train",
            str(cfg),
            "--set",
            "train.steps=20",
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert "Gradient through time" in p.stdout and "rnn.l0: t=1" in p.stdout

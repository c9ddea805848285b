"""The init-theory check: step-0 pre-activation variances against what the init scheme predicts."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from rich.console import Console

from dlx.components.activations import ACTIVATIONS
from dlx.config.loader import load_config
from dlx.run.initcheck import OK_FACTOR, init_check, init_check_for, mean_square
from dlx.run.trainer import Trainer
from dlx.views.report import init_check_table


@pytest.fixture(autouse=True)
def _one_thread():
    # Two threads on two shared cores spin against each other; restore for later tests.
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def gaussian_npz(path, shape=(32,), scale=1.0, n_train=256, classes=4, seed=0):
    """N(0, scale^2) inputs of `shape` and random labels: E[x^2] = scale^2 at the first layer."""
    rng = np.random.default_rng(seed)
    n = n_train + 64
    x = rng.normal(0, scale, (n, *shape)).astype(np.float32)
    y = rng.integers(0, classes, n)
    np.savez(path, x_train=x[:n_train], y_train=y[:n_train], x_test=x[n_train:], y_test=y[n_train:])
    return path


def trainer(tmp_path, model, activation="relu", init="kaiming_normal", shape=(32,), scale=1.0, **top):
    cfg = {
        "seed": 0,
        "data": {"name": "arrays", "path": str(gaussian_npz(tmp_path / "x.npz", shape, scale))},
        "model": model,
        "activation": activation,
        "init": init,
        "optimizer": {"name": "sgd", "lr": 0.1},
        "train": {"steps": 1, "batch_size": 32, "threads": 1},
    }
    cfg.update(top)
    return Trainer(load_config(cfg))


def hidden(rows):
    """The hidden layers' rows (the last row is the output layer)."""
    return rows[:-1]


def test_xavier_with_tanh_near_zero_predicts_and_keeps_every_layer_of_a_deep_mlp(tmp_path):
    # Inputs of std 0.3 keep the pre-activations near 0, where tanh(z) ~ z.
    rows = init_check_for(
        trainer(tmp_path, {"name": "mlp", "depth": 10, "width": 128}, "tanh", "xavier_normal", scale=0.3)
    )
    assert [r["layer"] for r in rows] == [f"fc{i}" for i in range(1, 11)] + ["out"]
    for r in hidden(rows):
        assert r["fan_in"] == (32 if r["layer"] == "fc1" else 128)
        assert r["weight_var"] == pytest.approx(2 / (r["fan_in"] + 128))
        assert 1 / OK_FACTOR < r["ratio"] < OK_FACTOR, r
        assert r["verdict"] in ("ok", "kept"), r
    # Near 0, tanh passes the variance on and Xavier keeps it: no layer loses more than
    # a little of it (tanh compresses a bit), so ten layers on the signal is still there.
    assert all(0.85 < r["predicted_gain"] <= 1.0 for r in hidden(rows)[1:])
    assert rows[9]["measured_var"] > 0.3 * rows[0]["measured_var"]


def test_he_keeps_relu_variance_over_ten_layers_while_xavier_halves_it_per_layer(tmp_path):
    mlp = {"name": "mlp", "depth": 10, "width": 128}
    he = hidden(init_check_for(trainer(tmp_path, mlp, "relu", "kaiming_normal")))
    xavier = hidden(init_check_for(trainer(tmp_path, mlp, "relu", "xavier_normal")))
    for r in he[1:]:
        assert r["predicted_gain"] == pytest.approx(1.0)
        assert r["verdict"] == "kept", r
    for r in xavier[1:]:
        assert r["predicted_gain"] == pytest.approx(0.5)
        assert r["verdict"] == "shrinks", r
        assert 1 / OK_FACTOR < r["ratio"] < OK_FACTOR, r
    he_gain = np.exp(np.mean(np.log([r["measured_gain"] for r in he[1:]])))
    xavier_gain = np.exp(np.mean(np.log([r["measured_gain"] for r in xavier[1:]])))
    assert he_gain == pytest.approx(1.0, abs=0.15)
    assert xavier_gain == pytest.approx(0.5, abs=0.1)
    # Over nine steps: He's last hidden layer keeps the first's scale, Xavier's is ~2^-9 of it.
    assert 0.5 < he[-1]["measured_var"] / he[0]["measured_var"] < 2
    assert xavier[-1]["measured_var"] / xavier[0]["measured_var"] < 1 / 200


def test_unit_normal_weights_multiply_the_variance_by_fan_in(tmp_path):
    rows = init_check_for(
        trainer(tmp_path, {"name": "mlp", "depth": 4, "width": 32}, "identity", {"name": "normal", "std": 1.0})
    )
    assert rows[0]["measured_var"] == pytest.approx(32, rel=0.3)  # fan_in 32 times E[x^2] = 1
    for r in hidden(rows)[1:]:
        assert r["predicted_gain"] == pytest.approx(32)
        assert 16 < r["measured_gain"] < 64, r
        assert r["verdict"] == "grows"
    assert rows[3]["measured_var"] > 1e5  # 32^4


def test_zero_and_constant_init_report_identical_units_without_dividing_by_zero(tmp_path):
    mlp = {"name": "mlp", "depth": 3, "width": 16}
    zeros = init_check_for(trainer(tmp_path, mlp, "relu", "zeros"))
    # sigmoid(0) = 0.5: with constant weights the signal flows, yet every unit is the same.
    constant = init_check_for(trainer(tmp_path, mlp, "sigmoid", {"name": "constant", "value": 0.1}))
    for r in zeros + constant:
        assert r["verdict"] == "identical units", r
        assert r["measured_var"] == pytest.approx(0, abs=1e-12)
        assert r["ratio"] is None and r["measured_gain"] is None
    assert constant[1]["input_sq"] > 0.1  # not a dead signal: the units are copies of each other
    json.dumps(zeros + constant, allow_nan=False)  # summary.json material: no NaN, no numpy types


def test_an_init_so_large_that_the_forward_pass_overflows_is_reported_not_crashed(tmp_path):
    # Variance x 64e6 per layer: float32 (max 3e38) overflows around the tenth layer.
    rows = init_check_for(
        trainer(tmp_path, {"name": "mlp", "depth": 12, "width": 64}, "identity", {"name": "normal", "std": 1000.0})
    )
    assert rows[0]["verdict"] == "ok"
    assert rows[-1]["verdict"] == "overflow" and "too large" in rows[-1]["note"]
    json.dumps(rows, allow_nan=False)


def test_weights_that_do_not_follow_the_configured_scheme_are_flagged(tmp_path):
    tr = trainer(tmp_path, {"name": "mlp", "depth": 3, "width": 128}, "relu", "kaiming_normal")
    with torch.no_grad():
        tr.model.fc2.weight.mul_(0.5)  # a quarter of the variance He promises
        tr.model.fc3.weight.mul_(2.0)
    rows = {r["layer"]: r for r in init_check_for(tr)}
    assert rows["fc1"]["verdict"] == "ok"
    assert rows["fc2"]["verdict"] == "lower than theory" and rows["fc2"]["ratio"] == pytest.approx(0.25, rel=0.2)
    assert rows["fc3"]["verdict"] == "higher than theory" and rows["fc3"]["ratio"] == pytest.approx(4, rel=0.2)
    assert "prediction" in rows["fc2"]["note"]


def test_a_conv_row_has_fan_in_channels_times_kernel_area(tmp_path):
    cnn = {
        "name": "cnn",
        "layers": [
            {"conv": 16, "kernel": 3, "padding": 1},
            {"conv": 32, "kernel": 5, "groups": 2},
            {"pool": "global_avg"},
        ],
        "head": [32],
    }
    rows = {r["layer"]: r for r in init_check_for(trainer(tmp_path, cnn, shape=(3, 10, 10)))}
    assert rows["conv1"]["fan_in"] == 3 * 3 * 3 and rows["conv1"]["fan_out"] == 16 * 3 * 3
    assert rows["conv2"]["fan_in"] == (16 // 2) * 5 * 5  # each group sees half the channels
    for name in ("conv1", "conv2", "fc1"):
        assert rows[name]["weight_var"] == pytest.approx(2 / rows[name]["fan_in"])
        assert 1 / OK_FACTOR < rows[name]["ratio"] < OK_FACTOR, rows[name]
    # conv1's zero padding: its border outputs see fewer inputs, and the prediction counts them.
    assert rows["conv1"]["input_sq"] < 0.9
    assert rows["conv2"]["predicted_gain"] == pytest.approx(1.0)  # conv1 -> relu -> conv2
    assert rows["fc1"]["predicted_gain"] is None  # a pool in between


def test_recurrent_layers_are_not_applicable_and_get_no_numbers(tmp_path):
    cfg = {
        "seed": 0,
        "data": {"name": "parity", "n_train": 64, "n_test": 16},
        "model": {"name": "lstm", "hidden": 8},
        "activation": "tanh",
        "init": "xavier_uniform",
        "optimizer": {"name": "sgd", "lr": 0.1},
        "train": {"steps": 1, "batch_size": 16, "threads": 1},
    }
    rows = init_check_for(Trainer(load_config(cfg)))
    lstm = rows[0]
    assert lstm["layer"] == "lstm.l0" and lstm["verdict"] == "not applicable"
    assert "through time" in lstm["note"]
    assert all(lstm[k] is None for k in ("fan_in", "predicted_var", "measured_var", "ratio"))
    assert rows[-1]["layer"] == "out" and rows[-1]["fan_in"] == 8


@pytest.mark.parametrize("init", ["default", "xavier_uniform", "kaiming_normal", "lecun_normal", "orthogonal"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_recurrent_weight_law_is_what_the_cells_are_drawn_with(cell, init):
    from dlx.components.init import INITS
    from dlx.components.models.recurrent import RecurrentNet
    from dlx.run.initcheck import weight_moments

    # An input of 16 features under 64 hidden units: Linear's 1/(3 fan_in) would be 4x the
    # cells' own 1/(3 hidden) for W_ih (W_hh's fan_in is the hidden size, so it cannot tell).
    torch.manual_seed(0)
    net = RecurrentNet(cell, 16, 1, 64, 1, False, "many_to_one", "tanh", 0.0, None, 4)
    spec = INITS.parse(init)
    spec.init_model(net)
    layer = net.stack["l0"]
    for w in (layer.W_ih, layer.W_hh):
        mean, s2, _ = weight_moments(spec, w, layer)
        # The oracle: the drawn weights' own mean square (>= 1024 entries: within ~5% of the law).
        assert float(w.detach().double().square().mean()) == pytest.approx(s2 + mean * mean, rel=0.2)


def test_recurrent_rows_say_what_each_matrix_was_drawn_with(tmp_path):
    cfg = {
        "seed": 0,
        "data": {"name": "parity", "n_train": 64, "n_test": 16},
        "model": {"name": "gru", "hidden": 8},
        "activation": "tanh",
        "optimizer": {"name": "sgd", "lr": 0.1},
        "train": {"steps": 1, "batch_size": 16, "threads": 1},
    }
    rows = init_check_for(Trainer(load_config(cfg)))
    gru = rows[0]
    assert gru["verdict"] == "not applicable" and gru["predicted_var"] is None
    assert gru["rule"].startswith("1/(3 hidden)") and gru["weight_var"] == pytest.approx(1 / 24)
    assert "W_ih 0.0417, W_hh 0.0417" in gru["note"]
    assert rows[-1]["rule"].startswith("1/(3 fan_in)")  # the Linear head keeps Linear's default
    xavier = init_check_for(Trainer(load_config({**cfg, "init": "xavier_uniform"})))[0]
    # W_ih [24, 1] and W_hh [24, 8] differ in fans: no one s^2 for the row, each in the note.
    assert xavier["weight_var"] is None
    assert f"W_ih {2 / 25:.3g}, W_hh {2 / 32:.3g}" in xavier["note"]


def test_the_check_leaves_parameters_buffers_mode_and_random_stream_as_they_were(tmp_path):
    tr = trainer(
        tmp_path,
        {"name": "mlp", "depth": 3, "width": 32},
        "relu",
        "kaiming_normal",
        regularization={"norm": "batch", "dropout": 0.5},
    )
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    tr.model.eval()
    rng = torch.get_rng_state()
    rows = init_check_for(tr)
    assert torch.equal(torch.get_rng_state(), rng)
    assert not tr.model.training
    after = tr.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bn running stats included
    assert rows == init_check_for(tr)  # and so it is deterministic
    # The batch went through in training mode: batch norm made each layer's input unit-variance.
    assert rows[1]["input_sq"] == pytest.approx(0.5 / 0.5, rel=0.25)  # relu(N(0,1))^2 = 1/2, dropout / (1-p)


def test_init_check_takes_a_model_and_a_batch_directly(tmp_path):
    tr = trainer(tmp_path, {"name": "mlp", "depth": 2, "width": 64}, "relu", "kaiming_uniform")
    x = torch.randn(128, 32, generator=torch.Generator().manual_seed(1)) * 3.0
    rows = init_check(tr.model, x, tr.cfg)
    assert rows[0]["input_sq"] == pytest.approx(9, rel=0.1)
    assert rows[0]["predicted_var"] == pytest.approx(32 * (2 / 32) * rows[0]["input_sq"] + 0)


def test_the_table_renders_every_row_and_the_scheme(tmp_path):
    rows = init_check_for(trainer(tmp_path, {"name": "mlp", "depth": 2, "width": 64}, "relu", "xavier_uniform"))
    console = Console(record=True, width=80)
    console.print(init_check_table(rows))
    text = console.export_text()
    assert "xavier_uniform" in text and "2/(fan_in+fan_out)" in text
    assert "E[x^2]" in text and "meas/" in text  # brackets are not eaten as markup
    for r in rows:
        assert r["layer"] in text
    assert "shrinks" in text and "…" not in text  # 80 columns: no number is cut short
    # The explanation under it is wrapped between words, within the width.
    lines = text.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    below = " ".join(line.strip() for line in lines[lines.index(next(x for x in lines if x.startswith("Var(y) is"))) :])
    assert "predicted = fan_in * s^2 * E[x^2], with E[x^2] measured at the layer's input" in below
    # What summary.json gives back renders the same.
    console = Console(record=True, width=80)
    console.print(init_check_table(json.loads(json.dumps(rows))))
    assert console.export_text() == text
    assert not math.isnan(rows[1]["predicted_gain"])


class _CheckAtStart:
    def on_start(self, trainer):
        self.rows = init_check_for(trainer)


def test_a_run_with_the_check_trains_exactly_as_one_without(tiny):
    import dlx

    # Dropout draws masks and batch norm keeps running statistics: the check touches neither.
    tiny["regularization"] = {"norm": "batch", "dropout": 0.3}
    tiny["train"].update(epochs=1, threads=1)
    check = _CheckAtStart()
    with_check = dlx.train(tiny, save=False, callbacks=[check])
    without = dlx.train(tiny, save=False)
    assert check.rows and check.rows[0]["layer"] == "fc1"
    assert with_check.metrics == [{**m, "time": with_check.metrics[i]["time"]} for i, m in enumerate(without.metrics)]


def test_train_init_check_prints_the_table_before_training(tmp_path, tiny):
    import yaml
    from typer.testing import CliRunner

    from dlx.cli.app import app

    tiny["train"].update(epochs=1, threads=1)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny))
    res = CliRunner().invoke(
        app, ["train", str(path), "--runs-dir", str(tmp_path / "runs"), "-q", "--init-check"], env={"COLUMNS": "80"}
    )
    assert res.exit_code == 0, res.output
    assert "init check at step 0: kaiming_normal" in res.output
    assert "fc1" in res.output and "fc2" in res.output
    assert res.output.index("init check") < res.output.index("run folder")
    # At 80 columns the explanation under the table is wrapped, not one long line.
    table = res.output[res.output.index("init check") : res.output.index("run folder")]
    assert max(len(line.rstrip()) for line in table.splitlines()) <= 80


# Independent of torch: numpy's own formulas for the activations.
NUMPY_ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0),
    "tanh": np.tanh,
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "softsign": lambda z: z / (1 + np.abs(z)),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "softplus": lambda z: np.logaddexp(0, z),
    "silu": lambda z: z / (1 + np.exp(-z)),
    "gelu": lambda z: z * 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2))),
}


@pytest.mark.parametrize("name", sorted(NUMPY_ACTIVATIONS))
def test_mean_square_agrees_with_a_fine_trapezoid_integral_over_every_scale(name):
    # The reference: a 2e5-point trapezoid on [m - 12 sd, m + 12 sd]. 64-node Gauss-Hermite
    # (the method before) was 6.1% high for tanh at Var 100, 2.7% for softsign.
    f = NUMPY_ACTIVATIONS[name]
    act = ACTIVATIONS.parse(name).build(1)
    for mean in (0.0, 0.5):
        for var in (1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0):
            sd = math.sqrt(var)
            z = np.linspace(mean - 12 * sd, mean + 12 * sd, 200_001)
            density = np.exp(-((z - mean) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)
            expected = np.trapezoid(f(z) ** 2 * density, z)
            assert mean_square(act, mean, var)[0] == pytest.approx(expected, rel=1e-4), (mean, var)


@pytest.mark.parametrize(
    "activation,init",
    [
        ("tanh", {"name": "normal", "std": 0.3}),  # saturated: Var(z) ~ 100 at fc1
        ("tanh", {"name": "normal", "std": 0.05, "bias": 0.5}),  # the biases' mean moves E[f(z)^2]
        ("sigmoid", {"name": "xavier_normal"}),  # E[x^2] mostly the mean's square
        ("relu", {"name": "normal", "std": 0.1}),
    ],
)
def test_the_predicted_gain_is_what_a_wide_random_layer_measures(tmp_path, activation, init):
    # fc2 of a 2048-wide MLP, averaged over 8 draws: one draw's measured Var(W x) has a
    # relative noise of ~sqrt(2/2048) = 3% when the input has a common mean (sigmoid,
    # a bias), so single draws scatter 0.95-1.03 around the prediction.
    pred, meas = [], []
    for seed in range(8):
        rows = init_check_for(
            trainer(
                tmp_path,
                {"name": "mlp", "depth": 2, "width": 2048},
                activation,
                init,
                seed=seed,
                train={"steps": 1, "batch_size": 256, "threads": 1},
            )
        )
        assert rows[1]["layer"] == "fc2"
        pred.append(rows[1]["predicted_gain"])
        meas.append(rows[1]["measured_gain"])
    assert np.mean(pred) == pytest.approx(np.mean(meas), rel=0.02)


def test_the_backward_variances_are_those_of_autograds_own_gradients_at_each_layers_output(tmp_path):
    from dlx.run.initcheck import gradient_variances

    tr = trainer(tmp_path, {"name": "mlp", "depth": 3, "width": 16}, "tanh", "xavier_normal")
    x, y = tr.data.as_float(tr.data.x_train[:64]), tr.data.y_train[:64]
    got = gradient_variances(tr.model, x, y, tr.loss_fn)
    # The oracle: each layer's output kept with retain_grad, one backward pass of the same loss.
    outs = []

    def keep(module, inp, out):
        out.retain_grad()
        outs.append(out)

    hooks = [m.register_forward_hook(keep) for _, m in tr.model.init_targets()]
    tr.loss_fn(tr.model(x), y).backward()
    for h in hooks:
        h.remove()
    want = [float(o.grad.double().var(1, unbiased=True).mean()) for o in outs]
    assert got == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("init, law", [("default", 1 / 3), ("xavier_normal", 1.0)])
def test_the_gradient_keeps_fan_out_var_w_of_its_variance_per_linear_layer_going_down(tmp_path, init, law):
    # Glorot & Bengio's backward half: dL/dy_below = W^T dL/dy (a linear net), so its variance
    # is fan_out Var(W) times this layer's: 1/3 for U(+-1/sqrt(n)), 1 for Xavier (square layers).
    tr = trainer(tmp_path, {"name": "mlp", "depth": 6, "width": 256}, "linear", init)
    rows = init_check_for(tr)
    gains = [r["grad_gain"] for r in hidden(rows) if r["grad_gain"] is not None]
    assert len(gains) == 5  # fc2..fc6: each fed by the layer below
    assert math.exp(np.mean(np.log(gains))) == pytest.approx(law, rel=0.1)
    assert rows[0]["grad_gain"] is None and rows[0]["grad_var"] > 0  # nothing below the first layer


def test_the_backward_pass_leaves_every_parameters_gradient_as_it_was(tmp_path):
    tr = trainer(tmp_path, {"name": "mlp", "depth": 2, "width": 16}, "relu", "kaiming_normal")
    for p in tr.model.parameters():
        p.grad = torch.full_like(p, 7.0)
    init_check_for(tr)
    assert all(torch.equal(p.grad, torch.full_like(p, 7.0)) for p in tr.model.parameters())

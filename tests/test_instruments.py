"""Research instruments (dlx/instruments.py), each checked against an exact oracle on tiny
nets: the Hessian's top eigenvalue and trace against torch.autograd.functional.hessian and
eigvalsh, per-sample gradients against one backward pass per sample, B_simple against its
definition, spectra against svdvals."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import dlx
from dlx.config.loader import load_config
from dlx.run.instruments import LossFunction, _flat, _unflat, measure, per_sample_grads, threshold
from dlx.run.trainer import Trainer

TINY = {
    "seed": 0,
    "data": {"name": "spirals", "n_train": 128, "n_test": 64},
    "model": {"name": "mlp", "depth": 1, "width": 8},
    "activation": "tanh",
    "optimizer": {"name": "sgd", "lr": 0.1},
    "train": {"steps": 20, "batch_size": 32, "log_every": 5},
}
ALL = {
    "sharpness": True,
    "trace": True,
    "noise": True,
    "spectra": True,
    "every": 5,
    "batch": 64,
    "lanczos": 30,
    "hutchinson": 32,
}


def _config(**over) -> dict:
    c = copy.deepcopy(TINY)
    c["instruments"] = dict(ALL)
    for k, v in over.items():
        c[k] = v
    return c


def _trained(c: dict, steps: int = 10) -> Trainer:
    """A Trainer of config c after `steps` steps (no files)."""
    c = copy.deepcopy(c)
    c["train"] = {**c["train"], "steps": steps}
    tr = Trainer(load_config(c))
    tr.run()
    return tr


def _hessian(tr: Trainer, n: int) -> torch.Tensor:
    """The exact Hessian of the data loss on the first n training samples, eval mode."""
    model = tr.model
    model.eval()
    x, y = tr.data.as_float(tr.data.x_train[:n]), tr.data.y_train[:n]
    f = LossFunction(model, tr.loss_fn, x, y)
    params = f.params()
    flat = _flat(params, f.names).double()
    f64 = LossFunction(model.double(), tr.loss_fn, x.double(), y)
    h = torch.autograd.functional.hessian(
        lambda v: f64(_unflat(v, {k: p.double() for k, p in params.items()}, f.names)), flat
    )
    model.float()
    model.train()
    return h


def test_the_top_eigenvalue_and_trace_match_the_exact_hessian(tmp_path):
    tr = _trained(_config())
    cfg = load_config(_config()).instruments
    rec = measure(tr, cfg, None)
    h = _hessian(tr, cfg.batch)
    eig = torch.linalg.eigvalsh(h)
    assert rec["parameters"] == h.shape[0] == 2 * 8 + 8 + 8 * 3 + 3
    assert rec["sharpness"]["top"] == pytest.approx(float(eig[-1]), rel=0.01)
    assert rec["sharpness"]["residual"] < 1e-3
    # 51 parameters, 32 Hutchinson vectors asked: the trace is computed exactly? No: 51 > 32,
    # so it is estimated; within 4 standard errors of the exact trace.
    t = rec["trace"]
    assert not t["exact"] and abs(t["value"] - float(h.trace())) < 4 * t["stderr"] + 1e-6
    exact = measure(tr, cfg.model_copy(update={"hutchinson": 64}), None)["trace"]
    assert exact["exact"] and exact["value"] == pytest.approx(float(h.trace()), rel=0.01)


def test_adams_preconditioned_sharpness_is_the_top_eigenvalue_of_p_inv_sqrt_h_p_inv_sqrt():
    c = _config(optimizer={"name": "adam", "lr": 0.01})
    tr = _trained(c)
    cfg = load_config(c).instruments
    rec = measure(tr, cfg, None)["sharpness"]
    assert rec["preconditioned"] and rec["threshold"] == pytest.approx(38 / 0.01)
    h = _hessian(tr, cfg.batch)
    d = []
    for p in tr.model.parameters():
        st = tr.optimizer.state[p]
        d.append(((st["exp_avg_sq"] / (1 - 0.999 ** float(st["step"]))).sqrt() + 1e-8).reshape(-1))
    s = torch.cat(d).double().rsqrt()
    want = torch.linalg.eigvalsh(s[:, None] * h * s[None, :])[-1]
    assert rec["preconditioned_top"] == pytest.approx(float(want), rel=0.01)


def test_the_stability_thresholds_follow_the_optimizer():
    cfg = lambda o: load_config({**TINY, "optimizer": o}).optimizer  # noqa: E731
    assert threshold(cfg({"name": "sgd", "lr": 0.1}), 0.1)[0] == pytest.approx(20)
    assert threshold(cfg({"name": "momentum", "lr": 0.1, "momentum": 0.9}), 0.1)[0] == pytest.approx(38)
    assert threshold(cfg({"name": "nesterov", "lr": 0.1, "momentum": 0.9}), 0.1)[0] == pytest.approx(3.8 / 0.28)
    assert threshold(cfg({"name": "adam", "lr": 0.001}), 0.001)[0] == pytest.approx(38_000)
    thr, rule, _ = threshold(cfg({"name": "adagrad", "lr": 0.1}), 0.1)
    assert thr is None and "no stability threshold" in rule


def _quadratic_stable(opt_cfg, curvature: float, steps: int = 3000) -> bool:
    """The oracle for a threshold: torch's own optimizer (built from the config) on the 1-D
    quadratic curvature/2 w^2; stable when |w| has shrunk after `steps` steps."""
    w = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = opt_cfg.build([w])
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * curvature * w**2).sum().backward()
        opt.step()
        if not torch.isfinite(w).all() or abs(w.item()) > 1e6:
            return False
    return abs(w.item()) < 1.0


@pytest.mark.parametrize(
    "opt",
    [
        {"name": "momentum", "lr": 0.1, "momentum": 0.9, "dampening": 0.5},
        {"name": "sgd", "lr": 0.1, "momentum": 0.5, "dampening": 0.3, "weight_decay": 1.0},
        {"name": "sgd", "lr": 0.1, "weight_decay": 2.0},
        {"name": "nesterov", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.5},
    ],
)
def test_the_threshold_follows_dampening_and_weight_decay_as_torchs_optimizer_does(opt):
    o = load_config({**TINY, "optimizer": opt}).optimizer
    lr, b, d, wd = opt["lr"], opt.get("momentum", 0.0), opt.get("dampening", 0.0), opt.get("weight_decay", 0.0)
    rule = (2 + 2 * b) / (lr * (1 + 2 * b)) if opt["name"] == "nesterov" else (2 + 2 * b) / (lr * (1 - d))
    thr, text, pre = threshold(o, lr)
    # The formula: weight decay adds wd to every eigenvalue, so lambda_max + wd meets the rule.
    assert not pre and thr == pytest.approx(rule - wd)
    assert ("dampening" in text) == bool(d) and ("weight decay" in text) == bool(wd)
    # And torch agrees: just below the threshold the quadratic converges, just above it blows up.
    assert _quadratic_stable(o, 0.97 * thr) and not _quadratic_stable(o, 1.03 * thr)


def test_the_threshold_takes_the_l2_penalty_and_leaves_out_adamws_decoupled_decay():
    cfg = lambda o: load_config({**TINY, "optimizer": o}).optimizer  # noqa: E731
    assert threshold(cfg({"name": "sgd", "lr": 0.1}), 0.1, l2=0.5)[0] == pytest.approx(20 - 0.5)
    assert threshold(cfg({"name": "momentum", "lr": 0.1, "momentum": 0.9, "dampening": 1.0}), 0.1)[0] is None
    thr, rule, pre = threshold(cfg({"name": "adamw", "lr": 0.001, "weight_decay": 0.1}), 0.001)
    assert pre and thr == pytest.approx(38_000) and "decoupled" in rule


def test_adams_preconditioned_sharpness_includes_its_weight_decay():
    c = _config(optimizer={"name": "adam", "lr": 0.01, "weight_decay": 0.5})
    tr = _trained(c)
    cfg = load_config(c).instruments
    rec = measure(tr, cfg, None)["sharpness"]
    h = _hessian(tr, cfg.batch) + 0.5 * torch.eye(51, dtype=torch.float64)  # Adam's decay: in the gradient
    d = [
        ((tr.optimizer.state[p]["exp_avg_sq"] / (1 - 0.999 ** float(tr.optimizer.state[p]["step"]))).sqrt() + 1e-8)
        for p in tr.model.parameters()
    ]
    s = torch.cat([x.reshape(-1) for x in d]).double().rsqrt()
    want = torch.linalg.eigvalsh(s[:, None] * h * s[None, :])[-1]
    assert rec["preconditioned_top"] == pytest.approx(float(want), rel=0.01)


def _per_sample_oracle(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss) -> torch.Tensor:
    """Plain torch: one backward pass per sample, the gradients flat, [n, parameters]."""
    out = []
    for i in range(len(x)):
        model.zero_grad(set_to_none=True)
        loss(model(x[i : i + 1]), y[i : i + 1]).backward()
        out.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double())
    model.zero_grad(set_to_none=True)
    return torch.stack(out)


class _KeepModels:
    """A callback keeping each instruments record with the model's weights at its step."""

    def __init__(self):
        self.got: list[tuple[dict, dict]] = []

    def on_instruments(self, trainer, record):
        self.got.append((record, copy.deepcopy(trainer.model.state_dict())))


def test_full_batch_b_simple_is_the_whole_sets_tr_sigma_over_g_squared_at_every_measurement():
    import torch.nn.functional as F

    c = _config(
        optimizer={"name": "sgd", "lr": 0.5},
        train={"steps": 200, "batch_size": "full", "log_every": 50},
        instruments={"noise": True, "batch": 128, "every": 50},
    )
    keep = _KeepModels()
    tr = Trainer(load_config(c), callbacks=[keep])
    tr.run()
    assert [r["step"] for r, _ in keep.got] == [0, 50, 100, 150, 200]
    x, y = tr.data.as_float(tr.data.x_train), tr.data.y_train
    model = copy.deepcopy(tr.model).eval()
    for rec, weights in keep.got:
        noise = rec["noise"]
        assert noise["population"] == noise["samples"] == 128 and noise["full_batch"]
        model.load_state_dict(weights)
        g = _per_sample_oracle(model, x, y, F.cross_entropy)
        mean = g.mean(0)
        tr_sigma = float(((g - mean) ** 2).mean(0).sum())  # the population variance of the whole set
        want = tr_sigma / float(mean @ mean)
        assert noise["b_simple"] is not None and noise["b_simple"] > 0
        assert noise["b_simple"] == pytest.approx(want, rel=0.05)
        # No minibatch noise in a full-batch step: no SNR, never a negative one.
        assert all(layer["snr"] is None for layer in noise["layers"].values())


def test_weighted_balance_measures_the_trained_weighted_loss():
    c = _config(
        data={"name": "spirals", "n_train": 128, "n_test": 64, "imbalance": 8},
        train={"steps": 10, "batch_size": 32, "log_every": 5, "balance": "weighted"},
    )
    tr = _trained(c)
    n_all = len(tr.data.x_train)
    counts = torch.bincount(tr.data.y_train)
    assert counts.min() * 4 < counts.max()  # imbalanced: the class weights matter
    model = tr.model.eval()
    for n in (n_all, 40):  # the whole set, and a probe whose weights do not sum to n
        x, y = tr.data.as_float(tr.data.x_train[:n]), tr.data.y_train[:n]
        model.zero_grad(set_to_none=True)
        tr.loss_fn(model(x), y).backward()  # the oracle: the trainer's own loss on the probe
        trained = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double()
        model.zero_grad(set_to_none=True)
        f = LossFunction(model, tr.loss_fn, x, y)
        got = torch.cat(
            [torch.cat([g[k].reshape(len(g[k]), -1) for k in f.names], 1) for g in per_sample_grads(f, f.params())]
        )
        torch.testing.assert_close(got.double().mean(0), trained, rtol=1e-4, atol=1e-6)
    cfg = load_config(c).instruments.model_copy(update={"batch": n_all, "sharpness": False, "trace": False})
    noise = measure(tr, cfg, None)["noise"]
    x, y = tr.data.as_float(tr.data.x_train), tr.data.y_train
    model.zero_grad(set_to_none=True)
    tr.loss_fn(model(x), y).backward()
    weighted = float(sum((p.grad.double() ** 2).sum() for p in model.parameters()))
    model.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    plain = float(sum((p.grad.double() ** 2).sum() for p in model.parameters()))
    model.zero_grad(set_to_none=True)
    tr.model.train()
    assert noise["grad_sq"] == pytest.approx(weighted, rel=1e-4)  # the whole set: |G|^2 exactly
    assert abs(weighted - plain) > 0.05 * plain  # the weights made a difference the test can see


def test_every_auto_measures_the_last_step_and_the_digest_says_the_end(tmp_path):
    c = _config(instruments={"noise": True, "spectra": True, "every": "auto", "batch": 64})
    c["train"] = {"steps": 37, "batch_size": 32, "log_every": 5}
    run = dlx.train(c, runs_dir=tmp_path, quiet=True)
    steps = [r["step"] for r in run.instruments]
    assert steps[0] == 0 and steps[-1] == 37
    notes = " ".join(run.summary["instruments"]["notes"])
    assert "at the end (step 37)" in notes and "stable rank at the end (step 37)" in notes


def test_every_auto_with_a_measurement_dearer_than_the_run_measures_step_0_and_the_end(monkeypatch):
    import dlx.run.instruments as inst

    clock = [0.0]
    monkeypatch.setattr(inst.time, "perf_counter", lambda: clock[0])

    def dear(trainer, cfg, init_weights, memo=None):  # each measurement: 100 s of the fake clock
        clock[0] += 100.0
        return {"step": trainer.step, "total_steps": trainer.total_steps, "seconds": {}}

    monkeypatch.setattr(inst, "measure", dear)
    keep = _KeepModels()
    c = _config(instruments={"noise": True, "every": "auto"})
    c["train"] = {"steps": 40, "batch_size": 32, "log_every": 5}
    Trainer(load_config(c), callbacks=[keep]).run()
    # The training took no time on this clock: no measurement in between fits the budget.
    assert [r["step"] for r, _ in keep.got] == [0, 40]


def test_the_digest_never_calls_step_0_the_end_and_says_minibatch_thresholds_are_an_indication():
    from dlx.run.instrument_notes import digest

    noise = {"b_simple": 50.0, "batch": 64, "population": 2000, "full_batch": False, "layers": {}}
    only0 = digest([{"step": 0, "total_steps": 900, "noise": noise}])["notes"][0]
    assert "at step 0 only" in only0 and "at the end" not in only0
    mid = digest([{"step": 0, "total_steps": 900, "noise": noise}, {"step": 450, "total_steps": 900, "noise": noise}])
    assert "at step 450 (the last measurement" in mid["notes"][0] and "at the end" not in mid["notes"][0]
    full = {**noise, "batch": 2000, "full_batch": True}
    assert "whole training set" in digest([{"step": 900, "total_steps": 900, "noise": full}])["notes"][0]
    sharp = {"top": 30.0, "threshold": 20.0, "rule": "2/lr", "full_batch": False}
    text = digest([{"step": s, "total_steps": 20, "sharpness": sharp} for s in (0, 10, 20)])["notes"][0]
    assert "went past it" in text and "only an indication" in text
    full_sharp = digest([{"step": 0, "total_steps": 20, "sharpness": {**sharp, "full_batch": True}}])["notes"][0]
    assert "stable range" in full_sharp and "indication" not in full_sharp


def _loop_grads(tr: Trainer, n: int) -> list[torch.Tensor]:
    """The oracle: one backward pass per sample, eval mode."""
    model = tr.model
    model.eval()
    out = []
    for i in range(n):
        model.zero_grad(set_to_none=True)
        x = tr.data.as_float(tr.data.x_train[i : i + 1])
        tr.loss_fn(model(x), tr.data.y_train[i : i + 1]).backward()
        out.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).clone())
    model.zero_grad(set_to_none=True)
    model.train()
    return out


def test_per_sample_gradients_and_b_simple_match_their_definitions():
    tr = _trained(_config())
    n = 40
    loop = torch.stack(_loop_grads(tr, n)).double()
    tr.model.eval()
    f = LossFunction(tr.model, tr.loss_fn, tr.data.as_float(tr.data.x_train[:n]), tr.data.y_train[:n])
    params = f.params()
    got = torch.cat(
        [torch.cat([g[k].reshape(len(g[k]), -1) for k in f.names], 1) for g in per_sample_grads(f, params, chunk=16)]
    )
    tr.model.train()
    torch.testing.assert_close(got.double(), loop, rtol=1e-4, atol=1e-6)
    cfg = load_config(_config()).instruments.model_copy(update={"batch": n, "sharpness": False, "trace": False})
    noise = measure(tr, cfg, None)["noise"]
    # A probe of n drawn from the N training samples: tr(Sigma) = (N-1)/N s^2 (the population
    # variance, unbiased), |G|^2 = |mean|^2 - s^2 (1/n - 1/N) (the finite-population correction).
    big_n = len(tr.data.x_train)
    mean = loop.mean(0)
    s2 = float(loop.var(0, unbiased=True).sum())
    tr_sigma = s2 * (big_n - 1) / big_n
    g2 = float(mean @ mean) - s2 * (1 / n - 1 / big_n)
    assert noise["population"] == big_n and noise["samples"] == n
    assert noise["tr_sigma"] == pytest.approx(tr_sigma, rel=1e-4)
    assert noise["grad_sq"] == pytest.approx(g2, rel=1e-3)
    assert noise["b_simple"] == pytest.approx(tr_sigma / g2, rel=1e-3)
    fc1 = noise["layers"]["fc1"]
    # A minibatch of 32 drawn without replacement from 128: its noise is tr(Sigma)/B (N-B)/(N-1).
    assert fc1["snr"] == pytest.approx(fc1["grad_sq"] / (fc1["tr_sigma"] / 32 * (big_n - 32) / (big_n - 1)), rel=1e-9)


def test_spectra_are_the_weights_singular_values_and_zero_init_ends_rank_one():
    tr = _trained(_config(model={"name": "mlp", "depth": 2, "width": 8}, init="zeros", activation="sigmoid"), steps=20)
    cfg = load_config(_config()).instruments
    spec = measure(tr, cfg, None)["spectra"]
    w = tr.model.fc2.weight.detach().double()
    s = torch.linalg.svdvals(w)
    np.testing.assert_allclose(spec["fc2"]["singular"], s.numpy(), rtol=1e-9)
    assert spec["fc2"]["stable_rank"] == pytest.approx(float((s**2).sum() / s[0] ** 2))
    assert spec["fc2"]["stable_rank"] == pytest.approx(1.0, abs=1e-6)  # symmetric units: every row the same
    orth = Trainer(load_config(_config(model={"name": "mlp", "depth": 2, "width": 8}, init="orthogonal")))
    flat = measure(orth, cfg, None)["spectra"]["fc2"]["singular"]
    np.testing.assert_allclose(flat, flat[0], rtol=1e-5)  # orthogonal init: a flat spectrum
    he = Trainer(load_config(_config(model={"name": "mlp", "depth": 2, "width": 8}, init="kaiming_normal")))
    rec = measure(he, cfg, {"fc2": he.model.fc2.weight.detach().clone()})["spectra"]["fc2"]
    assert rec["from_init"] == 0.0 and rec["mp_edge"] == pytest.approx((2 / 8) ** 0.5 * (8**0.5 + 8**0.5))


def _recurrent_trainer(cell: str, init: str, hidden: int = 64, **model) -> Trainer:
    return Trainer(
        load_config(
            {
                "seed": 0,
                "data": {"name": "adding", "length": 6, "n_train": 64, "n_test": 16},
                "model": {"name": cell, "hidden": hidden, **model},
                "activation": "tanh",
                "init": init,
                "optimizer": {"name": "sgd", "lr": 0.1},
                "train": {"loss": "mse", "steps": 1, "batch_size": 16},
                "instruments": {"spectra": True, "batch": 16},
            }
        )
    )


@pytest.mark.parametrize("init", ["default", "xavier_uniform"])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_recurrent_spectra_include_w_hh_and_start_at_the_init_random_edge(cell, init):
    tr = _recurrent_trainer(cell, init)
    spectra = measure(tr, tr.cfg.instruments, None)["spectra"]
    assert set(spectra) == {f"{cell}.l0.W_ih", f"{cell}.l0.W_hh", "out"}
    params = dict(tr.model.named_parameters())
    for name, sp in spectra.items():
        w = params[name if name != "out" else "out.weight"].detach().double()
        np.testing.assert_allclose(sp["singular"], torch.linalg.svdvals(w)[:64].numpy(), rtol=1e-9)
        m, n = w.shape
        # The laws as documented: PyTorch's cells draw U(+-1/sqrt(hidden)) (variance 1/(3 hidden))
        # for both matrices, its Linear 1/(3 fan_in); xavier 2/(fan_in + fan_out) of the whole matrix.
        if init == "xavier_uniform":
            var = 2 / (m + n)
        else:
            var = 1 / (3 * 64) if name != "out" else 1 / (3 * n)
        edge = var**0.5 * (m**0.5 + n**0.5)
        assert sp["mp_edge"] == pytest.approx(edge, rel=1e-9), name
        assert 0.6 <= sp["singular"][0] / edge <= 1.4, (name, sp["singular"][0], edge)


def test_spectra_of_a_deep_bidirectional_lstm_cover_every_matrix_from_its_init():
    from dlx.run.instruments import weight_matrices

    tr = _recurrent_trainer("lstm", "orthogonal", hidden=8, layers=2, bidirectional=True)
    init = {n: w.detach().clone() for n, w in weight_matrices(tr.model).items()}
    spectra = measure(tr, tr.cfg.instruments, init)["spectra"]
    cells = [f"lstm.{layer}.{w}" for layer in ("l0", "l0_reverse", "l1", "l1_reverse") for w in ("W_ih", "W_hh")]
    assert list(spectra) == [*cells, "out"]
    for name, sp in spectra.items():
        assert sp["from_init"] == 0.0
        # Orthogonal draws every singular value equal to the gain: that is its edge, exactly.
        assert sp["mp_edge"] == 1.0 and sp["singular"][0] == pytest.approx(1.0, rel=1e-5), name


def _npz_images(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 1, 8, 8)).astype(np.float32)
    y = (x[:, 0, :4].sum((1, 2)) > 0).astype(np.int64)
    path = tmp_path / "img.npz"
    np.savez(path, x_train=x[:64], y_train=y[:64], x_test=x[64:], y_test=y[64:])
    return {"name": "arrays", "path": str(path)}


@pytest.mark.parametrize("family", ["lstm", "attention", "cnn", "batch_norm"])
def test_recurrent_attention_cnn_and_batch_norm_models_are_measured(family, tmp_path):
    base = {**_config(), "train": {"steps": 4, "batch_size": 16, "log_every": 2}}
    seq = {"name": "adding", "length": 8, "n_train": 64, "n_test": 32}
    c = {
        "lstm": {
            **base,
            "data": seq,
            "model": {"name": "lstm", "hidden": 8},
            "train": {**base["train"], "loss": "mse"},
        },
        "attention": {
            **base,
            "data": seq,
            "model": {"name": "attention", "d_model": 8},
            "train": {**base["train"], "loss": "mse"},
        },
        "cnn": {
            **base,
            "data": _npz_images(tmp_path),
            "model": {"name": "cnn", "layers": [{"conv": 4, "kernel": 3}], "head": []},
            "activation": "relu",
        },
        "batch_norm": {**base, "regularization": {"norm": "batch"}},
    }[family]
    c["instruments"] = {**ALL, "batch": 16, "lanczos": 8, "hutchinson": 4}
    tr = _trained(c, steps=4)
    rec = measure(tr, load_config(c).instruments, None)
    assert np.isfinite(rec["sharpness"]["top"]) and np.isfinite(rec["trace"]["value"])
    assert rec["noise"]["tr_sigma"] > 0 and rec["spectra"]
    # Per-sample gradients against the loop, in eval mode (batch norm: its running statistics).
    n = 6
    loop = torch.stack(_loop_grads(tr, n)).double()
    tr.model.eval()
    f = LossFunction(tr.model, tr.loss_fn, tr.data.as_float(tr.data.x_train[:n]), tr.data.y_train[:n])
    got = next(per_sample_grads(f, f.params(), chunk=n))
    tr.model.train()
    flat = torch.cat([got[k].reshape(n, -1) for k in f.names], 1).double()
    torch.testing.assert_close(flat, loop, rtol=1e-3, atol=1e-6)


def test_a_run_records_its_instruments_and_a_resume_records_the_same(tmp_path):
    c = _config()
    c["train"] = {"steps": 30, "batch_size": 32, "log_every": 5}
    whole = dlx.train(c, runs_dir=tmp_path / "a", quiet=True)
    steps = [r["step"] for r in whole.instruments]
    assert steps == [0, 5, 10, 15, 20, 25, 30]
    assert all(set(r["seconds"]) == {"sharpness", "trace", "noise", "spectra"} for r in whole.instruments)
    assert dlx.load_run(whole.path).instruments == whole.instruments

    class StopAt:
        def on_interval(self, trainer, record):
            if trainer.step == 15:
                trainer.interrupt()

    c2 = copy.deepcopy(c)
    c2["train"]["checkpoint_every"] = 10
    first = dlx.train(c2, runs_dir=tmp_path / "b", quiet=True, callbacks=[StopAt()])
    resumed = dlx.train(resume=first.path, runs_dir=tmp_path / "b", quiet=True)
    got = dlx.load_run(resumed.path).instruments
    assert [r["step"] for r in got] == steps
    for a, b in zip(got, whole.instruments):
        assert a["sharpness"]["top"] == pytest.approx(b["sharpness"]["top"], rel=1e-6)
        assert a["noise"]["b_simple"] == pytest.approx(b["noise"]["b_simple"], rel=1e-6)
        assert a["spectra"]["fc1"]["from_init"] == pytest.approx(b["spectra"]["fc1"]["from_init"], rel=1e-6)


def test_the_edge_of_stability_example_sharpens_to_2_over_lr_and_stays_there(tmp_path):
    run = dlx.train("edge_of_stability", runs_dir=tmp_path / "runs", quiet=True)
    sharp = [(r["step"], r["sharpness"]["top"], r["sharpness"]["threshold"]) for r in run.instruments]
    thr = sharp[0][2]
    assert thr == pytest.approx(2 / 0.1)
    assert sharp[0][1] < 0.5 * thr  # it starts flat
    second_half = [top for step, top, _ in sharp if step >= 500]
    assert 0.8 * thr < min(second_half) and max(second_half) < 1.25 * thr  # and hovers at 2/lr
    notes = " ".join(run.summary["instruments"]["notes"])
    assert "edge of stability" in notes and "threshold 20" in notes


def test_an_lr_verdict_cites_the_sharpness_past_its_threshold(tmp_path):
    sets = ["optimizer.lr=1.0", "train.steps=300", "instruments.every=25", "instruments.lanczos=8"]
    run = dlx.train("edge_of_stability", sets, runs_dir=tmp_path / "runs", quiet=True)
    lr = next(v for v in run.summary["verdicts"] if v["kind"] == "lr_too_high")
    assert "sharpness x lr = 7.5 > 2 (2/lr)" in lr["message"] and "edge of stability" in lr["message"]
    assert lr["evidence"]["sharpness_threshold"] == pytest.approx(2.0)
    assert lr["evidence"]["sharpness"] == pytest.approx(run.instruments[0]["sharpness"]["top"])


def test_the_exact_hessian_has_negative_eigenvalues_on_the_saddle_plateau_and_hardly_any_at_the_end(tmp_path):
    run = dlx.train("saddle_points", runs_dir=tmp_path / "runs", quiet=True)
    loss = {m["step"]: m["train_loss"] for m in run.metrics}
    h = {r["step"]: r["hessian"] for r in run.instruments}
    plateau = [s for s in h if 0 < s <= 100 and loss[s] > 0.6]
    assert plateau, loss
    for s in plateau:
        assert h[s]["negative"] >= 5 and h[s]["min"] < -0.05 * h[s]["max"]  # a saddle
    end = h[max(h)]
    assert end["min"] > -0.01 * end["max"] and loss[max(h)] < 0.2  # a minimum, up to flat directions
    assert "Hessian eigenvalues (exact)" in " ".join(run.summary["instruments"]["notes"])


def test_the_exact_hessian_matches_autograd_and_refuses_big_nets():
    from dlx.core.errors import DlxError
    from dlx.run.instruments import hessian_spectrum

    tr = _trained(_config())
    cfg = load_config(_config()).instruments
    h = _hessian(tr, cfg.batch)
    tr.model.eval()
    f = LossFunction(tr.model, tr.loss_fn, tr.data.as_float(tr.data.x_train[: cfg.batch]), tr.data.y_train[: cfg.batch])
    got = hessian_spectrum(f, f.params(), h.shape[0])
    np.testing.assert_allclose(got["eigenvalues"], torch.linalg.eigvalsh(h).numpy(), atol=1e-4)
    big = Trainer(load_config(_config(model={"name": "mlp", "depth": 2, "width": 64})))
    f = LossFunction(big.model, big.loss_fn, big.data.as_float(big.data.x_train[:8]), big.data.y_train[:8])
    with pytest.raises(DlxError, match="too big"):
        hessian_spectrum(f, f.params(), sum(p.numel() for p in f.params().values()))

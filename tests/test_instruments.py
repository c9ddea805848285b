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
    mean = loop.mean(0)
    tr_sigma = float(loop.var(0, unbiased=True).sum())
    g2 = float(mean @ mean) - tr_sigma / n
    assert noise["tr_sigma"] == pytest.approx(tr_sigma, rel=1e-4)
    assert noise["grad_sq"] == pytest.approx(g2, rel=1e-3)
    assert noise["b_simple"] == pytest.approx(tr_sigma / g2, rel=1e-3)
    fc1 = noise["layers"]["fc1"]
    assert fc1["snr"] == pytest.approx(fc1["grad_sq"] / (fc1["tr_sigma"] / 32), rel=1e-9)


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

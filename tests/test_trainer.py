"""End-to-end behaviour of `dlx.train`: the example configs show what they claim."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import CONFIGS, TINY

import dlx
from dlx.config.loader import load_config
from dlx.core.errors import DlxError
from dlx.run.trainer import Trainer


def median_grad(result, layer):
    return next(l["grad_norm"]["median"] for l in result.summary["layers"] if l["name"] == layer)


def kinds(result):
    return [v["kind"] for v in result.summary["verdicts"]]


def test_vanishing_sigmoid_input_gradient_is_orders_of_magnitude_below_output(runs_dir):
    r = dlx.train(CONFIGS / "vanishing_sigmoid.yaml", ["train.epochs=1"], runs_dir=runs_dir)
    assert r.status == "completed"
    assert median_grad(r, "fc1") < 1e-4 * median_grad(r, "out")
    # ... and monotonically smaller toward the input, layer after layer.
    meds = [l["grad_norm"]["median"] for l in r.summary["layers"]]
    assert all(a < b for a, b in zip(meds, meds[1:]))
    assert kinds(r)[0] == "vanishing"
    assert r.verdict.startswith("vanishing gradients: fc1")


def test_relu_he_keeps_gradients_comparable_across_layers(runs_dir):
    r = dlx.train(CONFIGS / "relu_he.yaml", ["train.epochs=1"], runs_dir=runs_dir)
    meds = [l["grad_norm"]["median"] for l in r.summary["layers"]]
    assert max(meds) / min(meds) < 100
    assert kinds(r) == ["healthy"]


def test_exploding_init_diverges_and_names_the_step_and_layer(runs_dir):
    r = dlx.train(CONFIGS / "exploding.yaml", runs_dir=runs_dir)
    assert r.status == "diverged"
    d = r.summary["diverged"]
    assert d["step"] >= 1 and d["layer"] == "fc1"
    assert "diverged" in kinds(r)
    meta = json.loads((r.path / "meta.json").read_text())
    assert meta["status"] == "diverged"
    # What was logged up to the divergence stays on disk.
    probes = [json.loads(l) for l in (r.path / "probes.jsonl").read_text().splitlines()]
    assert probes and probes[-1]["diverged"]["step"] == d["step"]
    first_row = probes[0]["grad_norm"][0]
    assert all(g is not None and g > 1e3 for g in first_row)  # huge, but finite, at step 1
    assert not (r.path / "checkpoint.pt").exists()  # NaN weights are not worth a checkpoint


def test_zero_init_units_stay_identical(runs_dir):
    r = dlx.train(CONFIGS / "zero_init.yaml", ["train.epochs=2"], runs_dir=runs_dir)
    state = torch.load(r.path / "checkpoint.pt", weights_only=False)["model"]
    for layer in ("fc1", "fc2", "fc3"):
        w, b = state[f"{layer}.weight"], state[f"{layer}.bias"]
        assert torch.equal(w, w[:1].expand_as(w)), f"{layer}: units differ"
        assert torch.equal(b, b[:1].expand_as(b))
    # They did move: the symmetry is kept, not the zeros.
    assert state["fc3.weight"].abs().max() > 0
    assert kinds(r)[0] == "symmetry"
    assert all(s < 1e-6 for s in [l["unit_spread"] for l in r.summary["layers"][:-1]])


def test_same_config_and_seed_give_identical_metrics_on_cpu(tiny):
    a = dlx.train(tiny, save=False)
    b = dlx.train(tiny, save=False)

    def strip(ms):
        return [{k: v for k, v in m.items() if k != "time"} for m in ms]

    assert strip(a.metrics) == strip(b.metrics)
    tiny["seed"] = 1
    c = dlx.train(tiny, save=False)
    assert strip(c.metrics) != strip(a.metrics)


def test_run_folder_holds_the_contract_files(tiny, runs_dir):
    tiny["name"] = "contract"
    r = dlx.train(tiny, runs_dir=runs_dir)
    assert r.path.parent == runs_dir and "contract" in r.path.name
    names = {p.name for p in r.path.iterdir()}
    assert {"config.yaml", "meta.json", "metrics.jsonl", "probes.jsonl", "summary.json", "checkpoint.pt"} <= names
    meta = json.loads((r.path / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["seed"] == 0 and meta["device"] == "cpu"
    assert {"python", "torch", "dlx"} <= set(meta["versions"])
    assert meta["ended"] and meta["command"] is not None and "git_commit" in meta
    # config.yaml is the resolved config: defaults filled in, loadable as it is.
    again = load_config(r.path / "config.yaml")
    assert again.train.epochs == 2 and again.regularization.dropout == 0.0
    # One probe row per step, in layer order, across all intervals.
    probes = [json.loads(l) for l in (r.path / "probes.jsonl").read_text().splitlines()]
    rows = [row for p in probes for row in p["grad_norm"]]
    assert len(rows) == r.summary["steps"] == 2 * (256 // 32)
    assert all(len(row) == 3 for row in rows)
    metrics = [json.loads(l) for l in (r.path / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == r.summary["steps"] and "test_acc" in metrics[-1]
    summary = json.loads((r.path / "summary.json").read_text())
    assert [l["name"] for l in summary["layers"]] == ["fc1", "fc2", "out"]
    assert summary["final"]["test_acc"] == pytest.approx(r.summary["final"]["test_acc"])
    assert not any(p.name.startswith(".tmp") for p in runs_dir.iterdir())


def test_probe_grad_norms_equal_a_hand_computed_step(tiny):
    tiny["train"] = {"batch_size": "full", "steps": 1}
    cfg = load_config(tiny)
    t = Trainer(cfg)
    model = t.model
    # The same first step by hand, on a copy of the model.
    import copy

    twin = copy.deepcopy(model)
    loss = torch.nn.functional.cross_entropy(twin(t.data.x_train), t.data.y_train)
    loss.backward()
    expected = [twin.get_submodule(n).weight.grad.norm().item() for n in ("fc1", "fc2", "out")]
    rec = {}
    t.callbacks.append(type("C", (), {"on_interval": lambda self, tr, r: rec.update(r)})())
    t.run()
    assert rec["grad_norm"].shape == (1, 3)
    np.testing.assert_allclose(rec["grad_norm"][0], expected, rtol=1e-5)
    assert rec["loss_steps"][0] == pytest.approx(loss.item(), rel=1e-6)


def test_activation_probes_see_dead_relus_and_saturated_sigmoids(tiny):
    # A large negative bias kills every ReLU; a large weight scale saturates sigmoids.
    tiny["init"] = {"name": "kaiming_normal", "bias": -100.0}
    tiny["train"] = {"steps": 1, "batch_size": "full"}
    r = dlx.train(tiny, save=False)
    assert all(a["dead"] == 1.0 for a in r.summary["activations"])
    assert "dead_units" in kinds(r)
    tiny["activation"] = "sigmoid"
    tiny["init"] = {"name": "normal", "std": 20.0}
    r = dlx.train(tiny, save=False)
    assert all(a["saturated"] > 0.8 for a in r.summary["activations"])
    assert "saturation" in kinds(r)


def test_l2_and_l1_shrink_weights(tiny):
    tiny["train"]["epochs"] = 4
    base = dlx.train(tiny, save=False).summary["layers"]
    tiny["regularization"] = {"l2": 0.05}
    l2 = dlx.train(tiny, save=False).summary["layers"]
    tiny["regularization"] = {"l1": 0.01}
    l1 = dlx.train(tiny, save=False).summary["layers"]
    for i in range(3):
        assert l2[i]["weight_norm"] < base[i]["weight_norm"]
        assert l1[i]["weight_norm"] < base[i]["weight_norm"]


def test_clip_norm_bounds_every_sgd_step(tiny):
    tiny["optimizer"] = {"name": "sgd", "lr": 1.0}
    tiny["regularization"] = {"clip_norm": 0.01}
    tiny["train"] = {"steps": 5, "batch_size": 32}
    t = Trainer(load_config(tiny))
    before = [p.detach().clone() for p in t.params]
    t.run()
    # Five steps of lr 1 with the global gradient norm clipped to 0.01 move at most 0.05.
    moved = torch.sqrt(sum(((p - q) ** 2).sum() for p, q in zip(t.params, before)))
    assert 0 < moved <= 5 * 0.01 + 1e-6


def test_clip_value_bounds_each_gradient_entry(tiny):
    tiny["regularization"] = {"clip_value": 1e-4}
    tiny["train"] = {"steps": 1, "batch_size": 32}
    t = Trainer(load_config(tiny))
    seen = []
    step = t.optimizer.step
    t.optimizer.step = lambda *a, **k: (seen.append(max(p.grad.abs().max().item() for p in t.params)), step(*a, **k))
    t.run()
    assert seen and seen[0] <= 1e-4 + 1e-12


def test_batch_size_full_is_one_step_per_epoch_and_one_is_pure_sgd(tiny):
    tiny["train"].update(batch_size="full", epochs=3)
    assert dlx.train(tiny, save=False).summary["steps"] == 3
    tiny["train"].update(batch_size=1, epochs=1)
    assert dlx.train(tiny, save=False).summary["steps"] == 256


def test_steps_replace_epochs(tiny):
    tiny["train"] = {"steps": 7, "batch_size": 32, "log_every": 3}
    r = dlx.train(tiny, save=False)
    assert r.summary["steps"] == 7 and r.metrics[-1]["step"] == 7


def test_cosine_schedule_lr_decays_to_min(tiny):
    tiny["optimizer"] = {"name": "sgd", "lr": 0.1, "schedule": {"name": "cosine", "min_factor": 0.1}}
    tiny["train"] = {"steps": 40, "batch_size": 32, "log_every": 10}
    lrs = [m["lr"] for m in dlx.train(tiny, save=False).metrics]
    assert lrs == sorted(lrs, reverse=True)
    assert lrs[-1] == pytest.approx(0.01, rel=1e-6)


def test_early_stopping_ends_the_run_when_test_loss_stalls(tiny):
    tiny["train"]["epochs"] = 500
    tiny["regularization"] = {"early_stopping": {"metric": "test_loss", "patience": 2}}
    r = dlx.train(tiny, save=False)
    assert r.status == "completed" and r.summary["steps"] < 500 * 8
    assert "early stopping" in r.summary["reason"]


def test_interrupt_keeps_logged_metrics_and_marks_run_interrupted(tiny, runs_dir):
    class CtrlC:
        n = 0

        def on_interval(self, trainer, record):
            self.n += 1
            if self.n == 2:
                raise KeyboardInterrupt

    r = dlx.train(tiny, runs_dir=runs_dir, callbacks=[CtrlC()])
    assert r.status == "interrupted"
    meta = json.loads((r.path / "meta.json").read_text())
    assert meta["status"] == "interrupted"
    assert len((r.path / "metrics.jsonl").read_text().splitlines()) >= 2


def test_warm_start_from_a_checkpoint_continues_where_the_run_ended(tiny, runs_dir):
    tiny["train"]["epochs"] = 6
    first = dlx.train(tiny, runs_dir=runs_dir)
    fresh = dlx.train({**tiny, "train": {"steps": 1, "batch_size": 32}}, save=False)
    warm = dlx.train(
        {
            **tiny,
            "init": {"name": "from_file", "path": str(first.path / "checkpoint.pt")},
            "train": {"steps": 1, "batch_size": 32},
        },
        save=False,
    )
    assert warm.metrics[0]["train_loss"] < 0.5 * fresh.metrics[0]["train_loss"]


def test_regression_teacher_trains_with_mse(tiny):
    tiny["data"] = {"name": "teacher", "n_train": 256, "n_test": 64}
    tiny["train"]["loss"] = "mse"
    r = dlx.train(tiny, save=False)
    assert r.status == "completed" and "test_acc" not in r.summary["final"]
    assert r.summary["final"]["test_loss"] < r.metrics[0]["train_loss"]


@pytest.mark.parametrize("loss,out", [("mse", "none"), ("mse", "sigmoid"), ("cross_entropy", "sigmoid")])
def test_loss_and_output_activation_combinations_train(tiny, loss, out):
    tiny["train"]["loss"] = loss
    tiny["model"]["output_activation"] = out
    r = dlx.train(tiny, save=False)
    assert r.status == "completed" and np.isfinite(r.summary["final"]["test_loss"])


def test_unwritable_runs_folder_fails_before_training(tiny, tmp_path):
    # A runs folder "inside" a regular file cannot be created, even by root.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(DlxError, match="cannot write to the runs folder"):
        dlx.train(tiny, runs_dir=blocker / "runs")


def test_checkpoint_loads_with_weights_only(tiny, runs_dir):
    r = dlx.train(tiny, runs_dir=runs_dir)
    ck = torch.load(r.path / "checkpoint.pt", weights_only=True)
    assert ck["step"] == r.summary["steps"] and set(ck["model"]) >= {"fc1.weight", "out.bias"}
    assert {"torch", "numpy", "python", "generator"} <= set(ck["rng"])


def test_mnist_mlp_learns_digits(mnist_dir, runs_dir, monkeypatch):
    monkeypatch.setenv("DLX_DATA_DIR", str(mnist_dir))
    r = dlx.train(CONFIGS / "mnist_mlp.yaml", ["train.steps=60", "train.eval_every=60"], runs_dir=runs_dir)
    assert r.status == "completed"
    assert r.summary["final"]["test_acc"] > 0.8
    meta = json.loads((r.path / "meta.json").read_text())
    assert meta["data"]["n_train"] == 60000 and meta["data"]["feature_shape"] == [784]


def test_every_log_interval_holds_log_every_steps_except_the_last_and_evaluations_do_not_cut_them(runs_dir):
    # Epochs of 7 steps, log_every 5, eval every epoch, 33 steps: the old loop cut an
    # interval at every epoch end (1-step intervals of one batch's noise).
    cfg = {
        "data": {"name": "spirals", "n_train": 224, "n_test": 64},
        "model": {"name": "mlp", "width": 8},
        "train": {"steps": 33, "batch_size": 32, "log_every": 5, "threads": 1},
    }
    r = dlx.train(cfg, runs_dir=runs_dir)
    probes = [json.loads(line) for line in (r.path / "probes.jsonl").read_text().splitlines()]
    assert [p["step"] for p in probes] == [5, 10, 15, 20, 25, 30, 33]
    assert [len(p["grad_norm"]) for p in probes] == [5] * 6 + [3]
    assert [p["first_step"] for p in probes] == [1, 6, 11, 16, 21, 26, 31]
    metrics = [json.loads(line) for line in (r.path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [p["step"] for p in probes]
    # Each evaluation lands at the end of the interval that reaches a multiple of 7 steps.
    assert [m["step"] for m in metrics if "test_loss" in m] == [10, 15, 25, 30, 33]


def test_final_train_metrics_are_one_pass_over_the_training_set_in_eval_mode(tiny):
    r = dlx.train({**tiny, "regularization": {"dropout": 0.5}}, save=False)
    final = r.summary["final"]
    assert final["window"].startswith("train_*: one pass over the whole training set")
    # The oracle: the trained model's loss and accuracy over every training sample, eval mode.
    t = Trainer(load_config({**tiny, "regularization": {"dropout": 0.5}}))
    t.run()
    ref = t.evaluate("train")
    assert final["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-6)
    assert final["train_acc"] == pytest.approx(ref["train_acc"])
    with torch.no_grad():
        t.model.eval()
        out = t.model(t.data.as_float(t.data.x_train))
        assert ref["train_loss"] == pytest.approx(
            float(torch.nn.functional.cross_entropy(out, t.data.y_train)), rel=1e-5
        )


def test_ctrl_c_keeps_the_last_measured_update_ratios(tiny, runs_dir):
    class CtrlC:
        def on_interval(self, trainer, record):
            if record["step"] == 2 * trainer.cfg.train.log_every:
                trainer.interrupt()  # as a first Ctrl-C: ends after the next step

    r = dlx.train(tiny, runs_dir=runs_dir, callbacks=[CtrlC()])
    assert r.status == "interrupted"
    ratios = [layer["update_ratio"] for layer in r.summary["layers"]]
    assert all(x > 0 for x in ratios), ratios


def test_threads_default_to_one_for_small_nets_and_grow_with_the_work_per_step(monkeypatch):
    """train.threads unset: one thread per THREAD_FLOPS of forward+backward work a step (a
    second thread only slows a small net down, and fights for the cores on a busy machine),
    never more than the process had; a given train.threads is kept."""
    import dlx.run.trainer as tr
    from dlx.config.loader import load_config

    monkeypatch.setattr(tr, "_THREAD_BUDGET", 4)
    before = torch.get_num_threads()
    try:
        small = tr.Trainer(load_config("quickstart"))  # 2-64-64-64-3, batch 64
        assert torch.get_num_threads() == 1
        # The estimate is the matmuls' multiply-adds, x2 FLOPs, x3 for forward + backward.
        params = 2 * 64 + 64 * 64 * 2 + 64 * 3
        assert tr.step_flops(small.model, small.data, 64) == pytest.approx(6 * 64 * params)
        big = dict(TINY, data={"name": "spirals", "n_train": 512, "n_test": 64})
        big.update(model={"name": "mlp", "depth": 2, "width": 1500}, train={"steps": 1, "batch_size": 256})
        tr.Trainer(load_config(big))  # 6 * 256 * 2.26M multiply-adds = 3.5 GFLOP a step: capped at the budget
        assert torch.get_num_threads() == 4
        tr.Trainer(load_config({**big, "train": {"steps": 1, "batch_size": 256, "threads": 3}}))
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)  # the other tests in this process keep their threads


def _eval_passes_over_the_test_set(trainer_cls, monkeypatch) -> list[int]:
    """Spy: the step of every eval-mode forward pass whose input is the whole test set
    (the tiny test sets fit one evaluation chunk), from whichever code makes it."""
    seen: list[int] = []
    build = trainer_cls._build

    def spying_build(self, *a, **k):
        build(self, *a, **k)
        x_test = self.data.as_float(self.data.x_test)

        def hook(module, inputs):
            x = inputs[0]
            if not module.training and x.shape == x_test.shape and torch.equal(x, x_test):
                seen.append(self.step)

        self.model.register_forward_pre_hook(hook)

    monkeypatch.setattr(trainer_cls, "_build", spying_build)
    return seen


def test_the_final_test_metrics_and_the_per_class_table_come_from_one_pass(tiny, runs_dir, monkeypatch):
    passes = _eval_passes_over_the_test_set(Trainer, monkeypatch)
    r = dlx.train(tiny, runs_dir=runs_dir, quiet=True)
    evaluated = [m["step"] for m in r.metrics if "test_loss" in m]
    # One pass per scheduled evaluation; the last one serves the final test_* and the table.
    assert passes == evaluated and passes[-1] == r.summary["steps"]
    classes, final = r.summary["classes"], r.summary["final"]
    # The oracle: the saved model, evaluated by hand with torch.
    tr = Trainer(load_config(r.config), resuming=True)
    tr.model.load_state_dict(torch.load(r.path / "checkpoint.pt", weights_only=True)["model"])
    tr.model.eval()
    with torch.no_grad():
        out = tr.model(tr.data.as_float(tr.data.x_test))
    pred, y, k = out.argmax(-1), tr.data.y_test, tr.data.n_classes
    assert classes["confusion"] == [[int(((y == i) & (pred == j)).sum()) for j in range(k)] for i in range(k)]
    assert classes["recall"] == pytest.approx([float((pred[y == i] == i).float().mean()) for i in range(k)])
    assert final["test_acc"] == pytest.approx(float((pred == y).float().mean()))
    assert final["test_acc"] == pytest.approx(sum(classes["confusion"][i][i] for i in range(k)) / len(y))
    assert final["test_loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(out, y)), rel=1e-5)


def test_a_run_stopped_between_evaluations_evaluates_the_test_set_once_at_the_end(tiny, runs_dir, monkeypatch):
    class CtrlC:
        def on_interval(self, trainer, record):
            if record["step"] == tiny["train"]["log_every"]:
                trainer.interrupt()  # a first Ctrl-C: ends after the next step, mid-interval

    passes = _eval_passes_over_the_test_set(Trainer, monkeypatch)
    r = dlx.train(tiny, runs_dir=runs_dir, quiet=True, callbacks=[CtrlC()])
    assert r.status == "interrupted" and not any("test_loss" in m for m in r.metrics)
    assert passes == [r.summary["steps"]]  # _final_metrics' pass; the table reuses it
    confusion = r.summary["classes"]["confusion"]
    assert sum(map(sum, confusion)) == tiny["data"]["n_test"]
    assert r.summary["final"]["test_acc"] == pytest.approx(sum(row[i] for i, row in enumerate(confusion)) / 128)


def test_kept_test_predictions_are_redone_when_the_weights_change(tiny):
    t = Trainer(load_config(tiny))
    t.run()
    first = t.test_predictions().clone()
    with torch.no_grad():
        for p in t.model.parameters():
            p.mul_(-1.0)  # an in-place edit, as load_state_dict makes: the kept ones are stale
        t.model.eval()
        oracle = t.model(t.data.as_float(t.data.x_test)).argmax(-1)
        t.model.train()
    assert torch.equal(t.test_predictions(), oracle) and not torch.equal(first, oracle)


def test_chunked_evaluation_equals_one_pass_over_the_whole_set(tiny, monkeypatch):
    from dlx.run import evaluation

    t = Trainer(load_config(tiny))
    t.run()
    whole = t.evaluate("train")
    monkeypatch.setattr(evaluation, "EVAL_BATCH_CPU", 7)  # 256 samples: 36 full chunks and a short one
    chunked = t.evaluate("train")
    assert chunked["train_loss"] == pytest.approx(whole["train_loss"], rel=1e-5)
    assert chunked["train_acc"] == pytest.approx(whole["train_acc"])


def test_a_large_training_sets_final_train_metrics_are_over_a_stated_seeded_sample(tiny, monkeypatch):
    from dlx.run import evaluation

    monkeypatch.setattr(evaluation, "FINAL_TRAIN_SAMPLES", 100)  # tiny's 256 samples count as large
    r = dlx.train(tiny, save=False, quiet=True)
    final = r.summary["final"]
    assert final["window"].startswith("seeded random 100 of the 256 training samples")
    # The oracle: the same model, by hand over the rows a generator seeded with the run's seed picks.
    t = Trainer(load_config(tiny))
    t.run()
    rows = torch.randperm(256, generator=torch.Generator().manual_seed(tiny["seed"]))[:100]
    with torch.no_grad():
        t.model.eval()
        out = t.model(t.data.as_float(t.data.x_train[rows]))
    y = t.data.y_train[rows]
    assert final["train_loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(out, y)), rel=1e-5)
    assert final["train_acc"] == pytest.approx(float((out.argmax(-1) == y).float().mean()))

"""Trials trained together as one stacked model: each is its separate run, number for number."""

from __future__ import annotations

import copy
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dlx.config.loader import load_config
from dlx.many.executors import LocalExecutor, Trial
from dlx.many.stacking import plan_stacks, run_stacked, why_not
from dlx.many.worker import run_job
from dlx.records.folders import load_run, read_snapshots

BASE = {
    "seed": 0,
    "data": {"name": "spirals", "n_train": 256, "n_test": 96, "classes": 3},
    "model": {"name": "mlp", "depth": 2, "width": 16},
    "activation": "relu",
    "init": "kaiming_normal",
    "optimizer": {"name": "adam", "lr": 0.01},
    "train": {"steps": 24, "batch_size": 32, "log_every": 4, "eval_every": 8},
}


def _cfg(i: int, **sections) -> dict:
    c = copy.deepcopy(BASE)
    c["seed"], c["name"] = i, f"t{i}"
    for key, value in sections.items():
        c[key] = value
    return c


SGD_FAMILY = [
    _cfg(0, optimizer={"name": "sgd", "lr": 0.1}),
    _cfg(1, optimizer={"name": "momentum", "lr": 0.02, "dampening": 0.3, "schedule": {"name": "cosine"}}),
    _cfg(2, optimizer={"name": "nesterov", "lr": 0.02, "weight_decay": 1e-3}, regularization={"l1": 1e-3}),
    _cfg(3, optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.5}, regularization={"clip_value": 0.05}),
]
ADAM_FAMILY = [
    _cfg(0, optimizer={"name": "adam", "lr": 0.01}),
    _cfg(1, optimizer={"name": "adamw", "lr": 0.003, "weight_decay": 0.1, "schedule": {"name": "warmup", "steps": 5}}),
    _cfg(2, optimizer={"name": "adam", "lr": 0.02, "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 1e-3}),
    _cfg(3, optimizer={"name": "adam", "lr": 0.01}, regularization={"l2": 1e-2, "clip_norm": 0.5}),
]
# Layer norm, tanh, a sigmoid output with its binary cross-entropy, and MSE on one-hot targets.
OTHERS = [
    _cfg(0, activation="tanh", regularization={"norm": "layer"}, model={"name": "mlp", "widths": [16, 8]}),
    _cfg(1, activation="tanh", regularization={"norm": "layer"}, model={"name": "mlp", "widths": [16, 8]}),
]
SIGMOID_OUT = [
    _cfg(i, model={"name": "mlp", "depth": 2, "width": 16, "output_activation": "sigmoid"}, activation="sigmoid")
    for i in range(2)
]
MSE = [_cfg(i, train={**BASE["train"], "loss": "mse"}, init="xavier_uniform") for i in range(2)]
REGRESSION = [
    _cfg(i, data={"name": "teacher", "n_train": 256, "n_test": 64}, train={**BASE["train"], "loss": "mse"})
    for i in range(2)
]
# One seed, so one dataset: the stack keeps a single copy of the data for every trial.
SAME_DATA = [_cfg(0, optimizer={"name": "adam", "lr": lr}) for lr in (0.003, 0.01, 0.03)]
# Both optimizer families in one stack, interleaved, so each family's rows are scattered.
MIXED = [
    _cfg(0, optimizer={"name": "adam", "lr": 0.01}),
    _cfg(1, optimizer={"name": "sgd", "lr": 0.1}),
    _cfg(2, optimizer={"name": "adamw", "lr": 0.003}),
    _cfg(3, optimizer={"name": "momentum", "lr": 0.02, "dampening": 0.3, "schedule": {"name": "cosine"}}),
    _cfg(4, optimizer={"name": "adamw", "lr": 0.003, "weight_decay": 0.1, "schedule": {"name": "warmup", "steps": 5}}),
    _cfg(5, optimizer={"name": "nesterov", "lr": 0.02, "weight_decay": 1e-3}),
]


def _probes(path: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(path) / "probes.jsonl").read_text().splitlines()]


def _close(a, b, rtol: float, atol: float = 1e-6) -> None:
    a, b = np.array(a, dtype=float), np.array(b, dtype=float)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, equal_nan=True)


def _same_runs(stacked: dict, alone: dict, rtol: float = 1e-4) -> None:
    """A stacked trial's files hold its separate run's numbers, key for key."""
    assert stacked["status"] == alone["status"]
    ms, ma = stacked["metrics"], alone["metrics"]
    assert [sorted(m) for m in ms] == [sorted(m) for m in ma]
    for x, y in zip(ms, ma):
        for k in x:
            if k != "time":
                _close(x[k], y[k], rtol)
    ps, pa = _probes(stacked["run_path"]), _probes(alone["run_path"])
    assert [sorted(p) for p in ps] == [sorted(p) for p in pa]
    for x, y in zip(ps, pa):
        for k in x:
            # Float noise (1e-6) grows in a few places: Adam's update ratios of tiny gradients,
            # a ReLU unit flipped by it for one sample moves a layer's gradient norm by ~1e-3.
            # A mistake moves them by far more.
            _close(x[k], y[k], rtol * 50)
    ss, sa = stacked["summary"], alone["summary"]
    assert ss["verdict"].split(":")[0] == sa["verdict"].split(":")[0]
    assert (ss["steps"], ss["status"]) == (sa["steps"], sa["status"])
    assert sorted(ss["final"]) == sorted(sa["final"])
    for k in ("train_loss", "test_loss", "train_acc", "test_acc"):
        if k in sa["final"]:
            _close(ss["final"][k], sa["final"][k], rtol)
    meta = load_run(stacked["run_path"])["meta"]
    assert meta["stacked"] >= 2 and "stacked" not in load_run(alone["run_path"])["meta"]
    files = sorted(p.name for p in Path(stacked["run_path"]).iterdir())
    assert files == sorted(p.name for p in Path(alone["run_path"]).iterdir())


@pytest.mark.parametrize(
    "configs",
    [SGD_FAMILY, ADAM_FAMILY, MIXED, OTHERS, SIGMOID_OUT, MSE, REGRESSION, SAME_DATA],
    ids=[
        "sgd-momentum-nesterov",
        "adam-adamw",
        "both-families",
        "layer-norm-tanh",
        "sigmoid-output",
        "mse",
        "regression",
        "one-dataset",
    ],
)
def test_every_stacked_trial_equals_its_separate_run(tmp_path, configs):
    assert all(why_not(load_config(c)) is None for c in configs)
    stacked = run_stacked(configs, [tmp_path / "stacked"] * len(configs))
    for c, s in zip(configs, stacked):
        alone, code = run_job(c, tmp_path / "alone")
        assert code == 0
        _same_runs(s, alone)


@pytest.mark.parametrize("mixed", [False, True], ids=["adam-family", "both-families"])
def test_the_checkpoint_of_a_stacked_trial_is_its_separate_runs(tmp_path, mixed):
    configs = [ADAM_FAMILY[0], ADAM_FAMILY[1], SGD_FAMILY[1].copy()]
    if not mixed:
        configs[2] = {**SGD_FAMILY[1], "optimizer": {"name": "adam", "lr": 0.004, "schedule": {"name": "cosine"}}}
    stacked = run_stacked(configs, [tmp_path / "s"] * 3)
    for c, s in zip(configs, stacked):
        alone, _ = run_job(c, tmp_path / "a")
        cs = torch.load(Path(s["run_path"]) / "checkpoint.pt", weights_only=True)
        ca = torch.load(Path(alone["run_path"]) / "checkpoint.pt", weights_only=True)
        assert cs["step"] == ca["step"] == 24
        for k in ca["model"]:
            torch.testing.assert_close(cs["model"][k], ca["model"][k], rtol=1e-4, atol=1e-6)
        sa, sb = cs["optimizer"]["state"], ca["optimizer"]["state"]
        assert sorted(sa) == sorted(sb)
        for i in sb:
            assert sorted(sa[i]) == sorted(sb[i])
            for k in sb[i]:
                torch.testing.assert_close(sa[i][k], sb[i][k], rtol=1e-3, atol=1e-6)
        assert cs["optimizer"]["param_groups"][0]["lr"] == pytest.approx(ca["optimizer"]["param_groups"][0]["lr"])
        assert cs["scheduler"] == ca["scheduler"]
        assert torch.equal(cs["loop"]["perm"], ca["loop"]["perm"])
        assert torch.equal(cs["rng"]["generator"], ca["rng"]["generator"])
        assert torch.equal(cs["rng"]["torch"], ca["rng"]["torch"])
        assert cs["data"] == ca["data"]
        # The pictures over training: the same snapshots as the separate run's.
        ss, sa = read_snapshots(Path(s["run_path"])), read_snapshots(Path(alone["run_path"]))
        assert ss["steps"] == sa["steps"] and len(ss["steps"]) > 3
        for a, b in zip(ss["states"], sa["states"]):
            for k in b:
                torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mixed", [False, True], ids=["adam-family", "both-families"])
def test_a_stacked_trial_stopped_midway_resumes_alone_to_the_uninterrupted_numbers(tmp_path, monkeypatch, mixed):
    import dlx
    from dlx.many import stacking

    configs = [_cfg(0), _cfg(1, optimizer={"name": "momentum", "lr": 0.02})]
    configs[1]["optimizer"] = {"name": "adamw", "lr": 0.005}
    if mixed:  # the momentum buffer and Adam's moments written from one stack, each resumed alone
        configs += [_cfg(2, optimizer={"name": "momentum", "lr": 0.02}), MIXED[5]]
    records = stacking.StackedTrainer._records

    def stop_at_14(self, rows, evaluating):
        records(self, rows, evaluating)
        if self.step >= 12:
            self._interrupted = True  # as a first Ctrl-C does: the step ends, every trial checkpoints

    monkeypatch.setattr(stacking.StackedTrainer, "_records", stop_at_14)
    # log_every 4, stopped after step 12 plus two more steps of the next interval.
    stopped = run_stacked(configs, [tmp_path / "s"] * len(configs))
    monkeypatch.undo()
    for c, s in zip(configs, stopped):
        assert s["status"] == "interrupted" and s["summary"]["steps"] == 12
        resumed = dlx.train(resume=s["run_path"], runs_dir=tmp_path / "s", quiet=True)
        alone, _ = run_job(c, tmp_path / "a")
        assert resumed.status == "completed" and resumed.summary["steps"] == 24
        for x, y in zip(resumed.metrics, alone["metrics"]):
            for k in ("step", "train_loss", "test_loss", "train_acc", "test_acc", "lr"):
                if k in y:
                    _close(x[k], y[k], 1e-4)


def test_one_trials_divergence_or_early_stop_ends_that_trial_only(tmp_path):
    configs = [
        _cfg(0, optimizer={"name": "sgd", "lr": 1e6}, activation="relu"),  # blows up in a few steps
        _cfg(1, optimizer={"name": "sgd", "lr": 0.1}),
        _cfg(2, optimizer={"name": "momentum", "lr": 0.01}),
    ]
    configs[2]["regularization"] = {
        "early_stopping": {"metric": "test_loss", "patience": 1, "min_delta": 10.0}  # stops at its 2nd evaluation
    }
    stacked = run_stacked(configs, [tmp_path / "s"] * 3)
    assert [s["status"] for s in stacked] == ["diverged", "completed", "completed"]
    assert stacked[0]["summary"]["diverged"]["step"] < 24
    assert "early stopping" in load_run(stacked[2]["run_path"])["meta"]["reason"]
    for c, s in zip(configs, stacked):
        alone, _ = run_job(c, tmp_path / "a")
        assert s["summary"]["steps"] == alone["summary"]["steps"]
        assert s["summary"]["verdict"].split(":")[0] == alone["summary"]["verdict"].split(":")[0]
        if s["status"] != "diverged":
            _same_runs(s, alone)


def test_in_a_stack_of_both_families_trials_that_end_early_leave_the_others_exact(tmp_path):
    # The sgd family's two trials end (one diverges, one stops early at step 16): the stack
    # steps on first with both families' rows scattered, then with the adam family alone.
    configs = [
        _cfg(0, optimizer={"name": "adam", "lr": 0.01}),
        _cfg(1, optimizer={"name": "sgd", "lr": 1e6}),  # blows up in a few steps
        _cfg(2, optimizer={"name": "adamw", "lr": 0.003, "weight_decay": 0.1}),
        _cfg(3, optimizer={"name": "momentum", "lr": 0.01}),
        _cfg(4, optimizer={"name": "adam", "lr": 0.02, "betas": [0.8, 0.99]}),
    ]
    configs[3]["regularization"] = {"early_stopping": {"metric": "test_loss", "patience": 1, "min_delta": 10.0}}
    stacked = run_stacked(configs, [tmp_path / "s"] * len(configs))
    assert [s["status"] for s in stacked] == ["diverged" if i == 1 else "completed" for i in range(5)]
    assert stacked[1]["summary"]["diverged"]["step"] < 16 and stacked[3]["summary"]["steps"] == 16
    for c, s in zip(configs, stacked):
        alone, _ = run_job(c, tmp_path / "a")
        assert s["summary"]["steps"] == alone["summary"]["steps"]
        if s["status"] != "diverged":
            _same_runs(s, alone)


def test_a_three_optimizer_three_seed_compare_is_one_stack():
    import dlx
    from dlx.many.variants import make_variants, trial_configs

    quickstart = Path(dlx.__file__).parent / "example_configs" / "quickstart.yaml"
    variants = make_variants(["sgd", "momentum", "adam"], [], seeds=3)
    configs = [c for _, _, c in trial_configs(quickstart, [], variants, seeds=3)]
    assert sorted(c["optimizer"]["name"] for c in configs) == ["adam"] * 3 + ["momentum"] * 3 + ["sgd"] * 3
    jobs, notes = plan_stacks(configs, slots=1)
    assert jobs == [list(range(9))]
    assert notes == ["stacked: 9 of 9 trials train as 1 stacked model(s) of 9 (--no-stack trains each alone)"]


def test_what_cannot_stack_trains_alone_and_the_notes_say_why():
    dropout = _cfg(0, regularization={"dropout": 0.2})
    batch_norm = _cfg(1, regularization={"norm": "batch"})
    rmsprop = _cfg(2, optimizer={"name": "rmsprop", "lr": 0.001})
    rnn = {
        **_cfg(3, activation="tanh", init="default"),
        "data": {"name": "adding", "length": 12, "n_train": 64, "n_test": 32},
        "model": {"name": "rnn", "hidden": 8},
        "train": {"loss": "mse", "steps": 8, "batch_size": 16},
    }
    sgd, momentum, adam, adam2 = (
        _cfg(4, optimizer={"name": "sgd", "lr": 0.1}),
        _cfg(5, optimizer={"name": "momentum", "lr": 0.01}),
        _cfg(6),
        _cfg(7, optimizer={"name": "adam", "lr": 0.1}),
    )
    wider = _cfg(8, model={"name": "mlp", "depth": 2, "width": 32})
    configs = [dropout, batch_norm, rmsprop, rnn, sgd, momentum, adam, adam2, wider]
    jobs, notes = plan_stacks(configs, slots=1)
    # sgd, momentum and the two adams share one stack (each by its own formula); the wider net stands alone.
    assert sorted(map(sorted, (j for j in jobs if len(j) > 1))) == [[4, 5, 6, 7]]
    assert sorted(i for j in jobs for i in j) == list(range(9))
    text = "\n".join(notes)
    assert "4 of 9 trials train as 1 stacked model(s)" in text
    for why in ("dropout draws its masks", "batch norm keeps running statistics", "optimizer rmsprop", "model rnn"):
        assert why in text
    # More slots than stacks: the biggest stack is split so every slot has work.
    jobs, _ = plan_stacks([_cfg(i) for i in range(6)], slots=2)
    assert sorted(map(len, jobs)) == [3, 3]


def _wait_for_lines(folder: Path, n: int, timeout: float = 60) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [m.parent for m in folder.rglob("metrics.jsonl") if m.stat().st_size > 0] if folder.is_dir() else []
        if len(runs) >= n:
            return runs
        time.sleep(0.1)
    pytest.fail(f"{n} runs never started")


def test_a_sigterm_to_a_stacked_worker_ends_every_trial_interrupted_and_checkpointed(tmp_path):
    long = [_cfg(i, train={"steps": 100000, "batch_size": 32, "log_every": 1}) for i in range(3)]
    runs_dir = tmp_path / "runs"
    results = []
    ex = LocalExecutor(max_parallel=1, threads_per_trial=1)
    runner = threading.Thread(
        target=lambda: results.extend(ex.run([Trial(f"t{i}", c, runs_dir) for i, c in enumerate(long)]))
    )
    runner.start()
    try:
        started = _wait_for_lines(runs_dir, 3)
        pid = json.loads((started[0] / "meta.json").read_text())["pid"]
        os.kill(pid, signal.SIGTERM)
        runner.join(timeout=60)
    finally:
        if runner.is_alive():
            pytest.fail("the executor did not return after its stacked worker got SIGTERM")
    assert [(r.status, r.attempts) for r in results] == [("interrupted", 1)] * 3
    for r in results:
        meta = json.loads((r.run_path / "meta.json").read_text())
        assert (meta["status"], meta["reason"], meta["stacked"]) == ("interrupted", "stopped by SIGTERM", 3)
        assert (r.run_path / "checkpoint.pt").is_file()


def test_a_stacked_worker_killed_once_is_retried_and_its_trials_complete(tmp_path):
    flag = tmp_path / "crashed-once"
    ex = LocalExecutor(max_parallel=1, env={"DLX_TEST_CRASH_ONCE": str(flag)})
    results = ex.run([Trial(f"t{i}", _cfg(i), tmp_path / "runs") for i in range(2)])
    assert flag.is_file()
    assert [(r.status, r.attempts) for r in results] == [("completed", 2)] * 2
    assert [load_run(r.run_path)["meta"]["stacked"] for r in results] == [2, 2]


def test_a_grid_sweep_stacks_its_trials_and_a_tpe_sweep_does_not(tmp_path):
    import yaml

    from dlx.many.sweeper import Sweep, plan, run_sweep

    (tmp_path / "base.yaml").write_text(yaml.safe_dump(_cfg(0)))
    for strategy, extra in (("grid", {}), ("tpe", {"trials": 3})):
        spec = {
            "base": "base.yaml",
            "metric": {"name": "test_acc", "goal": "max"},
            "strategy": strategy,
            "space": {"optimizer.lr": [0.001, 0.01, 0.1]} if strategy == "grid" else {"seed": {"int": [0, 9]}},
            **extra,
        }
        (tmp_path / f"{strategy}.yaml").write_text(yaml.safe_dump(spec))
        ex = LocalExecutor(max_parallel=1, threads_per_trial=1)
        sw = run_sweep(Sweep.create(plan(tmp_path / f"{strategy}.yaml"), tmp_path / strategy), ex)
        stacked = [load_run(p)["meta"].get("stacked") for p in sorted((sw.folder / "trials").iterdir())]
        if strategy == "grid":
            assert stacked == [3, 3, 3] and ex.notes[0].startswith("stacked: 3 of 3")
        else:
            assert stacked == [None] * 3 and "tpe search picks each point" in ex.notes[0]
        assert all(r["status"] == "completed" for r in sw.rows.values())


def test_a_stack_of_big_nets_is_cut_to_fit_its_parameter_budget(tmp_path, monkeypatch):
    from dlx.many import stacking

    per_trial = 2 * 16 + 16 + 16 * 16 + 16 + 16 * 3 + 3  # the BASE net's parameters
    monkeypatch.setattr(stacking, "MAX_STACK_PARAMS", 2 * per_trial)  # two per stack
    configs = [_cfg(i) for i in range(3)]
    stacked = run_stacked(configs, [tmp_path / "s"] * 3)
    assert [load_run(s["run_path"])["meta"].get("stacked") for s in stacked] == [2, 2, None]
    for c, s in zip(configs, stacked):
        _same_runs_or_alone = run_job(c, tmp_path / "a")[0]
        assert s["summary"]["final"]["test_loss"] == pytest.approx(
            _same_runs_or_alone["summary"]["final"]["test_loss"], rel=1e-4
        )


def test_full_batch_trials_stack_to_their_separate_runs(tmp_path):
    configs = [_cfg(i, train={"steps": 12, "batch_size": "full", "log_every": 4}) for i in (0, 0, 1)]
    configs[1]["optimizer"] = {"name": "adam", "lr": 0.03}  # same seed as the first: one dataset for two
    # Three trials on two datasets (stacked copies), then two on one (one copy, expanded).
    for group in (configs, configs[:2]):
        stacked = run_stacked(group, [tmp_path / "s"] * len(group))
        for c, s in zip(group, stacked):
            _same_runs(s, run_job(c, tmp_path / "a")[0])

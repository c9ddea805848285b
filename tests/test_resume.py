"""Interrupts, checkpoints and exact resume: real signals, real subprocesses, real files.

A resumed run must end with exactly the numbers of the same run never stopped
(CPU, one thread): the reference run below is trained once per module and every
interrupted-then-resumed run is compared with it, line by line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import CONFIGS, ROOT, interrupt_when

import dlx
from dlx.core.errors import ConfigError, DlxError, UsageError
from dlx.records.folders import read_jsonl, run_status
from dlx.run.trainer import STOP_SIGNALS, Trainer

# Everything resume must restore is in play: Adam's moments, a cosine schedule,
# dropout masks (torch RNG), mini-batch order (n_train 256 / batch 24: epochs of 10
# steps, so an interrupt lands mid-epoch), log (7) and eval (12) cadences that do
# not divide each other, and early stopping that fires only after the interrupt
# (step 336; its counter is mid-count at step 317).
SHORT = {
    "name": "resume",
    "seed": 0,
    "data": {"name": "spirals", "n_train": 256, "n_test": 64},
    "model": {"name": "mlp", "depth": 2, "width": 16},
    "activation": "relu",
    "init": "kaiming_normal",
    "optimizer": {"name": "adam", "lr": 0.03, "schedule": {"name": "cosine"}},
    "regularization": {"dropout": 0.2, "early_stopping": {"metric": "test_loss", "patience": 3}},
    "train": {"steps": 400, "batch_size": 24, "log_every": 7, "eval_every": 12, "threads": 1, "checkpoint_every": 30},
}
# Long enough (~1 s of steps) for a test to see it logging and signal it mid-run.
LONG = {
    **SHORT,
    "regularization": {"dropout": 0.2},
    "train": {**SHORT["train"], "steps": 1200, "checkpoint_every": 200},
}
# Wall-clock numbers differ between any two runs; everything else must not.
TIMES = {"time", "train_seconds", "samples_per_s", "run_id"}


def no_times(records):
    return [{k: v for k, v in r.items() if k not in TIMES} for r in records]


def folder_records(path: Path, name: str):
    return [json.loads(line) for line in (path / name).read_text().splitlines()]


def assert_same_run(resumed: Path, reference: Path):
    """Metrics, probes and summary of two run folders agree, except for wall-clock times."""
    for name in ("metrics.jsonl", "probes.jsonl"):
        a, b = folder_records(resumed, name), folder_records(reference, name)
        steps = [r["step"] for r in a]
        assert steps == sorted(set(steps)), f"{name}: a step twice or out of order: {steps}"
        assert no_times(a) == no_times(b), name
    a, b = (json.loads((p / "summary.json").read_text()) for p in (resumed, reference))
    assert no_times([a]) == no_times([b])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """SHORT and LONG trained once each without interruption, from YAML files like the CLI's."""
    d = tmp_path_factory.mktemp("reference")
    out = {}
    for name, cfg in (("short", SHORT), ("long", LONG)):
        path = d / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        r = dlx.train(path, runs_dir=d / "runs")
        assert r.status == "completed"
        out[name] = (path, r.path)
    assert json.loads((out["short"][1] / "summary.json").read_text())["steps"] == 336  # early stopping fired
    return out


def ctrl_c_in_step(monkeypatch, at: int, presses: int = 1, sig: int = signal.SIGINT):
    """A real SIGINT (or sig) to this process at the start of step `at` (1-based), `presses` times."""
    real = Trainer._train_step

    def step(self, row, xb, yb):
        if self.step == at:  # trainer.step is the step's own number during it
            for _ in range(presses):
                os.kill(os.getpid(), sig)  # Python runs the handler before the next line
        return real(self, row, xb, yb)

    monkeypatch.setattr(Trainer, "_train_step", step)


def test_ctrl_c_finishes_the_step_checkpoints_and_resume_matches_an_uninterrupted_run(reference, runs_dir, monkeypatch):
    path, ref = reference["short"]
    with monkeypatch.context() as m:
        ctrl_c_in_step(m, at=317)  # mid-interval (log steps 315, 322: multiples of 7), mid-epoch
        r = dlx.train(path, runs_dir=runs_dir)
    assert r.status == "interrupted"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the loop gave it back
    assert [signal.getsignal(s) for s in STOP_SIGNALS[1:]] == [signal.SIG_DFL] * 3  # and the others
    meta = json.loads((r.path / "meta.json").read_text())
    assert meta["status"] == "interrupted"
    ck = torch.load(r.path / "checkpoint.pt", weights_only=True)
    # The step Ctrl-C came in finished, and no other began.
    assert ck["step"] == 317 and r.summary["steps"] == 317
    assert ck["loop"]["logged_step"] == 315 and len(ck["loop"]["probe_rows"]) == 2
    assert ck["early_stopping"]["bad"] == 1
    # Everything logged stays, plus the two steps of the unfinished interval.
    steps = [m["step"] for m in read_jsonl(r.path / "metrics.jsonl")]
    assert steps[-2:] == [315, 317]
    assert no_times(read_jsonl(r.path / "metrics.jsonl")[:-1]) == no_times(
        [m for m in read_jsonl(ref / "metrics.jsonl") if m["step"] <= 315]
    )

    resumed = dlx.train(resume=r.path.name, runs_dir=runs_dir)
    assert resumed.path == r.path and resumed.status == "completed"
    assert resumed.summary["steps"] == 336 and "early stopping" in resumed.summary["reason"]
    assert_same_run(r.path, ref)
    meta = json.loads((r.path / "meta.json").read_text())
    assert meta["status"] == "completed" and [x["step"] for x in meta["resumes"]] == [317]
    assert [p.name for p in runs_dir.iterdir()] == [r.path.name]  # the same folder, no new one


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_second_stop_signal_stops_mid_step_and_resume_starts_from_the_last_periodic_checkpoint(
    reference, runs_dir, monkeypatch, sig
):
    path, ref = reference["short"]
    with monkeypatch.context() as m:
        ctrl_c_in_step(m, at=100, presses=2, sig=sig)
        r = dlx.train(path, runs_dir=runs_dir)
    assert r.status == "interrupted" and r.summary["steps"] == 99  # step 100 never ran
    assert r.summary["reason"] == ("stopped by Ctrl-C" if sig == signal.SIGINT else "stopped by SIGTERM")
    ck = torch.load(r.path / "checkpoint.pt", weights_only=True)
    # Half a step is no state to resume from: the checkpoint is the periodic one at the
    # first log step past 90, and the metrics written after it are still in the file ...
    assert ck["step"] == ck["loop"]["logged_step"] == 91
    assert [m["step"] for m in read_jsonl(r.path / "metrics.jsonl")][-3:] == [91, 98, 99]
    resumed = dlx.train(resume=r.path, runs_dir=runs_dir)
    assert resumed.status == "completed"
    assert_same_run(r.path, ref)  # ... until the resume drops them and writes them again


@pytest.mark.parametrize(
    "example,batch",
    [("batchnorm", 64), ("truncated_bptt", 64), ("self_attention", 64), ("batch_size_gd_vs_sgd", "full")],
)
def test_resume_is_exact_for_other_model_families(example, batch, runs_dir, monkeypatch):
    """Batch-norm running statistics, recurrent time probes with truncated BPTT,
    attention, and full-batch training (no permutation) continue exactly too."""
    cfg = dlx.load_config(CONFIGS / f"{example}.yaml").resolved()
    cfg["train"].update(epochs=None, steps=40, threads=1, batch_size=batch)
    ref = dlx.train(cfg, runs_dir=runs_dir)
    with monkeypatch.context() as m:
        ctrl_c_in_step(m, at=27)
        r = dlx.train(cfg, runs_dir=runs_dir)
    assert r.status == "interrupted" and r.summary["steps"] == 27
    dlx.train(resume=r.path, runs_dir=runs_dir)
    assert_same_run(r.path, ref.path)


def test_periodic_checkpoints_are_written_at_the_log_step_that_reaches_each_multiple(tmp_path, runs_dir):
    seen = []

    class Spy:
        def on_checkpoint(self, trainer):
            seen.append((trainer.step, trainer.logged_step))

    cfg = {**SHORT, "regularization": {}, "train": {**SHORT["train"], "steps": 100}}
    r = dlx.train(cfg, runs_dir=runs_dir, callbacks=[Spy()])
    logged = [m["step"] for m in r.metrics]
    # Multiples of 30 -> the first log step at or past each (the end writes its own).
    assert [s for s, _ in seen] == [min(s for s in logged if s >= k) for k in (30, 60, 90)]
    assert all(s == ls for s, ls in seen)  # always at an interval's end: metrics and checkpoint agree
    with pytest.raises(ConfigError, match="checkpoint_every needs checkpoint: true"):
        dlx.load_config({**cfg, "train": {**cfg["train"], "checkpoint": False}})


def _dlx(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "dlx", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _wait_for(cond, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(
                f"dlx train ended (exit {proc.returncode}) before the test could signal it: {proc.stderr.read()}"
            )
        time.sleep(0.005)
    proc.kill()
    pytest.fail("dlx train never logged")


def _logged_steps(runs: Path) -> list[int]:
    found = list(runs.glob("*/metrics.jsonl")) if runs.is_dir() else []
    return [m["step"] for m in read_jsonl(found[0])] if found else []


def _default_stop_signals():
    """In the child: the stop signals at their defaults, even under nohup or a script's `&`."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)


@pytest.mark.parametrize(
    "sig,code,reason",
    [
        (signal.SIGINT, 130, "stopped by Ctrl-C"),
        pytest.param(signal.SIGTERM, 143, "stopped by SIGTERM", marks=pytest.mark.slow),
        # SIGTERM, SIGHUP and SIGQUIT: the same handler as Ctrl-C's, run with the slow tests.
        pytest.param(signal.SIGHUP, 129, "stopped by SIGHUP", marks=pytest.mark.slow),
        pytest.param(signal.SIGQUIT, 131, "stopped by SIGQUIT", marks=pytest.mark.slow),
    ],
)
def test_a_stop_signal_to_dlx_train_exits_128_plus_it_and_resume_continues_into_the_same_folder(
    reference, tmp_path, sig, code, reason
):
    """Ctrl-C, kill (SIGTERM: also timeout, a container stop, a scheduler), a closed terminal
    (SIGHUP) and Ctrl-backslash (SIGQUIT) all finish the step, checkpoint and mark the run
    interrupted; the resumed run (checked after SIGTERM and SIGHUP) is the uninterrupted one, number for number."""
    path, ref = reference["long"]
    runs = tmp_path / "runs"
    proc = _dlx("train", path, "--runs-dir", runs, "-q", preexec_fn=_default_stop_signals)
    _, out, err = interrupt_when(proc, lambda: len(_logged_steps(runs)) >= 3, poll=0.005, sig=sig)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    [run] = list(runs.iterdir())
    assert f"dlx train --resume {run.name}" in out
    meta = json.loads((run / "meta.json").read_text())
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert meta["status"] == "interrupted" and 19 <= ck["step"] < 1200  # 3 lines: step 19 or later
    assert meta["reason"] == reason
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == ck["step"] and summary["signal"] == signal.Signals(sig).name
    if sig not in (signal.SIGTERM, signal.SIGHUP):
        return  # resuming does not depend on the signal: proven for a scheduler's stop and a closed terminal
    # The stop came before the first periodic checkpoint (step 200): the signal's is the only one.

    p = subprocess.run(
        [sys.executable, "-m", "dlx", "train", "--resume", run.name[-6:], "--runs-dir", runs, "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert list(runs.iterdir()) == [run]
    assert_same_run(run, ref)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["resumes"][0]["step"] == ck["step"]


def test_sigkill_loses_at_most_an_interval_and_resume_continues_from_the_last_checkpoint(reference, tmp_path):
    path, ref = reference["long"]
    runs = tmp_path / "runs"
    proc = _dlx("train", path, "--runs-dir", runs, "-q")
    try:
        # Past the first periodic checkpoint (at the log step reaching 200), then kill -9.
        _wait_for(lambda: [s for s in _logged_steps(runs) if s >= 230], proc)
        seen = _logged_steps(runs)[-1]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    [run] = list(runs.iterdir())
    # Nothing half-written under a real name: meta parses, the checkpoint loads, every
    # metrics line but a torn last one parses, and no interval is missing before it.
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "running" and run_status(meta) == "interrupted"
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ck["step"] >= 200 and ck["step"] == ck["loop"]["logged_step"]
    lines = (run / "metrics.jsonl").read_text().splitlines()
    metrics = read_jsonl(run / "metrics.jsonl")
    assert len(metrics) >= len(lines) - 1
    assert metrics[-1]["step"] >= seen  # what was logged before the kill is all still there
    assert all(b["first_step"] == a["step"] + 1 for a, b in zip(metrics, metrics[1:]))
    assert metrics[0]["first_step"] == 1

    r = dlx.train(resume=run, runs_dir=runs)
    assert r.status == "completed" and r.path == run
    assert_same_run(run, ref)
    assert not list(run.glob(".*.tmp"))
    assert [x["step"] for x in json.loads((run / "meta.json").read_text())["resumes"]] == [ck["step"]]


def test_a_finished_running_or_checkpointless_run_cannot_be_resumed(tmp_path, runs_dir):
    cfg = {**SHORT, "regularization": {}, "train": {**SHORT["train"], "steps": 20}}
    done = dlx.train(cfg, runs_dir=runs_dir)
    with pytest.raises(UsageError, match=r"has finished \(completed\); there is nothing to resume"):
        dlx.train(resume=done.path, runs_dir=runs_dir)

    class CtrlC:
        def on_interval(self, trainer, record):
            trainer.interrupt()

    class ResumeMe:  # while this run trains, this process is its live pid
        def on_interval(self, trainer, record):
            if record["step"] == 7:
                [live] = [
                    d for d in runs_dir.iterdir() if json.loads((d / "meta.json").read_text())["status"] == "running"
                ]
                with pytest.raises(UsageError, match=f"run {live.name} is still running .pid {os.getpid()}"):
                    dlx.train(resume=live, runs_dir=runs_dir)

    bare = dlx.train(
        {**cfg, "train": {**cfg["train"], "checkpoint": False, "checkpoint_every": None}},
        runs_dir=runs_dir,
        callbacks=[ResumeMe(), CtrlC()],
    )
    assert bare.status == "interrupted" and not (bare.path / "checkpoint.pt").exists()
    with pytest.raises(UsageError, match=r"\(interrupted\) has no checkpoint.pt to resume from"):
        dlx.train(resume=bare.path.name, runs_dir=runs_dir)
    with pytest.raises(UsageError, match="give no config or overrides"):
        dlx.train(cfg, resume=done.path, runs_dir=runs_dir)


def test_a_truncated_checkpoint_is_a_clear_error_and_leaves_the_run_as_it_was(runs_dir):
    class CtrlC:
        def on_interval(self, trainer, record):
            if record["step"] >= 40:
                trainer.interrupt()

    r = dlx.train({**SHORT, "train": {**SHORT["train"], "steps": 100}}, runs_dir=runs_dir, callbacks=[CtrlC()])
    ck = r.path / "checkpoint.pt"
    ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    before = {f.name: f.read_bytes() for f in r.path.iterdir()}
    with pytest.raises(DlxError, match=f"{ck} cannot be read as a dlx checkpoint"):
        dlx.train(resume=r.path, runs_dir=runs_dir)
    assert {f.name: f.read_bytes() for f in r.path.iterdir()} == before


def test_resume_with_a_config_or_set_is_a_usage_error(tmp_path, runs_dir):
    from typer.testing import CliRunner

    from dlx.cli.app import app

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(SHORT))
    run = CliRunner()
    for args, says in (
        (["train", str(cfg), "--resume", "last"], "give CONFIG or --resume RUN, not both"),
        (["train", "--resume", "last", "--set", "seed=1"], "--set cannot change a run being resumed"),
        (["train"], "missing CONFIG"),
        (["train", "--resume", "last", "--runs-dir", str(runs_dir)], "no runs in"),
    ):
        res = run.invoke(app, args)
        assert res.exit_code == 2 if says != "no runs in" else res.exit_code != 0, (args, res.output)
        assert says in res.output, (args, res.output)
        assert "Traceback" not in res.output


def _arrays(path: Path, n: int = 64, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = (x[:, 0] > 0).astype(int)
    np.savez(path, x_train=x, y_train=y, x_test=x[:16], y_test=y[:16])
    return path


def test_resume_refuses_data_changed_since_the_stop_and_needs_no_init_weights_file(runs_dir, tmp_path, monkeypatch):
    """What a resume depends on is checked, what it does not need is not asked for: data
    swapped or cut short since the stop is refused (it would continue on other data);
    a from_file init whose weights file has gone resumes from the checkpoint's weights,
    to the numbers of the run that was never stopped."""
    data = _arrays(tmp_path / "data.npz")
    net = {"name": "mlp", "depth": 1, "width": 8}
    weights = tmp_path / "w.pt"
    torch.save(
        Trainer(dlx.load_config({"data": {"name": "arrays", "path": str(data)}, "model": net})).model.state_dict(),
        weights,
    )
    cfg = {
        "data": {"name": "arrays", "path": str(data)},
        "model": net,
        "init": {"name": "from_file", "path": str(weights)},
        "train": {"steps": 30, "batch_size": 16, "log_every": 5, "threads": 1},
    }
    whole = dlx.train(cfg, runs_dir=tmp_path / "whole", quiet=True)

    def stopped():
        with monkeypatch.context() as m:
            ctrl_c_in_step(m, at=12)
            r = dlx.train(cfg, runs_dir=runs_dir, quiet=True)
        assert r.status == "interrupted"
        return r

    r = stopped()
    original = data.read_bytes()
    for change in ("other samples", "cut short"):
        _arrays(data, n=64, seed=1) if change == "other samples" else _arrays(data, n=40)
        with pytest.raises(DlxError, match=r"the data of this run changed since it stopped \(data.path .*data.npz"):
            dlx.train(resume=r.path, runs_dir=runs_dir, quiet=True)
    data.write_bytes(original)
    weights.unlink()
    resumed = dlx.train(resume=r.path, runs_dir=runs_dir, quiet=True)
    assert resumed.status == "completed"
    assert no_times(resumed.metrics) == no_times(whole.metrics)


def test_a_checkpoint_from_before_new_config_keys_still_resumes(tmp_path):
    """A run started by an older dlx has no data.imbalance, train.balance or instruments
    in its saved config; where the new keys hold their do-nothing defaults it resumes."""
    import copy

    import torch
    from conftest import TINY

    import dlx

    c = copy.deepcopy(TINY)
    c["train"] = {"steps": 40, "batch_size": 32, "log_every": 10, "checkpoint_every": 10}

    class StopAt:
        def on_interval(self, trainer, record):
            if trainer.step == 20:
                trainer.interrupt()

    first = dlx.train(c, runs_dir=tmp_path, quiet=True, callbacks=[StopAt()])
    ckpt = first.path / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    del state["config"]["data"]["imbalance"], state["config"]["train"]["balance"], state["config"]["instruments"]
    torch.save(state, ckpt)
    resumed = dlx.train(resume=first.path, runs_dir=tmp_path, quiet=True)
    assert resumed.status == "completed" and resumed.summary["steps"] == 40

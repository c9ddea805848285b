"""LocalExecutor: trials run as separate worker processes, in parallel, with retries."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import ROOT, TINY

from dlx.many.executors import LocalExecutor, Trial
from dlx.records.folders import load_run


def _cfg(seed: int = 0, lr: float = 0.01, steps: int = 5) -> dict:
    c = copy.deepcopy(TINY)
    c["seed"] = seed
    c["optimizer"]["lr"] = lr
    c["train"] = {"steps": steps, "batch_size": 32, "log_every": 5}
    return c


def _trials(runs_dir: Path, n: int) -> list[Trial]:
    return [Trial(id=f"s{i}", config=_cfg(seed=i, lr=0.01 * (i + 1)), runs_dir=runs_dir) for i in range(n)]


MODES = {
    "fresh": {"warm": False, "stack": False},
    "warm": {"warm": True, "stack": False},
    "stacked": {"warm": True, "stack": True},
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(MODES))
def test_parallel_trials_complete_in_order_with_their_own_runs_two_at_a_time(runs_dir, mode):
    trials = _trials(runs_dir, 3)
    seen = []
    ex = LocalExecutor(max_parallel=2, threads_per_trial=1, **MODES[mode])
    results = ex.run(trials, on_result=seen.append)

    assert [r.id for r in results] == ["s0", "s1", "s2"]
    assert sorted(r.id for r in seen) == ["s0", "s1", "s2"]  # once each, in finishing order
    assert all(r.status == "completed" and r.attempts == 1 and r.error is None for r in results)
    paths = [r.run_path for r in results]
    assert len(set(paths)) == 3 and all(p.parent == runs_dir for p in paths)
    for r, t in zip(results, trials):
        run = load_run(r.run_path)
        assert run["meta"]["status"] == "completed"
        assert run["meta"]["seed"] == t.config["seed"]
        assert r.summary == run["summary"]  # the result carries the run's summary.json
        assert r.summary["steps"] == 5
        assert r.metrics and r.metrics[-1]["step"] == 5
        assert r.metrics[-1]["lr"] == pytest.approx(t.config["optimizer"]["lr"])

    if mode == "stacked":
        # Three trials, two slots: a stack of two in one process and one alone in the other.
        stacked = [load_run(r.run_path)["meta"].get("stacked") for r in results]
        assert sorted(stacked, key=str) == [2, 2, None]
        assert any("stacked: 2 of 3 trials" in n for n in ex.notes)
        results = [r for r, k in zip(results, stacked) if k is None] + [results[stacked.index(2)]]
    # Each job stamps its start (a fresh worker's before importing torch, a warm one's as the job
    # arrives) and end: never more than max_parallel at once, and both slots had work.
    events = sorted([(r.started, 1) for r in results] + [(r.ended, -1) for r in results])
    alive, peak = 0, 0
    for _, d in events:
        alive += d
        peak = max(peak, alive)
    assert 1 <= peak <= 2
    assert len({load_run(r.run_path)["meta"]["pid"] for r in results}) >= 2


def test_a_worker_killed_once_is_retried_in_a_fresh_run(runs_dir, tmp_path):
    flag = tmp_path / "crashed-once"
    ex = LocalExecutor(max_parallel=1, env={"DLX_TEST_CRASH_ONCE": str(flag)})
    [r] = ex.run([Trial(id="t", config=_cfg(), runs_dir=runs_dir)])
    assert flag.is_file()  # the first attempt did die
    assert (r.status, r.attempts) == ("completed", 2)
    assert r.summary["steps"] == 5 and load_run(r.run_path)["meta"]["status"] == "completed"


def test_a_config_error_is_reported_and_not_retried(runs_dir):
    bad = _cfg()
    bad["model"]["widht"] = 8
    results = LocalExecutor(max_parallel=2).run([Trial("bad", bad, runs_dir), Trial("ok", _cfg(), runs_dir)])
    assert [(r.id, r.status, r.attempts) for r in results] == [("bad", "config_error", 1), ("ok", "completed", 1)]
    assert "model.widht" in results[0].error and "width" in results[0].error
    assert results[0].run_path is None


def test_a_trial_that_always_dies_ends_crashed_after_all_retries(runs_dir, tmp_path):
    # sitecustomize runs at every interpreter start: each worker dies before reading its trial.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import os, sys\nsys.stderr.write('simulated out-of-memory kill\\n'); sys.stderr.flush()\nos._exit(137)\n"
    )
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    [r] = LocalExecutor(max_parallel=1, retries=1, env=env).run([Trial("doomed", _cfg(), runs_dir)])
    assert (r.status, r.attempts, r.run_path, r.summary) == ("crashed", 2, None, None)
    assert "exit code 137" in r.error and "simulated out-of-memory kill" in r.error


# SIGINT with the suite, SIGTERM (the same path, another handler) with the slow tests.
@pytest.mark.parametrize("sig", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)])
def test_ctrl_c_or_sigterm_stops_the_workers_and_their_runs_end_interrupted(runs_dir, tmp_path, sig):
    script = tmp_path / "parent.py"
    long = _cfg(steps=100000)
    long["train"]["log_every"] = 1
    script.write_text(
        textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        from dlx.many.executors import LocalExecutor, Trial
        trials = [Trial(f"t{{i}}", json.loads({json.dumps(json.dumps(long))}), Path({str(runs_dir)!r}))
                  for i in range(2)]
        try:
            LocalExecutor(max_parallel=2, threads_per_trial=1).run(trials)
        except KeyboardInterrupt:
            print("stopped cleanly")
            sys.exit(130)
    """)
    )
    # The parent as a shell script's `&` job starts it: SIGINT ignored, which its workers inherit.
    parent = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN) if sig != signal.SIGINT else None,
    )
    deadline = time.monotonic() + 30
    # Wait until both runs are training (a metrics line written), then press Ctrl-C.
    while time.monotonic() < deadline:
        started = (
            [
                d
                for d in runs_dir.glob("*")
                if (d / "metrics.jsonl").is_file() and (d / "metrics.jsonl").stat().st_size > 0
            ]
            if runs_dir.is_dir()
            else []
        )
        if len(started) == 2:
            break
        time.sleep(0.1)
    else:
        parent.kill()
        pytest.fail("the two runs never started")
    parent.send_signal(sig)  # SIGTERM too: a parent killed outright would leave its workers running
    out, _ = parent.communicate(timeout=20)
    assert parent.returncode == 130 and "stopped cleanly" in out
    statuses = [json.loads((d / "meta.json").read_text())["status"] for d in started]
    assert statuses == ["interrupted", "interrupted"]


def test_a_sigterm_to_a_worker_ends_its_run_interrupted_not_crashed(runs_dir):
    """kill WORKER_PID (an out-of-memory killer's warning, a person, a scheduler) finishes
    the step, checkpoints, and the trial reports the run interrupted, with no retry."""
    import threading

    long = _cfg(steps=100000)
    long["train"]["log_every"] = 1
    results = []
    runner = threading.Thread(
        target=lambda: results.extend(
            LocalExecutor(max_parallel=1, threads_per_trial=1).run([Trial("t", long, runs_dir)])
        )
    )
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            started = (
                [
                    d
                    for d in runs_dir.glob("*")
                    if (d / "metrics.jsonl").is_file() and (d / "metrics.jsonl").stat().st_size > 0
                ]
                if runs_dir.is_dir()
                else []
            )
            if started:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the run never started")
        [run] = started
        os.kill(json.loads((run / "meta.json").read_text())["pid"], signal.SIGTERM)
        runner.join(timeout=30)
    finally:
        if runner.is_alive():
            pytest.fail("the executor did not return after its worker got SIGTERM")
    [r] = results
    assert (r.status, r.attempts, r.run_path) == ("interrupted", 1, run)
    meta = json.loads((run / "meta.json").read_text())
    assert (meta["status"], meta["reason"]) == ("interrupted", "stopped by SIGTERM")
    assert (run / "checkpoint.pt").is_file()


def _training_runs(folder: Path) -> list[Path]:
    """Run folders under `folder` (any depth: a sweep's trials train in .staging) that logged a line."""
    return [m.parent for m in folder.rglob("metrics.jsonl") if m.stat().st_size > 0] if folder.is_dir() else []


@pytest.mark.slow
def test_killed_sweep_and_compare_drivers_leave_no_worker_running_and_no_temp_folder(tmp_path):
    """A driver killed with SIGTERM stops its workers itself; one killed with SIGKILL cannot,
    and its workers notice they are orphans and stop alike. Either way every worker is gone
    within seconds, each run ends `interrupted` (resumable, checkpointed), the executor's temp
    folder is removed, and a SIGKILLed sweep reads `interrupted`, not `running`. The four
    drivers run at once: one start-up cost for the lot. A compare of one stack trains in the
    driver itself (as `dlx train` does): SIGTERM ends its runs interrupted and checkpointed;
    SIGKILL, which no process outlives, leaves them reading `interrupted` without a checkpoint."""
    from dlx.records.folders import sweep_folders, sweep_status
    from dlx.records.locks import run_status

    long = copy.deepcopy(TINY)
    long["train"] = {"steps": 100000, "batch_size": 32, "log_every": 1}
    (tmp_path / "long.yaml").write_text(json.dumps(long))
    (tmp_path / "spec.yaml").write_text(json.dumps({"base": "long.yaml", "space": {"optimizer.lr": [0.01, 0.02]}}))
    commands = {
        "sweep": ["sweep", "spec.yaml"],
        "compare": ["compare", "long.yaml", "--optimizers", "sgd,adam", "--seeds", "1"],
    }
    drivers = {}
    for what, sig in [
        ("sweep", signal.SIGTERM),
        ("sweep", signal.SIGKILL),
        ("compare", signal.SIGTERM),
        ("compare", signal.SIGKILL),
    ]:
        case = tmp_path / f"{what}-{sig.name}"
        (case / "tmp").mkdir(parents=True)
        env = {**os.environ, "TMPDIR": str(case / "tmp"), "PYTHONPATH": str(ROOT)}
        args = [sys.executable, "-m", "dlx", *commands[what], "--runs-dir", str(case / "runs"), "--max-parallel", "1"]
        proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        drivers[case] = (proc, sig)
    try:
        deadline = time.monotonic() + 60
        pending = dict(drivers)
        workers = {}
        while pending and time.monotonic() < deadline:
            for case, (proc, sig) in list(pending.items()):
                if proc.poll() is not None:
                    pytest.fail(f"{case.name}: the driver ended early: {proc.stderr.read().decode()}")
                runs = _training_runs(case / "runs")
                if runs:  # a worker is training: kill its driver now
                    workers[case] = json.loads((runs[0] / "meta.json").read_text())["pid"]
                    proc.send_signal(sig)
                    del pending[case]
            time.sleep(0.05)
        assert not pending, f"never started training: {[c.name for c in pending]}"
        for proc, _ in drivers.values():
            proc.wait(timeout=30)
            assert "Traceback" not in proc.stderr.read().decode()
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in workers.values()) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        for proc, _ in drivers.values():
            proc.kill()
    for case in drivers:
        assert not _alive(workers[case]), f"{case.name}: worker {workers[case]} still running after its driver died"
        assert list((case / "tmp").glob("dlx-*")) == [], f"{case.name}: temp folder leaked"
        runs = _training_runs(case / "runs")
        metas = [json.loads((r / "meta.json").read_text()) for r in runs]
        in_driver = case.name.startswith("compare")
        assert all((m["pid"] == drivers[case][0].pid) == in_driver for m in metas), case.name
        if case.name == "compare-SIGKILL":
            assert {run_status(m, r) for m, r in zip(metas, runs)} == {"interrupted"}
            continue
        statuses = {m["status"] for m in metas}
        assert statuses == {"interrupted"}, (case.name, statuses)
        assert all((r / "checkpoint.pt").is_file() for r in runs)
        if case.name.startswith("sweep"):
            [sw] = sweep_folders(case / "runs")
            assert sweep_status(json.loads((sw / "sweep.json").read_text()), sw) == "interrupted"


def _alive(pid: int) -> bool:
    from dlx.records.folders import pid_alive

    return pid_alive(pid)


def test_sweep_and_compare_build_their_executor_in_one_place_and_refuse_odd_options():
    from dlx.core.errors import UsageError
    from dlx.many.backends import build_executor
    from dlx.many.executors import LocalExecutor

    ex = build_executor("local", max_parallel=2, retries=1, stack=False, warm=False)
    assert isinstance(ex, LocalExecutor) and (ex.max_parallel, ex.retries, ex.stack, ex.warm) == (2, 1, False, False)
    with pytest.raises(UsageError, match="--address is for --executor ray"):
        build_executor("local", address="127.0.0.1:6379")
    with pytest.raises(UsageError, match="local or ray"):
        build_executor("slurm")

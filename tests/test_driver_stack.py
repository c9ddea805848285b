"""The dlx command's compare trains stacks in its own process (it has imported torch already):
no worker at all when the trials are one stack, workers only for what the driver cannot hold,
and a stop ends the driver's stack as a worker's ends (interrupted, checkpointed)."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
import yaml
from conftest import ROOT, TINY

from dlx.core import version
from dlx.many import executors
from dlx.many.compare import compare
from dlx.many.executors import LocalExecutor, Trial
from dlx.records.folders import load_run


@pytest.fixture
def threads_kept():
    # The driver's stack sets torch's thread count; the rest of this test process keeps its own.
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _config_file(tmp_path, **train) -> str:
    cfg = copy.deepcopy(TINY)
    cfg["train"].update(train)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _final(cmp) -> dict[str, list[float]]:
    return {label: [r.metrics[-1]["train_loss"] for r in runs] for label, runs in cmp.runs.items()}


def test_a_compare_that_is_one_stack_trains_in_the_driver_with_no_worker_and_the_same_numbers(
    tmp_path, monkeypatch, threads_kept
):
    config = _config_file(tmp_path)
    over = ["optimizer.lr=0.01,0.03"]
    # As a library (dlx.compare from a user's program): warm workers train, the caller's process is left alone.
    by_workers = compare(config, over=over, seeds=2, runs_dir=tmp_path / "w", figure=False, quiet=True)

    def no_worker(*args, **kwargs):
        raise AssertionError("a worker was started")

    monkeypatch.setattr(version, "OWNS_PROCESS", True)  # as the dlx command
    monkeypatch.setattr(LocalExecutor, "_spawn", no_worker)
    in_driver = compare(config, over=over, seeds=2, runs_dir=tmp_path / "d", figure=False, quiet=True)

    metas = [load_run(r.path)["meta"] for runs in in_driver.runs.values() for r in runs]
    assert [m["pid"] for m in metas] == [os.getpid()] * 4  # trained here
    assert [m["stacked"] for m in metas] == [4] * 4  # as one stack, not split for the second core
    assert [m["pid"] for runs in by_workers.runs.values() for m in [load_run(r.path)["meta"] for r in runs]] != [
        os.getpid()
    ] * 4
    workers, driver = _final(by_workers), _final(in_driver)
    assert list(workers) == list(driver)
    for label in workers:
        assert driver[label] == pytest.approx(workers[label], rel=1e-5)
    assert all(r.status == "completed" for runs in in_driver.runs.values() for r in runs)


def test_the_driver_trains_a_stack_and_a_worker_takes_what_cannot_stack(runs_dir, monkeypatch, threads_kept):
    monkeypatch.setattr(version, "OWNS_PROCESS", True)
    configs = []
    for seed in range(3):
        c = copy.deepcopy(TINY)
        c["seed"] = seed
        configs.append(c)
    alone = copy.deepcopy(TINY)
    alone["regularization"] = {"dropout": 0.1}  # dropout never stacks: a worker trains it
    configs.append(alone)
    ex = LocalExecutor(max_parallel=2, threads_per_trial=1, in_driver=True)
    ex.start_workers(expected=len(configs))  # one stack's worth: no worker started early
    assert ex._early is None
    results = ex.run([Trial(f"t{i}", c, runs_dir) for i, c in enumerate(configs)])

    assert [r.status for r in results] == ["completed"] * 4
    metas = [load_run(r.run_path)["meta"] for r in results]
    assert [m["pid"] == os.getpid() for m in metas] == [True, True, True, False]
    assert [m.get("stacked") for m in metas] == [3, 3, 3, None]


def test_more_trials_than_one_stack_start_a_worker_early_beside_the_driver():
    ex = LocalExecutor(max_parallel=2, threads_per_trial=1, in_driver=True)
    ex.start_workers(expected=100)
    try:
        _, workers = ex._early
        assert len(workers) == 1  # the driver is the other slot
    finally:
        ex.stop_workers()
    assert not LocalExecutor(max_parallel=2, in_driver=True, gpus_per_trial=1, gpus=1).in_driver  # GPU slots: workers


def test_ctrl_c_ends_the_driver_stack_interrupted_with_its_checkpoints(runs_dir, tmp_path):
    long = copy.deepcopy(TINY)
    long["train"] = {"steps": 100000, "batch_size": 32, "log_every": 1}
    script = tmp_path / "driver.py"
    script.write_text(
        textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        from dlx.core import version
        version.OWNS_PROCESS = True
        from dlx.many.executors import LocalExecutor, Trial
        cfg = json.loads({json.dumps(json.dumps(long))})
        trials = [Trial(f"t{{i}}", dict(cfg, seed=i), Path({str(runs_dir)!r})) for i in range(2)]
        try:
            LocalExecutor(max_parallel=1, threads_per_trial=1, in_driver=True).run(trials)
        except KeyboardInterrupt:
            print("stopped cleanly")
            sys.exit(130)
    """)
    )
    parent = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    started = []
    while time.monotonic() < deadline and len(started) < 2:
        started = [
            d for d in runs_dir.glob("*") if (d / "metrics.jsonl").is_file() and (d / "metrics.jsonl").stat().st_size
        ]
        time.sleep(0.1)
    if len(started) < 2:
        parent.kill()
        pytest.fail("the driver's stack never started")
    parent.send_signal(signal.SIGINT)
    out, _ = parent.communicate(timeout=30)
    assert parent.returncode == 130 and "stopped cleanly" in out
    for d in started:
        meta = json.loads((d / "meta.json").read_text())
        assert (meta["status"], meta["stacked"], meta["pid"]) == ("interrupted", 2, parent.pid)
        assert (d / "checkpoint.pt").is_file()


def test_the_driver_slot_is_told_apart_from_workers_everywhere_the_loop_reads_one():
    # _wait selects on the driver's pipe beside the workers' stdout; one stray line is one code.
    slot = executors._DriverSlot()
    try:
        os.write(slot._write, b'{"code": 2}\n')
        att = executors._Attempt([0], 1, result_path=None, driver=slot)
        slot.busy = att
        assert executors.LocalExecutor._wait([att]) == [att]
        assert LocalExecutor()._ended(att, []) == 2 and slot.busy is None
    finally:
        slot.close()

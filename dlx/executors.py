"""Executors run trials (config dicts) as ordinary dlx train runs; compare and sweep use them.

Every executor has one method, run(trials, on_result): it pulls trials from the iterable
only when it has a free slot (so a sweep can ask its search strategy for the next point
after the previous results were told), calls on_result as each trial ends, and returns
the results in the order the trials were pulled. A result's run_path is a run folder on
this machine, inside the trial's runs_dir.

LocalExecutor starts one fresh `python -m dlx.worker` process per trial attempt (never a
fork of a process holding torch state), at most max_parallel at once, and retries
attempts whose process died. A retry starts a new run folder: the dead attempt's folder
(if it got that far) stays behind with meta status "running" (killed) or "failed".
With gpus_per_trial each attempt holds a GPU slot, handed to it as CUDA_VISIBLE_DEVICES.
The Ray executor (dlx/ray_executor.py, the optional extra dlx[ray]) has the same shape.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

STATUSES = ("completed", "diverged", "interrupted", "failed", "config_error", "crashed")
POLL_S = 0.05
STDERR_TAIL = 2000


@contextlib.contextmanager
def stop_signals_raise_keyboard_interrupt():
    """SIGTERM, SIGHUP and SIGQUIT to this (parent) process act as Ctrl-C while trials run:
    KeyboardInterrupt, so the executor stops its workers (their runs end interrupted) instead
    of dying and leaving them running in their own sessions. Main thread only; a signal
    ignored at start stays ignored; the previous handlers come back afterwards."""
    previous = {}

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    previous[sig] = signal.signal(sig, handler)
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# The executor's temp folder (each attempt's result and stderr) is named after the driver's
# pid: its workers remove it if the driver dies (worker._stop_when_orphaned), and the next
# executor on this machine removes any whose driver and workers all died at once.
WORKDIR_PREFIX = "dlx-exec-"


def remove_stale_workdirs() -> None:
    """Remove the temp folders of drivers that are gone (an orphaned worker still stopping in
    one finds it gone and writes nothing there: its result has no reader)."""
    from .folders import pid_alive

    for d in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*-*"):
        pid = d.name[len(WORKDIR_PREFIX) :].partition("-")[0]
        if pid.isdigit() and not pid_alive(pid) and d.is_dir():
            shutil.rmtree(d, ignore_errors=True)


@dataclass
class Trial:
    """One config to train; id is unique within a batch and used for nothing on disk."""

    id: str
    config: dict
    runs_dir: Path


@dataclass
class TrialResult:
    """How a trial ended; error is a person-readable reason for config_error / failed / crashed."""

    id: str
    status: str  # completed | diverged | interrupted | failed | config_error | crashed
    run_path: Path | None
    summary: dict | None
    metrics: list | None
    attempts: int
    error: str | None
    # Wall-clock times (time.time()) of the last attempt's worker process, as it measured them.
    started: float | None = None
    ended: float | None = None
    node: str | None = None  # where it ran: a Ray node id; None for this machine


@dataclass
class _Attempt:
    index: int  # position in the trial list
    number: int  # 1-based attempt number
    proc: subprocess.Popen
    result_path: Path
    stderr_path: Path
    stderr_file: Any = field(repr=False, default=None)
    slot: int | None = None  # index into LocalExecutor.slots while it runs


class TrialQueue:
    """The trials an executor still owes: retries first, then new ones pulled from the
    iterable one at a time (so a sweep asks for its next point only when a slot is free)."""

    def __init__(self, trials: Iterable[Trial]):
        self._source = iter(trials)
        self.pulled: list[Trial] = []  # every trial taken so far, in order
        self._ids: set[str] = set()
        self._retry: list[tuple[int, int]] = []
        self._exhausted = False

    def retry(self, index: int, attempt: int) -> None:
        self._retry.append((index, attempt))

    def next(self) -> tuple[int, int] | None:
        """(trial index, attempt number) to start next, or None when nothing is left."""
        if self._retry:
            return self._retry.pop(0)
        if self._exhausted:
            return None
        trial = next(self._source, None)
        if trial is None:
            self._exhausted = True
            return None
        if trial.id in self._ids:
            raise ValueError(f"trial id {trial.id!r} used twice; ids must be unique within a batch")
        self._ids.add(trial.id)
        self.pulled.append(trial)
        return len(self.pulled) - 1, 1


def _tail(path: Path, n: int = STDERR_TAIL) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-n:].strip()


def gpu_slots(gpus: int, gpus_per_trial: float) -> list[str]:
    """CUDA_VISIBLE_DEVICES values, one per concurrent trial: 0.5 per trial on 2 GPUs
    gives ["0", "0", "1", "1"]; 2 per trial on 4 GPUs gives ["0,1", "2,3"]."""
    if gpus_per_trial <= 0:
        raise ValueError("gpus_per_trial must be positive")
    if gpus_per_trial <= 1:
        per_gpu = int(1 / gpus_per_trial + 1e-9)  # 0.5 -> 2 trials share a GPU; 0.4 -> 2
        return [str(g) for g in range(gpus) for _ in range(per_gpu)]
    k = math.ceil(gpus_per_trial)
    return [",".join(str(g) for g in range(j * k, (j + 1) * k)) for j in range(gpus // k)]


def _count_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class LocalExecutor:
    """Runs trials in parallel child processes on this machine."""

    def __init__(
        self,
        max_parallel: int | None = None,
        retries: int = 2,
        threads_per_trial: int | None = None,
        env: dict[str, str] | None = None,
        gpus_per_trial: float | None = None,
        gpus: int | None = None,
    ):
        cpus = os.cpu_count() or 1
        self.slots: list[str] | None = None
        if gpus_per_trial:
            n = _count_gpus() if gpus is None else gpus
            self.slots = gpu_slots(n, gpus_per_trial)
            if not self.slots:
                from .errors import UsageError

                raise UsageError(
                    f"--gpus-per-trial {gpus_per_trial:g} needs {math.ceil(gpus_per_trial)} GPU(s) "
                    f"per trial and this machine has {n}; leave the option out to run on the CPU"
                )
        default = len(self.slots) if self.slots else cpus
        self.max_parallel = max(1, min(max_parallel or default, len(self.slots) if self.slots else 10**9))
        self.retries = max(0, retries)
        # Split the cores between the trials: N workers each using every core thrash.
        self.threads_per_trial = threads_per_trial or max(1, cpus // self.max_parallel)
        self.env = dict(env or {})

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        t = str(self.threads_per_trial)
        # Set before torch loads in the child, so OpenMP/MKL pools start at the right size.
        env.setdefault("OMP_NUM_THREADS", t)
        env.setdefault("MKL_NUM_THREADS", t)
        return env

    def _start(
        self, trial: Trial, index: int, number: int, workdir: Path, env: dict, slot: int | None = None
    ) -> _Attempt:
        stem = f"t{index}-a{number}"
        result_path = workdir / f"{stem}.json"
        stderr_path = workdir / f"{stem}.stderr"
        err = open(stderr_path, "wb")
        job = {
            "config": trial.config,
            "runs_dir": str(trial.runs_dir),
            "result_path": str(result_path),
            "threads": self.threads_per_trial,
            "driver": os.getpid(),  # the worker stops when this process is gone
        }
        if slot is not None:
            env = {**env, "CUDA_VISIBLE_DEVICES": self.slots[slot]}
        # A new session: the terminal's Ctrl-C reaches only the parent, which stops the
        # children itself (once, in order) instead of each getting a second SIGINT mid-cleanup.
        proc = subprocess.Popen(
            [sys.executable, "-m", "dlx.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            start_new_session=True,
        )
        try:
            proc.stdin.write(json.dumps(job).encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the child died at once; its exit code tells the rest
        return _Attempt(index, number, proc, result_path, stderr_path, err, slot)

    def _finish(self, trial: Trial, att: _Attempt, code: int) -> TrialResult | None:
        """The attempt's TrialResult, or None when it crashed and should be retried."""
        att.stderr_file.close()
        data = None
        if att.result_path.is_file():
            try:
                data = json.loads(att.result_path.read_text())
            except (OSError, json.JSONDecodeError):
                data = None
        if data is not None and code in (0, 1, 2):
            run_path = Path(data["run_path"]) if data.get("run_path") else None
            return TrialResult(
                id=trial.id,
                status=data["status"],
                run_path=run_path,
                summary=data.get("summary"),
                metrics=data.get("metrics"),
                attempts=att.number,
                error=data.get("error"),
                started=data.get("started"),
                ended=data.get("ended"),
            )
        if att.number <= self.retries:
            return None
        why = f"signal {-code}" if code < 0 else f"exit code {code}"
        if data is None:
            why += ", no result written"
        tail = _tail(att.stderr_path)
        error = f"worker process died ({why}) on all {att.number} attempts" + (f"; stderr:\n{tail}" if tail else "")
        return TrialResult(
            id=trial.id, status="crashed", run_path=None, summary=None, metrics=None, attempts=att.number, error=error
        )

    def run(self, trials: Iterable[Trial], on_result: Callable[[TrialResult], Any] | None = None) -> list[TrialResult]:
        """Run every trial; results in trial order, on_result(result) called as each finishes.

        Trials are pulled from the iterable one at a time, only when a slot is free.
        """
        queue = TrialQueue(trials)
        pulled = queue.pulled
        results: dict[int, TrialResult] = {}
        running: list[_Attempt] = []
        free = list(range(len(self.slots))) if self.slots else []
        env = self._child_env()
        remove_stale_workdirs()
        with (
            tempfile.TemporaryDirectory(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-") as tmp,
            stop_signals_raise_keyboard_interrupt(),
        ):
            workdir = Path(tmp)
            try:
                while True:
                    while len(running) < self.max_parallel:
                        nxt = queue.next()
                        if nxt is None:
                            break
                        i, n = nxt
                        slot = free.pop(0) if self.slots else None
                        running.append(self._start(pulled[i], i, n, workdir, env, slot))
                    if not running:
                        break
                    time.sleep(POLL_S)
                    for att in list(running):
                        code = att.proc.poll()
                        if code is None:
                            continue
                        running.remove(att)
                        if att.slot is not None:
                            free.append(att.slot)
                        res = self._finish(pulled[att.index], att, code)
                        if res is None:
                            queue.retry(att.index, att.number + 1)
                            continue
                        results[att.index] = res
                        if on_result is not None:
                            on_result(res)
            except BaseException:
                self._stop(running)
                raise
        return [results[i] for i in range(len(pulled))]

    @staticmethod
    def _stop(running: list[_Attempt], grace_s: float = 5.0) -> None:
        """SIGINT every child (its run ends as interrupted), then kill what is left after grace_s."""
        for att in running:
            if att.proc.poll() is None:
                try:
                    att.proc.send_signal(signal.SIGINT)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace_s
        try:
            for att in running:
                try:
                    att.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: stop waiting, kill the rest now
        for att in running:
            if att.proc.poll() is None:
                att.proc.kill()
                att.proc.wait()
            if att.stderr_file is not None and not att.stderr_file.closed:
                att.stderr_file.close()

"""Executors run trials (config dicts) as ordinary dlx train runs; compare and sweep use them.

LocalExecutor starts one fresh `python -m dlx.worker` process per trial attempt (never a
fork of a process holding torch state), at most max_parallel at once, and retries
attempts whose process died. A retry starts a new run folder: the dead attempt's folder
(if it got that far) stays behind with meta status "running" (killed) or "failed".
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

STATUSES = ("completed", "diverged", "interrupted", "failed", "config_error", "crashed")
POLL_S = 0.05
STDERR_TAIL = 2000


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


@dataclass
class _Attempt:
    index: int  # position in the trial list
    number: int  # 1-based attempt number
    proc: subprocess.Popen
    result_path: Path
    stderr_path: Path
    stderr_file: Any = field(repr=False, default=None)


def _tail(path: Path, n: int = STDERR_TAIL) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-n:].strip()


class LocalExecutor:
    """Runs trials in parallel child processes on this machine."""

    def __init__(self, max_parallel: int | None = None, retries: int = 2,
                 threads_per_trial: int | None = None, env: dict[str, str] | None = None):
        cpus = os.cpu_count() or 1
        self.max_parallel = max(1, max_parallel or cpus)
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

    def _start(self, trial: Trial, index: int, number: int, workdir: Path, env: dict) -> _Attempt:
        stem = f"t{index}-a{number}"
        result_path = workdir / f"{stem}.json"
        stderr_path = workdir / f"{stem}.stderr"
        err = open(stderr_path, "wb")
        job = {"config": trial.config, "runs_dir": str(trial.runs_dir),
               "result_path": str(result_path), "threads": self.threads_per_trial}
        # A new session: the terminal's Ctrl-C reaches only the parent, which stops the
        # children itself (once, in order) instead of each getting a second SIGINT mid-cleanup.
        proc = subprocess.Popen([sys.executable, "-m", "dlx.worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=err, env=env,
                                start_new_session=True)
        try:
            proc.stdin.write(json.dumps(job).encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the child died at once; its exit code tells the rest
        return _Attempt(index, number, proc, result_path, stderr_path, err)

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
            return TrialResult(id=trial.id, status=data["status"], run_path=run_path,
                               summary=data.get("summary"), metrics=data.get("metrics"),
                               attempts=att.number, error=data.get("error"),
                               started=data.get("started"), ended=data.get("ended"))
        if att.number <= self.retries:
            return None
        why = f"signal {-code}" if code < 0 else f"exit code {code}"
        if data is None:
            why += ", no result written"
        tail = _tail(att.stderr_path)
        error = f"worker process died ({why}) on all {att.number} attempts" + (f"; stderr:\n{tail}" if tail else "")
        return TrialResult(id=trial.id, status="crashed", run_path=None, summary=None, metrics=None,
                           attempts=att.number, error=error)

    def run(self, trials: list[Trial], on_result: Callable[[TrialResult], Any] | None = None) -> list[TrialResult]:
        """Run every trial; results in trial order, on_result(result) called as each finishes."""
        ids = [t.id for t in trials]
        if len(set(ids)) != len(ids):
            raise ValueError("trial ids must be unique within a batch")
        results: list[TrialResult | None] = [None] * len(trials)
        queue: list[tuple[int, int]] = [(i, 1) for i in range(len(trials))]  # (trial index, attempt)
        queue.reverse()  # pop() from the end takes trials in order
        running: list[_Attempt] = []
        env = self._child_env()
        with tempfile.TemporaryDirectory(prefix="dlx-exec-") as tmp:
            workdir = Path(tmp)
            try:
                while queue or running:
                    while queue and len(running) < self.max_parallel:
                        i, n = queue.pop()
                        running.append(self._start(trials[i], i, n, workdir, env))
                    time.sleep(POLL_S)
                    for att in list(running):
                        code = att.proc.poll()
                        if code is None:
                            continue
                        running.remove(att)
                        res = self._finish(trials[att.index], att, code)
                        if res is None:
                            queue.append((att.index, att.number + 1))  # retried next
                            continue
                        results[att.index] = res
                        if on_result is not None:
                            on_result(res)
            except BaseException:
                self._stop(running)
                raise
        return results  # type: ignore[return-value]

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

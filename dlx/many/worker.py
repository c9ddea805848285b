"""Trials in their own process: `python -m dlx.many.worker` reads a job as JSON on stdin, runs
it and exits; `python -m dlx.many.worker --serve` (a warm worker) reads one job per line and
answers each with a line {"code": N} on stdout once its result is written, until EOF.

A job (stdin): {"trials": [{"config": {...}, "runs_dir": "...", "resume": "RUN"?}, ...],
  "result_path": "...", "threads": N, "driver": PID, "stack": true}; several trials are trained
  together as one stacked model where dlx.many.stacking can (else one after another). A trial with
  "resume" continues that stopped run folder from its checkpoint, alone (a sweep's --resume).
Output: {"results": [one per trial], "pid"} written atomically to result_path, each result
  {"status", "run_path", "summary", "metrics", "error", "started", "ended", "pid",
   "cuda_visible_devices"}, and "note" where a run to resume could not be and started over
Exit codes (a warm worker's per-job code is its line's): 0 a finished run (completed / diverged / interrupted), 2 a ConfigError /
DlxError (the user's mistake: retrying cannot help), 1 a Python error in training
(status "failed", the traceback in "error"); anything else (a signal, os._exit) is
a crash that the executor may retry. A stop signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT)
during training is no crash: the run ends interrupted, checkpointed, and the exit is 0.
A worker whose driver died (killed outright) stops the same way, writes no result and
removes the driver's temp folder (see _stop_when_orphaned).

Test hook: if DLX_TEST_CRASH_ONCE names a file that does not exist yet, the worker
creates it and dies with os._exit(137) before training, so exactly one attempt
crashes (tests use it to check the executor's retries; never set it otherwise). A warm
worker checks it before each job. A warm worker whose job was stopped by a signal exits
after reporting it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dlx.many.jobs import run_job

# How often a worker checks that its driver is alive, and how long it may take to stop
# (finish the step, checkpoint) once the driver is gone before it exits regardless.
ORPHAN_POLL_S = 0.2
ORPHAN_GRACE_S = 60.0
STARTED = time.time()  # before the heavy imports, so concurrency checks see the whole process


def _write_result(path: Path, result: dict[str, Any]) -> None:
    from dlx.records.folders import write_json

    # write_json writes a temp file and os.replace()s it: a killed worker leaves no half result.
    write_json(Path(path), result)


def _crash_once_hook() -> None:
    flag = os.environ.get("DLX_TEST_CRASH_ONCE")
    if not flag:
        return
    try:  # O_EXCL: of workers starting jobs at the same moment, exactly one dies
        fd = os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os._exit(137)


def _stop_when_orphaned(parent: int, grace_s: float = ORPHAN_GRACE_S) -> threading.Event:
    """Workers die with their driver. A worker runs in its own session (the executor's
    choice, so a terminal's Ctrl-C reaches only the driver), so a driver killed outright
    (SIGKILL, the OOM killer) stops nobody: the worker is re-parented. A daemon thread sees
    that and stops the worker the way SIGTERM does (the step ends, the run is checkpointed
    and `interrupted`, resumable); past grace_s it exits at once. The returned event is set
    once the driver is gone: nobody will read this worker's result any more."""
    gone = threading.Event()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_POLL_S)
        gone.set()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(1)

    threading.Thread(target=watch, name="dlx-orphan-watch", daemon=True).start()
    return gone


def _stop_signals_interrupt() -> None:
    """Until training installs its own handlers (a stop then ends the run after the step), a
    stop signal ends the worker by KeyboardInterrupt, so main() still cleans up after it.
    The executor stops a worker with SIGINT; a parent started with SIGINT ignored (a shell
    script's background job) passes that on through exec, and the worker takes it back."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.default_int_handler)


def run_trials(job: dict, started: float | None = None, loops: list | None = None) -> tuple[list[dict[str, Any]], int]:
    """A job's trials in this process: one result each (run_job's), and the job's exit code
    (the worst of 0, 2, 1). With "stack" (the default) trials dlx.many.stacking can train together
    are; the rest run one after another. loops: as run_stacked's (the driver's own stack)."""
    trials = job.get("trials") or [{"config": job["config"], "runs_dir": job["runs_dir"]}]
    # A trial resuming a stopped run continues its own checkpoint: never in a stack.
    if len(trials) > 1 and job.get("stack", True) and not any(t.get("resume") for t in trials):
        from dlx.many.stacking import run_stacked

        started = time.time() if started is None else started
        if job.get("threads"):
            import torch

            torch.set_num_threads(int(job["threads"]))
        results = run_stacked([t["config"] for t in trials], [t["runs_dir"] for t in trials], started, loops)
        codes = [{"config_error": 2, "failed": 1}.get(r["status"], 0) for r in results]
        return results, (1 if 1 in codes else max(codes))
    out, code = [], 0
    for t in trials:
        result, c = run_job(t["config"], t["runs_dir"], job.get("threads"), started=started, resume=t.get("resume"))
        out.append(result)
        code = 1 if 1 in (code, c) else max(code, c)
        started = None
        if result["status"] == "interrupted":
            break  # a stop signal: the rest of the job is not started
    return out, code


def _stopped(results: list[dict[str, Any]]) -> bool:
    return any(r["status"] == "interrupted" for r in results)


def main() -> int:
    _stop_signals_interrupt()
    from dlx.core import version

    version.OWNS_PROCESS = True  # a worker never compiles: no torch._dynamo import (see optim.py)
    serve = "--serve" in sys.argv[1:]
    if serve:
        # A warm worker may start before its first job is ready: load what every job needs now
        # (torch above all: dlx.api alone loads it lazily, and a first job then paid 2 s for it).
        from dlx import api  # noqa: F401
        from dlx.config import loader  # noqa: F401
        from dlx.many import stacking  # noqa: F401
        from dlx.records import recording  # noqa: F401
        from dlx.run import trainer  # noqa: F401
    lines = iter(sys.stdin.readline, "") if serve else iter([sys.stdin.read()])
    orphaned: threading.Event | None = None
    result_path: Path | None = None
    code = 0
    try:
        for line in lines:
            job = json.loads(line)
            if orphaned is None:
                # The driver names itself: a driver that died before this line is noticed too.
                orphaned = _stop_when_orphaned(int(job.get("driver") or os.getppid()))
            result_path = Path(job["result_path"])
            _crash_once_hook()
            # A fresh worker's clock starts with the process (imports included), a warm
            # worker's (started early, idle until its first job) when each job arrives.
            results, code = run_trials(job, started=time.time() if serve else STARTED)
            if orphaned.is_set():
                break
            _write_result(result_path, {"results": results, "pid": os.getpid()})
            if serve:
                # One line per job: the executor waits on these (and on EOF: a dead worker).
                sys.stdout.write(json.dumps({"code": code}) + "\n")
                sys.stdout.flush()
                if _stopped(results):
                    break  # stopped by a signal: this worker's work is over
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    finally:
        if orphaned is not None and orphaned.is_set() and result_path is not None:
            # The driver died without cleaning up: its temp folder (the results of every
            # attempt, this one's stderr) is the last worker's to remove.
            shutil.rmtree(result_path.parent, ignore_errors=True)
    return code


if __name__ == "__main__":
    code = main()
    if "--serve" in sys.argv[1:]:
        # Every result is written and reported: skip the interpreter's teardown of torch
        # (about a second), which the executor would otherwise wait for at the end.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)

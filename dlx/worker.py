"""One trial in its own process: `python -m dlx.worker` reads a trial as JSON on stdin.

Input (stdin): {"config": {...}, "runs_dir": "...", "result_path": "...", "threads": N}
Output: a JSON result written atomically to result_path:
  {"status", "run_path", "summary", "metrics", "error", "started", "ended", "pid",
   "cuda_visible_devices"}
Exit codes: 0 a finished run (completed / diverged / interrupted), 2 a ConfigError /
DlxError (the user's mistake: retrying cannot help), 1 a Python error in training
(status "failed", the traceback in "error"); anything else (a signal, os._exit) is
a crash that the executor may retry. A stop signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT)
during training is no crash: the run ends interrupted, checkpointed, and the exit is 0.

Test hook: if DLX_TEST_CRASH_ONCE names a file that does not exist yet, the worker
creates it and dies with os._exit(137) before training, so exactly one attempt
crashes (tests use it to check the executor's retries; never set it otherwise).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

STARTED = time.time()  # before the heavy imports, so concurrency checks see the whole process


def _write_result(path: Path, result: dict[str, Any]) -> None:
    from .folders import write_json

    # write_json writes a temp file and os.replace()s it: a killed worker leaves no half result.
    write_json(Path(path), result)


def _crash_once_hook() -> None:
    flag = os.environ.get("DLX_TEST_CRASH_ONCE")
    if flag and not os.path.exists(flag):
        Path(flag).write_text(str(os.getpid()))
        os._exit(137)


def run_job(
    config: dict, runs_dir: str | Path, threads: int | None = None, started: float | None = None
) -> tuple[dict[str, Any], int]:
    """Train one config in this process: (result dict, exit code), as described above.

    The Ray executor calls this inside its tasks; `main` wraps it for a subprocess.
    """
    started = time.time() if started is None else started
    import torch

    if threads:
        torch.set_num_threads(int(threads))

    from .api import train
    from .errors import DlxError

    result: dict[str, Any] = {
        "status": None,
        "run_path": None,
        "summary": None,
        "metrics": None,
        "error": None,
        "started": started,
        "ended": None,
        "pid": os.getpid(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    code = 0
    try:
        r = train(config, runs_dir=runs_dir, quiet=True)
        result.update(status=r.status, run_path=str(r.path) if r.path else None, summary=r.summary, metrics=r.metrics)
    except DlxError as e:
        # ConfigError and the like: a sentence for the user, same as the CLI prints.
        result.update(status="config_error", error=str(e))
        code = 2
    except Exception as e:  # a bug or a runtime error in training: keep the traceback
        path = getattr(e, "dlx_run_path", None)
        result.update(
            status="failed",
            run_path=str(path) if path else None,
            error=f"{type(e).__name__}: {e}\n{traceback.format_exc()}",
        )
        code = 1
    result["ended"] = time.time()
    return result, code


def main() -> int:
    # The executor stops a worker with SIGINT (the worker's own session: no terminal reaches
    # it). A parent started with SIGINT ignored (a shell script's background job) passes
    # that on through exec; the worker takes it back, so its run still ends interrupted.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    job = json.loads(sys.stdin.read())
    _crash_once_hook()
    result, code = run_job(job["config"], job["runs_dir"], job.get("threads"), started=STARTED)
    _write_result(Path(job["result_path"]), result)
    return code


if __name__ == "__main__":
    sys.exit(main())

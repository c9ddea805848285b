"""One trial trained in this process, as a job's result (the format in dlx.many.worker's
docstring): what a worker process, a stack's lone trials and a Ray task all run."""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path
from typing import Any


def empty_result(started: float) -> dict[str, Any]:
    """A trial's result with nothing filled in yet but its start (the format above)."""
    return {
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


def run_job(
    config: dict,
    runs_dir: str | Path,
    threads: int | None = None,
    started: float | None = None,
    resume: str | Path | None = None,
) -> tuple[dict[str, Any], int]:
    """Train one config in this process: (result dict, exit code), as described above.

    resume: a stopped run folder of this config to continue from its checkpoint (as `dlx
    train --resume` does) instead of starting over; if it cannot be resumed (a damaged
    checkpoint), the config starts over in runs_dir. The Ray executor calls this inside its
    tasks; `main` wraps it for a subprocess.
    """
    started = time.time() if started is None else started
    import torch

    if threads:
        torch.set_num_threads(int(threads))

    from dlx.api import train
    from dlx.core.errors import DlxError

    result = empty_result(started)
    code = 0
    try:
        r = None
        if resume is not None:
            try:
                r = train(resume=resume, runs_dir=runs_dir, quiet=True)
            except DlxError as e:
                if getattr(e, "dlx_run_path", None) or getattr(e.__cause__, "dlx_run_path", None):
                    raise  # it resumed, then failed in training (out of memory): that is its result
                # Refused before its first step (the folder changed nothing): start over.
                result["note"] = f"could not resume {resume} ({e}); started over"
        if r is None:
            r = train(config, runs_dir=runs_dir, quiet=True)
        result.update(status=r.status, run_path=str(r.path) if r.path else None, summary=r.summary, metrics=r.metrics)
    except DlxError as e:
        # ConfigError and the like: a sentence for the user, each problem on one line.
        problems = getattr(e, "problems", None)
        result.update(status="config_error", error="\n".join(map(str, problems)) if problems else str(e))
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

"""`dlx sweep` and `dlx.sweep()`: a search over config keys, each trial an ordinary dlx train run,
run through an executor (LocalExecutor, RayExecutor, or anything with run(trials, on_result)).
The spec: dlx.many.sweep.spec; the sweep folder and its Optuna study: dlx.many.sweep.folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

from dlx.core.errors import DlxError, UsageError
from dlx.many.sweep.folder import Sweep, SweepTrial
from dlx.many.sweep.spec import plan
from dlx.records.folders import find_sweep


def run_sweep(sweep: Sweep, executor: Any, on_row: Callable[[dict], Any] | None = None) -> Sweep:
    """Run every trial the sweep still needs through the executor.

    KeyboardInterrupt propagates (after the executor stopped its trials); the sweep
    folder then says `interrupted` and `dlx sweep --resume` finishes it.
    """
    from dlx.many.executors import Trial

    sweep.on_row = on_row
    by_id: dict[str, SweepTrial] = {}
    if sweep.plan.spec.strategy == "tpe" and getattr(executor, "stack", False):
        # A stack is asked for at once, before any of its results: TPE learns from each
        # result before its next point, so its trials run alone.
        executor.stack = False
        note = getattr(executor, "_note", None)
        if note is not None:
            note("not stacked: a tpe search picks each point from the results before it")

    def trials() -> Iterator[Trial]:
        for st in sweep.pending():
            tid = f"trial-{st.index:04d}"
            by_id[tid] = st
            yield Trial(id=tid, config=st.config, runs_dir=sweep.staging(st.index), resume=st.resume)

    from dlx.records.folders import DISK_FULL

    try:
        executor.run(trials(), on_result=lambda r: sweep.record(by_id[r.id], r))
    except OSError as e:
        sweep.finish("interrupted")
        if e.errno not in DISK_FULL:
            raise
        # The sweep's own files could not be written: its trials were stopped (resumable).
        raise DlxError(
            f"{e.strerror or e} writing {e.filename or sweep.folder}: the sweep stopped after {sweep.done} of "
            f"{sweep.plan.total} trials. Free some space, then finish it with: dlx sweep --resume {sweep.folder}"
        ) from None
    except BaseException:
        sweep.finish("interrupted")
        raise
    sweep.finish("completed" if sweep.done >= sweep.plan.total else "interrupted")
    return sweep


def sweep(
    spec: str | Path | None = None,
    sets: list[str] | tuple[str, ...] = (),
    runs_dir: str | Path = "runs",
    executor: Any = None,
    resume: str | Path | None = None,
    on_row: Callable[[dict], Any] | None = None,
) -> Sweep:
    """The Python API of `dlx sweep`: run a spec (or --resume a sweep) and return the Sweep.

        sw = dlx.sweep("configs/sweep_optimizers.yaml", ["train.epochs=5"], executor=LocalExecutor(max_parallel=2))
        sw.best(), sw.sorted_rows(), sw.folder

    executor: a LocalExecutor (the default, one trial per CPU core), a RayExecutor, or
    anything with the same run(trials, on_result) method.
    """
    if (spec is None) == (resume is None):
        raise UsageError("give a sweep spec or resume=SWEEP (a sweep folder, its id, or 'last'), not both")
    if executor is None:
        from dlx.many.executors import LocalExecutor

        executor = LocalExecutor()
    sw = (
        Sweep.open(find_sweep(resume, Path(runs_dir)))
        if resume is not None
        else Sweep.create(plan(spec, sets), Path(runs_dir))
    )
    return run_sweep(sw, executor, on_row=on_row)

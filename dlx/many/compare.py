"""dlx compare: one setup across variants and seeds, every training a normal run folder,
aggregated over seeds into a Comparison (the engine of dlx.compare and of dlx fix's trials).
Trials run on the local executor (stacked where they can, warm workers otherwise)."""

from __future__ import annotations

import contextlib
import math
import threading
from pathlib import Path
from typing import Iterable

from dlx.core.errors import DlxError, UsageError
from dlx.records.layout import META_FILE
from dlx.results import Run, load_run


def compare(
    config: str | Path,
    *,
    optimizers: Iterable[str] | None = None,
    over: Iterable[str] = (),
    seeds: int = 3,
    target: str | None = None,
    overrides: Iterable[str] = (),
    runs_dir: str | Path = "runs",
    max_parallel: int | None = None,
    retries: int = 2,
    stack: bool = True,
    warm: bool = True,
    figure: bool = True,
    quiet: bool | None = None,
    on_result=None,
    ensemble: bool = False,
    executor: str = "local",
    address: str | None = None,
):
    """Run one setup across optimizers (each with its usual hyperparameters) and/or any keys
    (over=["activation=tanh,relu", "optimizer.lr=0.01,0.1"]: variants are the product),
    `seeds` runs each (seed, seed+1, ...), every run a normal run folder in runs_dir, at most
    max_parallel at once (default: the CPU cores). target="test_acc=0.9" also counts steps to
    reach it. stack: variants that can (dlx.many.stacking) train together as one stacked model;
    warm: worker processes run trial after trial (False: a fresh process per trial);
    executor="ray" runs the trials (stacks as one task each) on the Ray cluster at address.
    Every variant's config is validated before the first run. Returns a Comparison:
    .rows (mean and sd over seeds), .table(), .plot(), .runs; with figure=True the curves are
    also saved beside the runs (.figure_path); ensemble=True also averages each variant's
    seed runs' predictions (dlx.many.ensemble: .ensembles[label]); the comparison itself is saved as
    compare-NAME-TIME.json beside them (.record_path: `dlx report` makes its page)."""
    from dlx.many.variants import make_variants

    if seeds < 1:
        raise UsageError(f"seeds must be at least 1, got {seeds}")
    over, optimizers = list(over), list(optimizers) if optimizers else None
    # How many trials, counted before torch loads (the values' commas), so the executor can
    # decide whether to start workers while the configs are built.
    expected = len(optimizers or [None]) * math.prod(len(o.partition("=")[2].split(",")) for o in over) * seeds
    return run_variants(
        config,
        lambda: make_variants(optimizers, over, seeds),
        expected=expected,
        seeds=seeds,
        target=target,
        overrides=overrides,
        runs_dir=runs_dir,
        max_parallel=max_parallel,
        retries=retries,
        stack=stack,
        warm=warm,
        figure=figure,
        quiet=quiet,
        on_result=on_result,
        ensemble=ensemble,
        executor=executor,
        address=address,
    )


def run_variants(
    config: str | Path,
    variants,
    *,
    seeds: int = 3,
    target: str | None = None,
    overrides: Iterable[str] = (),
    runs_dir: str | Path = "runs",
    max_parallel: int | None = None,
    retries: int = 2,
    stack: bool = True,
    warm: bool = True,
    figure: bool = True,
    quiet: bool | None = None,
    on_result=None,
    ensemble: bool = False,
    what: str = "compare",
    expected: int | None = None,
    first_seed: int | None = None,
    name: str | None = None,
    executor: str = "local",
    address: str | None = None,
):
    """compare()'s engine, for any list of variants (dlx.many.variants.Variant: a label and its --set
    overrides), or a function that makes them (called while the workers start): each variant
    `seeds` times, aggregated over seeds into a Comparison (`dlx fix` runs its remedies here).
    expected: how many trials that will be, if known before the variants are made."""
    import datetime as dt

    from dlx.core import version
    from dlx.many.backends import build_executor
    from dlx.many.executors import Trial
    from dlx.many.variants import aggregate, parse_target, trial_configs
    from dlx.results import Comparison
    from dlx.views.progress import TrialsProgress

    goal = parse_target(target)
    # The dlx command trains one stack in its own process (it has imported torch to check the
    # configs anyway); a library caller's process and thread count are left alone.
    executor = build_executor(
        executor, max_parallel, retries, None, None, address, stack, warm, in_driver=version.OWNS_PROCESS
    )
    # Local workers import torch while the variants' configs are built and checked here.
    if hasattr(executor, "start_workers"):
        executor.start_workers(expected)
    try:
        variants = variants() if callable(variants) else list(variants)
        configs = trial_configs(config, list(overrides), variants, seeds, first_seed)
    except BaseException:
        stop_executor(executor)
        raise
    runs_dir = Path(runs_dir)
    trials = [Trial(id=f"t{i:03d}", config=c, runs_dir=runs_dir) for i, (_, _, c) in enumerate(configs)]
    progress = TrialsProgress(len(trials), what, quiet)
    tally = executor.tally

    def note(text: str) -> None:
        # The first planning window's stacking lines as they come; later windows' are
        # summed into one line at the end (StackTally), not repeated 16 times at 1000 seeds.
        if not (text.startswith(tally.PREFIXES) and tally.plans > 1):
            progress.note(text)

    executor.on_note = note
    if figure:
        # matplotlib loads in the background while the trials train (the driver only waits).
        threading.Thread(target=preload_plots, daemon=True).start()

    def done(result):
        progress.advance()
        if on_result is not None:
            on_result(result)

    try:
        results = executor.run(trials, on_result=done)
        if tally.plans > 1:  # planned in several windows: the whole count, once
            for line in tally.notes():
                progress.note(line)
    finally:
        stop_executor(executor)
        progress.close()
    by_variant: dict[str, list] = {}
    for (v, _, _), r in zip(configs, results):
        by_variant.setdefault(v.label, []).append(r)
    rows = [aggregate(label, rs, goal) for label, rs in by_variant.items()]
    runs_of = {label: [trial_run(r) for r in rs] for label, rs in by_variant.items()}
    cmp = Comparison(
        config=str(config),
        seeds=seeds,
        target=goal,
        rows=rows,
        runs=runs_of,
        failed=sum(r.status in ("config_error", "crashed", "failed") for r in results),
        # What was stacked, counted over every planning window; other notes as said.
        notes=tally.notes() + [n for n in executor.notes if not n.startswith(tally.PREFIXES)],
    )
    if ensemble:
        from dlx.many.ensemble import ensemble as average

        for label, rs in runs_of.items():
            paths = [r.path for r in rs if r.path is not None and r.status == "completed"]
            try:
                cmp.ensembles[label] = average(paths)
            except DlxError as e:
                cmp.ensembles[label] = {"error": str(e)}
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    title = f"dlx {what} {name or Path(config).name}"
    name = name or Path(config).stem
    if figure and any(r.metrics for rs in runs_of.values() for r in rs):
        from dlx.many.variants import figure_label
        from dlx.views.plots import compare_figure

        first = {}
        for v, _, c in configs:
            first.setdefault(v.label, c)
        groups = {
            figure_label(label, first[label]): [r.metrics for r in rs if r.metrics] for label, rs in runs_of.items()
        }
        cmp.figure_path = compare_figure(groups, runs_dir / f"compare-{name}-{stamp}.png", title=title)
    from dlx.records.folders import write_compare_record

    # The comparison on disk (what `dlx report` draws a compare's page from).
    cmp.record_path = write_compare_record(runs_dir, f"{name}-{stamp}", cmp.as_dict())
    return cmp


def stop_executor(executor) -> None:
    """Local workers stopped, or a Ray connection this compare opened closed."""
    if hasattr(executor, "stop_workers"):
        executor.stop_workers()
    elif hasattr(executor, "close"):
        executor.close()


def preload_plots() -> None:
    with contextlib.suppress(Exception):
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.figure  # noqa: F401
        import matplotlib.lines  # noqa: F401


def trial_run(result) -> Run:
    """An executor's trial result as a Run (its series read from its folder when it has one)."""
    if result.run_path and Path(result.run_path, META_FILE).is_file():
        try:
            return load_run(result.run_path)
        except DlxError:
            pass
    return Run(
        path=Path(result.run_path) if result.run_path else None,
        status=result.status,
        summary=result.summary or {},
        metrics=result.metrics or [],
    )

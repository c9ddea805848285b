"""The Python API: `dlx.train(config, overrides)` runs one experiment into a run folder.

import dlx
r = dlx.train("configs/quickstart.yaml", ["optimizer.lr=0.05"])   # or dlx.train("quickstart", ...)
r.path, r.status, r.summary["final"]["test_acc"], r.metrics[-1]
dlx.train(resume="last")   # continue an interrupted run from its checkpoint.pt
"""

from __future__ import annotations

import contextlib
import threading
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from dlx.core.errors import DlxError, UsageError
from dlx.records.folders import RunFolder, now
from dlx.results import Run, RunResult  # noqa: F401  (RunResult: the older name of Run)

if TYPE_CHECKING:
    from dlx.config.loader import Config
    from dlx.records.recording import History

# The config schema, the recorder and the trainer import torch (~1.5 s): they are imported
# inside the functions that train, so load_run(), runs() and `dlx runs` / `dlx show` start
# without it.


def check(config: str | Path | dict | Config, overrides: Iterable[str] = ()) -> Config:
    """Everything `train` checks before its first step, without training or writing.

    Validates the config, reads the data and builds the model, optimizer and init
    (a weights file must fit the model, an .npz must hold all four arrays). Read-only:
    data still to be downloaded is not fetched (training fetches it), no folder is made.
    """
    from dlx.config.loader import load_config
    from dlx.core.errors import ConfigError, SpecError
    from dlx.run.trainer import Trainer

    cfg = load_config(config, list(overrides))
    try:
        data = cfg.data.peek(cfg.seed)
    except SpecError as e:  # as Trainer reports it: a config problem with its YAML line
        located = cfg.problem(e.path, e.message)
        raise ConfigError([located], located.source if located.line else None) from None
    Trainer(cfg, data=data)
    return cfg


def out_of_memory_message(e: BaseException, trainer, folder: RunFolder | None) -> str | None:
    """What to tell a person whose run ran out of (GPU) memory; None for any other error."""
    import torch

    text = str(e)
    if not (
        isinstance(e, torch.cuda.OutOfMemoryError)
        or (isinstance(e, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text))
    ):
        return None
    bs = trainer.batch_size
    params = sum(p.numel() for p in trainer.model.parameters())
    msg = (
        f"out of memory on {trainer.device} at step {trainer.step} (train.batch_size {bs}, "
        f"{params:,} parameters): {text.strip().splitlines()[0][:200] if text.strip() else type(e).__name__}. "
        f"Try a smaller batch (--set train.batch_size={max(bs // 2, 1)}) or a smaller model "
        f"(fewer or narrower layers)."
    )
    if folder is not None and folder.meta:
        msg += f" Every interval logged before is kept in {folder.path} (status failed)."
    return msg


def train(
    config: str | Path | dict | Config | None = None,
    overrides: Iterable[str] = (),
    *,
    runs_dir: str | Path = "runs",
    callbacks: Iterable[Any] = (),
    save: bool = True,
    resume: str | Path | None = None,
    quiet: bool | None = None,
) -> Run:
    """Train one config (a YAML path, an example's name, a dict or a Config) and return its Run.

    overrides are `key.path=value` strings, as with `dlx train --set`. With
    save=False nothing is written to disk. Raises ConfigError / DlxError for the
    user's mistakes; a run that diverges or is interrupted returns normally with
    that status.

    quiet: None (default) shows a live progress display and the verdict in Jupyter
    and nothing elsewhere; False shows them in a terminal too (on stderr); True never.

    resume=RUN (a run folder, its id or a unique part of it, or 'last') instead of a
    config continues an interrupted, killed or failed run from its checkpoint.pt, in
    its own folder and with its own config.yaml; on CPU it ends with exactly the
    numbers of a run that was never stopped.
    """
    from dlx.config.loader import load_config
    from dlx.records.recording import History, RunWriter, summarize
    from dlx.run.trainer import Trainer

    state = None
    if resume is not None:
        cfg, folder, hist, state = _resuming(resume, config, overrides, runs_dir, save)
        writer = RunWriter(folder, hist, resuming=True)
    else:
        if config is None:
            raise UsageError("give a config to train, or resume=RUN to continue a run")
        cfg = load_config(config, list(overrides))
        folder = RunFolder(Path(runs_dir), cfg.name) if save else None
        hist = History()
        writer = RunWriter(folder, hist) if folder else None
    from dlx.views.progress import default_progress

    shown = default_progress(quiet)
    cbs = [hist, *([writer] if writer else []), *shown, *callbacks]
    try:
        trainer = Trainer(cfg, callbacks=cbs, resuming=state is not None)
        if state is not None:
            try:
                trainer.load_state_dict(state)
            except DlxError:
                raise
            except Exception as e:  # shapes or keys that differ: the model code changed since
                raise DlxError(
                    f"{folder.path / 'checkpoint.pt'} does not fit the run built from its config.yaml "
                    f"({type(e).__name__}: {' '.join(str(e).split())[:300]}); it cannot be "
                    f"resumed"
                ) from None
    except BaseException:
        if state is not None:
            folder.close()  # a resume refused here changed nothing: let go of the run's lock
        raise
    try:
        outcome = trainer.run()
    except BaseException as e:
        oom = out_of_memory_message(e, trainer, folder)
        if folder is not None and folder.meta.get("status") == "running":
            status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            try:
                folder.update_meta(
                    status=status, ended=now(), reason=oom or f"{type(e).__name__}: {e}", error=traceback.format_exc()
                )
            except OSError:
                pass  # a full disk (often what failed the run): meta.json says `running`, read as stopped
            folder.close()  # always: a worker's next job must not find this run still locked
            e.dlx_run_path = folder.path  # type: ignore[attr-defined]  (for the CLI's message)
        if oom:
            raise DlxError(oom) from e  # the person's fix is a smaller batch, not a traceback
        raise
    from dlx.records.folders import jsonable

    summary = writer.summary if writer else summarize(trainer, hist, outcome, None)
    run = Run(
        path=folder.path if folder else None,
        status=outcome.status,
        summary=summary,
        metrics=hist.metrics,
        probes=jsonable(hist.probes),
        meta=dict(folder.meta) if folder else {},
        config=cfg.resolved(),
        instruments=hist.instruments,
    )
    for cb in shown:
        if hasattr(cb, "show_result"):
            cb.show_result(run)
    return run


def _without_new_defaults(now: Any, saved: Any) -> Any:
    """`now` less the keys a checkpoint from an older dlx lacks where they hold what changes
    nothing (null, none, off: data.imbalance, train.balance, an instruments section with
    every instrument off), so such a run still resumes."""
    if not isinstance(now, dict) or not isinstance(saved, dict):
        return now
    out = {}
    for k, v in now.items():
        if k not in saved and (
            v in (None, "none", False) or (isinstance(v, dict) and not any(x is True for x in v.values()))
        ):
            continue
        out[k] = _without_new_defaults(v, saved.get(k))
    return out


def load_run(run: str | Path, runs_dir: str | Path = "runs") -> Run:
    """A run from its folder (a path, a run id or a unique part of it, 'last', or
    SWEEP/trial-NNNN): the same Run that dlx.train returns, read from disk. Its status is
    the status now (a `running` run whose process is gone is `interrupted`)."""
    import yaml

    from dlx.records.folders import find_run
    from dlx.records.folders import load_run as read_run

    d = read_run(find_run(run, Path(runs_dir)))
    try:
        config = yaml.safe_load(d["config"]) or {}
    except yaml.YAMLError:
        config = {}
    return Run(
        path=d["path"],
        status=d["status"],
        summary=d["summary"] or {},
        metrics=d["metrics"],
        probes=d["probes"],
        meta=d["meta"],
        config=config if isinstance(config, dict) else {},
        problems=d["problems"],
        instruments=d["instruments"],
    )


RUN_SORT_KEYS = ("test_acc", "test_loss", "train_loss", "train_acc", "steps", "started")


def runs(
    runs_dir: str | Path = "runs", *, status: str | None = None, sort: str | None = None, sweep: str | None = None
):
    """Every run in runs_dir (or one sweep's trials), one row each: run_id, name, status,
    started, steps, final metrics, verdict (the root cause's kind), path. sort: a column
    (RUN_SORT_KEYS), best first (highest accuracy, lowest loss, most steps, newest last);
    rows without the value go last. Returns a RunList (.table(), .load(i); .skipped names
    the folders left out as unreadable, each with why)."""
    from dlx.core.registry import closest
    from dlx.records.folders import STATUSES, find_sweep, list_runs
    from dlx.results import RunList

    for value, valid, what in ((status, STATUSES, "status"), (sort, RUN_SORT_KEYS, "sort column")):
        if value is not None and value not in valid:
            hint = closest(value, list(valid))
            raise UsageError(
                f"{value!r} is not a {what}"
                + (f"; did you mean {hint!r}?" if hint else "")
                + f" (valid: {', '.join(valid)})"
            )
    where = find_sweep(sweep, Path(runs_dir)) / "trials" if sweep is not None else Path(runs_dir)
    skipped: list[str] = []
    rows = [r for r in list_runs(where, skipped) if status is None or r["status"] == status]
    if sort is not None:
        high = sort.endswith("acc") or sort == "steps"
        present = [r for r in rows if r.get(sort) is not None]
        present.sort(key=lambda r: r[sort], reverse=high and sort != "started")
        rows = present + [r for r in rows if r.get(sort) is None]
    out = RunList(rows)
    out.where = where  # type: ignore[attr-defined]  (the folder listed, for messages)
    out.skipped = skipped  # folders that are not readable runs, each with why
    return out


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
):
    """Run one setup across optimizers (each with its usual hyperparameters) and/or any keys
    (over=["activation=tanh,relu", "optimizer.lr=0.01,0.1"]: variants are the product),
    `seeds` runs each (seed, seed+1, ...), every run a normal run folder in runs_dir, at most
    max_parallel at once (default: the CPU cores). target="test_acc=0.9" also counts steps to
    reach it. stack: variants that can (dlx.many.stacking) train together as one stacked model;
    warm: worker processes run trial after trial (False: a fresh process per trial). Every variant's config is validated before the first run. Returns a Comparison:
    .rows (mean and sd over seeds), .table(), .plot(), .runs; with figure=True the curves are
    also saved beside the runs (.figure_path); ensemble=True also averages each variant's
    seed runs' predictions (dlx.many.ensemble: .ensembles[label]); the comparison itself is saved as
    compare-NAME-TIME.json beside them (.record_path: `dlx report` makes its page)."""
    from dlx.many.variants import make_variants

    if seeds < 1:
        raise UsageError(f"seeds must be at least 1, got {seeds}")
    return run_variants(
        config,
        lambda: make_variants(list(optimizers) if optimizers else None, list(over)),
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
    first_seed: int | None = None,
    name: str | None = None,
):
    """compare()'s engine, for any list of variants (dlx.many.variants.Variant: a label and its --set
    overrides), or a function that makes them (called while the workers start): each variant
    `seeds` times, aggregated over seeds into a Comparison (`dlx fix` runs its remedies here)."""
    import datetime as dt

    from dlx.many.executors import LocalExecutor, Trial
    from dlx.many.variants import aggregate, parse_target, trial_configs
    from dlx.results import Comparison
    from dlx.views.progress import TrialsProgress

    goal = parse_target(target)
    executor = LocalExecutor(max_parallel=max_parallel, retries=retries, stack=stack, warm=warm)
    # The workers import torch while the variants' configs are built and checked here.
    executor.start_workers()
    try:
        variants = variants() if callable(variants) else list(variants)
        configs = trial_configs(config, list(overrides), variants, seeds, first_seed)
    except BaseException:
        executor.stop_workers()
        raise
    runs_dir = Path(runs_dir)
    trials = [Trial(id=f"t{i:03d}", config=c, runs_dir=runs_dir) for i, (_, _, c) in enumerate(configs)]
    progress = TrialsProgress(len(trials), what, quiet)
    executor.on_note = progress.note
    if figure:
        # matplotlib loads in the background while the trials train (the driver only waits).
        threading.Thread(target=_preload_plots, daemon=True).start()

    def done(result):
        progress.advance()
        if on_result is not None:
            on_result(result)

    try:
        results = executor.run(trials, on_result=done)
    finally:
        executor.stop_workers()
        progress.close()
    by_variant: dict[str, list] = {}
    for (v, _, _), r in zip(configs, results):
        by_variant.setdefault(v.label, []).append(r)
    rows = [aggregate(label, rs, goal) for label, rs in by_variant.items()]
    runs_of = {label: [_trial_run(r) for r in rs] for label, rs in by_variant.items()}
    cmp = Comparison(
        config=str(config),
        seeds=seeds,
        target=goal,
        rows=rows,
        runs=runs_of,
        failed=sum(r.status in ("config_error", "crashed", "failed") for r in results),
        notes=list(executor.notes),
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


def _preload_plots() -> None:
    with contextlib.suppress(Exception):
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.figure  # noqa: F401
        import matplotlib.lines  # noqa: F401


def _trial_run(result) -> Run:
    """An executor's trial result as a Run (its series read from its folder when it has one)."""
    if result.run_path and Path(result.run_path, "meta.json").is_file():
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


def resume_target(run: str | Path, runs_dir: str | Path = "runs") -> tuple[Path, Config]:
    """The folder and config of a run that --resume can continue; UsageError saying why not otherwise."""
    from dlx.records.folders import find_run, run_status

    path = find_run(run, Path(runs_dir))
    meta = RunFolder.existing(path).meta
    status, rid = run_status(meta, path), meta.get("run_id", path.name)
    if status == "running":
        raise UsageError(
            f"run {rid} is still running (pid {meta.get('pid')}); stop it first "
            f"(Ctrl-C in its terminal), then resume it"
        )
    if status in ("completed", "diverged", "pruned"):
        raise UsageError(
            f"run {rid} has finished ({status}); there is nothing to resume. To train more, start "
            f"a new run from its config ({path / 'config.yaml'}, with more train.steps or "
            f"train.epochs) or from its weights (init: {{name: from_file, path: "
            f"{path / 'checkpoint.pt'}}})"
        )
    if not (path / "checkpoint.pt").is_file():
        raise UsageError(
            f"run {rid} ({status}) has no checkpoint.pt to resume from: it stopped before writing "
            f"one. Set train.checkpoint_every in the config so runs checkpoint as they go."
        )
    from dlx.config.loader import load_config
    from dlx.core.paths import resuming

    with resuming():  # its init weights file may be gone: the checkpoint has the weights
        return path, load_config(path / "config.yaml")


def _resuming(run, config, overrides, runs_dir, save) -> tuple[Config, RunFolder, History, dict[str, Any]]:
    """The config, folder (locked: this process is its writer), history and checkpoint of a run
    to resume; nothing on disk changes here."""
    if config is not None or list(overrides):
        raise UsageError(
            "resume continues a run with the config it started with (its config.yaml); "
            "give no config or overrides with it"
        )
    if not save:
        raise UsageError("resume writes into the run's folder; it cannot be combined with save=False")
    path, cfg = resume_target(run, runs_dir)
    # One writer per run: the lock is taken before anything is read for the resume or rewritten,
    # so two resumes of one run at once cannot both pass (the status check above can race).
    folder = RunFolder.existing(path)
    folder.lock()
    try:
        return _resume_state(path, cfg, folder)
    except BaseException:
        folder.close()
        raise


def _resume_state(path: Path, cfg, folder: RunFolder):
    from dlx.core.errors import DamagedFile
    from dlx.records.folders import CHECKPOINT_FILE, read_jsonl, read_tensors
    from dlx.records.recording import History

    try:
        state = read_tensors(path / CHECKPOINT_FILE)
    except DamagedFile as e:
        raise DlxError(
            f"{e.path} cannot be read as a dlx checkpoint ({e.reason}); the run cannot be resumed from it"
        ) from None
    if not isinstance(state, dict) or "loop" not in state:
        raise DlxError(
            f"{path / 'checkpoint.pt'} has no resume state (written by an older dlx); the run cannot be resumed from it"
        )
    now = _without_new_defaults(cfg.resolved(), state.get("config"))
    saved = state.get("config")
    if saved != now:
        raise DlxError(
            f"{path / 'config.yaml'} differs from the config saved in its checkpoint.pt "
            f"(was it edited?); restore it, or start a new run from the edited config"
        )
    logged = int(state["loop"]["logged_step"])
    hist = History()
    hist.restore(
        [m for m in read_jsonl(path / "metrics.jsonl") if m.get("step", 0) <= logged],
        [p for p in read_jsonl(path / "probes.jsonl") if p.get("step", 0) <= logged],
        state.get("init_check"),
        [r for r in read_jsonl(path / "instruments.jsonl") if r.get("step", 0) <= logged],
    )
    return cfg, folder, hist, state

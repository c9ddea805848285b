"""The Python API: `dlx.train(config, overrides)` runs one experiment into a run folder.

import dlx
r = dlx.train("configs/quickstart.yaml", ["optimizer.lr=0.05"])   # or dlx.train("quickstart", ...)
r.path, r.status, r.summary["final"]["test_acc"], r.metrics[-1]
dlx.train(resume="last")   # continue an interrupted run from its checkpoint.pt
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from dlx.core.errors import DlxError, UsageError
from dlx.records.folders import RunFolder, now
from dlx.records.layout import CHECKPOINT_FILE, CONFIG_FILE, INSTRUMENTS_FILE, METRICS_FILE, PROBES_FILE
from dlx.results import Run, RunResult, load_run  # noqa: F401  (RunResult: the older name of Run; load_run: dlx.load_run)

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
                    f"{folder.path / CHECKPOINT_FILE} does not fit the run built from its config.yaml "
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
    nothing (null, none, off, an empty list: data.imbalance, train.balance, train.changes, an
    instruments section with every instrument off), so such a run still resumes."""
    if not isinstance(now, dict) or not isinstance(saved, dict):
        return now
    out = {}
    for k, v in now.items():
        if k not in saved and (
            v in (None, "none", False) or v == [] or (isinstance(v, dict) and not any(x is True for x in v.values()))
        ):
            continue
        out[k] = _without_new_defaults(v, saved.get(k))
    return out


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
            f"a new run from its config ({path / CONFIG_FILE}, with more train.steps or "
            f"train.epochs) or from its weights (init: {{name: from_file, path: "
            f"{path / CHECKPOINT_FILE}}})"
        )
    if not (path / CHECKPOINT_FILE).is_file():
        raise UsageError(
            f"run {rid} ({status}) has no checkpoint.pt to resume from: it stopped before writing "
            f"one. Set train.checkpoint_every in the config so runs checkpoint as they go."
        )
    from dlx.config.loader import load_config
    from dlx.core.paths import resuming

    with resuming():  # its init weights file may be gone: the checkpoint has the weights
        return path, load_config(path / CONFIG_FILE)


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


def _changes_since(now: dict, saved: Any, step: int) -> dict:
    """`now` less the train.changes its config.yaml gained after the checkpoint (dlx lab adds
    a change to config.yaml when it takes it, at its step or later): they are applied as
    they come, so the checkpoint still continues the run."""
    try:
        have, had = now["train"]["changes"], saved["train"]["changes"]
    except (KeyError, TypeError):
        return now
    if have[: len(had)] != had or any(c.get("step", 0) < step for c in have[len(had) :]):
        return now
    return {**now, "train": {**now["train"], "changes": had}}


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
            f"{path / CHECKPOINT_FILE} has no resume state (written by an older dlx); the run cannot be resumed from it"
        )
    now = _without_new_defaults(cfg.resolved(), state.get("config"))
    saved = state.get("config")
    if saved != now and saved != _changes_since(now, saved, int(state["step"])):
        raise DlxError(
            f"{path / CONFIG_FILE} differs from the config saved in its checkpoint.pt "
            f"(was it edited?); restore it, or start a new run from the edited config"
        )
    logged = int(state["loop"]["logged_step"])
    hist = History()
    hist.restore(
        [m for m in read_jsonl(path / METRICS_FILE) if m.get("step", 0) <= logged],
        [p for p in read_jsonl(path / PROBES_FILE) if p.get("step", 0) <= logged],
        state.get("init_check"),
        [r for r in read_jsonl(path / INSTRUMENTS_FILE) if r.get("step", 0) <= logged],
    )
    return cfg, folder, hist, state

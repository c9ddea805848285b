"""The sweep folder and its Optuna study: creating, locking, opening for --resume (recovering
what a stop left), asking the strategy for trials, landing them, telling it their results.

The strategies are Optuna's, driven by ask-and-tell in this (the parent) process: an
executor pulls the next trial only when it has a free slot, so TPE sees every result
told before it proposes the next point. Grid points are enumerated here and enqueued
(not left to GridSampler), so their order is the spec's and every point runs once.

The sweep folder (the parent is its only writer):

    runs/sweep-<stamp>-<name>-<hex>/
      sweep.json     what was asked (spec, base path, overrides), status, counts
      spec.yaml      the spec as written;  base.yaml  the base config's text at the start
      journal.log    Optuna's journal storage: every trial asked and told
      results.json   one row per finished trial (params, metric, status, run), best first
      best.yaml      the best trial's resolved config, ready for `dlx train`
      trials/trial-0000/ ...   one run folder per trial, landed by an atomic rename
      .staging/      attempts in flight (removed as each trial lands), and those of trials
                     to run again: stopped, failed or crashed

Trials keep one index (0..N-1, the folder name) across interruptions: a trial that
was in flight when the sweep stopped is re-asked with the same parameters on --resume,
and continues its stopped run from that run's checkpoint; so is a trial that failed or
crashed (a full disk, say).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml
from pydantic import ValidationError

from dlx.config.loader import parse_yaml
from dlx.core.errors import ConfigError, DlxError
from dlx.many.sweep.results import SweepResults, finite
from dlx.many.sweep.resume import check_spec_unchanged, repair_journal, sha256_text
from dlx.many.sweep.spec import Plan, SweepSpec, is_scalar, parse_dimension, spec_problems, strip_set, yaml_value
from dlx.records.folders import final_metrics, finished_summary, pruned_kind, read_object, resumable_run, verdict_kind
from dlx.records.layout import CONFIG_FILE, SUMMARY_FILE

# TPE proposes from a model of the results only after this many random trials; Optuna's
# default of 10 would leave a 12-trial sweep all random, so small sweeps start earlier.
TPE_STARTUP = 10
# Trials that ended without a whole run folder (a full disk, a bug, a worker dying on every
# attempt): recorded and shown, and run again by --resume, from their checkpoint where they
# wrote one (their attempts stay in .staging for it). A config error is not: it would fail alike.
RERUN = ("failed", "crashed")


@dataclass
class SweepTrial:
    index: int  # 0..N-1, the folder name; kept across --resume
    number: int  # Optuna's trial number
    params: dict[str, Any]
    config: dict | None  # None when the combination is invalid (error says why)
    error: str | None = None
    resume: Path | None = None  # a stopped run of this trial to continue from its checkpoint


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


class Sweep(SweepResults):
    """A sweep folder plus its Optuna study; the parent process is its only writer."""

    def __init__(self, folder: Path, plan_: Plan, meta: dict):
        super().__init__(folder, plan_, meta)
        self._live: dict[int, Any] = {}  # Optuna trial number -> Trial being run
        self.on_row: Callable[[dict], Any] | None = None
        self._study = None
        self._next_index = 0
        self._asked: set[int] = set()  # trial indices yielded by pending() in this process
        self.notes: list[str] = []  # what opening the folder found and repaired, for the user to read

    # ------------------------------------------------------------ creating / opening

    @classmethod
    def create(cls, plan_: Plan, runs_dir: Path) -> "Sweep":
        from dlx.records.folders import prepare_runs_dir, write_atomic, write_json

        runs_dir = prepare_runs_dir(Path(runs_dir))
        name = plan_.slug
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        folder = runs_dir / f"sweep-{stamp}-{name}-{secrets.token_hex(3)}"
        tmp = runs_dir / f".tmp-{folder.name}"
        tmp.mkdir()
        write_atomic(tmp / "spec.yaml", plan_.spec_text)
        write_atomic(tmp / "base.yaml", plan_.base_text)
        meta = {
            "sweep_id": folder.name,
            "status": "running",
            "created": _now(),
            "spec_path": str(plan_.spec_path),
            "base_path": str(plan_.base_path),
            "base_sha256": sha256_text(plan_.base_text),
            # The spec as it was at the start: --resume refuses an edited spec.yaml, saying what changed.
            "spec_sha256": sha256_text(plan_.spec_text),
            "spec_text": plan_.spec_text,
            "sets": plan_.sets,
            "strategy": plan_.spec.strategy,
            "seed": plan_.spec.seed,
            "metric": plan_.spec.metric.name,
            "goal": plan_.spec.goal,
            "trials": plan_.total,
            "done": 0,
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }
        write_json(tmp / "sweep.json", meta)
        os.rename(tmp, folder)  # the folder appears only once its spec and meta are complete
        sweep = cls(folder, plan_, meta)
        sweep._lock()
        study = sweep.study
        if plan_.spec.strategy == "grid":
            for i, params in enumerate(plan_.grid()):
                study.enqueue_trial(sweep._labels(params), user_attrs={"dlx_index": i})
        sweep._next_index = plan_.total if plan_.spec.strategy == "grid" else 0
        sweep._write_results()
        return sweep

    @classmethod
    def open(cls, folder: Path) -> "Sweep":
        """An existing sweep, to --resume. Refused with a reason (never a traceback, never a
        silent reset) when its files are missing or its spec was edited in a way that would
        mix incomparable trials; a journal torn by a crash is cut back to its last whole
        record, and finished trials missing from a damaged results.json are rebuilt from
        their folders (each told in .notes). In-flight trials of the stopped run are re-asked
        with exactly their parameters."""
        folder = Path(folder)
        meta, why = read_object(folder / "sweep.json")
        texts = {}
        for name in ("spec.yaml", "base.yaml"):
            try:
                texts[name] = (folder / name).read_text()
            except (OSError, UnicodeDecodeError) as e:
                why = why or f"{name}: {e}"
        if why is None and not isinstance(meta.get("base_path"), str):
            why = "sweep.json has no base_path"
        if why is not None:
            raise DlxError(f"{folder} is not a readable sweep folder ({why}); give a folder made by dlx sweep")
        notes: list[str] = []
        spec_text = check_spec_unchanged(folder, meta, texts["spec.yaml"], notes)
        loc = parse_yaml(spec_text, str(folder / "spec.yaml"))
        try:
            spec = SweepSpec.model_validate(loc.data)
        except ValidationError as e:
            raise ConfigError(spec_problems(e, loc), str(folder / "spec.yaml")) from None
        dims = [d for d in (parse_dimension(str(k), v, spec.strategy)[0] for k, v in spec.space.items()) if d]
        base_path = Path(meta["base_path"])
        sets = [str(x) for x in meta.get("sets") or []]
        # The base's text as it was at the start: editing the file later changes nothing here.
        plan_ = Plan(
            spec,
            spec_text,
            Path(meta.get("spec_path", folder / "spec.yaml")),
            base_path,
            texts["base.yaml"],
            dims,
            sets,
        )
        sweep = cls(folder, plan_, meta)
        sweep._lock()  # before anything in the folder is rewritten
        journal = folder / "journal.log"
        if not journal.is_file():
            sweep.unlock()
            raise DlxError(
                f"{journal} is missing: it is the record of which points this sweep asked and what they "
                f"scored, and without it a resume would start the search over ({meta.get('done', '?')} trial(s) "
                f"were done). Restore the file, or start a new sweep: dlx sweep {folder / 'spec.yaml'}"
            )
        try:
            note = repair_journal(journal)
            if note:
                notes.append(note)
            sweep.notes = notes
            sweep._recover()
        except BaseException:
            sweep.unlock()
            raise
        return sweep

    def _lock(self) -> None:
        """One driver per sweep folder for the life of this process (folders.take_lock), taken
        before anything in the folder is rewritten: a second `--resume` of a sweep being run is
        refused, naming the holder."""
        from dlx.records.folders import lock_holder, take_lock

        try:
            self._lock_fd = take_lock(self.folder)
        except BlockingIOError:
            # The live holder, not the pid sweep.json names: that is the last driver's, which is
            # dead when the holder is a resume still opening the folder.
            meta = read_object(self.folder / "sweep.json")[0] or self.meta
            raise DlxError(
                f"sweep {self.folder.name} is being run by another process ({lock_holder(self.folder, meta)}); one "
                f"process runs a sweep at a time: wait for it to end, or stop it, then dlx sweep --resume"
            ) from None

    def unlock(self) -> None:
        fd = getattr(self, "_lock_fd", None)
        if fd is not None:
            os.close(fd)
            self._lock_fd = None

    @property
    def study(self):
        if self._study is None:
            import optuna
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            storage = JournalStorage(JournalFileBackend(str(self.folder / "journal.log")))
            spec = self.plan.spec
            # Seeding by the trials already asked: a resumed random/tpe sweep does not
            # replay its first points, and the same sweep resumed the same way is repeatable.
            storage_trials = 0
            try:
                storage_trials = len(storage.get_all_trials(storage.get_study_id_from_name("dlx")))
            except KeyError:
                pass
            seed = spec.seed + storage_trials
            if spec.strategy == "tpe":
                n = self.plan.total
                startup = TPE_STARTUP if n >= 2 * TPE_STARTUP else max(2, n // 2)
                sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)
            else:
                sampler = optuna.samplers.RandomSampler(seed=seed)
            self._study = optuna.create_study(
                storage=storage,
                study_name="dlx",
                sampler=sampler,
                direction="maximize" if spec.goal == "max" else "minimize",
                load_if_exists=True,
            )
        return self._study

    def _labels(self, params: dict[str, Any]) -> dict[str, Any]:
        return {k: (v if is_scalar(v) else yaml_value(v)) for k, v in params.items()}

    def _recover(self) -> None:
        """After a stop: rebuild the rows, re-ask what never finished.

        A finished trial's row comes from results.json, or (that file damaged or behind) from
        its landed folder, or for a config error from the journal's own record. A trial left
        in flight is re-asked with exactly its parameters: for a grid, its grid point by
        index (it may have been asked and never given its parameters). A grid point the
        journal never recorded (its record lost) is asked too, so every point runs once. A
        trial that failed or crashed (RERUN) is asked again the same way; a re-asked trial whose
        stopped attempt is in .staging continues it from its checkpoint (see pending)."""
        from optuna.trial import TrialState

        # .staging keeps the stopped run's attempts: a trial in flight resumes from its checkpoint.
        results, damaged = self._read_results()
        grid = self.plan.grid() if self.plan.spec.strategy == "grid" else None
        indices = set()
        rebuilt = 0
        trials = self.study.get_trials(deepcopy=False)
        # A failed trial run again by a resume has two told records; the later one counts.
        last_told = {
            t.user_attrs["dlx_index"]: t.number
            for t in trials
            if isinstance(t.user_attrs.get("dlx_index"), int) and "dlx_status" in t.user_attrs
        }
        for t in trials:
            i = t.user_attrs.get("dlx_index")
            if not isinstance(i, int):
                continue
            if t.state == TrialState.FAIL and "dlx_status" not in t.user_attrs:
                continue  # an attempt an earlier resume found stale; a later trial re-asks its index
            if "dlx_status" in t.user_attrs and t.number < last_told[i]:
                if t.state == TrialState.RUNNING:
                    self.study.tell(t.number, state=TrialState.FAIL)
                continue  # an earlier attempt of an index run again since
            if i in indices or (grid is not None and i >= len(grid)):
                if t.state == TrialState.RUNNING:
                    self.study.tell(t.number, state=TrialState.FAIL)  # a duplicate ask: drop it
                continue  # (a duplicate still waiting is dropped when asked: see pending)
            indices.add(i)
            if t.state == TrialState.WAITING:
                continue  # not asked yet: pending() will
            if t.state != TrialState.RUNNING and "dlx_status" in t.user_attrs:
                row = results.get(i) or self._row_from_folder(i, t.params) or self._row_from_journal(i, t)
                if row.get("status") not in RERUN:
                    rebuilt += i not in results
                    self.rows[i] = row
                    continue
                # Failed or crashed (a full disk, say): asked again below, from its checkpoint if any.
            row = results.get(i) or self._row_from_folder(i, t.params)
            if t.state == TrialState.RUNNING and row is not None and row.get("status") not in ("interrupted", *RERUN):
                # It landed, then the sweep stopped before telling Optuna: tell it now.
                self.rows[i] = row
                self._tell(t.number, row)
                continue
            if t.state == TrialState.RUNNING:
                self.study.tell(t.number, state=TrialState.FAIL)  # stale: never finished
            params = grid[i] if grid is not None else t.params
            self.study.enqueue_trial(self._labels(params), user_attrs={"dlx_index": i})
        # Trials that landed but whose journal records were lost: rows from their folders.
        for d in sorted((self.folder / "trials").glob("trial-*")):
            i = _trial_index(d.name)
            if i is not None and i not in indices and (row := self._row_from_folder(i, None)) is not None:
                self.rows[i] = row
                indices.add(i)
                rebuilt += 1
        # Indices the journal lost every record of: a grid point is asked again by its index; a
        # random/tpe index below the highest one seen draws a fresh point (none was recorded).
        for i in range(len(grid) if grid is not None else max(indices, default=-1) + 1):
            if i not in indices:
                params = grid[i] if grid is not None else {}
                self.study.enqueue_trial(self._labels(params), user_attrs={"dlx_index": i})
                indices.add(i)
        if damaged:
            self.notes.append(f"{damaged}; rebuilt {rebuilt} finished trial(s) from their folders and the journal")
        elif rebuilt:
            self.notes.append(f"results.json lacked {rebuilt} finished trial(s); rebuilt them from their folders")
        self._next_index = max([self.plan.total if grid is not None else 0, *[i + 1 for i in indices]])
        self._clean_staging()
        self.meta.update(status="running", pid=os.getpid(), host=socket.gethostname(), resumed=_now())
        self._write_results()

    def _clean_staging(self) -> None:
        """Remove the attempts of trials that are done for good (a duplicate of a landed trial,
        a config error); a trial still to run keeps its attempts, to resume from their checkpoint."""
        staging = self.folder / ".staging"
        for d in staging.glob("trial-*"):
            i = _trial_index(d.name)
            if i is not None and i in self.rows and self.rows[i].get("status") not in RERUN:
                shutil.rmtree(d, ignore_errors=True)
        with contextlib.suppress(OSError):
            staging.rmdir()  # only once empty

    # ------------------------------------------------------------ running

    def staging(self, index: int) -> Path:
        return self.folder / ".staging" / f"trial-{index:04d}"

    def pending(self) -> Iterator[SweepTrial]:
        """Trials to run, asked from the strategy one at a time as the executor pulls them.

        A combination that makes an invalid config (random/tpe can draw one) is recorded
        as config_error at once and not yielded.
        """
        from optuna.trial import TrialState

        while True:
            waiting = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            if not waiting and self._next_index >= self.plan.total:
                return
            trial = self.study.ask()
            index = trial.user_attrs.get("dlx_index")
            if index is None:
                index = self._next_index
                trial.set_user_attr("dlx_index", index)
                self._next_index += 1
            if index in self.rows or index in self._asked:
                self.study.tell(trial.number, state=TrialState.FAIL)  # a duplicate of a trial run once already
                continue
            self._asked.add(index)
            grid = self.plan.spec.strategy == "grid"
            params = {d.key: d.suggest(trial, grid) for d in self.plan.dims}
            if grid:
                # A grid trial is its index's point whatever the journal fixed for it (enqueued
                # with that point, Optuna suggests exactly it; this makes it so regardless).
                params = self.plan.grid_point(index)
            self._live[trial.number] = trial
            try:
                config = self.plan.config(params)
            except ConfigError as e:
                self.record(
                    SweepTrial(index, trial.number, params, None),
                    status="config_error",
                    error="; ".join(strip_set(q) for q in e.problems),
                )
                continue
            config["name"] = f"{self.plan.slug}-t{index:04d}"
            yield SweepTrial(index, trial.number, params, config, resume=self._resumable(index, config))

    def _resumable(self, index: int, config: dict) -> Path | None:
        """A stopped attempt of this trial to continue from its checkpoint (--resume after a
        stop or a full disk): only one of exactly this config, else the trial starts over."""
        run = resumable_run(self.staging(index))
        if run is None:
            return None
        try:
            written = yaml.safe_load((run / CONFIG_FILE).read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return None
        return run if written == config else None

    def record(
        self, st: SweepTrial, result: Any = None, status: str | None = None, error: str | None = None
    ) -> dict | None:
        """Land a finished trial's run folder, write the results, tell the strategy.

        An interrupted trial (Ctrl-C) is not recorded: --resume runs it again. The run folder
        says how a trial ended: one with a finished run's summary.json lands with its status
        whatever the worker reported; one without never lands, and its trial (failed) keeps
        its attempts in .staging for --resume to continue.
        """
        from dlx.records.folders import FINISHED, land_run

        status = status or result.status
        if status == "interrupted":
            return None
        error = error or (getattr(result, "error", None) if result is not None else None)
        dest = self._trial_dir(st.index)
        run = Path(result.run_path) if result is not None and result.run_path is not None else None
        run = run if run is not None and run.is_dir() else None
        summary = (result.summary if result is not None else None) or {}
        whole = finished_summary(run) if run is not None else None
        if whole is None and result is not None and status in RERUN:
            # A worker whose failure report hit the full disk too names no folder: a whole
            # run of this trial may still be there (it ended, then a later write failed).
            ended = [r for r in self.staging(st.index).glob("*") if r.is_dir() and finished_summary(r)]
            if ended:
                run, whole = ended[0], finished_summary(ended[0])
        if whole is not None:
            # The folder says how the run ended: its summary is written, so it ended so,
            # whatever failed after (its checkpoint on a full disk, say).
            status, summary = whole["status"], whole
            error = None
            land_run(run, dest)  # False: a duplicate attempt, dropped
        elif run is not None and status in FINISHED:
            status = "failed"  # a folder without its summary never lands: it is run again
            error = error or f"its run folder {run} has no {SUMMARY_FILE}"
        if status not in RERUN:
            shutil.rmtree(self.staging(st.index), ignore_errors=True)
        value = final_metrics(summary).get(self.plan.spec.metric.name)
        row = {
            "trial": st.index,
            "status": status,
            "value": value if finite(value) else None,
            "params": st.params,
            "run": str(dest.relative_to(self.folder)) if dest.is_dir() else None,
            "seconds": summary.get("train_seconds"),
            "steps": summary.get("steps"),
            "verdict": verdict_kind(summary),
            "pruned": pruned_kind(summary),
            "node": getattr(result, "node", None),
            "attempts": getattr(result, "attempts", 1),
            "error": error,
        }
        self.rows[st.index] = row
        self._write_results()  # before telling: a stop in between is recovered from the folder
        self._tell(st.number, row)
        if self.on_row is not None:
            self.on_row(row)
        return row

    def _tell(self, number: int, row: dict) -> None:
        from optuna.trial import TrialState

        trial = self._live.pop(number, None)
        # The journal keeps how each trial ended (and a config error's reason): a damaged
        # results.json is rebuilt from it and the trial folders.
        attrs = {"dlx_status": row["status"]}
        if row.get("error") and row["status"] == "config_error":
            attrs["dlx_error"] = str(row["error"])[:2000]
        for key, value in attrs.items():
            if trial is not None:
                trial.set_user_attr(key, value)
            else:  # a trial recovered after a stop: set the attribute through the study's storage
                study = self.study
                study._storage.set_trial_user_attr(
                    study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number), key, value
                )
        if row["value"] is not None and row["status"] == "completed":
            self.study.tell(number, row["value"])
        elif row["status"] == "pruned":
            # Stopped on its verdict (train.prune): the strategy learns it as pruned, at the
            # value it had reached (TPE ranks pruned trials by their last reported value).
            if trial is not None and row["value"] is not None:
                trial.report(row["value"], step=int(row.get("steps") or 0))
            self.study.tell(number, state=TrialState.PRUNED)
        else:
            self.study.tell(number, state=TrialState.FAIL)

    def finish(self, status: str) -> None:
        from dlx.records.folders import DISK_FULL

        try:
            if status == "completed":
                self._clean_staging()
            self.meta.update(status=status, ended=_now())
            self._write_results()
        except OSError as e:
            # A full disk: sweep.json keeps `running`, read as interrupted once the lock is let go.
            if e.errno not in DISK_FULL:
                raise
        finally:
            self.unlock()


def _trial_index(name: str) -> int | None:
    digits = name.removeprefix("trial-")
    return int(digits) if digits.isdigit() else None

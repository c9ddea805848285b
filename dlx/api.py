"""The Python API: `dlx.train(config, overrides)` runs one experiment into a run folder.

    import dlx
    r = dlx.train("configs/quickstart.yaml", ["optimizer.lr=0.05"])
    r.path, r.status, r.summary["final"]["test_acc"], r.metrics[-1]
    dlx.train(resume="last")   # continue an interrupted run from its checkpoint.pt
"""
from __future__ import annotations

import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .config import Config, dump_yaml, load_config
from .diagnose import Context as DiagnosisContext, chance_loss, diagnose, headline
from .diagnose import outcome as run_outcome
from .errors import DlxError, UsageError
from .runs import RunFolder, command_line, git_commit, jsonable, now, versions

SCALAR_KEYS = ("step", "epoch", "first_step", "lr", "time", "train_loss", "train_acc", "test_loss", "test_acc")
PROBE_KEYS = ("weight_norm", "update_ratio", "unit_spread", "act_mean", "act_std", "act_saturated",
              "act_dead", "act_negative", "act_pct", "time_grad")


@dataclass
class RunResult:
    """What a run produced: its folder (None when not saved), status, summary and metrics."""

    path: Path | None
    status: str
    summary: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return self.summary.get("verdict", "")


class History:
    """Keeps the whole run's series in memory for the summary and the diagnosis."""

    def __init__(self):
        self.metrics: list[dict[str, Any]] = []
        self.grad_rows: list[np.ndarray] = []
        self.last: dict[str, Any] = {}
        self.init_check: list[dict[str, Any]] | None = None

    def on_start(self, trainer):
        from .initcheck import init_check_for

        # Step 0, before any update: each layer's variance against its init scheme's theory
        # (a few ms; it leaves parameters and random streams exactly as they were).
        # A resumed run keeps the one its checkpoint holds (see restore).
        if trainer.step == 0:
            self.init_check = init_check_for(trainer)

    def restore(self, metrics: list[dict[str, Any]], probes: list[dict[str, Any]],
                init_check: list[dict[str, Any]] | None) -> None:
        """The series of a resumed run's earlier sessions, from its files (as on_interval kept them)."""
        self.metrics = [{k: m[k] for k in SCALAR_KEYS if k in m} for m in metrics]
        self.grad_rows = [_floats(p["grad_norm"]) for p in probes]
        self.last = {}
        for p in probes:
            self.last.update({k: _floats(p[k]) for k in PROBE_KEYS if k in p})
        self.init_check = init_check

    def on_interval(self, trainer, record):
        self.metrics.append({k: record[k] for k in SCALAR_KEYS if k in record})
        self.grad_rows.append(record["grad_norm"])
        # The latest value of each probe (unit spreads come only with evaluations).
        self.last.update({k: record[k] for k in PROBE_KEYS if k in record})

    @property
    def grad(self) -> np.ndarray:
        return np.concatenate(self.grad_rows) if self.grad_rows else np.zeros((0, 0))


def _floats(x: Any) -> np.ndarray:
    """A JSON series back to float64 (null, written for NaN, back to NaN): values round-trip exactly."""
    return np.array(x, dtype=np.float64)


def _layer_summaries(trainer, hist: History) -> list[dict[str, Any]]:
    grad, out = hist.grad, []
    for j, (name, module) in enumerate(trainer.probes.layers):
        col = grad[:, j] if grad.size else np.zeros(0)
        fin = col[np.isfinite(col)]
        # "last" is the last finite value: after a divergence it shows where the norm was heading.
        entry = {"name": name, "shape": trainer.probes.shapes[j],
                 "grad_norm": {"first": col[0] if len(col) else None,
                               "median": float(np.median(fin)) if len(fin) else None,
                               "last": fin[-1] if len(fin) else None}}
        for key in ("weight_norm", "update_ratio", "unit_spread"):
            if key in hist.last:
                entry[key] = hist.last[key][j]
        out.append(entry)
    return out


def _activation_summaries(trainer, hist: History) -> list[dict[str, Any]]:
    if "act_mean" not in hist.last:
        return []
    return [{"name": n, **{k: hist.last[f"act_{k}"][j] if f"act_{k}" in hist.last else None
                           for k in ("mean", "std", "saturated", "dead", "negative")}}
            for j, n in enumerate(trainer.probes.act_names)]


def summarize(trainer, hist: History, outcome, run_id: str | None) -> dict[str, Any]:
    cfg = trainer.cfg
    data = trainer.data
    ctx = DiagnosisContext(
        names=trainer.probes.names, grad=hist.grad, last=hist.last, act_names=trainer.probes.act_names,
        dead_check=cfg.activation.units_can_die, diverged=outcome.diverged, metrics=hist.metrics,
        config=cfg.resolved(), task=data.task, time_grad=hist.last.get("time_grad"),
        init_check=hist.init_check,
        chance_loss=chance_loss(data.y_train.cpu().numpy(), data.task, cfg.train.loss, data.n_classes,
                                getattr(cfg.model, "output_activation", "none") == "sigmoid"))
    verdicts = diagnose(ctx)
    result = run_outcome(ctx)
    tests = [m for m in hist.metrics if m.get("test_loss") is not None]
    best = {}
    if tests:
        best["test_loss"] = min(m["test_loss"] for m in tests)
        if any("test_acc" in m for m in tests):
            best["test_acc"] = max(m.get("test_acc", 0.0) for m in tests)
    secs = max(outcome.train_seconds, 1e-9)
    # Plain JSON types in memory too, so a RunResult's summary equals summary.json.
    return jsonable({
        "run_id": run_id, "status": outcome.status, "reason": outcome.reason,
        "signal": outcome.signal,  # the stop signal of an interrupted run (dlx train exits 128+its number)
        "steps": outcome.step, "total_steps": trainer.total_steps, "epochs": round(outcome.epoch, 4),
        "samples": outcome.samples, "train_seconds": round(outcome.train_seconds, 4),
        "samples_per_s": round(outcome.samples / secs, 1),
        "final": outcome.final, "best": best,
        "verdict": headline(verdicts), "verdicts": verdicts,
        # How far it got (converged, still improving, slow, ...), apart from how its gradients flowed.
        "outcome": {k: v for k, v in result.items() if k != "where"},
        "diverged": outcome.diverged,
        "layers": _layer_summaries(trainer, hist),
        "activations": _activation_summaries(trainer, hist),
        # ||dL/dh_t|| at the last log step, [recurrent layer, t] (recurrent models only).
        "time_grad": hist.last.get("time_grad"),
        "init_check": hist.init_check,
    })


class RunWriter:
    """Writes the run folder as the run goes (the trainer itself never touches files)."""

    def __init__(self, folder: RunFolder, hist: History, resuming: bool = False):
        self.folder, self.hist, self.resuming = folder, hist, resuming
        self.summary: dict[str, Any] = {}

    def on_start(self, trainer):
        cfg = trainer.cfg
        if self.resuming:
            resumes = self.folder.meta.get("resumes") or []
            resumes.append({"at": now(), "step": trainer.step, "command": command_line()})
            self.folder.resume(trainer.logged_step, ended=None, reason=None, error=None, resumes=resumes,
                               device=str(trainer.device),
                               cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"))
            return
        meta = {
            "name": cfg.name, "seed": cfg.seed, "device": str(trainer.device),
            # The GPU slot an executor gave this run (None: every device the machine has).
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "started": now(), "ended": None, "pid": os.getpid(),
            "command": command_line(), "cwd": os.getcwd(), "git_commit": git_commit(),
            "versions": versions(),
            "data": {"name": trainer.data.name, "task": trainer.data.task,
                     "n_train": len(trainer.data.x_train), "n_test": len(trainer.data.x_test),
                     "feature_shape": list(trainer.data.feature_shape), "out_dim": trainer.data.out_dim},
            "batch_size": trainer.batch_size, "steps_per_epoch": trainer.steps_per_epoch,
            "total_steps": trainer.total_steps,
            "parameters": sum(p.numel() for p in trainer.model.parameters()),
            "layers": [{"name": n, "shape": s} for n, s in zip(trainer.probes.names, trainer.probes.shapes)],
            "activations": trainer.probes.act_names,
        }
        self.folder.open(dump_yaml(cfg.resolved()), meta)

    def on_interval(self, trainer, record):
        self.folder.append("metrics.jsonl", {k: record[k] for k in SCALAR_KEYS if k in record})
        probe = {"step": record["step"], "first_step": record["first_step"],
                 "grad_norm": record["grad_norm"], "loss": record["loss_steps"]}
        probe.update({k: record[k] for k in PROBE_KEYS if k in record})
        if record.get("diverged"):
            probe["diverged"] = record["diverged"]
        self.folder.append("probes.jsonl", probe)
        self.folder.heartbeat()  # after the records: a fresh heartbeat means they are on disk

    def on_checkpoint(self, trainer):
        self.folder.write_checkpoint(checkpoint_state(trainer, self.hist.init_check))

    def on_end(self, trainer, outcome):
        self.summary = summarize(trainer, self.hist, outcome, self.folder.run_id)
        self.folder.write_summary(self.summary)
        # Not after a second Ctrl-C mid-step (trainer.resumable is False): the state is half
        # a step, and the last periodic checkpoint, if any, stays the one to resume from.
        if trainer.cfg.train.checkpoint and outcome.status != "diverged" and trainer.resumable:
            self.folder.write_checkpoint(checkpoint_state(trainer, self.hist.init_check))
        self.folder.update_meta(status=outcome.status, ended=now(), reason=outcome.reason)
        self.folder.close()


def checkpoint_state(trainer, init_check: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """checkpoint.pt: the trainer's whole state (model, optimizer, schedule, RNGs, data order,
    the unfinished interval), plus the config it belongs to and the step-0 init check."""
    return {**trainer.state_dict(), "config": trainer.cfg.resolved(), "init_check": jsonable(init_check)}


def check(config: str | Path | dict | Config, overrides: Iterable[str] = ()) -> Config:
    """Everything `train` checks before its first step, without training or writing.

    Validates the config, loads the data and builds the model, optimizer and init
    (a weights file must fit the model, an .npz must hold all four arrays).
    """
    from .trainer import Trainer

    cfg = load_config(config, list(overrides))
    Trainer(cfg)
    return cfg


def out_of_memory_message(e: BaseException, trainer, folder: RunFolder | None) -> str | None:
    """What to tell a person whose run ran out of (GPU) memory; None for any other error."""
    import torch

    text = str(e)
    if not (isinstance(e, torch.cuda.OutOfMemoryError)
            or (isinstance(e, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text))):
        return None
    bs = trainer.batch_size
    params = sum(p.numel() for p in trainer.model.parameters())
    msg = (f"out of memory on {trainer.device} at step {trainer.step} (train.batch_size {bs}, "
           f"{params:,} parameters): {text.strip().splitlines()[0][:200] if text.strip() else type(e).__name__}. "
           f"Try a smaller batch (--set train.batch_size={max(bs // 2, 1)}) or a smaller model "
           f"(fewer or narrower layers).")
    if folder is not None and folder.meta:
        msg += f" Every interval logged before is kept in {folder.path} (status failed)."
    return msg


def train(config: str | Path | dict | Config | None = None, overrides: Iterable[str] = (), *,
          runs_dir: str | Path = "runs", callbacks: Iterable[Any] = (), save: bool = True,
          resume: str | Path | None = None) -> RunResult:
    """Train one config (a YAML path, a dict or a Config) and return its RunResult.

    overrides are `key.path=value` strings, as with `dlx train --set`. With
    save=False nothing is written to disk. Raises ConfigError / DlxError for the
    user's mistakes; a run that diverges or is interrupted returns normally with
    that status.

    resume=RUN (a run folder, its id or a unique part of it, or 'last') instead of a
    config continues an interrupted, killed or failed run from its checkpoint.pt, in
    its own folder and with its own config.yaml; on CPU it ends with exactly the
    numbers of a run that was never stopped.
    """
    from .trainer import Trainer

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
    cbs = [hist, *([writer] if writer else []), *callbacks]
    trainer = Trainer(cfg, callbacks=cbs)
    if state is not None:
        try:
            trainer.load_state_dict(state)
        except DlxError:
            raise
        except Exception as e:  # shapes or keys that differ: the model code changed since
            raise DlxError(f"{folder.path / 'checkpoint.pt'} does not fit the run built from its config.yaml "
                           f"({type(e).__name__}: {' '.join(str(e).split())[:300]}); it cannot be "
                           f"resumed") from None
    try:
        outcome = trainer.run()
    except BaseException as e:
        oom = out_of_memory_message(e, trainer, folder)
        if folder is not None and folder.meta.get("status") == "running":
            status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            folder.update_meta(status=status, ended=now(), reason=oom or f"{type(e).__name__}: {e}",
                               error=traceback.format_exc())
            folder.close()
            e.dlx_run_path = folder.path  # type: ignore[attr-defined]  (for the CLI's message)
        if oom:
            raise DlxError(oom) from e  # the person's fix is a smaller batch, not a traceback
        raise
    summary = writer.summary if writer else summarize(trainer, hist, outcome, None)
    return RunResult(path=folder.path if folder else None, status=outcome.status,
                     summary=summary, metrics=hist.metrics)


def resume_target(run: str | Path, runs_dir: str | Path = "runs") -> tuple[Path, Config]:
    """The folder and config of a run that --resume can continue; UsageError saying why not otherwise."""
    from .runs import find_run, run_status

    path = find_run(run, Path(runs_dir))
    meta = RunFolder.existing(path).meta
    status, rid = run_status(meta), meta.get("run_id", path.name)
    if status == "running":
        raise UsageError(f"run {rid} is still running (pid {meta.get('pid')}); stop it first "
                         f"(Ctrl-C in its terminal), then resume it")
    if status in ("completed", "diverged"):
        raise UsageError(f"run {rid} has finished ({status}); there is nothing to resume. To train more, start "
                         f"a new run from its config ({path / 'config.yaml'}, with more train.steps or "
                         f"train.epochs) or from its weights (init: {{name: from_file, path: "
                         f"{path / 'checkpoint.pt'}}})")
    if not (path / "checkpoint.pt").is_file():
        raise UsageError(f"run {rid} ({status}) has no checkpoint.pt to resume from: it stopped before writing "
                         f"one. Set train.checkpoint_every in the config so runs checkpoint as they go.")
    return path, load_config(path / "config.yaml")


def _resuming(run, config, overrides, runs_dir, save) -> tuple[Config, RunFolder, History, dict[str, Any]]:
    """The config, folder, history and checkpoint of a run to resume; nothing on disk changes here."""
    import torch

    from .runs import read_jsonl

    if config is not None or list(overrides):
        raise UsageError("resume continues a run with the config it started with (its config.yaml); "
                         "give no config or overrides with it")
    if not save:
        raise UsageError("resume writes into the run's folder; it cannot be combined with save=False")
    path, cfg = resume_target(run, runs_dir)
    try:
        state = torch.load(path / "checkpoint.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged file
        raise DlxError(f"{path / 'checkpoint.pt'} cannot be read as a dlx checkpoint (damaged, or not one: "
                       f"{type(e).__name__}); the run cannot be resumed from it") from None
    if not isinstance(state, dict) or "loop" not in state:
        raise DlxError(f"{path / 'checkpoint.pt'} has no resume state (written by an older dlx); "
                       f"the run cannot be resumed from it")
    if state.get("config") != cfg.resolved():
        raise DlxError(f"{path / 'config.yaml'} differs from the config saved in its checkpoint.pt "
                       f"(was it edited?); restore it, or start a new run from the edited config")
    logged = int(state["loop"]["logged_step"])
    hist = History()
    hist.restore([m for m in read_jsonl(path / "metrics.jsonl") if m.get("step", 0) <= logged],
                 [p for p in read_jsonl(path / "probes.jsonl") if p.get("step", 0) <= logged],
                 state.get("init_check"))
    return cfg, RunFolder.existing(path), hist, state

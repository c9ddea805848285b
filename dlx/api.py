"""The Python API: `dlx.train(config, overrides)` runs one experiment into a run folder.

    import dlx
    r = dlx.train("configs/quickstart.yaml", ["optimizer.lr=0.05"])
    r.path, r.status, r.summary["final"]["test_acc"], r.metrics[-1]
"""
from __future__ import annotations

import os
import random
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .config import Config, dump_yaml, load_config
from .diagnose import Context as DiagnosisContext, chance_loss, diagnose, headline
from .runs import RunFolder, command_line, git_commit, jsonable, now, versions

SCALAR_KEYS = ("step", "epoch", "first_step", "lr", "time", "train_loss", "train_acc", "test_loss", "test_acc")
PROBE_KEYS = ("weight_norm", "update_ratio", "unit_spread", "act_mean", "act_std", "act_saturated",
              "act_dead", "act_pct", "time_grad")


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
        self.init_check = init_check_for(trainer)

    def on_interval(self, trainer, record):
        self.metrics.append({k: record[k] for k in SCALAR_KEYS if k in record})
        self.grad_rows.append(record["grad_norm"])
        # The latest value of each probe (unit spreads come only with evaluations).
        self.last.update({k: record[k] for k in PROBE_KEYS if k in record})

    @property
    def grad(self) -> np.ndarray:
        return np.concatenate(self.grad_rows) if self.grad_rows else np.zeros((0, 0))


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
    return [{"name": n, **{k: hist.last[f"act_{k}"][j] for k in ("mean", "std", "saturated", "dead")}}
            for j, n in enumerate(trainer.probes.act_names)]


def summarize(trainer, hist: History, outcome, run_id: str | None) -> dict[str, Any]:
    cfg = trainer.cfg
    data = trainer.data
    verdicts = diagnose(DiagnosisContext(
        names=trainer.probes.names, grad=hist.grad, last=hist.last, act_names=trainer.probes.act_names,
        dead_check=cfg.activation.name == "relu", diverged=outcome.diverged, metrics=hist.metrics,
        config=cfg.resolved(), task=data.task, time_grad=hist.last.get("time_grad"),
        chance_loss=chance_loss(data.y_train.cpu().numpy(), data.task, cfg.train.loss, data.n_classes,
                                getattr(cfg.model, "output_activation", "none") == "sigmoid")))
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
        "steps": outcome.step, "total_steps": trainer.total_steps, "epochs": round(outcome.epoch, 4),
        "samples": outcome.samples, "train_seconds": round(outcome.train_seconds, 4),
        "samples_per_s": round(outcome.samples / secs, 1),
        "final": outcome.final, "best": best,
        "verdict": headline(verdicts), "verdicts": verdicts,
        "diverged": outcome.diverged,
        "layers": _layer_summaries(trainer, hist),
        "activations": _activation_summaries(trainer, hist),
        # ||dL/dh_t|| at the last log step, [recurrent layer, t] (recurrent models only).
        "time_grad": hist.last.get("time_grad"),
        "init_check": hist.init_check,
    })


class RunWriter:
    """Writes the run folder as the run goes (the trainer itself never touches files)."""

    def __init__(self, folder: RunFolder, hist: History):
        self.folder, self.hist = folder, hist
        self.summary: dict[str, Any] = {}

    def on_start(self, trainer):
        cfg = trainer.cfg
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

    def on_end(self, trainer, outcome):
        self.summary = summarize(trainer, self.hist, outcome, self.folder.run_id)
        self.folder.write_summary(self.summary)
        if trainer.cfg.train.checkpoint and outcome.status != "diverged":
            self.folder.write_checkpoint(checkpoint_state(trainer))
        self.folder.update_meta(status=outcome.status, ended=now(), reason=outcome.reason)
        self.folder.close()


def checkpoint_state(trainer) -> dict[str, Any]:
    import torch

    return {
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
        "step": trainer.step,
        "rng": {"torch": torch.get_rng_state(), "numpy": _numpy_rng_state(),
                "python": random.getstate(), "generator": trainer.generator.get_state()},
        "config": trainer.cfg.resolved(),
    }


def _numpy_rng_state() -> dict[str, Any]:
    """numpy's global RNG state as tensors and ints, so torch.load(weights_only=True) reads it."""
    import torch

    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def check(config: str | Path | dict | Config, overrides: Iterable[str] = ()) -> Config:
    """Everything `train` checks before its first step, without training or writing.

    Validates the config, loads the data and builds the model, optimizer and init
    (a weights file must fit the model, an .npz must hold all four arrays).
    """
    from .trainer import Trainer

    cfg = load_config(config, list(overrides))
    Trainer(cfg)
    return cfg


def train(config: str | Path | dict | Config, overrides: Iterable[str] = (), *,
          runs_dir: str | Path = "runs", callbacks: Iterable[Any] = (), save: bool = True) -> RunResult:
    """Train one config (a YAML path, a dict or a Config) and return its RunResult.

    overrides are `key.path=value` strings, as with `dlx train --set`. With
    save=False nothing is written to disk. Raises ConfigError / DlxError for the
    user's mistakes; a run that diverges or is interrupted returns normally with
    that status.
    """
    from .trainer import Trainer

    cfg = load_config(config, list(overrides))
    folder = RunFolder(Path(runs_dir), cfg.name) if save else None
    hist = History()
    writer = RunWriter(folder, hist) if folder else None
    cbs = [hist, *([writer] if writer else []), *callbacks]
    trainer = Trainer(cfg, callbacks=cbs)
    try:
        outcome = trainer.run()
    except BaseException as e:
        if folder is not None and folder.meta.get("status") == "running":
            status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            folder.update_meta(status=status, ended=now(), reason=f"{type(e).__name__}: {e}",
                               error=traceback.format_exc())
            folder.close()
            e.dlx_run_path = folder.path  # type: ignore[attr-defined]  (for the CLI's message)
        raise
    summary = writer.summary if writer else summarize(trainer, hist, outcome, None)
    return RunResult(path=folder.path if folder else None, status=outcome.status,
                     summary=summary, metrics=hist.metrics)

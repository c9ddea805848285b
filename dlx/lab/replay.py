"""`dlx lab RUN`: a finished run opened in the page and scrubbed through its snapshots. Each
snapshot becomes an event like a live one (the pictures and the network view computed from
the model at those weights, dlx.records.model rebuilding it; the metrics of the logged
step nearest it)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np


def replay_target(ref: str, runs_dir: Path) -> Path | None:
    """The run folder `dlx lab REF` means, or None where REF is a config (a YAML path or an
    example's name): a folder holding a run, else, when REF is no file and no example, a
    run as other commands find it (its id or a part of it, 'last')."""
    from dlx.config.catalogue import shipped
    from dlx.core.errors import DlxError
    from dlx.records.folders import META_FILE, find_run

    path = Path(ref)
    if path.is_dir() and (path / META_FILE).is_file():
        return path
    if path.exists() or shipped(str(ref)) is not None:
        return None
    try:
        return find_run(ref, Path(runs_dir))
    except DlxError:
        return None  # not a run either: the config's "not found", with the examples it may mean


class Replay:
    """A run folder's model, at each snapshot on request (one at a time: one model)."""

    def __init__(self, path: Path):
        from dlx.lab.runs import lab_network
        from dlx.records.folders import METRICS_FILE, PROBES_FILE, read_jsonl, read_snapshots
        from dlx.records.model import saved_model

        self.path = Path(path)
        self.config, self.cfg, self.trainer, at = saved_model(self.path)
        snaps = read_snapshots(self.path, mmap=True)
        if snaps and snaps["steps"]:
            self.steps = [int(s) for s in snaps["steps"]]
            self.states = snaps["states"]
        else:  # no snapshots kept: the checkpoint's weights alone
            self.steps = [at]
            self.states = [{k: v.detach().clone() for k, v in self.trainer.model.state_dict().items()}]
        self.metrics = read_jsonl(self.path / METRICS_FILE)
        self.probes = {p["step"]: p for p in read_jsonl(self.path / PROBES_FILE)}
        self.network = lab_network(self.cfg)
        self.lock = threading.Lock()

    @property
    def run_id(self) -> str:
        return self.path.name

    def info(self) -> dict[str, Any]:
        return {"run": self.run_id, "steps": self.steps, "config": self.cfg.resolved(), "network": self.network}

    def event(self, i: int) -> dict[str, Any]:
        """Snapshot i as a live event: step, total, the metrics and per-layer gradients of the
        logged step nearest it, the pictures and the network view at its weights."""
        from dlx.lab.runs import lab_pictures

        step = self.steps[i]
        ev: dict[str, Any] = {"run": self.run_id, "step": step, "total": self.trainer.total_steps, "replay": True}
        if self.metrics:
            m = min(self.metrics, key=lambda r: abs(r["step"] - step))
            ev["metrics"] = {k: m.get(k) for k in ("train_loss", "train_acc", "test_loss", "test_acc")}
            ev["metrics_step"] = m["step"]
            g = np.asarray((self.probes.get(m["step"]) or {}).get("grad_norm") or [], dtype=float)
            if g.ndim == 2 and g.size:
                with np.errstate(divide="ignore", invalid="ignore"):
                    ev["grad"] = [float(v) if np.isfinite(v) else None for v in np.log10(np.median(g, axis=0))]
        with self.lock:
            model = self.trainer.model
            model.load_state_dict(self.states[i])
            for p in model.parameters():
                p.grad = None  # a snapshot keeps no gradients
            model.eval()
            ev.update(lab_pictures(self.trainer))
        return ev

"""Recording one run to its folder: RunWriter writes the run folder as the run goes (a
callback of the trainer; the trainer itself never touches files, and the folder layout is
runs.RunFolder's), and Snapshots keeps the model's weights along the way. The in-memory
history, the interval records and the summary are dlx.run.history's (no files there);
their names stay importable from here.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from dlx.config.loader import dump_yaml
from dlx.config.schema import Train
from dlx.records.jsonio import read_jsonl, write_atomic
from dlx.records.layout import CONFIG_FILE, EVENTS_FILE, INSTRUMENTS_FILE, MASKS_FILE, METRICS_FILE, PROBES_FILE
from dlx.records.locks import now
from dlx.records.reading import read_snapshots
from dlx.records.runs import RunFolder, command_line, git_commit, versions
from dlx.records.tickets import write_masks
from dlx.run.history import (  # noqa: F401  (re-exported: dlx.records.recording's names before the split)
    MAX_CLASS_TABLE,
    NEAR_ZERO,
    PROBE_KEYS,
    SCALAR_KEYS,
    History,
    checkpoint_state,
    diagnosis_context,
    metrics_record,
    probes_record,
    summarize,
)

# A run keeps its model's weights at up to train.snapshots log steps (SNAPSHOTS by default;
# step 0 and the last among them), as many as fit in SNAPSHOT_BYTES: the quickstart's
# 8.6k-parameter mlp keeps 30 (1 MB), the MNIST mlp's 270k parameters 3 (init, middle, end).
SNAPSHOTS = Train.model_fields["snapshots"].default
SNAPSHOT_BYTES = 4 * 2**20


class Snapshots:
    """The model's weights at log steps spread evenly over the run, kept for pictures of
    what it computed along the way (dlx plot --step, dlx animate, the histograms between
    init and end). Weights, not pictures: every picture at a snapshot is drawn from them by
    the same code, at any resolution, as the end's from the checkpoint, and a small
    model's weights take fewer bytes than its pictures would. Taken between steps (at the
    log step's sync, never inside a step); saved with the checkpoint (layout.SNAPSHOTS_FILE)."""

    def __init__(self):
        self.steps: list[int] = []
        self.losses: list[float | None] = []
        self.states: list[dict[str, Any]] = []
        self.targets: list[int] = []
        self._saved = 0  # snapshots in the file
        self.keep = True  # False: train.snapshots 0, none taken and no file written

    def plan(self, trainer) -> None:
        """The steps to snapshot at: as many as SNAPSHOT_BYTES holds (at most train.snapshots),
        evenly spaced, the last step last. A log step takes the targets it reached.
        train.snapshots 0: none at all (no snapshots.pt; the init is drawn again from the
        seed, the end is checkpoint.pt's)."""
        self.keep = trainer.cfg.train.snapshots > 0
        size = sum(t.numel() * t.element_size() for t in trainer.model.state_dict().values())
        n = min(trainer.cfg.train.snapshots, max(1, SNAPSHOT_BYTES // max(size, 1)))
        total = trainer.total_steps
        self.targets = sorted({math.ceil(k * total / (n - 1)) for k in range(1, n)}) if n > 1 else []

    def due(self, step: int) -> bool:
        """Whether the log step `step` reaches a target past the last snapshot."""
        last = self.steps[-1] if self.steps else -1
        return any(last < t <= step for t in self.targets)

    def take(self, trainer, loss: float | None) -> None:
        if not self.keep:
            return
        state = trainer.model.state_dict()
        self.steps.append(int(trainer.step))
        self.losses.append(None if loss is None or not math.isfinite(loss) else float(loss))
        self.states.append({k: v.detach().to("cpu", copy=True) for k, v in state.items()})

    def restore(self, folder: RunFolder, step: int) -> None:
        """A resumed run's snapshots up to the step it resumes from."""
        snaps = read_snapshots(folder.path) or {"steps": [], "losses": [], "states": []}
        keep = [i for i, s in enumerate(snaps["steps"]) if s <= step]
        self.steps = [int(snaps["steps"][i]) for i in keep]
        self.losses = [snaps["losses"][i] for i in keep]
        self.states = [snaps["states"][i] for i in keep]
        self._saved = len(self.steps)

    def save(self, folder: RunFolder) -> None:
        if len(self.steps) != self._saved:
            folder.write_snapshots({"steps": self.steps, "losses": self.losses, "states": self.states})
            self._saved = len(self.steps)


class RunWriter:
    """Writes the run folder as the run goes (the trainer itself never touches files)."""

    def __init__(self, folder: RunFolder, hist: History, resuming: bool = False):
        self.folder, self.hist, self.resuming = folder, hist, resuming
        self.summary: dict[str, Any] = {}
        self.snapshots = Snapshots()

    def on_start(self, trainer):
        cfg = trainer.cfg
        self.snapshots.plan(trainer)
        if self.resuming:
            self.snapshots.restore(self.folder, trainer.step)
            self._events_before(trainer.step)
            resumes = self.folder.meta.get("resumes") or []
            resumes.append({"at": now(), "step": trainer.step, "command": command_line()})
            self.folder.resume(
                trainer.logged_step,
                ended=None,
                reason=None,
                error=None,
                resumes=resumes,
                device=str(trainer.device),
                cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
            )
            return
        meta = {
            "name": cfg.name,
            "seed": cfg.seed,
            "device": str(trainer.device),
            # The GPU slot an executor gave this run (None: every device the machine has).
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "started": now(),
            "ended": None,
            "pid": os.getpid(),
            "command": command_line(),
            "cwd": os.getcwd(),
            "git_commit": git_commit(),
            "versions": versions(),
            "data": {
                "name": trainer.data.name,
                "task": trainer.data.task,
                "n_train": len(trainer.data.x_train),
                "n_test": len(trainer.data.x_test),
                "feature_shape": list(trainer.data.feature_shape),
                "out_dim": trainer.data.out_dim,
            },
            "batch_size": trainer.batch_size,
            "steps_per_epoch": trainer.steps_per_epoch,
            "total_steps": trainer.total_steps,
            "parameters": sum(p.numel() for p in trainer.model.parameters()),
            "layers": [{"name": n, "shape": s} for n, s in zip(trainer.probes.names, trainer.probes.shapes)],
            "activations": trainer.probes.act_names,
        }
        self.folder.open(dump_yaml(cfg.resolved()), meta)
        if getattr(trainer, "mask", None) is not None:  # a stacked trial has none (masked runs never stack)
            write_masks(self.folder.path / MASKS_FILE, trainer.mask.masks)
        self.snapshots.take(trainer, None)  # step 0: the init

    def on_interval(self, trainer, record):
        self.folder.append(METRICS_FILE, metrics_record(record))
        self.folder.append(PROBES_FILE, probes_record(record))
        if not record.get("diverged") and self.snapshots.due(trainer.step):
            self.snapshots.take(trainer, record.get("train_loss"))
        self.folder.heartbeat()  # after the records: a fresh heartbeat means they are on disk

    def on_change(self, trainer, event):
        """A change took effect (dlx.run.changes): a line of events.jsonl."""
        self.folder.append(EVENTS_FILE, {k: event[k] for k in ("step", "set", "was", "at")})

    def on_schedule(self, trainer):
        """The run's schedule gained a change (dlx lab): config.yaml says so, as the checkpoint will."""
        write_atomic(self.folder.path / CONFIG_FILE, dump_yaml(trainer.cfg.resolved()))

    def _events_before(self, step: int) -> None:
        """A resumed run keeps the events of the changes its checkpoint holds (before its step);
        the others it applies again, and writes again, as they come."""
        path = self.folder.path / EVENTS_FILE
        if path.is_file():
            keep = [e for e in read_jsonl(path) if isinstance(e.get("step"), int) and e["step"] < step]
            write_atomic(path, "".join(json.dumps(e) + "\n" for e in keep))

    def on_instruments(self, trainer, record):
        self.folder.append(INSTRUMENTS_FILE, record)

    def on_checkpoint(self, trainer):
        self.folder.write_checkpoint(checkpoint_state(trainer, self.hist.init_check))
        self.snapshots.save(self.folder)

    def on_end(self, trainer, outcome):
        self.summary = summarize(trainer, self.hist, outcome, self.folder.run_id)
        self.folder.write_summary(self.summary)
        # Not after a second Ctrl-C mid-step (trainer.resumable is False): the state is half
        # a step, and the last periodic checkpoint, if any, stays the one to resume from.
        whole = outcome.status != "diverged" and trainer.resumable
        if whole and self.snapshots.steps[-1:] != [trainer.step]:  # a run stopped early: its last step
            self.snapshots.take(trainer, (self.hist.metrics[-1] if self.hist.metrics else {}).get("train_loss"))
        if trainer.cfg.train.checkpoint and whole:
            self.folder.write_checkpoint(checkpoint_state(trainer, self.hist.init_check))
        self.snapshots.save(self.folder)
        self.folder.update_meta(status=outcome.status, ended=now(), reason=outcome.reason)
        self.folder.close()

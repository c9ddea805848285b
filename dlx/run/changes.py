"""Changes while a run trains: train.changes' schedule, and dlx lab's knobs turned while it
plays (added to the schedule at the step they are taken), applied between steps.

Each change takes effect at the first step boundary at or after its step: the steps after
it use the new value, and metrics.jsonl's "lr" shows it from the next log interval on. A
change of train.batch_size waits for the first epoch start at or after its step (the
epoch under the old size is never cut); its new epoch draws a fresh sample order and
counts epochs by the new size (steps_per_epoch = samples // batch size), so the first one
may be short. The run's number of steps stays as it was.

Applied: optimizer.lr to every parameter group (a schedule's base lr too), l1/l2 to the
penalty the loss adds (Trainer._penalty reads `regularization` here), dropout to the p of
the model's nn.Dropout modules (a model built without them is refused: it has nowhere to
put it), batch_size to the loop's batches. Each applied change goes to the callbacks'
on_change(trainer, event) as {step, set, was, at} (RunWriter: a line of events.jsonl).

Resume: the checkpoint at step S holds the state before the changes of boundary S; a
resumed run applies again, silently, every change that took effect before S (the
penalty, dropout and batch size are not in the checkpoint; the lr is, and is set to the
same value), and the others as they come, as the run that was never stopped did.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any, Callable

import torch

from dlx.core.errors import SpecError

BATCH = "train.batch_size"


@dataclass
class Item:
    step: int
    order: int
    key: str
    value: float | int


def due(item: Item, step: int, steps_per_epoch: int) -> bool:
    """Whether a pending change takes effect at the boundary after `step`."""
    return step >= item.step and (item.key != BATCH or step % steps_per_epoch == 0)


def take_due(pending: list[Item], step: int, spe: int, n: int) -> tuple[list[Item], int]:
    """The changes taking effect at the boundary after `step` (in schedule order) and the
    steps per epoch after them; the rule both the loop and a resume's replay follow."""
    out = []
    for it in list(pending):
        if due(it, step, spe):
            out.append(it)
            pending.remove(it)
            if it.key == BATCH:
                spe = n // int(it.value)
    return out, spe


class Changes:
    """The trainer's changes (trainer.changes): at_boundary(trainer) is called by the loop
    before each step. Other threads (the lab's server) only queue: request() and call()."""

    def __init__(self, trainer):
        cfg = trainer.cfg
        self.regularization = cfg.regularization  # what the penalty reads (l1, l2)
        self.n = len(trainer.data.x_train)
        opt = cfg.optimizer
        self.values: dict[str, Any] = {
            "optimizer.lr": getattr(opt, "lr", None),
            "regularization.l2": cfg.regularization.l2,
            "regularization.l1": cfg.regularization.l1,
            "regularization.dropout": cfg.regularization.dropout,
            BATCH: trainer.batch_size,
        }
        self.pending: list[Item] = []
        for i, ch in enumerate(cfg.train.changes):
            for key, value in ch.set.items():
                why = self.refusal(trainer, key, value)
                if why:
                    raise SpecError(("train", "changes", i, "set", key), why)
                self.pending.append(Item(ch.step, i, key, value))
        self.pending.sort(key=lambda it: (it.step, it.order))
        self.flush_now = False  # the loop logs the coming step alone (the lab's step mode)
        self._lock = threading.Lock()
        self._queue: list[tuple[str, Any]] = []
        self._started = False

    # ---- other threads
    def request(self, values: dict[str, Any]) -> None:
        """Add a change at the step the training thread is at when it next reaches a boundary."""
        with self._lock:
            self._queue.append(("set", dict(values)))

    def call(self, fn: Callable[[Any], None], flush: bool = False) -> None:
        """Run fn(trainer) in the training thread at the next boundary; flush: log that step alone."""
        with self._lock:
            self._queue.append(("call", (fn, flush)))

    def refusal(self, trainer, key: str, value: Any) -> str | None:
        """Why this run cannot take the change (None: it can)."""
        if key == "regularization.dropout" and not any(
            isinstance(m, torch.nn.Dropout) for m in trainer.model.modules()
        ):
            return (
                "the model was built without dropout modules (regularization.dropout 0, or a model that "
                "applies none): start the run with regularization.dropout > 0 to change it while it trains"
            )
        if key == BATCH and int(value) > self.n:
            return f"{int(value)} is larger than the {self.n} training samples"
        if key == "optimizer.lr" and self.values["optimizer.lr"] is None:
            return "this optimizer has no lr"
        return None

    # ---- the training thread
    def at_boundary(self, trainer) -> None:
        self.flush_now = False
        if not self._started:
            self._started = True
            self._replay(trainer)
        if self._queue:
            with self._lock:
                queue, self._queue = self._queue, []
            for kind, what in queue:
                if kind == "set":
                    self._schedule(trainer, what)
                else:
                    fn, flush = what
                    fn(trainer)
                    self.flush_now = self.flush_now or flush
        if not self.pending:
            return
        taken, _ = take_due(self.pending, trainer.step, trainer.steps_per_epoch, self.n)
        if not taken:
            return
        was = {}
        for it in taken:
            was.setdefault(it.key, self.values[it.key])
            self._apply(trainer, it, fresh_order=True)
        event = {
            "step": trainer.step,
            "set": {it.key: it.value for it in taken},
            "was": was,
            "at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        for cb in trainer.callbacks:
            fn = getattr(cb, "on_change", None)
            if fn is not None:
                fn(trainer, event)

    def _schedule(self, trainer, values: dict[str, Any]) -> None:
        """A requested change joins the schedule at this step, and the run's config with it
        (so its config.yaml and checkpoint reproduce the run)."""
        from dlx.config.schema import Change

        change = Change(step=trainer.step, set=values)
        order = len(trainer.cfg.train.changes)
        train = trainer.cfg.train.model_copy(update={"changes": [*trainer.cfg.train.changes, change]})
        trainer.cfg = trainer.cfg.model_copy(update={"train": train})
        self.pending.extend(Item(change.step, order, k, v) for k, v in change.set.items())
        self.pending.sort(key=lambda it: (it.step, it.order))
        for cb in trainer.callbacks:
            fn = getattr(cb, "on_schedule", None)
            if fn is not None:
                fn(trainer)

    def _replay(self, trainer) -> None:
        """A resumed run: the changes that took effect before its step, applied again silently."""
        if trainer.step == 0 or not self.pending:
            return
        spe = trainer.steps_per_epoch
        while self.pending:
            nxt = min(_next_boundary(it, spe) for it in self.pending)
            if nxt >= trainer.step:
                break
            taken, spe = take_due(self.pending, nxt, spe, self.n)
            for it in taken:
                self._apply(trainer, it, fresh_order=False)

    def _apply(self, trainer, it: Item, fresh_order: bool) -> None:
        key, v = it.key, it.value
        self.values[key] = v
        if key == "optimizer.lr":
            sched = trainer.scheduler
            for i, g in enumerate(trainer.optimizer.param_groups):
                base = v * g.get("lr_scale", 1.0)  # μP's per-layer multiplier (models.base.param_groups)
                if sched is not None:
                    sched.base_lrs[i] = base
                    if "initial_lr" in g:
                        g["initial_lr"] = base
                    g["lr"] = base * sched.lr_lambdas[i](sched.last_epoch)
                else:
                    g["lr"] = base
        elif key in ("regularization.l1", "regularization.l2"):
            self.regularization = self.regularization.model_copy(update={key.split(".")[1]: v})
        elif key == "regularization.dropout":
            for m in trainer.model.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.p = v
        elif key == BATCH:
            trainer.batch_size = int(v)
            trainer.steps_per_epoch = self.n // int(v)
            if fresh_order:  # the new epoch draws its own order (a resume has it in the checkpoint)
                trainer._perm = None


def _next_boundary(it: Item, spe: int) -> int:
    if it.key != BATCH:
        return it.step
    return -(-it.step // spe) * spe

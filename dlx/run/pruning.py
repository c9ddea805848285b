"""Stopping a run on its diagnosis while it trains (train.prune; `--prune-on` of compare and sweep).

After the warm-up (prune.warmup of the steps), at every log interval the verdict engine
reads the run so far: the same Context a finished run's summary is diagnosed from, built
from the history up to this step and nothing after it. Once a kind in prune.on has been
among the verdicts for prune.patience intervals in a row, the run stops with status
"pruned"; its folder is complete (final numbers, verdicts, checkpoint), and its summary's
"pruned" says which verdict, from which step, and its message. Which kinds may stop a run,
and why the others may not, is diagnose.PRUNABLE / NOT_PRUNABLE.
"""

from __future__ import annotations

from typing import Any, Iterable


def prune_sets(prune_on: "str | Iterable[str] | None") -> list[str]:
    """`--prune-on a,b` (or a list) as the --set override every trial of a compare or sweep
    gets: train.prune.on=[a, b] (the config checks the names and says which are safe)."""
    if prune_on is None:
        return []
    kinds = [k.strip() for k in (prune_on.split(",") if isinstance(prune_on, str) else prune_on) if k.strip()]
    return [f"train.prune.on=[{', '.join(kinds)}]"]


class Pruner:
    """A trainer callback: stops the run once a prune.on verdict has held for prune.patience intervals."""

    STATE = ("held", "since")  # what a checkpoint keeps, so a resumed run counts on

    def __init__(self, spec):
        self.on, self.warmup, self.patience = tuple(spec.on), float(spec.warmup), int(spec.patience)
        self.held: dict[str, int] = {}  # log intervals in a row each kind has held
        self.since: dict[str, int] = {}  # the step of the first of them
        self.record: dict[str, Any] | None = None  # summary.json "pruned", once it stopped the run
        self.hist = None
        self._own = False

    def state_dict(self) -> dict[str, Any]:
        return {k: dict(getattr(self, k)) for k in self.STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in self.STATE:
            setattr(self, k, {str(a): int(b) for a, b in (state.get(k) or {}).items()})

    def on_start(self, trainer):
        from dlx.run.history import History

        # The run's own History when it keeps one (dlx train, compare, sweep); else one of ours.
        self.hist = next((cb for cb in trainer.callbacks if isinstance(cb, History)), None)
        if self.hist is None:
            self.hist, self._own = History(), True
            self.hist.on_start(trainer)

    def on_interval(self, trainer, record):
        if self._own:
            self.hist.on_interval(trainer, record)
        if record.get("diverged") or self.record is not None:
            return
        step = int(record["step"])
        if step < self.warmup * trainer.total_steps:
            return
        from dlx.diagnosis.engine import STILL_FALLING, diagnose, outcome
        from dlx.run.history import diagnosis_context

        ctx = diagnosis_context(trainer, self.hist)
        found = {}
        for v in diagnose(ctx):
            found.setdefault(v["kind"], v)
        if "not_learning" in found and "not_learning" in self.on:
            # Mid-run, a loss at chance holds only when the engine found why (it is a symptom
            # of a root verdict) and the loss is flat. Measured: 4 of 42 healthy runs (a
            # shallow sigmoid net on circles, LSTMs and GRUs on the adding task) sat flat at
            # chance past a warm-up of 0.2 (to steps 100-140) before they learned, no cause found; a
            # 10-layer relu net at 93% of chance at step 70 of 155, falling, ended at 0.754.
            v = found["not_learning"]
            fall = outcome(ctx).get("fall_last_half")
            if not v.get("symptom_of") or (isinstance(fall, float) and fall > STILL_FALLING):
                del found["not_learning"]
        for kind in self.on:
            if kind in found:
                self.held[kind] = self.held.get(kind, 0) + 1
                self.since.setdefault(kind, step)
            else:
                self.held.pop(kind, None)
                self.since.pop(kind, None)
        hit = next((k for k in self.on if self.held.get(k, 0) >= self.patience), None)
        if hit is None:
            return
        v = found[hit]
        self.record = {
            "verdict": hit,
            "step": step,
            "since": self.since[hit],
            "checks": self.held[hit],
            "message": v["message"],
            "symptom_of": v.get("symptom_of"),
        }
        trainer.stop(
            "pruned",
            f"pruned at step {step} of {trainer.total_steps}: {hit} held for {self.held[hit]} log intervals "
            f"from step {self.since[hit]} ({v['message']})",
        )

"""Which trials stack (dlx.many.stacking): why_not says why a config cannot, stack_key which
trials can share a stack, plan_stacks how a list of trials is cut into stacks for the slots."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import ClassVar

# At most this many trials per stack (one process): more add little and cost memory.
MAX_STACK = 32
# A stack holds at most this many parameters (K x one trial's): 80 MB of float32 per copy
# (weights, gradients, two Adam moments, the probes' copy before a step).
MAX_STACK_PARAMS = 20_000_000
# ... and its batches at most this many input numbers (K x batch x features): a stack of
# full-batch MNIST runs would otherwise hold K float copies of the training set at once.
MAX_STACK_INPUTS = 1 << 26
SGD_FAMILY = ("sgd", "momentum", "nesterov")
ADAM_FAMILY = ("adam", "adamw")


def why_not(cfg) -> str | None:
    """Why this config cannot be trained stacked, or None if it can."""
    reg = cfg.regularization
    if cfg.model.name != "mlp":
        return f"model {cfg.model.name}: only the mlp is stacked so far"
    if cfg.model.parametrization != "sp":
        return (
            "parametrization: mup steps each layer at its own lr (optimizer groups), which the stacked "
            "step does not: it trains alone"
        )
    if reg.dropout:
        return "dropout draws its masks from one random stream per run; stacked runs would draw other masks"
    if reg.dropconnect:
        return "dropconnect draws its masks from one random stream per run; stacked runs would draw other masks"
    if reg.norm == "batch":
        return "batch norm keeps running statistics per run, which the stack does not hold yet"
    if cfg.activation.learns:  # a fact of the activation's spec (prelu: "its slopes")
        return f"{cfg.activation.name} learns {cfg.activation.learns}, which the stack does not hold yet"
    name = cfg.optimizer.name
    if name not in SGD_FAMILY + ADAM_FAMILY:
        return f"optimizer {name}: the stack steps sgd, momentum, nesterov, adam and adamw"
    if getattr(cfg.optimizer, "amsgrad", False):
        return f"{name} with amsgrad: the stack does not keep its running maximum"
    if getattr(cfg.data, "augment", None) is not None:
        return "data augmentation draws its shifts and rotations per run: a run with it trains alone"
    if cfg.instruments.active:
        return "instruments measure one model's Hessian and per-sample gradients: a run with them trains alone"
    if cfg.train.changes:
        return "train.changes alters one run while it trains: a run with them trains alone"
    if cfg.train.mask is not None:
        return "train.mask holds weights at 0 in one run's step, which the stacked step does not: it trains alone"
    return None


def optimizer_family(name: str) -> str:
    """The formula a stack steps a trial with: "sgd" (sgd, momentum, nesterov) or "adam" (adam, adamw)."""
    if name in SGD_FAMILY:
        return "sgd"
    if name in ADAM_FAMILY:
        return "adam"
    raise ValueError(f"optimizer {name}: the stack steps {', '.join(SGD_FAMILY + ADAM_FAMILY)}")


def stack_key(cfg) -> str:
    """Configs with equal keys can train as one stack: one architecture, data of one shape
    and one loop; seeds, inits, learning rates and the optimizers (sgd, momentum, nesterov,
    adam and adamw, side by side, each by its own formula) and their numbers may differ."""
    r = cfg.resolved()
    reg = {k: v for k, v in r["regularization"].items() if k in ("dropout", "dropconnect", "norm")}
    # How many snapshots a trial keeps is its writer's business, not the stacked loop's.
    train = {k: v for k, v in r["train"].items() if k != "snapshots"}
    return json.dumps([r["data"], r["model"], r["activation"], train, reg], sort_keys=True, default=str)


def stack_count(n: int, slots: int) -> int:
    """How many stacks n trials of one key make: as few as MAX_STACK allows, rounded up to a
    multiple of the slots when there are more trials than slots, so the last round of stacks
    leaves no core idle (100 trials on 2 cores: 2 stacks of 50, not 32, 32, 32 and 4)."""
    count = math.ceil(n / MAX_STACK)
    if n >= 2 * slots:
        count = math.ceil(count / slots) * slots
    return count


def even_parts(members: list[int], count: int) -> list[list[int]]:
    """members cut into count runs of sizes differing by at most one, in order."""
    size, extra = divmod(len(members), count)
    out, at = [], 0
    for k in range(count):
        step = size + (k < extra)
        out.append(members[at : at + step])
        at += step
    return out


@dataclass
class StackTally:
    """What was stacked over every plan of a run of trials (an executor plans them a window
    at a time): its notes count every trial, not the last window's."""

    total: int = 0
    sizes: list[int] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    plans: int = 0  # windows planned so far

    # Every note a plan gives starts with one of these.
    PREFIXES: ClassVar[tuple[str, ...]] = ("stacked: ", "not stacked: ")

    def add(self, total: int, sizes: list[int], reasons: dict[str, int]) -> None:
        self.plans += 1
        self.total += total
        self.sizes += sizes
        for why, n in reasons.items():
            self.reasons[why] = self.reasons.get(why, 0) + n

    def notes(self) -> list[str]:
        out = []
        if self.sizes:
            out.append(
                f"stacked: {sum(self.sizes)} of {self.total} trials train as {len(self.sizes)} stacked "
                f"model(s) of {', '.join(map(str, self.sizes))} (--no-stack trains each alone)"
            )
        out += [f"not stacked: {n} trial(s): {why}" for why, n in self.reasons.items()]
        return out


def plan_stacks(configs: list[dict], slots: int, tally: StackTally | None = None) -> tuple[list[list[int]], list[str]]:
    """Jobs for these trial configs: lists of positions, each a stack (or one trial), and
    notes for the person: what was stacked, what was not and why (also added to `tally`).
    Stacks are split while there are fewer jobs than slots, so every core gets work."""
    from dlx.config.loader import load_config
    from dlx.core.errors import DlxError

    groups: dict[str, list[int]] = {}
    singles: list[int] = []
    reasons: dict[str, int] = {}
    for i, c in enumerate(configs):
        try:
            cfg = load_config(c)
        except DlxError:
            singles.append(i)  # its worker reports the config error
            continue
        why = why_not(cfg)
        if why is not None:
            singles.append(i)
            reasons[why] = reasons.get(why, 0) + 1
            continue
        groups.setdefault(stack_key(cfg), []).append(i)
    jobs: list[list[int]] = []
    for members in groups.values():
        if len(members) == 1:
            singles.append(members[0])
            continue
        jobs += even_parts(members, stack_count(len(members), slots))
    while len(jobs) + len(singles) < slots and jobs and max(map(len, jobs)) > 1:
        big = max(jobs, key=len)
        jobs.remove(big)
        half = (len(big) + 1) // 2
        jobs += [big[:half], big[half:]]
    jobs = [j for j in jobs if len(j) > 1] + [[i] for j in jobs if len(j) == 1 for i in j]
    stacked = [j for j in jobs if len(j) > 1]
    this = StackTally()
    this.add(len(configs), [len(j) for j in stacked], reasons)
    if tally is not None:
        tally.add(len(configs), [len(j) for j in stacked], reasons)
    notes = this.notes()
    return stacked + [j for j in jobs if len(j) == 1] + [[i] for i in sorted(singles)], notes


# ---------------------------------------------------------------------- the stacked model

"""Lottery tickets (Frankle & Carbin 2019): iterative magnitude pruning with rewinding, as many
normal runs. Round 0 trains the config dense; each later round prunes `rate` of the weights
each layer still keeps, smallest |w| at the end of the round before first (the output
layer at half the rate, as the paper does), and trains again from the original init times
that mask: the same config and seed draw the same init, so rewinding is the config plus
train.mask. After the last round a control trains the last mask from another init
(init.seed): the ticket's claim is that its own init matters, not only its sparsity.

Each round's folder keeps masks.pt (the mask it trained under, rounds 1 on) and pruned.pt
(the mask its final weights prune to: the next round's train.mask); the ticket's record
(ticket-NAME.json) lists every round beside the run folders.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dlx.core.errors import UsageError

# The paper prunes the output layer at half the rate of the others (its few weights matter most).
OUTPUT_SHARE = 0.5


@dataclass
class TicketRound:
    round: int  # 0: the dense net; "control" rows keep the last round's number
    kind: str  # dense | ticket | control
    kept: float  # fraction of the pruned layers' weights that train
    test_acc: float | None
    test_loss: float | None
    status: str
    run: str | None  # the run folder
    seconds: float | None


class _FinalWeights:
    """A trainer callback: the model's weights (on the CPU) and pruned layers at the end."""

    def __init__(self):
        self.state: dict[str, Any] = {}
        self.layers: list[str] = []

    def on_end(self, trainer, outcome):
        from dlx.run.masks import prunable

        self.layers = prunable(trainer.model)
        self.state = {n: p.detach().cpu().clone() for n, p in trainer.model.named_parameters()}


def layer_rates(layers: list[str], rate: float) -> dict[str, float]:
    """Each pruned layer's rate: `rate`, the output layer (the last) OUTPUT_SHARE of it."""
    return {n: rate * (OUTPUT_SHARE if i == len(layers) - 1 else 1.0) for i, n in enumerate(layers)}


def ticket(
    config: str | Path | dict,
    rounds: int,
    rate: float = 0.2,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    runs_dir: str | Path = "runs",
    control_seed: int | None = None,
    quiet: bool = True,
    on_round=None,
) -> dict[str, Any]:
    """Iterative magnitude pruning with rewinding: `rounds` prunings after the dense round 0,
    then the random re-init control (init.seed: control_seed, default the run's seed + 1).
    on_round(TicketRound) is told of each row as it lands. The record (also written as
    runs_dir/ticket-NAME.json): {"name", "rate", "rows": [TicketRound as dicts], "record", "figure"}."""
    from dlx import api
    from dlx.config.loader import load_config
    from dlx.records.layout import MASKS_FILE, PRUNED_FILE
    from dlx.records.tickets import ticket_paths, write_masks, write_ticket_record
    from dlx.run.masks import kept_fraction, prune_by_magnitude

    if not 0 < rate < 1:
        raise UsageError(f"--rate {rate}: give the fraction of the remaining weights pruned each round, in (0, 1)")
    if rounds < 1:
        raise UsageError(f"--rounds {rounds}: give 1 or more (round 0, the dense net, always trains)")
    cfg = load_config(config, list(overrides))
    if cfg.train.mask is not None:
        raise UsageError("the config already sets train.mask: dlx ticket makes the masks; start from a dense config")
    base = cfg.resolved()
    stem = cfg.name or (Path(config).stem if isinstance(config, (str, Path)) else "ticket")
    stem = re.sub(r"[^A-Za-z0-9_.\-]", "-", stem).lstrip("-_.") or "ticket"  # a run name's characters
    name = f"{stem}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    rows: list[TicketRound] = []
    masks = None

    def train(k: int, kind: str, mask_path: Path | None, init_seed: int | None) -> tuple[TicketRound, _FinalWeights]:
        c = {**base, "name": f"{stem[:40]}-{kind}{k}", "train": {**base["train"], "mask": mask_path and str(mask_path)}}
        if init_seed is not None:
            c["init"] = {**base["init"], "seed": init_seed}
        final = _FinalWeights()
        run = api.train(c, runs_dir=runs_dir, callbacks=[final], quiet=quiet)
        f = run.final
        row = TicketRound(
            round=k,
            kind=kind,
            kept=kept_fraction(masks) if masks is not None else 1.0,
            test_acc=f.get("test_acc"),
            test_loss=f.get("test_loss"),
            status=run.status,
            run=str(run.path) if run.path else None,
            seconds=run.summary.get("train_seconds"),
        )
        rows.append(row)
        if on_round is not None:
            on_round(row)
        return row, final

    row, final = train(0, "dense", None, None)
    for k in range(1, rounds + 1):
        # A diverged or stopped round's weights are not a trained net's: its magnitudes say nothing.
        if row.status != "completed" or row.run is None or not final.state:
            raise UsageError(
                f"round {k - 1} ended {row.status}, so its weights are no trained net to prune: "
                f"see dlx show {row.run or ''}".rstrip()
            )
        masks = prune_by_magnitude(final.state, masks, layer_rates(final.layers, rate))
        mask_path = write_masks(Path(row.run) / PRUNED_FILE, masks)
        row, final = train(k, "ticket", mask_path, None)
    if row.run is not None and final.state:
        write_masks(
            Path(row.run) / PRUNED_FILE, prune_by_magnitude(final.state, masks, layer_rates(final.layers, rate))
        )
    seed = control_seed if control_seed is not None else (cfg.init.seed if cfg.init.seed is not None else cfg.seed) + 1
    last = Path(rows[-1].run) / MASKS_FILE  # the mask the last round trained under, kept in its folder
    train(rounds, "control", last, seed % 2**32)
    record_path, figure_path = ticket_paths(Path(runs_dir), name)
    record = {
        "name": name,
        "config": str(config) if isinstance(config, (str, Path)) else None,
        "rate": rate,
        "output_rate": rate * OUTPUT_SHARE,
        "control_init_seed": seed % 2**32,
        "rows": [asdict(r) for r in rows],
    }
    write_ticket_record(record_path, record)
    from dlx.views.tickets import ticket_figure

    ticket_figure(record["rows"], figure_path, f"{stem}\niterative magnitude pruning, rate {rate} per round")
    return {**record, "record": str(record_path), "figure": str(figure_path)}

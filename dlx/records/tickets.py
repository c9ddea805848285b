"""The files of lottery tickets (dlx ticket, dlx.many.tickets): a masks file in a run folder
(layout.MASKS_FILE: what a masked run trained under; PRUNED_FILE: what a round's final
weights prune to) and the ticket's record beside the run folders."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from dlx.records.jsonio import write_atomic, write_json
from dlx.records.layout import TICKET_PREFIX


def write_masks(path: Path, masks: dict[str, Any]) -> Path:
    """masks ({parameter name: bool tensor}) saved with torch.save, atomically, on the CPU."""
    import torch

    buf = io.BytesIO()
    torch.save({n: m.detach().to("cpu", torch.bool) for n, m in masks.items()}, buf)
    write_atomic(Path(path), buf.getvalue())
    return Path(path)


def ticket_paths(runs_dir: Path, name: str) -> tuple[Path, Path]:
    """runs_dir/ticket-NAME.json and .png: a ticket's record and its figure."""
    base = Path(runs_dir) / f"{TICKET_PREFIX}{name}"
    return base.parent / f"{base.name}.json", base.parent / f"{base.name}.png"


def write_ticket_record(path: Path, record: dict[str, Any]) -> Path:
    write_json(Path(path), record)
    return Path(path)

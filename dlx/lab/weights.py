"""A lab run's trained weights as a download: the model's state_dict from the run folder's
checkpoint.pt (no optimizer, no RNG state), saved with torch.save, so that
torch.load(file, weights_only=True) reads it and model.load_state_dict() takes it."""

from __future__ import annotations

import io
import re

from dlx.lab.runs import LabError


def weights_of(run) -> tuple[bytes, str]:
    """(the file's bytes, its name "<run folder's name>-weights.pt") of a finished or
    interrupted LabRun; 409 while it trains and for a run that kept no checkpoint (diverged,
    failed, or train.checkpoint: false)."""
    import torch

    from dlx.core.errors import DamagedFile
    from dlx.core.tensorfile import read_tensors
    from dlx.records.folders import CHECKPOINT_FILE

    if not run.done:
        raise LabError(
            409, f"run {run.id} is still {run.status}: stop it (it ends checkpointed) or let it finish, then download"
        )
    ckpt = run.path / CHECKPOINT_FILE if run.path is not None else None
    if ckpt is None or not ckpt.is_file():
        raise LabError(
            409,
            f"run {run.id} ({run.status}) has no checkpoint, so no weights to download: a run that diverged or "
            f"failed keeps none, nor one with train.checkpoint: false",
        )
    try:
        state = read_tensors(ckpt)
    except DamagedFile:
        raise LabError(409, f"run {run.id}'s checkpoint is damaged: no weights to download") from None
    model = state.get("model") if isinstance(state, dict) else None
    if not isinstance(model, dict):
        raise LabError(409, f"run {run.id}'s checkpoint holds no model weights")
    buf = io.BytesIO()
    torch.save(model, buf)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", run.path.name)[:100] or "run"
    return buf.getvalue(), f"{name}-weights.pt"

"""Reading the .pt files dlx writes (checkpoints, snapshots, saved weights): one reader,
safe on a damaged or crafted file. Here, below components (an init from a saved model
reads one) and records (a run folder's checkpoint and snapshots)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlx.core.errors import DamagedFile


def read_tensors(path: Path, map_location: Any = "cpu", mmap: bool = False) -> Any:
    """What torch.save wrote to path (tensors in dicts and lists): the one place dlx reads
    .pt files. DamagedFile, naming the file, when it cannot: truncated, random bytes, or a
    pickle of anything but tensors. weights_only=True always, so such a file runs no code;
    torch's own message is not passed on (it advises weights_only=False, which would).
    mmap: the tensors stay on disk until used (a huge snapshots.pt is not read whole)."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        # weights_only's unpickler refuses a class or function ("Unsupported global: ...")
        # and any opcode it does not know (random bytes).
        crafted = "global" in str(e).lower()
        reason = (
            "it holds Python objects, not only tensors (dlx never runs code from a file)"
            if crafted
            else "it is not a file torch.save wrote (damaged?)"
        )
    except OSError as e:
        reason = f"{e.strerror or type(e).__name__}"
    except Exception:  # torch raises RuntimeError, EOFError, ... for a truncated zip
        reason = "it is damaged (truncated?) or not a file torch.save wrote"
    raise DamagedFile(path, reason)

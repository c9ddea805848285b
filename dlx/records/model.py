"""A run folder's saved model, read back: its checkpoint or one of its snapshots, loaded into
the model its config.yaml builds (records is the layer that knows both the files and the
trainer that builds a model). The pictures, the landscape and the animations draw from it;
views never build a model themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlx.records.layout import CHECKPOINT_FILE, CONFIG_FILE


def saved_model(path: Path, step: int | None = None, notes: list[str] | None = None):
    """(config dict, Config, Trainer holding the saved model in eval mode, the step it is
    of) of a run folder: its checkpoint (none: its last snapshot), or with `step` its
    snapshot nearest that step. A damaged checkpoint raises DamagedFile; given `notes`, it is
    instead left out for the last snapshot, and a line naming it is appended to notes."""
    from dlx.config.loader import load_config, safe_load
    from dlx.core.errors import DamagedFile, DlxError, UsageError
    from dlx.records.folders import read_snapshots, read_tensors
    from dlx.run.trainer import Trainer

    ckpt = path / CHECKPOINT_FILE
    # The snapshots (a file of up to 4 MB) are read only when the checkpoint will not do.
    snaps = read_snapshots(path, mmap=True) if not ckpt.is_file() or step is not None else None
    if not ckpt.is_file() and not (snaps and snaps["steps"]) and kept_no_snapshots(path):
        raise UsageError(
            f"{path.name} has no checkpoint.pt (a diverged or killed run writes none) and kept no "
            f"snapshots (train.snapshots: 0, as a compare's seeds past the first 3 do), so its model "
            f"is not saved: train it again with train.snapshots of 2 or more to draw it"
        )
    if not ckpt.is_file() and not (snaps and snaps["steps"]):
        raise UsageError(
            f"{path.name} has no checkpoint.pt and no snapshots.pt, so its model is not saved: pictures are "
            f"drawn from the saved model (train with train.checkpoint: true, the default)"
        )
    config = safe_load((path / CONFIG_FILE).read_text())
    cfg = load_config(config)
    trainer = Trainer(cfg, resuming=True)  # data and model as training built them, no init drawn
    state = None
    if ckpt.is_file():
        try:
            state = read_tensors(ckpt, map_location=trainer.device)
            if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
                raise DamagedFile(ckpt, "it holds no model weights, so it is not a dlx checkpoint")
        except DamagedFile as e:
            # Damaged, or crafted to run code: never used. The run's end is then its last
            # snapshot (as for a diverged run), when the caller can say so.
            snaps = snaps if snaps is not None or notes is None else read_snapshots(path, mmap=True)
            if notes is None or not (snaps and snaps["steps"]):
                raise
            notes.append(f"{e}; left out, the model drawn is its last snapshot (step {int(snaps['steps'][-1])})")
            state = None
    if state is not None:
        if state.get("data") is not None and state["data"] != trainer.data_fingerprint:
            raise DlxError(f"{path.name}: the data made from its config differ from the data it trained on")
        at, weights = int(state.get("step", 0)), state["model"]
    else:  # a diverged run keeps no checkpoint: its end is its last snapshot before the blow-up
        at, weights = int(snaps["steps"][-1]), snaps["states"][-1]
    if step is not None and step != at:
        if not (snaps and snaps["steps"]):
            snaps = snapshots(path)  # says there are none
        i = int(np.argmin([abs(s - step) for s in snaps["steps"]]))
        at, weights = int(snaps["steps"][i]), snaps["states"][i]
    trainer.model.load_state_dict(weights)
    trainer.model.eval()
    return config, cfg, trainer, at


def each_saved(runs, read, notes: list[str] | None, left_out: str) -> tuple[list, list]:
    """read(run) for each run folder, and the DamagedFile errors of those whose saved model
    cannot be read. Given `notes`, such a run is left out with a line in notes ("<why>;
    <left_out, with {run} its name>"); without, or when no run is left, DamagedFile."""
    from dlx.core.errors import DamagedFile

    read_ok, damaged = [], []
    for run in runs:
        try:
            read_ok.append(read(run))
        except DamagedFile as e:
            if notes is None:
                raise
            damaged.append(e)
            notes.append(f"{e}; {left_out.format(run=Path(run).name)}")
    if not read_ok:
        raise damaged[0]
    return read_ok, damaged


def snapshots(run: str | Path) -> dict:
    """The run folder's snapshots (folders.SNAPSHOTS_FILE); UsageError when it has none."""
    from dlx.core.errors import UsageError
    from dlx.records.folders import read_snapshots

    # Memory-mapped: a view touches the states it draws, never the whole file at once.
    snaps = read_snapshots(Path(run), mmap=True)
    if not snaps or not snaps["steps"]:
        if kept_no_snapshots(Path(run)):
            raise UsageError(
                f"{Path(run).name} has no snapshots.pt: it kept none (train.snapshots: 0, as a compare's "
                f"seeds past the first 3 do), so there is nothing to draw between its init and its end; "
                f"its pictures at the end are drawn without --step (train it again with train.snapshots "
                f"of 2 or more to draw it along the way)"
            )
        raise UsageError(
            f"{Path(run).name} has no snapshots.pt: it was trained before dlx kept the model's weights "
            f"along the way; train it again to draw it at other steps"
        )
    return snaps


def kept_no_snapshots(path: Path) -> bool:
    """Whether the run folder's config says it keeps no snapshots (train.snapshots: 0)."""
    from dlx.config.loader import safe_load

    try:
        config = safe_load((Path(path) / CONFIG_FILE).read_text())
        return isinstance(config, dict) and (config.get("train") or {}).get("snapshots") == 0
    except Exception:  # an unreadable config.yaml: the other message, no second error
        return False


def init_weights(cfg) -> dict:
    """The weights a run of this Config had at step 0: its init drawn again from its seed."""
    from dlx.run.trainer import Trainer

    return Trainer(cfg).model.state_dict()


def start_weights(cfg, snaps: dict | None) -> dict:
    """The weights a run had at step 0: its snapshot of step 0 where it kept one (read_snapshots),
    else its init drawn again from its seed."""
    if snaps and snaps["steps"][:1] == [0]:
        return snaps["states"][0]
    return init_weights(cfg)


def activation_percentiles() -> tuple[float, ...]:
    """The percentiles of each activation's outputs a run records in probes.jsonl (run.probes)."""
    from dlx.run.probes import PERCENTILES

    return PERCENTILES

"""Pictures of what a network computes, from a run folder: the decision boundary of a run
on 2-D inputs (spirals, moons, circles, xor, blobs), from its saved model.

The model is the run's checkpoint.pt, rebuilt from its config.yaml (no init drawn) and
evaluated on a grid over the data's range; the data are made again from the config and
seed, as training made them, and checked against the hash the checkpoint keeps. So the
picture is of exactly the model the run ended with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Grid points per axis of a boundary picture (GRID x GRID model evaluations).
GRID = 200
# The grid reaches this fraction of the data's range beyond it on every side.
MARGIN = 0.1


@dataclass
class Boundary:
    """A run's decision surface: probs [GRID, GRID, classes] on the grid over extent
    (x0, x1, y0, y1), row 0 at y0; the training and test points with their classes."""

    name: str
    config: dict
    extent: tuple[float, float, float, float]
    probs: np.ndarray
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    step: int

    @property
    def pred(self) -> np.ndarray:
        """The predicted class at each grid point [GRID, GRID]."""
        return self.probs.argmax(-1)

    def grid_points(self) -> np.ndarray:
        """The grid's inputs [GRID * GRID, 2], row-major from (x0, y0)."""
        x0, x1, y0, y1 = self.extent
        n = self.probs.shape[0]
        xs, ys = np.linspace(x0, x1, n), np.linspace(y0, y1, n)
        gx, gy = np.meshgrid(xs, ys)
        return np.stack([gx.ravel(), gy.ravel()], axis=1)


def boundary(run: str | Path, grid: int = GRID) -> Boundary:
    """The decision boundary of the run folder `run` (its saved model on a grid)."""
    import torch
    import yaml

    from .config import load_config
    from .errors import DlxError, UsageError
    from .trainer import Trainer

    path = Path(run)
    ckpt = path / "checkpoint.pt"
    if not ckpt.is_file():
        raise UsageError(
            f"{path.name} has no checkpoint.pt, so its model is not saved: the boundary is drawn from "
            f"the saved model (train with train.checkpoint: true, the default)"
        )
    config = yaml.safe_load((path / "config.yaml").read_text())
    cfg = load_config(config)
    trainer = Trainer(cfg, resuming=True)  # data and model as training built them, no init drawn
    data = trainer.data
    if data.task != "classification" or tuple(data.feature_shape) != (2,):
        raise UsageError(
            f"{path.name}: a boundary needs a classifier on 2-D inputs (spirals, moons, circles, xor, blobs); "
            f"this run's data {data.name} has inputs of shape {list(data.feature_shape)} ({data.task})"
        )
    state = torch.load(ckpt, map_location=trainer.device, weights_only=True)
    if state.get("data") is not None and state["data"] != trainer.data_fingerprint:
        raise DlxError(f"{path.name}: the data made from its config differ from the data it trained on")
    trainer.model.load_state_dict(state["model"])
    model = trainer.model.eval()
    xs = torch.cat([data.as_float(data.x_train), data.as_float(data.x_test)]).cpu().numpy()
    lo, hi = xs.min(0), xs.max(0)
    pad = MARGIN * np.maximum(hi - lo, 1e-6)
    extent = (float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1]))
    b = Boundary(
        name=str(config.get("name") or path.name),
        config=config,
        extent=extent,
        probs=np.zeros((grid, grid, data.n_classes)),
        x_train=data.as_float(data.x_train).cpu().numpy(),
        y_train=data.y_train.cpu().numpy(),
        x_test=data.as_float(data.x_test).cpu().numpy(),
        y_test=data.y_test.cpu().numpy(),
        step=int(state.get("step", 0)),
    )
    points = torch.as_tensor(b.grid_points(), dtype=torch.float32, device=trainer.device)
    sigmoid_out = getattr(cfg.model, "output_activation", "none") == "sigmoid"
    with torch.no_grad():
        out = torch.cat([model(points[i : i + 8192]) for i in range(0, len(points), 8192)])
        # Sigmoid outputs are per-class probabilities already (normalised here to sum to one).
        probs = out / out.sum(-1, keepdim=True).clamp_min(1e-12) if sigmoid_out else out.softmax(-1)
    b.probs = probs.double().cpu().numpy().reshape(grid, grid, -1)
    return b


def varying_keys(configs: list[dict]) -> list[str]:
    """For each config, the keys (dotted) whose values differ between the configs, as
    'key=value' text: what tells runs drawn side by side apart (init=zeros, ...)."""

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict) and "name" in v and len(configs) > 1:
                out[key] = v.get("name")  # a component: its name first
                out.update(flat({kk: vv for kk, vv in v.items() if kk != "name"}, key + "."))
            elif isinstance(v, dict):
                out.update(flat(v, key + "."))
            else:
                out[key] = v
        return out

    flats = [flat({k: v for k, v in c.items() if k != "name"}) for c in configs]
    keys = [k for k in dict.fromkeys(k for f in flats for k in f) if len({repr(f.get(k)) for f in flats}) > 1]
    # A component whose name differs: its own settings follow from the name, not worth a title.
    named = {k for k in keys if any(k.startswith(other + ".") for other in keys)}
    return [", ".join(f"{k}={f.get(k)}" for k in keys if k not in named) for f in flats]

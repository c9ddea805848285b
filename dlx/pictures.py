"""Pictures of what a network computes, from a run folder's saved model: the decision
boundary of a run on 2-D inputs (spirals, moons, circles, xor, blobs); an mlp's first-layer
weights as images of its input (MNIST: 28x28); a CNN's first filters and their feature maps.

The model is the run's checkpoint.pt, rebuilt from its config.yaml (no init drawn) and
evaluated on a grid over the data's range; the data are made again from the config and
seed, as training made them, and checked against the hash the checkpoint keeps. So the
picture is of exactly the model the run ended with.
"""

from __future__ import annotations

import math
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


def _saved(path: Path):
    """(config dict, Config, Trainer holding the saved model in eval mode, checkpoint) of a run folder."""
    import torch
    import yaml

    from .config import load_config
    from .errors import DlxError, UsageError
    from .trainer import Trainer

    ckpt = path / "checkpoint.pt"
    if not ckpt.is_file():
        raise UsageError(
            f"{path.name} has no checkpoint.pt, so its model is not saved: pictures are drawn from "
            f"the saved model (train with train.checkpoint: true, the default)"
        )
    config = yaml.safe_load((path / "config.yaml").read_text())
    cfg = load_config(config)
    trainer = Trainer(cfg, resuming=True)  # data and model as training built them, no init drawn
    state = torch.load(ckpt, map_location=trainer.device, weights_only=True)
    if state.get("data") is not None and state["data"] != trainer.data_fingerprint:
        raise DlxError(f"{path.name}: the data made from its config differ from the data it trained on")
    trainer.model.load_state_dict(state["model"])
    trainer.model.eval()
    return config, cfg, trainer, state


def boundary(run: str | Path, grid: int = GRID) -> Boundary:
    """The decision boundary of the run folder `run` (its saved model on a grid)."""
    import torch

    from .errors import UsageError

    path = Path(run)
    config, cfg, trainer, state = _saved(path)
    data = trainer.data
    if data.task != "classification" or tuple(data.feature_shape) != (2,):
        raise UsageError(
            f"{path.name}: a boundary needs a classifier on 2-D inputs (spirals, moons, circles, xor, blobs); "
            f"this run's data {data.name} has inputs of shape {list(data.feature_shape)} ({data.task})"
        )
    model = trainer.model
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


# At most this many images in a weights, filters or feature-maps picture (the first ones).
MAX_IMAGES = 64


@dataclass
class Images:
    """Small images of one layer of a run: images [n, h, w] (at most MAX_IMAGES of total)."""

    name: str
    config: dict
    kind: str  # weights | filters | feature_maps
    layer: str
    images: np.ndarray
    total: int
    step: int
    note: str  # what one image is, for the panel's caption


def _first_layer(trainer, kind: str):
    import torch.nn as nn

    from .errors import UsageError

    name, layer = trainer.model.init_targets()[0]
    conv = isinstance(layer, nn.Conv2d)
    if kind == "weights" and conv:
        raise UsageError(
            f"{trainer.cfg.name or 'this run'}'s first layer {name} is a convolution: "
            f"draw its filters and feature maps (--panels filters,feature_maps)"
        )
    if kind != "weights" and not conv:
        raise UsageError(
            f"{kind} need a convolution as the first layer; this run's {name} is {type(layer).__name__} "
            f"(an mlp on images: --panels weights)"
        )
    return name, layer


def layer_images(run: str | Path, kind: str) -> Images:
    """weights: the first Linear layer's weights per unit as images of the input (an mlp on
    MNIST: 28x28); filters: the first convolution's kernels (averaged over input channels);
    feature_maps: that convolution's outputs for the first test image. From the saved model."""
    import torch

    from .errors import UsageError

    path = Path(run)
    config, cfg, trainer, state = _saved(path)
    data = trainer.data
    shape = tuple(data.feature_shape)
    name, layer = _first_layer(trainer, kind)
    w = layer.weight.detach().cpu()
    if kind == "weights":
        image_shape = shape[-2:] if len(shape) >= 2 else _square(shape[0])
        channels = math.prod(shape) // max(math.prod(image_shape), 1) if image_shape else 0
        if image_shape is None or channels * math.prod(image_shape) != w.shape[1]:
            raise UsageError(
                f"{path.name}: weights are drawn as images of the input, and this run's inputs "
                f"({list(shape)}) are not an image"
            )
        images = w.reshape(w.shape[0], channels, *image_shape).mean(1)
        note = f"{name}: each unit's {w.shape[1]} input weights as a {image_shape[0]}x{image_shape[1]} image"
    elif kind == "filters":
        images = w.mean(1)
        note = f"{name}: each filter's {w.shape[2]}x{w.shape[3]} kernel" + (
            f", averaged over {w.shape[1]} input channels" if w.shape[1] > 1 else ""
        )
    else:
        kept = {}
        hook = layer.register_forward_hook(lambda m, i, o: kept.setdefault("out", o.detach()))
        try:
            with torch.no_grad():
                trainer.model(data.as_float(data.x_test[:1]))
        finally:
            hook.remove()
        images = kept["out"][0].cpu()
        note = f"{name}: each filter's output for test image 0 (label {int(data.y_test[0])})"
    return Images(
        name=str(config.get("name") or path.name),
        config=config,
        kind=kind,
        layer=name,
        images=images[:MAX_IMAGES].double().numpy(),
        total=int(images.shape[0]),
        step=int(state.get("step", 0)),
        note=note,
    )


def _square(n: int) -> tuple[int, int] | None:
    side = math.isqrt(n)
    return (side, side) if side * side == n and side > 1 else None


# Training samples the histograms are measured on (the first ones: the same for init and end).
HIST_SAMPLES = 512


@dataclass
class Histograms:
    """Per hidden layer, at init and at the end (Glorot & Bengio 2010, figs. 6-7): the
    activation outputs and the back-propagated gradients dL/d(pre-activation) of one batch
    of the first HIST_SAMPLES training samples, in eval mode (dropout off)."""

    name: str
    config: dict
    layers: list[str]
    acts: dict[str, list[np.ndarray]]  # "init" | "end" -> one flat array per layer
    grads: dict[str, list[np.ndarray]]
    step: int


def histograms(run: str | Path, samples: int = HIST_SAMPLES) -> Histograms:
    """Histograms of a run's activations and gradients at init (its init drawn again from
    its seed: the weights its step 0 had) and at the end (its saved model)."""
    from .errors import UsageError
    from .trainer import Trainer

    path = Path(run)
    config, cfg, end, state = _saved(path)
    start = Trainer(cfg)  # seeds, data, model, init: as the run built them before its step 0
    layers = [n for n, _ in end.model.activation_modules()]
    if not layers:
        raise UsageError(f"{path.name}: histograms are of hidden activations, and this model has none")
    out = Histograms(str(config.get("name") or path.name), config, layers, {}, {}, int(state.get("step", 0)))
    for when, tr in (("init", start), ("end", end)):
        out.acts[when], out.grads[when] = _layer_values(tr, samples)
    return out


def _layer_values(trainer, samples: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(activation outputs, dL/d inputs of each activation) of one batch, per hidden layer."""
    model = trainer.model
    model.eval()
    kept: list[tuple] = []

    def hook(module, inp, output):
        pre = inp[0]
        if pre.requires_grad:
            pre.retain_grad()
        kept.append((pre, output.detach()))

    hooks = [m.register_forward_hook(hook) for _, m in model.activation_modules()]
    try:
        data = trainer.data
        x, y = data.as_float(data.x_train[:samples]), data.y_train[:samples]
        model.zero_grad(set_to_none=True)
        trainer.loss_fn(model(x), y).backward()
    finally:
        for h in hooks:
            h.remove()
    acts = [o.flatten().double().cpu().numpy() for _, o in kept]
    grads = [(p.grad.flatten().double().cpu().numpy() if p.grad is not None else np.zeros(0)) for p, _ in kept]
    model.zero_grad(set_to_none=True)
    return acts, grads


def picture(run: str | Path, kind: str):
    """The picture `kind` (PICTURES) of a run folder."""
    if kind == "boundary":
        return boundary(run)
    if kind == "histograms":
        return histograms(run)
    return layer_images(run, kind)


# The panels drawn from a run's saved model (one per run, side by side).
PICTURES = ("boundary", "weights", "filters", "feature_maps", "histograms")


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

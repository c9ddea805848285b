"""Pictures of what a network computes, from a run folder's saved model: the decision
boundary of a run on 2-D inputs (spirals, moons, circles, xor, blobs); an mlp's first-layer
weights as images of its input (MNIST: 28x28); a CNN's first filters and their feature maps.

The model is the run's checkpoint.pt (saved.py), rebuilt from its config.yaml (no init drawn) and
evaluated on a grid over the data's range; the data are made again from the config and
seed, as training made them, and checked against the hash the checkpoint keeps. So the
picture is of exactly the model the run ended with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlx.records.model import saved_model, snapshots

# Importable from here as before (dlx.many.ensemble, dlx.results and tests take them from pictures).
from dlx.views.labels import varying_keys as varying_keys
from dlx.views.panel_registry import PICTURES as PICTURES

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
        return plane_grid(self.extent, self.probs.shape[0])


def plane_extent(data) -> tuple[float, float, float, float]:
    """The data's range (train and test) with MARGIN on every side."""
    import torch

    xs = torch.cat([data.as_float(data.x_train), data.as_float(data.x_test)]).cpu().numpy()
    lo, hi = xs.min(0), xs.max(0)
    pad = MARGIN * np.maximum(hi - lo, 1e-6)
    return (float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1]))


def plane_grid(extent, n: int) -> np.ndarray:
    """n x n inputs over extent [n * n, 2], row-major from (x0, y0)."""
    x0, x1, y0, y1 = extent
    gx, gy = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def check_2d(path: Path, data, what: str) -> None:
    from dlx.core.errors import UsageError

    if data.task != "classification" or tuple(data.feature_shape) != (2,):
        raise UsageError(
            f"{path.name}: {what} needs a classifier on 2-D inputs (spirals, moons, circles, xor, blobs); "
            f"this run's data {data.name} has inputs of shape {list(data.feature_shape)} ({data.task})"
        )


def class_probs(trainer, points: np.ndarray) -> np.ndarray:
    """The model's class probabilities at points [n, 2] -> [n, classes]."""
    import torch

    x = torch.as_tensor(points, dtype=torch.float32, device=trainer.device)
    sigmoid_out = getattr(trainer.cfg.model, "output_activation", "none") == "sigmoid"
    with torch.no_grad():
        out = torch.cat([trainer.model(x[i : i + 8192]) for i in range(0, len(x), 8192)])
        # Sigmoid outputs are per-class probabilities already (normalised here to sum to one).
        probs = out / out.sum(-1, keepdim=True).clamp_min(1e-12) if sigmoid_out else out.softmax(-1)
    return probs.double().cpu().numpy()


def boundary(run: str | Path, grid: int = GRID, step: int | None = None) -> Boundary:
    """The decision boundary of the run folder `run`: its saved model (or with `step` its
    snapshot nearest that step) on a grid x grid grid over the data's range."""
    path = Path(run)
    config, cfg, trainer, at = saved_model(path, step)
    check_2d(path, trainer.data, "a boundary")
    return boundary_of(trainer, config, path, grid, at)


def boundary_of(trainer, config: dict, path: Path, grid: int, step: int) -> Boundary:
    data = trainer.data
    extent = plane_extent(data)
    return Boundary(
        name=str(config.get("name") or path.name),
        config=config,
        extent=extent,
        probs=class_probs(trainer, plane_grid(extent, grid)).reshape(grid, grid, -1),
        x_train=data.as_float(data.x_train).cpu().numpy(),
        y_train=data.y_train.cpu().numpy(),
        x_test=data.as_float(data.x_test).cpu().numpy(),
        y_test=data.y_test.cpu().numpy(),
        step=step,
    )


def filmstrip(run: str | Path, frames: int = 6, grid: int = 100) -> list[Boundary]:
    """The boundary at `frames` of a run's snapshots spread evenly from the init to the end;
    a run that kept none (train.snapshots: 0): its init, drawn again from its seed, and its end."""
    from dlx.records.layout import SNAPSHOTS_FILE
    from dlx.records.model import kept_no_snapshots, start_weights

    path = Path(run)
    config, cfg, trainer, at = saved_model(path)
    check_2d(path, trainer.data, "a boundary")
    if kept_no_snapshots(path) and not (path / SNAPSHOTS_FILE).is_file():
        end = boundary_of(trainer, config, path, grid, at)
        trainer.model.load_state_dict(start_weights(cfg, None))
        return [boundary_of(trainer, config, path, grid, 0), end]
    snaps = snapshots(path)
    picked = dict.fromkeys(round(i) for i in np.linspace(0, len(snaps["steps"]) - 1, frames))
    out = []
    for i in picked:
        trainer.model.load_state_dict(snaps["states"][i])
        out.append(boundary_of(trainer, config, path, grid, int(snaps["steps"][i])))
    return out


def hidden_outputs(trainer, points) -> list[np.ndarray]:
    """Each hidden layer's activation outputs [n, units] (flattened past the first axis) at
    points (an array or a model-ready tensor of inputs), input first, without gradients."""
    import torch

    kept: list = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: kept.append(o.detach())) for _, m in trainer.model.activation_modules()
    ]
    try:
        with torch.no_grad():
            trainer.model(torch.as_tensor(points, dtype=torch.float32, device=trainer.device))
    finally:
        for h in hooks:
            h.remove()
    return [o.flatten(1).double().cpu().numpy() for o in kept]


# Grid points per axis of a unit's map (units are small: Playground's are 50 px).
UNIT_GRID = 48
# At most this many units of a layer in a units picture (the first ones).
MAX_UNITS = 64


@dataclass
class Units:
    """Every hidden unit's output over the input plane (TensorFlow Playground's neurons):
    maps[j] [units, UNIT_GRID, UNIT_GRID] for hidden layer layers[j] (at most MAX_UNITS of
    totals[j]), row 0 at y0 of extent."""

    name: str
    config: dict
    extent: tuple[float, float, float, float]
    layers: list[str]
    maps: list[np.ndarray]
    totals: list[int]
    step: int


def _check_hidden(path: Path, trainer, what: str) -> list[str]:
    from dlx.core.errors import UsageError

    check_2d(path, trainer.data, what)
    layers = [n for n, _ in trainer.model.activation_modules()]
    if not layers:
        raise UsageError(f"{path.name}: {what} shows hidden layers, and this model has none")
    return layers


def units(run: str | Path, step: int | None = None, grid: int = UNIT_GRID) -> Units:
    """Each hidden unit's output on a grid over the data's range, layer by layer, from the
    saved model (or its snapshot nearest `step`)."""
    path = Path(run)
    config, cfg, trainer, at = saved_model(path, step)
    _check_hidden(path, trainer, "a units picture")
    return units_of(trainer, config, path, grid, at)


def units_of(trainer, config: dict, path: Path, grid: int, step: int) -> Units:
    layers = [n for n, _ in trainer.model.activation_modules()]
    extent = plane_extent(trainer.data)
    outs = hidden_outputs(trainer, plane_grid(extent, grid))
    maps = [o.T[:MAX_UNITS].reshape(-1, grid, grid) for o in outs]
    return Units(str(config.get("name") or path.name), config, extent, layers, maps, [o.shape[1] for o in outs], step)


# Lines per axis of the grid a warp picture pushes through the net, and points per line.
WARP_LINES = 13
WARP_POINTS = 120
# Training points drawn in a warp picture (the first ones).
WARP_SAMPLES = 400


@dataclass
class Warp:
    """How each layer moves the input plane (ConvNetJS's 2-D demo): per layer (the input
    first), the grid's lines [lines, points, 2] and the training points [n, 2] in two
    coordinates: the layer's two main directions (shares[j] of its spread) or two of its
    units, chosen[j]."""

    name: str
    config: dict
    layers: list[str]
    chosen: list[tuple[int, int] | None]
    lines: list[np.ndarray]
    points: list[np.ndarray]
    classes: np.ndarray
    step: int
    shares: list[float | None] = field(default_factory=list)


def main_directions(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The centre, the two directions that spread the points [n, units] most (PCA: the top
    right singular vectors of the centred points, each signed so its largest entry is
    positive, for a picture that does not flip between runs) and their share of the spread."""
    centre = p.mean(0)
    _, s, vt = np.linalg.svd(p - centre, full_matrices=False)
    v = vt[:2].T
    if v.shape[1] < 2:  # one unit: its own axis twice
        v = np.concatenate([v, v], 1)
    v = v * np.sign(v[np.abs(v).argmax(0), [0, 1]])
    total = float((s**2).sum())
    share = float((s[:2] ** 2).sum() / total) if total > 0 else 1.0
    return centre, v, share


def warp(run: str | Path, pair: tuple[int, int] | None = None, step: int | None = None) -> Warp:
    """The input grid and the training points as each hidden layer sees them: in the layer's
    two main directions (PCA of the training points' outputs), or in two of its units,
    `pair` (the same two in every layer). Main directions, because a ReLU layer's single
    units are 0 for half the plane: two of them fold every point onto the axes and hide
    what the layer does with the rest of its units."""
    from dlx.core.errors import UsageError

    path = Path(run)
    config, cfg, trainer, at = saved_model(path, step)
    layers = _check_hidden(path, trainer, "a warp picture")
    data = trainer.data
    x0, x1, y0, y1 = plane_extent(data)
    t = np.linspace(0.0, 1.0, WARP_POINTS)
    lines = [np.stack([x0 + (x1 - x0) * t, np.full_like(t, y)], 1) for y in np.linspace(y0, y1, WARP_LINES)]
    lines += [np.stack([np.full_like(t, x), y0 + (y1 - y0) * t], 1) for x in np.linspace(x0, x1, WARP_LINES)]
    grid_in = np.concatenate(lines)
    pts = data.as_float(data.x_train[:WARP_SAMPLES]).cpu().numpy().astype(np.float64)
    hidden_grid, hidden_pts = hidden_outputs(trainer, grid_in), hidden_outputs(trainer, pts)
    out = Warp(
        str(config.get("name") or path.name),
        config,
        ["input"],
        [(0, 1)],
        [np.stack(lines)],
        [pts],
        data.y_train[:WARP_SAMPLES].cpu().numpy(),
        at,
        [None],
    )
    for name, g, p in zip(layers, hidden_grid, hidden_pts):
        n = p.shape[1]
        if pair is not None:
            if max(pair) >= n:
                raise UsageError(f"--units {pair[0]},{pair[1]}: layer {name} has units 0 to {n - 1}")
            i, j = pair
            g2, p2, share = g[:, [i, j]], p[:, [i, j]], None
        else:
            centre, v, share = main_directions(p)
            g2, p2 = (g - centre) @ v, (p - centre) @ v
        out.layers.append(name)
        out.chosen.append(pair)
        out.shares.append(share)
        out.lines.append(g2.reshape(len(lines), WARP_POINTS, 2))
        out.points.append(p2)
    return out


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

    from dlx.core.errors import UsageError

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


def layer_images(run: str | Path, kind: str, step: int | None = None) -> Images:
    """weights: what training wrote into the first Linear layer, per unit as an image of the
    input (an mlp on MNIST: 28x28; see _learned_weights); filters: the first convolution's kernels (averaged over input channels);
    feature_maps: that convolution's outputs for the first test image. From the saved model."""
    import torch

    from dlx.core.errors import UsageError

    path = Path(run)
    config, cfg, trainer, at = saved_model(path, step)
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
        images, note = _learned_weights(path, cfg, trainer, name, w, at)
        images = images.reshape(w.shape[0], channels, *image_shape).mean(1)
        note = note.replace("; ", f" ({image_shape[0]}x{image_shape[1]}); ", 1)
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
        step=at,
        note=note,
    )


# Training inputs the pixels' spread is measured on (enough for a stable std per pixel).
SPREAD_SAMPLES = 4096


def _learned_weights(path: Path, cfg, trainer, name: str, w, at: int):
    """What training wrote into the first layer, unit by unit, the most changed first.

    Raw weights after a short training are mostly the init's random draw (on MNIST the
    784-pixel init noise hides the strokes), and pixels that never vary (MNIST's border)
    keep their noise for ever: no image can move them. So each unit shows its change since
    init (W - W0), each pixel weighted by its spread over the training inputs: a pixel's
    contribution to the unit's pre-activation varies by exactly w * std(x). At step 0 there
    is no change yet, and the weights themselves are drawn the same way."""
    import torch

    from dlx.records.folders import read_snapshots
    from dlx.records.model import start_weights

    x = trainer.data.as_float(trainer.data.x_train[:SPREAD_SAMPLES]).reshape(-1, w.shape[1])
    spread = x.std(0) if len(x) > 1 else torch.ones(w.shape[1])
    spread = spread / max(float(spread.max()), 1e-12)
    change = None
    if at > 0:
        start = start_weights(cfg, read_snapshots(path))
        key = f"{name}.weight"
        if key in start:
            change = w - start[key].to(w.dtype)
    shown = (change if change is not None else w) * spread
    order = shown.flatten(1).norm(dim=1).argsort(descending=True)
    what = "change since init" if change is not None else "weights"
    note = (
        f"{name}: each unit's input weights' {what}, times each pixel's spread in the data; "
        f"the {'most changed' if change is not None else 'largest'} units first"
    )
    return shown[order], note


def _square(n: int) -> tuple[int, int] | None:
    side = math.isqrt(n)
    return (side, side) if side * side == n and side > 1 else None


# Training samples the histograms are measured on (the first ones: the same for init and end).
HIST_SAMPLES = 512


# The moments a histograms picture shows: init, the end, and snapshots between.
HIST_MOMENTS = 4


@dataclass
class Histograms:
    """Per hidden layer, at init, a few snapshots between and the end (Glorot & Bengio 2010,
    figs. 6-7): the activation outputs and the back-propagated gradients dL/d(pre-activation)
    of one batch of the first HIST_SAMPLES training samples, in eval mode (dropout off)."""

    name: str
    config: dict
    layers: list[str]
    steps: list[int]  # the moments, init first, the end last
    acts: list[list[np.ndarray]]  # per moment, one flat array per layer
    grads: list[list[np.ndarray]]

    @property
    def step(self) -> int:
        return self.steps[-1]


def histograms(run: str | Path, samples: int = HIST_SAMPLES, moments: int = HIST_MOMENTS) -> Histograms:
    """Histograms of a run's activations and gradients at init, at the end (its saved model)
    and at snapshots evenly between (up to `moments` in all). A run without snapshots
    shows init (its init drawn again from its seed: the weights its step 0 had) and end."""
    from dlx.core.errors import UsageError
    from dlx.records.folders import read_snapshots
    from dlx.records.model import start_weights

    path = Path(run)
    config, cfg, tr, at = saved_model(path)
    layers = [n for n, _ in tr.model.activation_modules()]
    if not layers:
        raise UsageError(f"{path.name}: histograms are of hidden activations, and this model has none")
    snaps = read_snapshots(path) or {"steps": [], "states": []}
    between = [i for i, s in enumerate(snaps["steps"]) if 0 < s < at]
    # The snapshots nearest the steps that split the run evenly (moments - 1 parts).
    targets = [at * k / (moments - 1) for k in range(1, moments - 1)]
    picked = [min(between, key=lambda i: abs(snaps["steps"][i] - t)) for t in targets] if between else []
    out = Histograms(str(config.get("name") or path.name), config, layers, [], [], [])
    end = {k: v.clone() for k, v in tr.model.state_dict().items()}
    start = start_weights(cfg, snaps)
    for step, weights in [
        (0, start),
        *[(snaps["steps"][i], snaps["states"][i]) for i in dict.fromkeys(picked)],
        (at, end),
    ]:
        tr.model.load_state_dict(weights)
        acts, grads = layer_values(tr, samples)
        out.steps.append(int(step))
        out.acts.append(acts)
        out.grads.append(grads)
    return out


def layer_values(trainer, samples: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
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


@dataclass
class AttentionMaps:
    """An attention model's weights for one test sequence: per attention layer (blockI.attn,
    then pool), maps[j] [heads, queries, keys], each row a distribution over the key steps."""

    name: str
    config: dict
    layers: list[str]
    maps: list[np.ndarray]
    sample: int  # which test sequence
    target: str  # its target, for the caption
    step: int


def attention(run: str | Path, step: int | None = None, sample: int = 0) -> AttentionMaps:
    """The attention weights of the run folder's saved model (or its snapshot nearest
    `step`) for test sequence `sample` (Attention.attention_maps)."""
    from dlx.core.errors import UsageError

    path = Path(run)
    config, cfg, trainer, at = saved_model(path, step)
    model, data = trainer.model, trainer.data
    if not hasattr(model, "attention_maps"):
        raise UsageError(
            f"{path.name}: an attention picture needs model: attention; this run's model is {cfg.model.name}"
        )
    maps = model.attention_maps(data.as_float(data.x_test[sample : sample + 1]))
    if not maps:
        raise UsageError(f"{path.name}: this attention model has no attention to draw (blocks: 0, head: many_to_many)")
    y = data.y_test[sample]
    target = f"{float(y):.3g}" if y.numel() == 1 else "one per step" if data.sequence_target else f"{list(y.shape)}"
    return AttentionMaps(
        name=str(config.get("name") or path.name),
        config=config,
        layers=[n for n, _ in maps],
        maps=[w[0].double().cpu().numpy() for _, w in maps],
        sample=sample,
        target=target,
        step=at,
    )


def picture(run: str | Path, kind: str, step: int | None = None, pair: tuple[int, int] | None = None):
    """The picture `kind` (PICTURES) of a run folder: of its saved model, or with `step` of
    its snapshot nearest that step (histograms: always init to end). pair: warp's two units."""
    if kind == "boundary":
        return boundary(run, step=step)
    if kind == "units":
        return units(run, step=step)
    if kind == "warp":
        return warp(run, pair, step=step)
    if kind == "histograms":
        return histograms(run)
    if kind == "attention":
        return attention(run, step=step)
    if kind == "landscape":
        from dlx.views.landscape import landscape

        return landscape(run)
    return layer_images(run, kind, step=step)

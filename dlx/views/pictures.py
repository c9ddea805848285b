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
        return _grid(self.extent, self.probs.shape[0])


def _saved(path: Path, step: int | None = None, notes: list[str] | None = None):
    """(config dict, Config, Trainer holding the saved model in eval mode, the step it is
    of) of a run folder: its checkpoint (none: its last snapshot), or with `step` its
    snapshot nearest that step. A damaged checkpoint raises DamagedFile; given `notes`, it is
    instead left out for the last snapshot, and a line naming it is appended to notes."""
    from dlx.config.loader import load_config, safe_load
    from dlx.core.errors import DamagedFile, DlxError, UsageError
    from dlx.records.folders import CHECKPOINT_FILE, read_snapshots, read_tensors
    from dlx.run.trainer import Trainer

    ckpt = path / CHECKPOINT_FILE
    # The snapshots (a file of up to 4 MB) are read only when the checkpoint will not do.
    snaps = read_snapshots(path, mmap=True) if not ckpt.is_file() or step is not None else None
    if not ckpt.is_file() and not (snaps and snaps["steps"]):
        raise UsageError(
            f"{path.name} has no checkpoint.pt and no snapshots.pt, so its model is not saved: pictures are "
            f"drawn from the saved model (train with train.checkpoint: true, the default)"
        )
    config = safe_load((path / "config.yaml").read_text())
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


def snapshots(run: str | Path) -> dict:
    """The run folder's snapshots (folders.SNAPSHOTS_FILE); UsageError when it has none."""
    from dlx.core.errors import UsageError
    from dlx.records.folders import read_snapshots

    # Memory-mapped: a view touches the states it draws, never the whole file at once.
    snaps = read_snapshots(Path(run), mmap=True)
    if not snaps or not snaps["steps"]:
        raise UsageError(
            f"{Path(run).name} has no snapshots.pt: it was trained before dlx kept the model's weights "
            f"along the way; train it again to draw it at other steps"
        )
    return snaps


def _extent(data) -> tuple[float, float, float, float]:
    """The data's range (train and test) with MARGIN on every side."""
    import torch

    xs = torch.cat([data.as_float(data.x_train), data.as_float(data.x_test)]).cpu().numpy()
    lo, hi = xs.min(0), xs.max(0)
    pad = MARGIN * np.maximum(hi - lo, 1e-6)
    return (float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1]))


def _grid(extent, n: int) -> np.ndarray:
    """n x n inputs over extent [n * n, 2], row-major from (x0, y0)."""
    x0, x1, y0, y1 = extent
    gx, gy = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def _check_2d(path: Path, data, what: str) -> None:
    from dlx.core.errors import UsageError

    if data.task != "classification" or tuple(data.feature_shape) != (2,):
        raise UsageError(
            f"{path.name}: {what} needs a classifier on 2-D inputs (spirals, moons, circles, xor, blobs); "
            f"this run's data {data.name} has inputs of shape {list(data.feature_shape)} ({data.task})"
        )


def _probs(trainer, points: np.ndarray) -> np.ndarray:
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
    config, cfg, trainer, at = _saved(path, step)
    _check_2d(path, trainer.data, "a boundary")
    return _boundary_of(trainer, config, path, grid, at)


def _boundary_of(trainer, config: dict, path: Path, grid: int, step: int) -> Boundary:
    data = trainer.data
    extent = _extent(data)
    return Boundary(
        name=str(config.get("name") or path.name),
        config=config,
        extent=extent,
        probs=_probs(trainer, _grid(extent, grid)).reshape(grid, grid, -1),
        x_train=data.as_float(data.x_train).cpu().numpy(),
        y_train=data.y_train.cpu().numpy(),
        x_test=data.as_float(data.x_test).cpu().numpy(),
        y_test=data.y_test.cpu().numpy(),
        step=step,
    )


def filmstrip(run: str | Path, frames: int = 6, grid: int = 100) -> list[Boundary]:
    """The boundary at `frames` of a run's snapshots spread evenly from the init to the end."""
    path = Path(run)
    config, cfg, trainer, _ = _saved(path)
    _check_2d(path, trainer.data, "a boundary")
    snaps = snapshots(path)
    picked = dict.fromkeys(round(i) for i in np.linspace(0, len(snaps["steps"]) - 1, frames))
    out = []
    for i in picked:
        trainer.model.load_state_dict(snaps["states"][i])
        out.append(_boundary_of(trainer, config, path, grid, int(snaps["steps"][i])))
    return out


def _hidden(trainer, points) -> list[np.ndarray]:
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

    _check_2d(path, trainer.data, what)
    layers = [n for n, _ in trainer.model.activation_modules()]
    if not layers:
        raise UsageError(f"{path.name}: {what} shows hidden layers, and this model has none")
    return layers


def units(run: str | Path, step: int | None = None, grid: int = UNIT_GRID) -> Units:
    """Each hidden unit's output on a grid over the data's range, layer by layer, from the
    saved model (or its snapshot nearest `step`)."""
    path = Path(run)
    config, cfg, trainer, at = _saved(path, step)
    _check_hidden(path, trainer, "a units picture")
    return _units_of(trainer, config, path, grid, at)


def _units_of(trainer, config: dict, path: Path, grid: int, step: int) -> Units:
    layers = [n for n, _ in trainer.model.activation_modules()]
    extent = _extent(trainer.data)
    outs = _hidden(trainer, _grid(extent, grid))
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
    first), the grid's lines [lines, points, 2] and the training points [n, 2] in the
    coordinates of two of its units, chosen[j]."""

    name: str
    config: dict
    layers: list[str]
    chosen: list[tuple[int, int]]
    lines: list[np.ndarray]
    points: list[np.ndarray]
    classes: np.ndarray
    step: int


def warp(run: str | Path, pair: tuple[int, int] | None = None, step: int | None = None) -> Warp:
    """The input grid and the training points as each hidden layer sees them, in two of its
    units: `pair` (the same two in every layer), else each layer's two units that spread
    the training points most."""
    from dlx.core.errors import UsageError

    path = Path(run)
    config, cfg, trainer, at = _saved(path, step)
    layers = _check_hidden(path, trainer, "a warp picture")
    data = trainer.data
    x0, x1, y0, y1 = _extent(data)
    t = np.linspace(0.0, 1.0, WARP_POINTS)
    lines = [np.stack([x0 + (x1 - x0) * t, np.full_like(t, y)], 1) for y in np.linspace(y0, y1, WARP_LINES)]
    lines += [np.stack([np.full_like(t, x), y0 + (y1 - y0) * t], 1) for x in np.linspace(x0, x1, WARP_LINES)]
    grid_in = np.concatenate(lines)
    pts = data.as_float(data.x_train[:WARP_SAMPLES]).cpu().numpy().astype(np.float64)
    hidden_grid, hidden_pts = _hidden(trainer, grid_in), _hidden(trainer, pts)
    out = Warp(
        str(config.get("name") or path.name),
        config,
        ["input"],
        [(0, 1)],
        [np.stack(lines)],
        [pts],
        data.y_train[:WARP_SAMPLES].cpu().numpy(),
        at,
    )
    for name, g, p in zip(layers, hidden_grid, hidden_pts):
        n = p.shape[1]
        if pair is not None:
            if max(pair) >= n:
                raise UsageError(f"--units {pair[0]},{pair[1]}: layer {name} has units 0 to {n - 1}")
            i, j = pair
        else:
            i, j = (int(k) for k in np.argsort(-p.std(0), kind="stable")[:2]) if n > 1 else (0, 0)
        out.layers.append(name)
        out.chosen.append((i, j))
        out.lines.append(g[:, [i, j]].reshape(len(lines), WARP_POINTS, 2))
        out.points.append(p[:, [i, j]])
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
    """weights: the first Linear layer's weights per unit as images of the input (an mlp on
    MNIST: 28x28); filters: the first convolution's kernels (averaged over input channels);
    feature_maps: that convolution's outputs for the first test image. From the saved model."""
    import torch

    from dlx.core.errors import UsageError

    path = Path(run)
    config, cfg, trainer, at = _saved(path, step)
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
        step=at,
        note=note,
    )


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
    from dlx.run.trainer import Trainer

    path = Path(run)
    config, cfg, tr, at = _saved(path)
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
    start = snaps["states"][0] if snaps["steps"][:1] == [0] else Trainer(cfg).model.state_dict()
    for step, weights in [
        (0, start),
        *[(snaps["steps"][i], snaps["states"][i]) for i in dict.fromkeys(picked)],
        (at, end),
    ]:
        tr.model.load_state_dict(weights)
        acts, grads = _layer_values(tr, samples)
        out.steps.append(int(step))
        out.acts.append(acts)
        out.grads.append(grads)
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
    if kind == "landscape":
        from dlx.views.landscape import landscape

        return landscape(run)
    return layer_images(run, kind, step=step)


# The panels drawn from a run's saved model (one per run, side by side).
PICTURES = ("boundary", "units", "warp", "weights", "filters", "feature_maps", "histograms", "landscape")


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
    # A component whose name differs: its own settings are worth a title only where they are
    # not that component's defaults (init=normal, init.std=1; never init.mode=fan_in), and
    # a learning rate always (a comparison of optimizers is one of their lrs too).
    named = {k for k in keys if any(k.startswith(other + ".") for other in keys) and not k.endswith(".lr")}
    usual = [_defaults(c) for c in configs]
    return [
        ", ".join(f"{k}={f.get(k)}" for k in keys if k not in named or (k in f and repr(f[k]) != repr(u.get(k, f[k]))))
        for f, u in zip(flats, usual)
    ]


def _defaults(config: dict) -> dict:
    """For each component of config (a top-level section with a name), its settings' default
    values as dotted keys (init.std -> 0.01); {} where the config does not load."""
    from dlx.config.loader import load_config

    try:
        cfg = load_config(config)
    except Exception:  # noqa: BLE001  (a title is never worth an error)
        return {}
    out = {}
    for section, v in config.items():
        obj = getattr(cfg, section, None)
        if isinstance(v, dict) and "name" in v and hasattr(obj, "model_dump"):
            try:
                usual = type(obj).model_validate({"name": obj.name}).model_dump()
            except Exception:  # noqa: BLE001
                continue
            out.update({f"{section}.{k}": d for k, d in usual.items() if k != "name" and not isinstance(d, dict)})
    return out

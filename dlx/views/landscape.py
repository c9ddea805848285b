"""dlx landscape: the training loss around a run's weights, from its run folder.

- line: the loss along the straight line from the init (snapshot 0) to the final weights,
  a little beyond both ends (Goodfellow et al. 2015); or between two runs' final weights
  (same architecture): is there a barrier between them?
- plane: the loss on a 2-D slice through the final weights (Li et al. 2018), with the
  training trajectory (the run's snapshots) projected on it. Directions "pca": the two
  principal directions of the trajectory itself (the plane it mostly moves in: random
  directions are nearly orthogonal to it, so the path would show as a dot); "random":
  filter-normalised Gaussian directions (each row of a weight scaled to that row's norm,
  biases and norm layers left out), Li et al.'s choice for comparing minima's sharpness.

The loss is the data loss (regularization left out) on the first SAMPLES training samples,
in eval mode; the model is rebuilt from config.yaml by saved.saved_model, as for the pictures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

# Training samples the loss is measured on (the first ones).
SAMPLES = 1024
# Grid points per axis of a plane, and about the points along a line (line_alphas).
GRID = 25
POINTS = 41
# The line's reach beyond its ends: from alpha LO to HI.
LO, HI = -0.25, 1.25


def line_alphas(lo: float = LO, hi: float = HI, points: int = POINTS) -> np.ndarray:
    """About `points` evenly spaced alphas covering [lo, hi], on a grid of step 1/k (k whole),
    so that alpha 0 (the start) and alpha 1 (the end) are samples themselves, exactly: a
    plain linspace(-0.25, 1.25, 41) steps past both, and the loss drawn at the init's and
    the end's markers would be an interpolation of its neighbours'."""
    if not hi > lo or points < 2:
        raise ValueError(f"a line needs hi > lo and 2 points or more; got lo={lo}, hi={hi}, points={points}")
    k = max(1, round((points - 1) / (hi - lo)))  # steps per unit of alpha
    eps = 1e-9  # lo*k a whole number up to rounding: no extra point beyond it
    first, last = math.floor(lo * k + eps), math.ceil(hi * k - eps)
    return np.arange(first, last + 1) / k


@dataclass
class Line:
    name: str
    alphas: np.ndarray  # 0: the start, 1: the end
    loss: np.ndarray
    start: str  # what alpha 0 is ("init", or a run's name)
    end: str


@dataclass
class Plane:
    name: str
    config: dict
    xs: np.ndarray
    ys: np.ndarray
    loss: np.ndarray  # [len(ys), len(xs)]
    trajectory: np.ndarray  # [snapshots, 2], the last at the final weights (0, 0)
    steps: list[int]
    directions: str
    explained: float | None  # pca: the share of the trajectory's variance the plane holds


class _Model:
    """A run's model as a function of one flat parameter vector (buffers at their final values)."""

    def __init__(self, path: Path, notes: list[str] | None = None):
        from dlx.records.model import saved_model

        self.path = Path(path)
        self.config, self.cfg, self.trainer, self.step = saved_model(self.path, notes=notes)
        tr = self.trainer
        self.name = str(self.config.get("name") or Path(path).name)
        self.names = [n for n, p in tr.model.named_parameters() if p.requires_grad]
        named = dict(tr.model.named_parameters())
        self.shapes = [named[n].shape for n in self.names]
        self.final = torch.cat([named[n].detach().reshape(-1) for n in self.names])
        self.buffers = dict(tr.model.named_buffers())
        n = min(SAMPLES, len(tr.data.x_train))
        self.x, self.y = tr.data.as_float(tr.data.x_train[:n]), tr.data.y_train[:n]

    def unflat(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        out, i = {}, 0
        for n, shape in zip(self.names, self.shapes):
            k = int(np.prod(shape))
            out[n] = v[i : i + k].view(shape)
            i += k
        return out

    def flat_state(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([state[n].reshape(-1).to(self.final) for n in self.names])

    @torch.no_grad()
    def loss(self, v: torch.Tensor) -> float:
        from torch.func import functional_call

        out = functional_call(self.trainer.model, (self.unflat(v), self.buffers), (self.x,))
        return float(self.trainer.loss_fn(out, self.y))

    def trajectory(self) -> tuple[list[int], torch.Tensor]:
        """(steps, [snapshots, P] flat weights) of the run's snapshots, the final weights last;
        a run that kept none (train.snapshots: 0): its init, drawn again from its seed, and its end."""
        from dlx.records.layout import SNAPSHOTS_FILE
        from dlx.records.model import kept_no_snapshots, snapshots, start_weights

        if kept_no_snapshots(self.path) and not (self.path / SNAPSHOTS_FILE).is_file():
            init = self.flat_state(start_weights(self.cfg, None))
            return [0, self.step], torch.stack([init, self.final])
        snaps = snapshots(self.path)
        steps = [int(s) for s in snaps["steps"]]
        flats = torch.stack([self.flat_state(s) for s in snaps["states"]])
        if steps[-1] != self.step:
            steps.append(self.step)
            flats = torch.cat([flats, self.final[None]])
        return steps, flats


def line(
    run: str | Path,
    other: str | Path | None = None,
    points: int = POINTS,
    lo: float = LO,
    hi: float = HI,
    progress: Callable[[int, int], None] | None = None,
    notes: list[str] | None = None,
) -> Line:
    """The loss along the line from the run's init to its final weights, or (other) from
    its final weights to the other run's; alphas from line_alphas (0 and 1 among them, exactly).
    notes: see saved.saved_model."""
    from dlx.core.errors import UsageError

    a = _Model(Path(run), notes)
    if other is None:
        _, traj = a.trajectory()
        start, end, start_name, end_name = traj[0], a.final, "init", "end"
    else:
        b = _Model(Path(other), notes)
        if [tuple(s) for s in a.shapes] != [tuple(s) for s in b.shapes]:
            raise UsageError(
                f"{a.name} and {b.name} have different architectures: no straight line joins their weights"
            )
        start, end, start_name, end_name = a.final, b.final, a.name, b.name
    alphas = line_alphas(lo, hi, points)
    losses = []
    for i, t in enumerate(alphas):
        # At 0 and 1 the weights themselves, not start + 1.0 * (end - start): the same up to rounding.
        w = start if t == 0 else end if t == 1 else start + float(t) * (end - start)
        losses.append(a.loss(w))
        if progress:
            progress(i + 1, len(alphas))
    return Line(a.name if other is None else f"{a.name} -> {end_name}", alphas, np.array(losses), start_name, end_name)


def _filter_normalised(m: _Model, gen: torch.Generator) -> torch.Tensor:
    parts = []
    for w in m.unflat(m.final).values():
        d = torch.randn(w.shape, generator=gen, dtype=w.dtype).to(w.device)
        if w.dim() <= 1:
            d.zero_()  # biases and norm layers: left out (Li et al. 2018)
        else:
            rows_w = w.reshape(w.shape[0], -1).norm(dim=1)
            rows_d = d.reshape(d.shape[0], -1).norm(dim=1).clamp_min(1e-12)
            d = d * (rows_w / rows_d).view(-1, *([1] * (w.dim() - 1)))
        parts.append(d.reshape(-1))
    return torch.cat(parts)


def plane(
    run: str | Path,
    grid: int = GRID,
    directions: str = "pca",
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    notes: list[str] | None = None,
) -> Plane:
    """The loss on a grid x grid slice through the run's final weights, its trajectory on it.
    notes: see saved.saved_model."""
    from dlx.core.errors import UsageError

    if directions not in ("pca", "random"):
        raise UsageError(f"--directions {directions!r}: pca (the trajectory's own plane) or random (Li et al.)")
    m = _Model(Path(run), notes)
    steps, traj = m.trajectory()
    rel = (traj - m.final).double()
    explained = None
    if directions == "pca":
        if len(steps) < 3:
            raise UsageError(
                f"{m.name}'s path has {len(steps)} points (its snapshots and its end): a trajectory's plane "
                f"needs 3; use --directions random"
            )
        _, s, vh = torch.linalg.svd(rel, full_matrices=False)
        d = vh[:2]
        explained = float((s[:2] ** 2).sum() / (s**2).sum()) if float((s**2).sum()) > 0 else None
        coords = rel @ d.T  # orthonormal directions: plain dot products
        span = coords.abs().max(0).values.clamp_min(1e-3) * 1.25
        xs = np.linspace(-float(span[0]), float(span[0]), grid)
        ys = np.linspace(-float(span[1]), float(span[1]), grid)
    else:
        gen = torch.Generator().manual_seed(seed)
        d = torch.stack([_filter_normalised(m, gen), _filter_normalised(m, gen)]).double()
        coords = torch.linalg.lstsq(d.T, rel.T).solution.T  # the nearest point of the plane
        xs = ys = np.linspace(-1.0, 1.0, grid)
    d = d.to(m.final.dtype)
    loss = np.zeros((grid, grid))
    for i, b in enumerate(ys):
        for j, a in enumerate(xs):
            loss[i, j] = m.loss(m.final + float(a) * d[0] + float(b) * d[1])
        if progress:
            progress(i + 1, grid)
    return Plane(m.name, m.config, xs, ys, loss, coords.float().numpy(), steps, directions, explained)


@dataclass
class Landscape:
    """A run's landscape picture: the line from init to end and the plane with its path."""

    name: str
    config: dict
    line: Line
    plane: Plane


def landscape(
    run: str | Path,
    directions: str = "pca",
    grid: int = GRID,
    progress: Callable[[int, int], None] | None = None,
    notes: list[str] | None = None,
) -> Landscape:
    """The line and the plane of a run (pictures.picture's "landscape"); notes: see saved.saved_model."""
    points = len(line_alphas())
    total = points + grid
    ln = line(run, progress=(lambda i, n: progress(i, total)) if progress else None, notes=notes)
    # The plane reads the same files: a note about them is given once, by the line.
    pl = plane(
        run, grid, directions, progress=(lambda i, n: progress(points + i, total)) if progress else None, notes=[]
    )
    return Landscape(pl.name, pl.config, ln, pl)


def draw_landscape(where, pic: Landscape, title: str | None = None) -> None:
    """The line (log loss against alpha) above the plane (log loss contours, the trajectory
    from the init's square to the end's star), in `where`: a (sub)figure or an axes' cell."""
    from dlx.views.style import plain, split_axes

    (top,), (bottom,) = split_axes(where, 2, 1, height_ratios=[1, 1.5])
    ln, pl = pic.line, pic.plane
    top.plot(ln.alphas, ln.loss, "-", color="C0", lw=1.5)
    for a in (0, 1):
        top.axvline(a, color="0.6", ls=":", lw=1)
    _mark_ends(top, ln, ("s", "white", 7), ("*", "red", 12))
    top.set_yscale("log")
    top.set_title(plain(title if title is not None else pic.name), fontsize=10)
    top.set_xlabel(f"0: {ln.start}, 1: {ln.end} (the straight line between their weights)", fontsize=8)
    top.set_ylabel("train loss")
    top.grid(alpha=0.3)
    z = np.log10(np.clip(pl.loss, 1e-12, None))
    cs = bottom.contourf(pl.xs, pl.ys, z, levels=20, cmap="viridis")
    bottom.contour(pl.xs, pl.ys, z, levels=20, colors="white", linewidths=0.3, alpha=0.5)
    t = pl.trajectory
    bottom.plot(t[:, 0], t[:, 1], "-o", color="#ff7f0e", ms=3, lw=1.2)
    bottom.plot(t[0, 0], t[0, 1], "s", color="white", mec="black", ms=7, label=f"step {pl.steps[0]} (init)")
    bottom.plot(t[-1, 0], t[-1, 1], "*", color="red", mec="black", ms=12, label=f"step {pl.steps[-1]} (end)")
    bottom.figure.colorbar(cs, ax=bottom, label="log10 train loss", shrink=0.8)
    how = (
        f"the trajectory's 2 principal directions ({pl.explained:.0%} of its variance)"
        if pl.directions == "pca" and pl.explained is not None
        else "2 filter-normalised random directions (Li et al. 2018)"
    )
    bottom.set_xlabel(how, fontsize=8)
    # Above the plane, never over it.
    bottom.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=2, frameon=False)


def _mark_ends(ax, ln: Line, start: tuple, end: tuple) -> None:
    """Markers on the line's samples at alpha 0 and 1 (line_alphas has both): the loss drawn
    there is the loss measured at those weights. start, end: (marker, face colour, size)."""
    for a, (marker, color, size) in ((0.0, start), (1.0, end)):
        hit = np.flatnonzero(ln.alphas == a)
        if hit.size:
            ax.plot(a, ln.loss[hit[0]], marker, color=color, mec="black", ms=size, zorder=3)


def landscape_figure(
    runs: list[Path],
    directions: str = "pca",
    grid: int = GRID,
    between: bool = False,
    progress: Callable[[int, int], None] | None = None,
    notes: list[str] | None = None,
):
    """One column per run (draw_landscape), titled with what differs; `between` adds a
    column with the line between the first two runs' final weights. Given `notes`, a run
    whose checkpoint.pt or snapshots.pt is damaged is left out with a line in notes (the
    others drawn); without, or when none is left, DamagedFile."""
    from matplotlib.figure import Figure

    from dlx.records.model import each_saved
    from dlx.views.labels import chars_in, varying_keys, wrap_label
    from dlx.views.style import DPI, plain

    points = len(line_alphas())
    total = len(runs) * (points + grid) + (points if between else 0)
    done = [0]

    def tick(_i, _n):
        done[0] += 1
        if progress:
            progress(done[0], total)

    pics, damaged = each_saved(
        runs, lambda r: landscape(r, directions, grid, progress=tick, notes=notes), notes, "run {run} left out"
    )
    between = between and not damaged  # the line joins the first two runs' weights: both needed
    titles = varying_keys([p.config for p in pics]) if len(pics) > 1 else [""]
    # What tells the runs apart, whole: wrapped within the column, never cut or run into the next.
    titles = [wrap_label(t or p.name, chars_in(4.4, 10)) for t, p in zip(titles, pics)]
    cols = len(pics) + (1 if between else 0)
    fig = Figure(figsize=(4.6 * cols, 8.4), dpi=DPI, layout="constrained")
    cells = fig.subfigures(1, cols, squeeze=False)[0]
    for cell, pic, title in zip(cells, pics, titles):
        draw_landscape(cell, pic, title)
    if between:
        ln = line(runs[0], runs[1], progress=tick)
        ax, _ = cells[-1].subplots(2, 1, height_ratios=[1, 1.5])
        _.set_visible(False)
        ax.plot(ln.alphas, ln.loss, "-", color="C3", lw=1.5)
        _mark_ends(ax, ln, ("o", "C0", 7), ("o", "C1", 7))
        ax.set_yscale("log")
        # Two run names do not fit one column's width: one a line, whole.
        ax.set_title(plain(f"{ln.start}\n-> {ln.end}"), fontsize=10)
        ax.set_xlabel("0: the first run's end, 1: the second's", fontsize=8)
        ax.set_ylabel("train loss")
        ax.grid(alpha=0.3)
    return fig

"""The drawing of the pictures of a run's saved model (pictures.py computes them): decision
boundaries, images of a first layer, hidden units, warps, histograms, and (landscape.py's own)
the loss landscape. Each draws into an axes or a (sub)figure.
"""

from __future__ import annotations

import math

import numpy as np

from dlx.views.style import CLASS_COLORS, FAINT, SURE, plain, split_axes


def draw_boundary(ax, b, title: str | None = None) -> None:
    """A decision surface (pictures.Boundary): each grid point in its predicted class's
    colour, paler where the model is less sure; training points filled, test points hollow."""
    from matplotlib.colors import to_rgb

    k = b.probs.shape[-1]
    colors = np.array([to_rgb(CLASS_COLORS[i % len(CLASS_COLORS)]) for i in range(k)])
    sure = (b.probs.max(-1) - 1.0 / k) / max(1.0 - 1.0 / k, 1e-9)
    alpha = (FAINT + SURE * np.clip(sure, 0, 1))[..., None]
    img = (1 - alpha) + alpha * colors[b.pred]
    ax.imshow(img, origin="lower", extent=b.extent, aspect="auto", interpolation="nearest")
    c_train = colors[b.y_train % len(colors)]
    c_test = colors[b.y_test % len(colors)]
    ax.scatter(b.x_train[:, 0], b.x_train[:, 1], s=7, c=c_train, edgecolors="white", linewidths=0.3, label="train")
    ax.scatter(b.x_test[:, 0], b.x_test[:, 1], s=14, facecolors="none", edgecolors=c_test, linewidths=0.8, label="test")
    ax.set_xlim(b.extent[0], b.extent[1])
    ax.set_ylim(b.extent[2], b.extent[3])
    ax.set_aspect("equal", adjustable="box")  # the data's own shape (a circle stays round)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(plain(title if title is not None else b.name), fontsize=10)
    ax.set_xlabel(f"step {b.step}: train filled, test hollow", fontsize=8)


def mosaic(images: np.ndarray, gap: int = 1, symmetric: bool = True) -> np.ndarray:
    """Images [n, h, w] tiled into one array (NaN gaps, drawn as background), each scaled
    to [-1, 1] by its own largest |value| (symmetric: 0 stays the middle colour) or to [0, 1]."""
    n, h, w = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan)
    for i, im in enumerate(images):
        if symmetric:
            im = im / max(float(np.abs(im).max()), 1e-12)
        else:
            lo, hi = float(im.min()), float(im.max())
            im = (im - lo) / max(hi - lo, 1e-12)
        r, c = divmod(i, cols)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = im
    return out


def draw_images(ax, pic, title: str | None = None) -> None:
    """A pictures.Images as one mosaic: weights and filters blue-white-red (each scaled to
    its own largest |value|: the pattern, not the size), feature maps dark to bright."""
    import matplotlib

    symmetric = pic.kind != "feature_maps"
    tiles = mosaic(pic.images, symmetric=symmetric)
    cmap = matplotlib.colormaps["RdBu_r" if symmetric else "viridis"].with_extremes(bad="white")
    ax.imshow(tiles, cmap=cmap, vmin=-1 if symmetric else 0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(plain(title if title is not None else pic.name), fontsize=10)
    shown = f"{len(pic.images)} of {pic.total}" if len(pic.images) < pic.total else f"{pic.total}"
    ax.set_xlabel(plain(f"{pic.note} ({shown}; step {pic.step})"), fontsize=7, wrap=True)


def draw_units(ax, u, title: str | None = None) -> None:
    """pictures.Units: one small map per hidden unit over the input plane, one mosaic per
    layer from input to output (Playground's neurons), each unit scaled to its own largest
    |output|: red where it is positive, blue negative, white 0."""
    import matplotlib

    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="white")
    axes = split_axes(ax, 1, len(u.layers), wspace=0.08)[0]
    for a, name, maps, total in zip(axes, u.layers, u.maps, u.totals):
        a.imshow(mosaic(maps[:, ::-1, :]), cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
        a.set_xticks([])
        a.set_yticks([])
        shown = f"{len(maps)} of {total}" if len(maps) < total else f"{total}"
        scale = max(float(np.abs(maps).max()), 1e-12)
        # What the maps cannot show by themselves (each is scaled to its own range).
        same = len(maps) > 1 and float(np.abs(maps - maps[:1]).max()) <= 1e-6 * scale
        flat = float((maps.max((1, 2)) - maps.min((1, 2))).max()) <= 1e-6 * scale
        said = ["all the same map"] if same else []
        said += ["flat: no input changes them"] if flat else []
        a.set_xlabel(f"{name}: {shown} units" + "".join(f"\n{x}" for x in said), fontsize=8)
    axes[0].set_title(plain(title if title is not None else u.name), fontsize=10, loc="left")
    axes[-1].set_title(f"step {u.step}", fontsize=8, loc="right")


def draw_warp(ax, w, title: str | None = None) -> None:
    """pictures.Warp: the input plane's grid and the training points as each layer sees
    them, in two of its units (ConvNetJS's 2-D demo): a layer that separates the classes
    has pulled their points apart along its grid."""
    from matplotlib.colors import to_rgb

    axes = split_axes(ax, 1, len(w.layers), wspace=0.15)[0]
    colors = np.array([to_rgb(c) for c in CLASS_COLORS])
    for a, name, (i, j), lines, pts in zip(axes, w.layers, w.chosen, w.lines, w.points):
        half = len(lines) // 2
        for k, line in enumerate(lines):
            a.plot(line[:, 0], line[:, 1], color="#9aa5b1" if k < half else "#c8ced6", lw=0.6, zorder=1)
        a.scatter(pts[:, 0], pts[:, 1], s=5, c=colors[w.classes % len(colors)], linewidths=0, zorder=2)
        a.set_xticks([])
        a.set_yticks([])
        a.set_xlabel("x1, x2" if name == "input" else f"{name}: units {i}, {j}", fontsize=8)
    axes[0].set_title(plain(title if title is not None else w.name), fontsize=10, loc="left")
    axes[-1].set_title(f"step {w.step}", fontsize=8, loc="right")


def draw_histograms(ax, h, title: str | None = None, limits: tuple[float, float, float, float] | None = None) -> None:
    """pictures.Histograms in the cell of ax: one column per moment (init, snapshots
    between, the end), activation distributions per layer above and log10 |dL/d
    pre-activation| below, one colour per layer from input (dark) to output (bright).
    Rows share their axes, so a spread that shrinks over time or towards the input shows;
    limits (activation lo, hi, log10 gradient lo, hi) fix them."""
    import matplotlib

    grid = split_axes(ax, 2, len(h.steps), hspace=0.45, wspace=0.08)
    colors = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, max(len(h.layers), 1)))
    pooled = np.concatenate([a[np.isfinite(a)] for m in h.acts for a in m] or [np.zeros(1)])
    # Units that are off (relu: exactly 0) would be one spike hiding every other value.
    zeros = float((pooled == 0).mean()) if pooled.size else 0.0
    drop_zeros = zeros > 0.2
    if drop_zeros:
        pooled = pooled[pooled != 0]
    lo, hi = np.percentile(pooled, [0.5, 99.5]) if pooled.size else (0.0, 1.0)
    logs = [np.log10(np.abs(g[np.isfinite(g) & (g != 0)])) for m in h.grads for g in m]
    glo, ghi = np.percentile(np.concatenate(logs), [0.5, 99.5]) if any(x.size for x in logs) else (-8.0, 0.0)
    if limits is not None:  # an animation's: the same axes in every frame
        lo, hi, glo, ghi = limits
    a_bins, g_bins = np.linspace(lo, hi + 1e-12, 61), np.linspace(glo, ghi + 1e-12, 61)
    last = len(h.steps) - 1
    for c, step in enumerate(h.steps):
        top, bottom = grid[0][c], grid[1][c]
        for j, color in enumerate(colors[: len(h.layers)]):
            a = h.acts[c][j]
            a = a[np.isfinite(a) & ((a != 0) if drop_zeros else True)]
            if a.size:
                dens, _ = np.histogram(a, bins=a_bins, density=True)
                top.plot((a_bins[1:] + a_bins[:-1]) / 2, dens, color=color, lw=1.1)
            g = np.abs(h.grads[c][j])
            g = g[np.isfinite(g) & (g > 0)]
            if g.size:
                dens, _ = np.histogram(np.log10(g), bins=g_bins, density=True)
                bottom.plot((g_bins[1:] + g_bins[:-1]) / 2, dens, color=color, lw=1.1)
        when = " (init)" if step == 0 else " (end)" if c == last and c else ""
        top.set_title(f"step {step}{when}", fontsize=8)
        for a in (top, bottom):
            a.tick_params(labelsize=6)
            a.grid(alpha=0.3)
            if c:
                a.sharey(grid[0 if a is top else 1][0])
                a.tick_params(labelleft=False)
        top.set_xlim(lo, hi)
        bottom.set_xlim(glo, ghi)
    grid[0][0].set_ylabel("density", fontsize=7)
    grid[1][0].set_ylabel("density", fontsize=7)
    mid = len(h.steps) // 2
    grid[0][mid].set_xlabel(
        "activation value" + (f" ({zeros:.0%} exactly 0, left out)" if drop_zeros else ""), fontsize=7
    )
    grid[1][mid].set_xlabel("log10 |dL/d pre-activation|", fontsize=7)
    grid[0][0].text(0, 1.22, plain(title if title is not None else h.name), transform=grid[0][0].transAxes, fontsize=10)
    handles = [matplotlib.lines.Line2D([], [], color=c, lw=1.5, label=n) for n, c in zip(h.layers, colors)]
    # Beside the last column, never over a curve.
    grid[0][last].legend(handles=handles, fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)


def _draw_landscape(where, pic, title=None, **kw):
    from dlx.views.landscape import draw_landscape

    draw_landscape(where, pic, title)


# The drawing of each pictures.* kind (Images: draw_images).
PICTURE_DRAWERS = {
    "Boundary": draw_boundary,
    "Units": draw_units,
    "Warp": draw_warp,
    "Histograms": draw_histograms,
    "Landscape": _draw_landscape,
}


PICTURE_HEIGHT = {"Boundary": 4.0, "Units": 3.1, "Warp": 3.1, "Histograms": 4.8, "Landscape": 8.0}


def picture_width(pic) -> float:
    name = type(pic).__name__
    if name == "Units":
        return max(4.2, 2.3 * len(pic.layers))
    if name == "Warp":
        return max(4.2, 2.6 * len(pic.layers))
    if name == "Histograms":
        return max(4.2, 2.3 * len(pic.steps) + 0.8)
    return 4.2


def draw_picture(where, pic, title: str | None = None, **kw) -> None:
    """A pictures.* picture in `where`: a (sub)figure, or an axes (a one-axes picture
    fills it; one of several parts is laid out in its cell)."""
    draw = PICTURE_DRAWERS.get(type(pic).__name__, draw_images)
    if hasattr(where, "subplots") and draw in (draw_boundary, draw_images):
        where = where.subplots()
    draw(where, pic, title, **kw)

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
    them, in its two main directions or two of its units (ConvNetJS's 2-D demo): a layer
    that separates the classes has pulled their points apart along its grid."""
    from matplotlib.colors import to_rgb

    axes = split_axes(ax, 1, len(w.layers), wspace=0.15)[0]
    colors = np.array([to_rgb(c) for c in CLASS_COLORS])
    for a, name, pair, share, lines, pts in zip(axes, w.layers, w.chosen, w.shares, w.lines, w.points):
        half = len(lines) // 2
        for k, line in enumerate(lines):
            a.plot(line[:, 0], line[:, 1], color="#9aa5b1" if k < half else "#c8ced6", lw=0.6, zorder=1)
        a.scatter(pts[:, 0], pts[:, 1], s=5, c=colors[w.classes % len(colors)], linewidths=0, zorder=2)
        a.set_xticks([])
        a.set_yticks([])
        if name == "input":
            said = "x1, x2"
        elif pair is not None:
            said = f"{name}: units {pair[0]}, {pair[1]}"
        else:
            said = f"{name}: 2 main directions\n({share:.0%} of its spread)"
        a.set_xlabel(said, fontsize=8)
    axes[0].set_title(plain(title if title is not None else w.name), fontsize=10, loc="left")
    axes[-1].set_title(f"step {w.step}", fontsize=8, loc="right")


# At most this many layers get an activation row of their own (evenly spread, first and last kept).
HIST_ROWS = 6


def own_bins(values: np.ndarray, n: int = 41) -> np.ndarray:
    """n + 1 bin edges over this layer's own range (its 0.5 to 99.5 percentiles), so that a
    layer whose values are 1e-4 wide is drawn as a shape, not as one bar on a shared axis."""
    lo, hi = (float(v) for v in np.percentile(values, [0.5, 99.5])) if values.size else (0.0, 1.0)
    if hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1e-30):  # every value the same: a bin around it
        pad = max(abs(lo) * 1e-6, 1e-12)
        lo, hi = lo - pad, hi + pad
    return np.linspace(lo, hi, n + 1)


def shown_layers(count: int) -> list[int]:
    """The layers that get an activation row: all, or HIST_ROWS of them evenly spread."""
    if count <= HIST_ROWS:
        return list(range(count))
    return sorted({round(i) for i in np.linspace(0, count - 1, HIST_ROWS)})


def draw_histograms(ax, h, title: str | None = None, limits: tuple[float, float, float, float] | None = None) -> None:
    """pictures.Histograms in the cell of ax: one column per moment (init, snapshots
    between, the end); a row per layer (at most HIST_ROWS) of its activation distribution,
    each on its own x-range (a layer 1e-4 wide still shows its shape; the axis says its
    width), and a last row of log10 |dL/d pre-activation| of every layer on one axis, one
    colour per layer from input (dark) to output (bright). limits (activation lo, hi, log10
    gradient lo, hi) put every row on fixed axes instead (an animation's frames)."""
    import matplotlib

    shown = shown_layers(len(h.layers))
    # A (sub)figure under a layout engine places a suptitle; an animation's fixed frame does not.
    own_figure = hasattr(ax, "subplots") and (getattr(ax, "figure", None) or ax).get_layout_engine() is not None
    # The gradients' row, every layer on one axis, is as tall as three activation rows.
    ratios = [1.0] * len(shown) + [3.0]
    grid = split_axes(ax, len(shown) + 1, len(h.steps), hspace=0.6, wspace=0.12, height_ratios=ratios)
    colors = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, max(len(h.layers), 1)))
    logs = [np.log10(np.abs(g[np.isfinite(g) & (g != 0)])) for m in h.grads for g in m]
    glo, ghi = np.percentile(np.concatenate(logs), [0.5, 99.5]) if any(x.size for x in logs) else (-8.0, 0.0)
    if limits is not None:  # an animation's: the same axes in every frame
        glo, ghi = limits[2], limits[3]
    g_bins = np.linspace(glo, ghi + 1e-12, 61)
    last = len(h.steps) - 1
    for c, step in enumerate(h.steps):
        for r, j in enumerate(shown):
            a = grid[r][c]
            values = h.acts[c][j]
            values = values[np.isfinite(values)]
            # Units that are off (relu: exactly 0) would be one spike hiding every other value.
            zeros = float((values == 0).mean()) if values.size else 0.0
            if zeros > 0.2:
                values = values[values != 0]
            bins = own_bins(values) if limits is None else np.linspace(limits[0], limits[1] + 1e-12, 41)
            if values.size:
                counts, _ = np.histogram(values, bins=bins)
                mids = (bins[1:] + bins[:-1]) / 2
                a.fill_between(mids, counts, color=colors[j], alpha=0.35, lw=0)
                a.plot(mids, counts, color=colors[j], lw=1.0)
            a.set_xlim(bins[0], bins[-1])
            a.set_xticks([bins[0], bins[-1]], [f"{bins[0]:.3g}", f"{bins[-1]:.3g}"])
            a.set_yticks([])
            a.tick_params(labelsize=5, pad=1)
            if zeros > 0.2:
                a.text(
                    0.98, 0.95, f"{zeros:.0%} = 0, left out", transform=a.transAxes, fontsize=5, ha="right", va="top"
                )
            if c == 0:
                # In the layer's colour: the key to the gradients' row too (a legend of 20 layers is unreadable).
                a.set_ylabel(h.layers[j], fontsize=7, rotation=0, ha="right", va="center", color=colors[j])
        when = " (init)" if step == 0 else " (end)" if c == last and c else ""
        grid[0][c].set_title(f"step {step}{when}", fontsize=8)
        bottom = grid[-1][c]
        for j, color in enumerate(colors[: len(h.layers)]):
            g = np.abs(h.grads[c][j])
            g = g[np.isfinite(g) & (g > 0)]
            if g.size:
                dens, _ = np.histogram(np.log10(g), bins=g_bins, density=True)
                bottom.plot((g_bins[1:] + g_bins[:-1]) / 2, dens, color=color, lw=1.1)
        bottom.tick_params(labelsize=6)
        bottom.grid(alpha=0.3)
        bottom.set_xlim(glo, ghi)
        if c:
            bottom.sharey(grid[-1][0])
            bottom.tick_params(labelleft=False)
    grid[-1][0].set_ylabel("density", fontsize=7)
    mid = len(h.steps) // 2
    grid[-2][mid].set_xlabel("activation value: each layer on its own range", fontsize=7)
    grid[-1][mid].set_xlabel("log10 |dL/d pre-activation|, every layer: input dark, output bright", fontsize=7)
    hidden = f" (activations of {len(shown)} of {len(h.layers)} layers)" if len(shown) < len(h.layers) else ""
    name = plain(title if title is not None else h.name) + hidden
    if own_figure:
        ax.suptitle(name, x=0.01, ha="left", fontsize=10)
    else:
        grid[0][0].annotate(
            name, (0, 1), xycoords="axes fraction", xytext=(0, 22), textcoords="offset points", fontsize=10
        ).set_in_layout(False)  # over the first column only: the layout would widen it


def draw_attention(ax, att, title: str | None = None) -> None:
    """pictures.AttentionMaps: one heatmap per head (per layer, in order), query steps down,
    key steps across; each row is one query's weights over the keys (it sums to 1). One
    colour scale, 0 to 1, square-root stretched so that a uniform row (1/T) still shows."""
    import matplotlib
    from matplotlib.colors import PowerNorm
    from matplotlib.ticker import MaxNLocator

    parts = [(layer, h, m[h]) for layer, m in zip(att.layers, att.maps) for h in range(m.shape[0])]
    axes = split_axes(ax, 1, len(parts), wspace=0.35)[0]
    norm = PowerNorm(0.5, vmin=0.0, vmax=1.0)
    cmap = matplotlib.colormaps["magma_r"]
    image = None
    for a, (layer, head, w) in zip(axes, parts):
        image = a.imshow(w, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
        a.xaxis.set_major_locator(MaxNLocator(5, integer=True))
        a.yaxis.set_major_locator(MaxNLocator(5, integer=True))
        a.tick_params(labelsize=6)
        a.set_xlabel("key step", fontsize=7)
        if layer == "pool":
            # One learned query: a single row, drawn as a strip.
            a.set_box_aspect(0.25)
            a.set_yticks([0], ["query"])
            a.set_title("pool (learned query)", fontsize=8)
        else:
            a.set_box_aspect(1.0)
            a.set_ylabel("query step", fontsize=7)
            a.set_title(f"{layer} head {head}", fontsize=8)
    if image is not None:
        bar = axes[-1].figure.colorbar(image, ax=axes, fraction=0.02, pad=0.02, ticks=[0, 0.05, 0.25, 0.5, 1])
        bar.ax.tick_params(labelsize=6)
        bar.set_label("weight", fontsize=7)
    name = plain(title if title is not None else att.name)
    said = f"test sequence {att.sample} (target {att.target}), step {att.step}: each row sums to 1"
    # Above the heads' own titles (matplotlib puts every title of an axes on one line).
    for text, size, up in ((name, 10, 30), (said, 7, 18)):
        axes[0].annotate(
            text, (0, 1), xycoords="axes fraction", xytext=(0, up), textcoords="offset points", fontsize=size
        ).set_in_layout(False)  # a wide line over the first head only: the layout would widen its column


def _draw_landscape(where, pic, title=None, **kw):
    from dlx.views.landscape import draw_landscape

    draw_landscape(where, pic, title)


# The drawing of each pictures.* kind (Images: draw_images).
PICTURE_DRAWERS = {
    "Boundary": draw_boundary,
    "Units": draw_units,
    "Warp": draw_warp,
    "Histograms": draw_histograms,
    "AttentionMaps": draw_attention,
    "Landscape": _draw_landscape,
}


PICTURE_HEIGHT = {"Boundary": 4.0, "Units": 3.1, "Warp": 3.1, "Histograms": 4.8, "AttentionMaps": 3.4, "Landscape": 8.0}


def picture_width(pic) -> float:
    name = type(pic).__name__
    if name == "Units":
        return max(4.2, 2.3 * len(pic.layers))
    if name == "Warp":
        return max(4.2, 2.6 * len(pic.layers))
    if name == "Histograms":
        return max(4.2, 2.3 * len(pic.steps) + 0.8)
    if name == "AttentionMaps":
        return max(4.2, 2.4 * sum(m.shape[0] for m in pic.maps) + 0.8)
    return 4.2


def draw_picture(where, pic, title: str | None = None, **kw) -> None:
    """A pictures.* picture in `where`: a (sub)figure, or an axes (a one-axes picture
    fills it; one of several parts is laid out in its cell)."""
    draw = PICTURE_DRAWERS.get(type(pic).__name__, draw_images)
    if hasattr(where, "subplots") and draw in (draw_boundary, draw_images):
        where = where.subplots()
    draw(where, pic, title, **kw)

"""dlx animate: a run's pictures over training, one frame per snapshot (recording.Snapshots),
written as a GIF (Pillow) or, when ffmpeg is installed, an mp4.

Every frame is drawn by the same code as `dlx plot --panels ... --step S` draws that
snapshot, on axes fixed for the whole animation, so only the network changes between
frames.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from dlx.core.errors import UsageError
from dlx.views.panel_registry import FRAME_PANELS
from dlx.views.style import DPI

# Grid points per axis of a frame's boundary (the still picture has pictures.GRID).
FRAME_GRID = 120
# At most this many frames. dlx keeps up to recording.SNAPSHOTS (30) snapshots, so this binds
# only on a snapshots.pt from elsewhere (one of 3000 states ran for minutes and took GBs): more
# are subsampled evenly, first and last kept, so an animation's time and memory stay bounded.
MAX_FRAMES = 60


def frame_indices(n: int, cap: int | None = None) -> list[int]:
    """Which of n snapshots become frames: all of them up to cap (MAX_FRAMES), else cap spread evenly."""
    cap = MAX_FRAMES if cap is None else cap
    if n <= cap:
        return list(range(n))
    return sorted({round(i * (n - 1) / (cap - 1)) for i in range(cap)})


def animate(
    run: str | Path,
    out: str | Path,
    panels: Sequence[str] = ("boundary",),
    fps: float = 4.0,
    progress: Callable[[int, int], None] | None = None,
    notes: list[str] | None = None,
) -> tuple[Path, int]:
    """Write the animation of the run folder `run` to out (.gif, or .mp4 with ffmpeg);
    returns (out, frames). progress(done, total) is called after each frame. notes gets a
    line for each thing left out (a damaged checkpoint.pt, snapshots past MAX_FRAMES)."""
    from dlx.records.folders import write_atomic
    from dlx.records.layout import SNAPSHOTS_FILE
    from dlx.records.model import saved_model, snapshots
    from dlx.views.pictures import Histograms, boundary_of, check_2d, layer_values, units_of

    out = Path(out)
    if out.suffix.lower() not in (".gif", ".mp4"):
        raise UsageError(f"{out}: an animation is written as .gif or .mp4; name the file so")
    if out.suffix.lower() == ".mp4" and shutil.which("ffmpeg") is None:
        raise UsageError(f"{out}: writing mp4 needs ffmpeg, which is not installed here; write a .gif instead")
    panels = [p for p in dict.fromkeys(panels)]
    unknown = [p for p in panels if p not in FRAME_PANELS]
    if unknown or not panels:
        raise UsageError(f"--panels {','.join(panels)}: a frame shows {', '.join(FRAME_PANELS)}")
    path = Path(run)
    notes = notes if notes is not None else []
    # Only the trainer (data, model) is used: with a damaged checkpoint.pt, its last snapshot will do.
    config, cfg, trainer, _ = saved_model(path, notes=notes)
    check_2d(path, trainer.data, "an animation")
    snaps = snapshots(path)  # memory-mapped: each state is read when its frame is drawn
    picked = frame_indices(len(snaps["steps"]))
    if len(picked) < len(snaps["steps"]):
        notes.append(
            f"{path / SNAPSHOTS_FILE} holds {len(snaps['steps'])} snapshots; {len(picked)} of them, "
            f"evenly spread, are the frames (at most MAX_FRAMES, {MAX_FRAMES})"
        )
    layers = [n for n, _ in trainer.model.activation_modules()]
    if ("units" in panels or "histograms" in panels) and not layers:
        raise UsageError(f"{path.name}: units and histograms show hidden layers, and this model has none")
    name = str(config.get("name") or path.name)
    total = len(picked)
    pics = []
    for i in picked:
        step, loss = snaps["steps"][i], snaps["losses"][i]
        trainer.model.load_state_dict(snaps["states"][i])
        frame = {"step": int(step), "loss": loss}
        if "boundary" in panels:
            frame["boundary"] = boundary_of(trainer, config, path, FRAME_GRID, int(step))
        if "units" in panels:
            frame["units"] = units_of(trainer, config, path, 32, int(step))
        if "histograms" in panels:
            acts, grads = layer_values(trainer, 512)
            frame["histograms"] = Histograms(name, config, layers, [int(step)], [acts], [grads])
        pics.append(frame)
    limits = _histogram_limits([f["histograms"] for f in pics]) if "histograms" in panels else None
    images = []
    for k, frame in enumerate(pics):
        images.append(_render(frame, panels, name, trainer.total_steps, limits))
        if progress is not None:
            progress(k + 1, total)
    if out.suffix.lower() == ".gif":
        buf = io.BytesIO()
        durations = [int(1000 / fps)] * (len(images) - 1) + [int(3000 / fps)]  # the end stays a moment
        images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, buf.getvalue())
    else:
        _mp4(images, out, fps)
    return out, len(images)


def _histogram_limits(hists: list) -> tuple[float, float, float, float]:
    """One activation and one log10 |gradient| range for every frame (the axes stay put)."""
    acts = np.concatenate([a[np.isfinite(a)] for h in hists for m in h.acts for a in m] or [np.zeros(1)])
    if (acts == 0).mean() > 0.2:
        acts = acts[acts != 0]
    grads = [np.log10(np.abs(g[np.isfinite(g) & (g != 0)])) for h in hists for m in h.grads for g in m]
    grads = np.concatenate(grads) if any(g.size for g in grads) else np.array([-8.0, 0.0])
    lo, hi = np.percentile(acts, [0.5, 99.5]) if acts.size else (0.0, 1.0)
    glo, ghi = np.percentile(grads, [0.5, 99.5])
    return float(lo), float(hi), float(glo), float(ghi)


def _render(frame: dict, panels: list[str], name: str, total_steps: int, limits):
    """One frame as a Pillow image: the panels side by side, step and loss in the title."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    from dlx.views.picture_panels import draw_picture

    widths = {"boundary": 4.4, "units": 1.9 * len(frame["units"].layers) if "units" in frame else 0, "histograms": 3.6}
    ratios = [widths[p] for p in panels]
    fig = Figure(figsize=(sum(ratios) + 0.4, 4.6), dpi=DPI)
    FigureCanvasAgg(fig)
    # Fixed margins (no constrained layout): every frame's axes sit in the same place.
    cells = fig.subfigures(1, len(panels), squeeze=False, width_ratios=ratios)[0]
    titles = {"boundary": "decision boundary", "units": "hidden units", "histograms": "histograms"}
    for cell, p in zip(cells, panels):
        # The histograms' legend stands right of them, in the frame.
        cell.subplots_adjust(left=0.06, right=0.8 if p == "histograms" else 0.94, bottom=0.12, top=0.82)
        draw_picture(cell, frame[p], titles[p], **({"limits": limits} if p == "histograms" else {}))
    loss = frame["loss"]
    said = f"train loss {loss:.3g}" if loss is not None else "the init"
    fig.suptitle(f"{name}: step {frame['step']} of {total_steps}, {said}", fontsize=12)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return Image.fromarray(rgba[..., :3].copy())


def _mp4(images: list, out: Path, fps: float) -> None:
    """The frames through ffmpeg as H.264 (even width and height, yuv420p: plays everywhere)."""
    w, h = images[0].size
    tmp = out.with_name(f".{out.name}.tmp.mp4")
    cmd = [
        "ffmpeg",
        "-y",
        "-loglevel",
        "error",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{w}x{h}",
        "-r",
        str(fps),
        "-i",
        "-",
        "-vf",
        "pad=ceil(iw/2)*2:ceil(ih/2)*2",
        "-pix_fmt",
        "yuv420p",
        str(tmp),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(cmd, input=b"".join(im.tobytes() for im in images), capture_output=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"ffmpeg could not write {out}: {proc.stderr.decode(errors='replace').strip()[-300:]}")
    tmp.replace(out)

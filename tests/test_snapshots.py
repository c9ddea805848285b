"""Pictures over training: the snapshots a run keeps (recording.Snapshots), the units and
warp pictures drawn from them or the checkpoint, and dlx animate."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import TINY
from typer.testing import CliRunner

import dlx
from dlx.cli.app import app
from dlx.config.loader import load_config
from dlx.core.errors import UsageError
from dlx.records.folders import read_snapshots
from dlx.records.recording import SNAPSHOTS


def _config(steps: int = 40, log_every: int = 2, **over) -> dict:
    c = copy.deepcopy(TINY)
    c["train"] = {"steps": steps, "batch_size": 32, "log_every": log_every}
    c.update(over)
    return c


def _run(tmp_path, **kw):
    return dlx.train(_config(**kw), runs_dir=tmp_path / "runs", quiet=True)


def _hand_forward(w: dict, x: torch.Tensor) -> list[torch.Tensor]:
    """The mlp 2x16 relu's hidden activations computed by hand from its weights."""
    a1 = (x @ w["fc1.weight"].T + w["fc1.bias"]).relu()
    a2 = (a1 @ w["fc2.weight"].T + w["fc2.bias"]).relu()
    return [a1, a2]


def test_a_run_keeps_its_weights_at_evenly_spread_log_steps_each_equal_to_a_run_stopped_there(tmp_path):
    run = _run(tmp_path, steps=60)
    snaps = read_snapshots(run.path)
    steps = snaps["steps"]
    assert steps[0] == 0 and steps[-1] == 60 and len(steps) == SNAPSHOTS == 30
    assert all(s % 2 == 0 for s in steps) and steps == sorted(set(steps))  # at log steps, each once
    assert snaps["losses"][0] is None and all(isinstance(x, float) for x in snaps["losses"][1:])
    # The oracle: a run of the same config trained for just s steps ends with those weights
    # (step 0: the init a fresh Trainer draws from the seed).
    from dlx.run.trainer import Trainer

    for i in (0, 11, 29):
        s = steps[i]
        if s == 0:
            want = Trainer(load_config(run.config)).model.state_dict()
        else:
            short = dlx.train(_config(steps=s), runs_dir=tmp_path / "short", quiet=True)
            want = torch.load(short.path / "checkpoint.pt", weights_only=True)["model"]
        for k, v in want.items():
            torch.testing.assert_close(snaps["states"][i][k], v, rtol=0, atol=0)


def test_a_big_model_keeps_fewer_snapshots_within_the_byte_budget(tmp_path, monkeypatch):
    import dlx.records.recording as rec

    size = sum(4 * n for n in (2 * 16, 16, 16 * 16, 16, 16 * 3, 3))  # the mlp 2x16's float32 weights
    monkeypatch.setattr(rec, "SNAPSHOT_BYTES", 5 * size)
    snaps = read_snapshots(_run(tmp_path, steps=40).path)
    assert snaps["steps"] == [0, 10, 20, 30, 40]


def test_a_resumed_run_has_the_snapshots_of_a_run_never_stopped(tmp_path):
    whole = read_snapshots(_run(tmp_path / "a", steps=60).path)

    class StopAt:
        def on_interval(self, trainer, record):
            if trainer.step == 24:
                trainer.interrupt()

    c = _config(steps=60)
    c["train"]["checkpoint_every"] = 10
    first = dlx.train(c, runs_dir=tmp_path / "b", quiet=True, callbacks=[StopAt()])
    assert first.status == "interrupted"
    resumed = dlx.train(resume=first.path, runs_dir=tmp_path / "b", quiet=True)
    assert resumed.status == "completed"
    got = read_snapshots(resumed.path)
    assert got["steps"] == whole["steps"]
    for a, b in zip(got["states"], whole["states"]):
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_units_are_each_hidden_units_output_over_the_plane(tmp_path):
    from dlx.views.pictures import plane_grid as _grid
    from dlx.views.pictures import units

    run = _run(tmp_path)
    u = units(run.path, grid=20)
    assert u.layers == ["act1", "act2"] and [m.shape for m in u.maps] == [(16, 20, 20)] * 2 and u.step == 40
    w = torch.load(run.path / "checkpoint.pt", weights_only=True)["model"]
    want = _hand_forward(w, torch.tensor(_grid(u.extent, 20), dtype=torch.float32))
    for got, a in zip(u.maps, want):
        np.testing.assert_allclose(got, a.T.reshape(-1, 20, 20).double().numpy(), rtol=1e-5, atol=1e-6)
    # --step: the snapshot nearest it (step 0: the init).
    snaps = read_snapshots(run.path)
    u0 = units(run.path, grid=20, step=1)
    assert u0.step == 0
    want0 = _hand_forward(snaps["states"][0], torch.tensor(_grid(u.extent, 20), dtype=torch.float32))
    np.testing.assert_allclose(u0.maps[1], want0[1].T.reshape(-1, 20, 20).double().numpy(), rtol=1e-5, atol=1e-6)


def test_warp_moves_the_grid_and_the_points_through_each_layer_in_its_main_directions(tmp_path):
    from dlx.views.pictures import WARP_LINES, WARP_POINTS, warp

    run = _run(tmp_path)
    w = warp(run.path)
    assert w.layers == ["input", "act1", "act2"]
    weights = torch.load(run.path / "checkpoint.pt", weights_only=True)["model"]
    pts = torch.tensor(w.points[0], dtype=torch.float32)
    hidden = _hand_forward(weights, pts)
    line_in = torch.tensor(w.lines[0][3], dtype=torch.float32)
    for j, h in enumerate(hidden, start=1):
        h = h.double()
        # The oracle (PCA by the covariance's eigen-decomposition): the two coordinates are
        # uncorrelated, with variances the covariance's two largest eigenvalues.
        eig = torch.linalg.eigvalsh(torch.cov(h.T)).flip(0)
        got = np.cov(w.points[j].T)
        np.testing.assert_allclose(np.diag(got), eig[:2].numpy(), rtol=1e-4, atol=1e-9)
        assert abs(got[0, 1]) <= 1e-4 * eig[0].item()
        assert w.shares[j] == pytest.approx((eig[:2].sum() / eig.sum()).item(), rel=1e-4)
        # The grid goes through the same map as the points: an affine map of the layer's output.
        hl = _hand_forward(weights, line_in)[j - 1].double()
        both = torch.cat([h, hl])
        mapped = np.concatenate([w.points[j], w.lines[j][3]])
        coef, *_ = np.linalg.lstsq(np.c_[both.numpy(), np.ones(len(both))], mapped, rcond=None)
        np.testing.assert_allclose(np.c_[both.numpy(), np.ones(len(both))] @ coef, mapped, atol=1e-5)
        assert w.lines[j].shape == (2 * WARP_LINES, WARP_POINTS, 2) and w.chosen[j] is None
    # Two units asked for: their own outputs, in every layer.
    chosen = warp(run.path, pair=(3, 5))
    assert chosen.chosen[1:] == [(3, 5), (3, 5)] and chosen.shares[1:] == [None, None]
    for j, h in enumerate(hidden, start=1):
        np.testing.assert_allclose(chosen.points[j], h[:, [3, 5]].double().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            chosen.lines[j][3], _hand_forward(weights, line_in)[j - 1][:, [3, 5]].double().numpy(), rtol=1e-5, atol=1e-6
        )
    with pytest.raises(UsageError, match="act1 has units 0 to 15"):
        warp(run.path, pair=(0, 16))


@pytest.mark.slow
def test_dlx_plot_boundary_units_histograms_and_dlx_animate_write_their_files(tmp_path):
    from PIL import Image

    run = _run(tmp_path)
    png = tmp_path / "p.png"
    r = CliRunner().invoke(
        app, ["plot", str(run.path), "--panels", "boundary,units,warp,histograms", "--step", "20", "-o", str(png)]
    )
    assert r.exit_code == 0, r.output
    assert Image.open(png).size[1] > 1000
    r = CliRunner().invoke(app, ["animate", str(run.path), "--panels", "boundary,units,histograms"])
    assert r.exit_code == 0, r.output
    gif = Image.open(run.path / "animation.gif")
    assert gif.n_frames == len(read_snapshots(run.path)["steps"]) == 21
    frames = []
    for k in (0, gif.n_frames - 1):
        gif.seek(k)
        frames.append(np.asarray(gif.convert("RGB"), dtype=float))
    assert np.abs(frames[0] - frames[1]).mean() > 1  # the boundary moved


def test_dlx_animate_refuses_what_it_cannot_write_with_the_fix(tmp_path, monkeypatch):
    run = _run(tmp_path, steps=8)
    for args, says in (
        (["-o", str(tmp_path / "a.avi")], ".gif or .mp4"),
        (["--panels", "boundary,weights"], "a frame shows boundary, units, histograms"),
    ):
        r = CliRunner().invoke(app, ["animate", str(run.path), *args])
        assert r.exit_code == 2 and says in r.output and "Traceback" not in r.output, r.output
    monkeypatch.setattr("shutil.which", lambda name: None)
    r = CliRunner().invoke(app, ["animate", str(run.path), "-o", str(tmp_path / "a.mp4")])
    assert r.exit_code == 2 and "needs ffmpeg" in r.output and "write a .gif" in r.output
    (run.path / "snapshots.pt").unlink()
    r = CliRunner().invoke(app, ["animate", str(run.path)])
    assert r.exit_code == 2 and "no snapshots.pt" in r.output


def test_the_units_panel_says_when_every_unit_of_a_layer_is_the_same_map(tmp_path):
    from dlx.views.plots import pictures_figure

    zero = _run(tmp_path, init="zeros", steps=8)
    labels = [ax.get_xlabel() for ax in pictures_figure([zero.path], ["units"]).axes]
    assert labels and all("all the same map" in t for t in labels)
    he = _run(tmp_path, steps=8)
    assert not any("the same map" in ax.get_xlabel() for ax in pictures_figure([he.path], ["units"]).axes)

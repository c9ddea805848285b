"""dlx landscape: the loss along the line from init to end and on a plane through the final
weights with the trajectory on it, checked against the saved model's own loss."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import TINY
from typer.testing import CliRunner

import dlx
from dlx.cli.app import app
from dlx.records.folders import read_snapshots
from dlx.views.landscape import SAMPLES, _filter_normalised, _Model, line, plane


def _run(tmp_path, **over):
    c = copy.deepcopy(TINY)
    c["train"] = {"steps": 60, "batch_size": 32, "log_every": 5}
    c.update(over)
    return dlx.train(c, runs_dir=tmp_path / "runs", quiet=True)


def _loss_of(run, state) -> float:
    """The oracle: the model built from the config, loaded with `state`, its mean loss."""
    from dlx.config.loader import load_config
    from dlx.run.trainer import Trainer

    tr = Trainer(load_config(run.config), resuming=True)
    tr.model.load_state_dict(state)
    tr.model.eval()
    x, y = tr.data.as_float(tr.data.x_train[:SAMPLES]), tr.data.y_train[:SAMPLES]
    with torch.no_grad():
        return float(tr.loss_fn(tr.model(x), y))


def test_the_line_runs_from_the_init_to_the_final_weights(tmp_path):
    run = _run(tmp_path)
    ln = line(run.path, points=5, lo=0.0, hi=1.0)
    snaps = read_snapshots(run.path)
    final = torch.load(run.path / "checkpoint.pt", weights_only=True)["model"]
    assert ln.loss[0] == pytest.approx(_loss_of(run, snaps["states"][0]), rel=1e-5)
    assert ln.loss[-1] == pytest.approx(_loss_of(run, final), rel=1e-5)
    assert ln.loss[-1] < ln.loss[0]


def test_the_default_line_samples_alpha_0_and_1_and_its_markers_sit_on_the_measured_losses(tmp_path):
    from dlx.views.landscape import draw_landscape, landscape

    run = _run(tmp_path)
    pic = landscape(run.path, grid=3)
    ln = pic.line
    assert ln.alphas[0] <= -0.25 and ln.alphas[-1] >= 1.25  # a little beyond both ends
    (i0,), (i1,) = np.flatnonzero(ln.alphas == 0.0), np.flatnonzero(ln.alphas == 1.0)
    snaps = read_snapshots(run.path)
    final = torch.load(run.path / "checkpoint.pt", weights_only=True)["model"]
    assert ln.loss[i0] == pytest.approx(_loss_of(run, snaps["states"][0]), rel=1e-5)
    assert ln.loss[i1] == pytest.approx(_loss_of(run, final), rel=1e-5)
    from matplotlib.figure import Figure

    fig = Figure()
    draw_landscape(fig, pic)
    top = fig.axes[0]
    marks = [(float(x[0]), float(y[0])) for x, y in (ln_.get_data() for ln_ in top.get_lines()) if len(x) == 1]
    assert marks == [(0.0, pytest.approx(ln.loss[i0])), (1.0, pytest.approx(ln.loss[i1]))]


def test_the_plane_is_centred_on_the_final_weights_and_the_trajectory_ends_there(tmp_path):
    run = _run(tmp_path)
    final = torch.load(run.path / "checkpoint.pt", weights_only=True)["model"]
    for directions in ("pca", "random"):
        pl = plane(run.path, grid=5, directions=directions)
        assert pl.loss[2, 2] == pytest.approx(_loss_of(run, final), rel=1e-5)  # the grid's centre
        np.testing.assert_allclose(pl.trajectory[-1], [0.0, 0.0], atol=1e-6)  # ends at the final weights
        assert pl.steps[0] == 0 and pl.steps[-1] == 60 and len(pl.trajectory) == len(pl.steps)
        assert np.isfinite(pl.loss).all()
    pl = plane(run.path, grid=5)
    assert 0.5 < pl.explained <= 1.0
    # PCA: the trajectory's coordinates are its offsets' projections on two orthonormal directions.
    m = _Model(run.path)
    steps, traj = m.trajectory()
    rel = (traj - m.final).double()
    _, s, vh = torch.linalg.svd(rel, full_matrices=False)
    np.testing.assert_allclose(np.abs(pl.trajectory), np.abs((rel @ vh[:2].T).numpy()), rtol=1e-4, atol=1e-5)


def test_random_directions_are_filter_normalised_and_leave_biases_out(tmp_path):
    run = _run(tmp_path)
    m = _Model(run.path)
    d = m.unflat(_filter_normalised(m, torch.Generator().manual_seed(0)))
    w = m.unflat(m.final)
    for name in m.names:
        if w[name].dim() == 1:
            assert (d[name] == 0).all()
        else:
            torch.testing.assert_close(d[name].norm(dim=1), w[name].norm(dim=1), rtol=1e-5, atol=1e-6)


def test_dlx_landscape_draws_a_spirals_run_and_the_residual_example_side_by_side(tmp_path):
    spirals = _run(tmp_path)
    out = tmp_path / "l.png"
    r = CliRunner().invoke(app, ["landscape", str(spirals.path), "-o", str(out), "--grid", "7"])
    assert r.exit_code == 0, r.output
    assert out.stat().st_size > 20_000
    small = ["train.epochs=null", "train.steps=30", "train.log_every=5", "data.n_train=256", "model.blocks=4"]
    res = dlx.train("residual_depth", small, runs_dir=tmp_path / "runs", quiet=True)
    plain = dlx.train("residual_depth", [*small, "model.residual=false"], runs_dir=tmp_path / "runs", quiet=True)
    out2 = tmp_path / "res.png"
    r = CliRunner().invoke(
        app, ["landscape", str(res.path), str(plain.path), "--between", "--grid", "5", "-o", str(out2)]
    )
    assert r.exit_code == 0, r.output
    from PIL import Image

    w, h = Image.open(out2).size
    assert w > h  # three columns: residual, plain, the line between them
    r = CliRunner().invoke(app, ["landscape", str(res.path), "--directions", "sideways"])
    assert r.exit_code == 2 and "pca" in r.output and "Traceback" not in r.output


def test_the_landscape_is_a_picture_panel_for_dlx_plot_and_the_api(tmp_path):
    run = _run(tmp_path)
    fig = run.plot(panels=["landscape"])
    labels = " ".join(ax.get_xlabel() for ax in fig.axes)
    assert "0: init, 1: end" in labels and "principal directions" in labels
    out = tmp_path / "p.png"
    r = CliRunner().invoke(app, ["plot", str(run.path), "--panels", "landscape,loss", "-o", str(out)])
    assert r.exit_code == 0, r.output

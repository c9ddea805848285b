"""Pictures of what a network computes: the decision boundary from a run's saved model."""

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
from dlx.views.pictures import boundary, varying_keys


def _run(tmp_path, **over):
    c = copy.deepcopy(TINY)
    c["train"] = {"steps": 40, "batch_size": 32, "log_every": 10}
    c.update(over)
    return dlx.train(c, runs_dir=tmp_path / "runs", quiet=True)


def test_the_boundary_is_the_saved_models_argmax_on_the_grid(tmp_path):
    run = _run(tmp_path)
    b = boundary(run.path, grid=50)
    assert b.probs.shape == (50, 50, 3) and np.allclose(b.probs.sum(-1), 1, atol=1e-6)
    # The oracle: the model rebuilt by hand from config.yaml and checkpoint.pt.
    cfg = load_config(run.config)
    model = cfg.model.build(cfg.data.load(cfg.seed), cfg)
    model.load_state_dict(torch.load(run.path / "checkpoint.pt", weights_only=True)["model"])
    model.eval()
    points = b.grid_points()
    pick = np.random.default_rng(0).choice(len(points), 200, replace=False)
    with torch.no_grad():
        want = model(torch.tensor(points[pick], dtype=torch.float32)).argmax(-1).numpy()
    assert (b.pred.reshape(-1)[pick] == want).all()
    # The grid covers every training point.
    x0, x1, y0, y1 = b.extent
    assert (b.x_train[:, 0] > x0).all() and (b.x_train[:, 0] < x1).all()
    assert (b.x_train[:, 1] > y0).all() and (b.x_train[:, 1] < y1).all()
    assert b.step == 40 and len(b.y_test) == 128


def test_zero_init_predicts_one_class_everywhere_and_he_init_fits(tmp_path):
    data = {"name": "circles", "n_train": 400, "n_test": 100}
    train = {"steps": 150, "batch_size": 32, "log_every": 50}
    zero = boundary(_run(tmp_path, data=data, init="zeros", train=train).path, grid=40)
    he = boundary(_run(tmp_path, data=data, init="kaiming_normal", train=train).path, grid=40)
    assert len(np.unique(zero.pred)) == 1  # every unit the same: a flat surface
    assert len(np.unique(he.pred)) == 2


def test_dlx_plot_panels_boundary_draws_runs_side_by_side_titled_by_what_differs(tmp_path):
    runs = [_run(tmp_path, init=i) for i in ("zeros", "normal", "kaiming_normal")]
    assert varying_keys([r.config for r in runs]) == ["init=zeros", "init=normal", "init=kaiming_normal"]
    out = tmp_path / "b.png"
    r = CliRunner().invoke(app, ["plot", *[str(x.path) for x in runs], "--panels", "boundary,loss", "-o", str(out)])
    assert r.exit_code == 0, r.output
    import matplotlib.image

    img = matplotlib.image.imread(out)
    assert img.shape[1] > img.shape[0] and img[..., :3].std() > 0.05
    from dlx.views.plots import pictures_figure

    fig = pictures_figure([x.path for x in runs], ["boundary"])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["init=zeros", "init=normal", "init=kaiming_normal"]


def test_a_boundary_of_a_run_without_2d_inputs_or_a_bad_size_is_refused_with_the_fix(tmp_path):
    reg = _run(tmp_path, data={"name": "teacher", "n_train": 128, "n_test": 32}, train={"steps": 4, "loss": "mse"})
    with pytest.raises(UsageError, match="needs a classifier on 2-D inputs"):
        boundary(reg.path)
    r = CliRunner().invoke(app, ["plot", str(reg.path), "--panels", "boundary"])
    assert r.exit_code == 2 and "2-D inputs" in r.output and "Traceback" not in r.output
    ok = _run(tmp_path)
    r = CliRunner().invoke(app, ["plot", str(ok.path), "--size", "12x4"])
    assert r.exit_code == 2 and "WIDTH,HEIGHT" in r.output
    r = CliRunner().invoke(app, ["plot", str(ok.path), "--panels", "boundry"])
    assert r.exit_code == 2 and "did you mean 'boundary'" in r.output


def _mnist(tmp_path, mnist_dir, **over):
    c = {
        "seed": 0,
        "data": {"name": "mnist", "root": str(mnist_dir), "n_train": 256, "n_test": 64},
        "model": {"name": "mlp", "widths": [8]},
        "activation": "relu",
        "init": "kaiming_normal",
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"steps": 4, "batch_size": 32, "log_every": 2},
    }
    c.update(over)
    return dlx.train(c, runs_dir=tmp_path / "runs", quiet=True)


def test_an_mnist_mlps_first_layer_shows_what_training_wrote_pixel_spread_weighted_most_changed_first(
    tmp_path, mnist_dir
):
    from dlx.views.pictures import layer_images

    run = _mnist(tmp_path, mnist_dir)
    pic = layer_images(run.path, "weights")
    saved = torch.load(run.path / "checkpoint.pt", weights_only=True)["model"]["fc1.weight"]
    # The oracle: the weights the run recorded at step 0, and the pixels' spread over the
    # run's training images.
    snaps = torch.load(run.path / "snapshots.pt", weights_only=True)
    assert snaps["steps"][0] == 0
    init = snaps["states"][0]["fc1.weight"]
    x = load_config(run.config).data.load(0)
    spread = x.as_float(x.x_train).reshape(len(x.x_train), -1).std(0)
    want = (saved - init) * spread / spread.max()
    want = want[want.norm(dim=1).argsort(descending=True)]
    assert pic.images.shape == (8, 28, 28) and pic.total == 8
    np.testing.assert_allclose(pic.images, want.reshape(8, 28, 28).double().numpy(), atol=1e-6)
    # MNIST's border never varies: nothing a unit learns shows there.
    assert np.abs(pic.images[:, 0, :]).max() == 0 and "change since init" in pic.note
    with pytest.raises(UsageError, match="convolution as the first layer"):
        layer_images(run.path, "filters")


def test_a_cnns_filters_and_feature_maps_come_from_its_saved_weights(tmp_path, mnist_dir):
    import torch.nn.functional as F

    from dlx.views.pictures import layer_images

    run = _mnist(
        tmp_path,
        mnist_dir,
        data={"name": "mnist", "root": str(mnist_dir), "n_train": 256, "n_test": 64, "flatten": False},
        model={"name": "cnn", "layers": [{"conv": 4, "kernel": 3, "padding": 1}], "head": []},
    )
    saved = torch.load(run.path / "checkpoint.pt", weights_only=True)["model"]
    filters = layer_images(run.path, "filters")
    assert filters.images.shape == (4, 3, 3)
    np.testing.assert_allclose(filters.images, saved["conv1.weight"][:, 0].double().numpy())
    maps = layer_images(run.path, "feature_maps")
    assert maps.images.shape == (4, 28, 28)
    cfg = load_config(run.config)
    data = cfg.data.load(cfg.seed)
    want = F.conv2d(data.as_float(data.x_test[:1]), saved["conv1.weight"], saved["conv1.bias"], padding=1)[0]
    np.testing.assert_allclose(maps.images, want.double().numpy(), rtol=1e-5, atol=1e-6)
    r = CliRunner().invoke(
        app, ["plot", str(run.path), "--panels", "filters,feature_maps,loss", "-o", str(tmp_path / "f.svg")]
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "f.svg").read_text().lstrip().startswith("<?xml")


def test_dlx_train_on_2d_inputs_ends_with_its_boundary_in_the_terminal(tmp_path):
    import io

    from rich.console import Console

    from dlx.views.report import MONO_CLASSES, BoundaryMap

    cfg = copy.deepcopy(TINY)
    cfg["train"] = {"steps": 20, "batch_size": 32, "log_every": 10}
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = CliRunner().invoke(app, ["train", str(tmp_path / "c.yaml"), "--runs-dir", str(tmp_path / "runs")])
    assert r.exit_code == 0, r.output
    assert "decision boundary, step 20" in r.output and "o class 0  x class 1  + class 2" in r.output
    # Zero init: one class everywhere (the output bias learns the likelier class), so one
    # character on every row of the map.
    zero = _run(tmp_path, data={"name": "circles", "n_train": 200, "n_test": 50}, init="zeros")
    out = io.StringIO()
    Console(file=out, width=60, color_system=None).print(BoundaryMap(boundary(zero.path, grid=48)))
    rows = [line for line in out.getvalue().splitlines() if line.startswith(" ") and "class" not in line]
    chars = {ch for row in rows for ch in row.strip()}
    assert len(rows) == 24 and len(chars) == 1 and chars <= set(MONO_CLASSES[:2])


def test_histograms_are_the_saved_and_initial_models_own_activations_and_gradients(tmp_path):
    import torch.nn.functional as F

    from dlx.views.pictures import HIST_SAMPLES, histograms

    run = _run(tmp_path)  # spirals, mlp 2x16 relu
    h = histograms(run.path)
    assert h.layers == ["act1", "act2"] and h.step == 40
    assert h.steps[0] == 0 and h.steps[-1] == 40 and len(h.steps) == 4  # init, two snapshots between, end
    # The oracle: the saved model's forward pass by hand, gradients by autograd.
    w = torch.load(run.path / "checkpoint.pt", weights_only=True)["model"]
    cfg = load_config(run.config)
    data = cfg.data.load(cfg.seed)
    x, y = data.as_float(data.x_train[:HIST_SAMPLES]), data.y_train[:HIST_SAMPLES]
    z1 = (x @ w["fc1.weight"].T + w["fc1.bias"]).requires_grad_()
    a1 = z1.relu()
    z2 = (a1 @ w["fc2.weight"].T + w["fc2.bias"]).requires_grad_()
    a2 = z2.relu()
    loss = F.cross_entropy(a2 @ w["out.weight"].T + w["out.bias"], y)
    g1, g2 = torch.autograd.grad(loss, [z1, z2])
    for got, want in zip(h.acts[-1], (a1, a2)):
        np.testing.assert_allclose(got, want.detach().flatten().double().numpy(), rtol=1e-5, atol=1e-6)
    for got, want in zip(h.grads[-1], (g1, g2)):
        np.testing.assert_allclose(got, want.flatten().double().numpy(), rtol=1e-4, atol=1e-9)
    assert not np.allclose(h.acts[0][0], h.acts[-1][0])  # init: the weights before step 1


def test_a_deep_sigmoid_nets_gradients_at_init_shrink_towards_the_input(tmp_path):
    """Glorot & Bengio 2010, fig. 7: with sigmoid the back-propagated gradients at init are
    smaller the nearer a layer is to the input; the histograms panel shows it."""
    from dlx.views.pictures import histograms

    run = _run(tmp_path, activation="sigmoid", init="xavier_uniform", model={"name": "mlp", "depth": 5, "width": 32})
    h = histograms(run.path)
    med = [float(np.median(np.abs(g))) for g in h.grads[0]]
    assert med[0] < med[-1] / 10
    out = tmp_path / "h.png"
    r = CliRunner().invoke(app, ["plot", str(run.path), "--panels", "histograms", "-o", str(out)])
    assert r.exit_code == 0, r.output and out.stat().st_size > 10_000


def test_each_layers_activation_histogram_spans_its_own_range_not_the_widest_layers():
    """A layer whose activations are 1e-4 wide beside one 1 wide: on a shared axis it would
    be one bar; each row's bins and x-axis span that layer's own values."""
    from matplotlib.figure import Figure

    from dlx.views.picture_panels import draw_histograms, own_bins
    from dlx.views.pictures import Histograms

    rng = np.random.default_rng(0)
    narrow, wide = 0.5 + 1e-4 * rng.standard_normal(4000), rng.standard_normal(4000)
    grads = [1e-3 * rng.standard_normal(4000), rng.standard_normal(4000)]
    h = Histograms("two", {}, ["act1", "act2"], [0, 10], [[narrow, wide], [wide, narrow]], [grads, grads])
    for values in (narrow, wide):
        bins = own_bins(values)
        lo, hi = np.percentile(values, [0.5, 99.5])
        np.testing.assert_allclose([bins[0], bins[-1]], [lo, hi])
        inside = ((values >= bins[0]) & (values <= bins[-1])).mean()
        assert inside >= 0.98  # nearly every value lands in a bin, not one bar of them
        counts, _ = np.histogram(values, bins)
        assert (counts > 0).sum() > len(counts) // 2  # a shape, spread over the bins
    fig = Figure()
    draw_histograms(fig, h)
    rows = np.array(fig.axes).reshape(3, 2)  # act1, act2, then the gradients; one column per moment
    for r, c, values in ((0, 0, narrow), (1, 0, wide), (0, 1, wide), (1, 1, narrow)):
        lo, hi = rows[r, c].get_xlim()
        np.testing.assert_allclose([lo, hi], np.percentile(values, [0.5, 99.5]), rtol=1e-9)
    assert np.ptp(rows[0, 0].get_xlim()) < 1e-3 < 1.0 < np.ptp(rows[1, 0].get_xlim())


def test_a_constant_layer_gets_bins_around_its_value():
    from dlx.views.picture_panels import own_bins

    bins = own_bins(np.full(100, 0.25))
    assert bins[0] < 0.25 < bins[-1] and np.all(np.diff(bins) > 0)

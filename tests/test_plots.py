"""Figures of real runs: panels as promised, seeds as bands, overlays, recurrent and diverged runs, `dlx plot`."""

from __future__ import annotations

import copy
import json

import matplotlib.image
import numpy as np
import pytest
from conftest import TINY
from typer.testing import CliRunner

import dlx
from dlx.cli.app import app
from dlx.views import plots

RNN = {
    "seed": 0,
    "data": {"name": "adding", "length": 12, "n_train": 64, "n_test": 32},
    "model": {"name": "rnn", "hidden": 8},
    "activation": "tanh",
    "init": "default",
    "optimizer": {"name": "adam", "lr": 0.01},
    "train": {"loss": "mse", "steps": 8, "batch_size": 16, "log_every": 2, "eval_every": 4, "threads": 1},
}


def _cfg(base=TINY, **sections):
    cfg = copy.deepcopy(base)
    cfg.update(sections)
    return cfg


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Five real runs, trained once for the module (about a second in all)."""
    where = tmp_path_factory.mktemp("runs")
    made = {
        "relu0": _cfg(name="relu"),
        "relu1": _cfg(name="relu", seed=1),
        "tanh": _cfg(name="tanh", activation="tanh", init="xavier_uniform"),
        "rnn": _cfg(RNN, name="rnn"),
        # N(0, 1) weights through 8 ReLU layers: non-finite gradients within a few steps.
        "diverged": _cfg(
            name="boom",
            model={"name": "mlp", "depth": 8, "width": 32},
            init={"name": "normal", "std": 1.0},
            optimizer={"name": "sgd", "lr": 0.1},
        ),
    }
    out = {key: dlx.train(cfg, runs_dir=where) for key, cfg in made.items()}
    assert out["diverged"].status == "diverged" and out["relu0"].status == "completed"
    return {key: r.path for key, r in out.items()} | {"dir": where}


def test_one_run_is_a_png_that_decodes_with_the_promised_size(runs, tmp_path):
    path = plots.plot_runs([runs["relu0"]], tmp_path / "one.png")
    img = matplotlib.image.imread(path)
    fig = plots.build_figure(plots.load_groups([runs["relu0"]]))
    w, h = fig.get_size_inches() * plots.DPI
    assert img.shape[:2] == (round(h), round(w)) and img.shape[1] == 1500
    assert img[..., :3].std() > 0.05  # not a blank canvas


def test_every_expected_panel_has_exactly_one_axes(runs):
    groups = plots.load_groups([runs["relu0"]])
    names = plots.panel_names(groups)
    # TINY: depth 2 -> layers fc1, fc2, out and activations act1, act2; classification -> accuracy.
    assert names == ["loss", "accuracy", "grad_heatmap:0", "grad_lines:0", "activations:0:act1", "activations:0:act2"]
    fig = plots.build_figure(groups)
    axes = plots.panel_axes(fig)
    assert sorted(axes) == sorted(names)
    labels = [ax.get_label() for ax in fig.axes if ax.get_visible() and ax.get_label() in names]
    assert len(labels) == len(set(labels))  # one Axes per panel, no duplicates
    heat = axes["grad_heatmap:0"]
    assert [t.get_text() for t in heat.get_yticklabels()] == ["fc1", "fc2", "out"]
    assert heat.get_xlabel() == "step" and axes["loss"].get_ylabel() == "loss"
    lines = axes["grad_lines:0"]
    assert lines.get_yscale() == "log" and [l.get_label() for l in lines.get_lines()] == ["fc1", "fc2", "out"]


def test_two_variants_overlay_in_the_curves_and_get_a_row_each(runs):
    groups = plots.load_groups([runs["relu0"], runs["tanh"]])
    assert [g.label for g in groups] == [
        "activation=relu, init=kaiming_normal (seed 0)",
        "activation=tanh, init=xavier_uniform (seed 0)",
    ]
    axes = plots.panel_axes(plots.build_figure(groups))
    colors = {l.get_color() for l in axes["loss"].get_lines()}
    assert colors == {"C0", "C1"}  # one colour per variant, both on the same axes
    legend = [t.get_text() for t in axes["loss"].get_legend().get_texts()]
    assert groups[0].label in legend and groups[1].label in legend and "test" in legend
    assert {"grad_heatmap:0", "grad_heatmap:1", "activations:1:act2"} <= set(axes)
    # One colour scale for both heatmaps, so they compare at a glance.
    assert axes["grad_heatmap:0"].images[0].get_clim() == axes["grad_heatmap:1"].images[0].get_clim()


def test_seeds_of_one_variant_draw_the_mean_over_each_seed_drawn_faintly(runs):
    groups = plots.load_groups([runs["relu0"], runs["relu1"]])
    assert len(groups) == 1 and groups[0].label == "relu (seeds 0, 1)"
    ax = plots.panel_axes(plots.build_figure(groups))["loss"]
    train = [l for l in ax.get_lines() if l.get_linestyle() == "-"]
    losses = [[m["train_loss"] for m in r.metrics] for r in groups[0].runs]
    mean = [l for l in train if (l.get_alpha() or 1.0) == 1.0]
    faint = [l for l in train if (l.get_alpha() or 1.0) < 1.0]
    assert len(mean) == 1 and np.allclose(mean[0].get_ydata(), np.mean(losses, axis=0))
    assert sorted(tuple(l.get_ydata()) for l in faint) == sorted(tuple(x) for x in losses)  # each seed, as logged
    assert all(l.get_zorder() < mean[0].get_zorder() for l in faint)  # behind the mean
    assert "each seed faint" in ax.get_title()


def test_the_time_step_panel_appears_for_a_recurrent_run_only(runs):
    assert "time_grad" not in plots.panel_names([runs["relu0"]])
    names = plots.panel_names([runs["rnn"]])
    assert "time_grad" in names and "accuracy" not in names  # a regression task: no accuracy
    assert not [n for n in names if n.startswith("activations")]  # the RNN has no activation modules
    ax = plots.panel_axes(plots.build_figure([runs["rnn"]]))["time_grad"]
    assert ax.get_yscale() == "log" and ax.get_xlabel().startswith("time step t")
    t = ax.get_lines()[0].get_xdata()
    assert t[0] == 1 and t[-1] == 12  # the adding task's length
    # Mixed with a feed-forward run, the panel stays and overlays what is recurrent.
    assert "time_grad" in plots.panel_names([runs["relu0"], runs["rnn"]])


def test_a_diverged_run_shows_its_non_finite_cells_and_the_divergence_step(runs):
    groups = plots.load_groups([runs["diverged"]])
    step = groups[0].first.diverged_step
    assert step is not None and np.isnan(groups[0].first.grad).any()
    axes = plots.panel_axes(plots.build_figure(groups))
    heat = axes["grad_heatmap:0"]
    assert len(heat.images) == 2  # the log-norm image and the red NaN/Inf overlay
    assert "NaN/Inf" in [t.get_text() for t in heat.get_legend().get_texts()]
    marks = [l for l in axes["grad_lines:0"].get_lines() if l.get_label() == "diverged"]
    assert marks and marks[0].get_xdata()[0] == step


def test_log_bins_keep_nan_and_zero_apart_and_average_in_log_space():
    x = np.array([[1.0, 0.0, 1.0], [100.0, 0.0, np.nan], [10.0, 0.0, 1.0], [10.0, 0.0, 1.0]])
    edges, lg = plots.log_bins(x, 2)
    assert edges.tolist() == [0, 2, 4]
    assert lg[:, 0].tolist() == [1.0, 1.0]  # geometric mean of 1 and 100 is 10
    assert np.isneginf(lg[:, 1]).all()  # all exactly zero
    assert np.isnan(lg[0, 2]) and lg[1, 2] == 0.0  # one NaN taints its bin only
    _, one = plots.log_bins(x, 100)  # more bins than rows: one row a bin
    assert one.shape == (4, 3)


def test_compare_figure_draws_with_the_same_curve_code(monkeypatch, tmp_path):
    calls = []
    real = plots.draw_curves
    monkeypatch.setattr(plots, "draw_curves", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    runs = [[{"step": 10, "test_loss": 1.0, "train_loss": 2.0}]]
    plots.compare_figure({"a": runs}, tmp_path / "c.png")
    assert [k[0][0] for k in calls] == ["train_loss", "test_loss", "test_acc"]
    assert matplotlib.image.imread(tmp_path / "c.png").shape[1] == 1500


def test_each_panel_draws_alone_on_a_given_axes(runs):
    from matplotlib.figure import Figure

    groups = plots.load_groups([runs["relu0"], runs["rnn"]])
    for name in plots.panel_names(groups):
        ax = Figure().add_subplot()
        plots.draw_panel(ax, name, groups)
        assert ax.get_label() == name and (ax.lines or ax.images or ax.collections), name
    with pytest.raises(ValueError, match="unknown panel"):
        plots.draw_panel(Figure().add_subplot(), "pie", groups)


# ---------------------------------------------------------------- dlx plot


def _dlx(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_dlx_plot_writes_beside_the_first_run_and_prints_the_path(runs):
    r = _dlx("plot", runs["relu0"].name, runs["relu1"].name[-6:], "--runs-dir", runs["dir"])
    assert r.exit_code == 0, r.output
    path = runs["relu0"] / "plot.png"
    assert f"figure: {path}" in r.output.replace("\n", "")
    assert matplotlib.image.imread(path).shape[1] == 1500


def test_dlx_plot_with_out_and_last(runs, tmp_path):
    r = _dlx("plot", "last", "-o", tmp_path / "fig", "--runs-dir", runs["dir"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "fig.png").is_file()  # no extension: a PNG, and the printed path is the file


@pytest.mark.parametrize(
    "args, code, says",
    [
        (["nope"], 1, "no run 'nope'"),
        (["relu0", "-o", "x.xyz"], 2, "cannot write a figure as x.xyz: matplotlib writes"),
        ([], 2, "Missing argument"),
    ],
)
def test_dlx_plot_errors_say_what_and_exit_like_other_commands(runs, tmp_path, args, code, says):
    args = [str(runs["relu0"]) if a == "relu0" else str(tmp_path / a) if a.endswith(".xyz") else a for a in args]
    r = _dlx("plot", *args, "--runs-dir", runs["dir"])
    assert r.exit_code == code
    assert says in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x.xyz").exists()


def test_a_run_without_summary_or_probes_still_plots(runs, tmp_path):
    """A run that is still running (or was killed at once) has meta and metrics only."""
    folder = tmp_path / "young"
    folder.mkdir()
    meta = json.loads((runs["relu0"] / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps(meta | {"status": "running"}))
    (folder / "config.yaml").write_text((runs["relu0"] / "config.yaml").read_text())
    (folder / "metrics.jsonl").write_text((runs["relu0"] / "metrics.jsonl").read_text().splitlines()[0] + "\n")
    assert plots.panel_names([folder]) == ["loss", "accuracy"]
    assert matplotlib.image.imread(plots.plot_runs([folder], tmp_path / "y.png")).shape[1] == 1500


def _texts(fig) -> str:
    """Every text the figure draws (titles, legend entries, labels), its lines joined by spaces."""
    from matplotlib.text import Text

    return " ".join(t.get_text().replace("\n", " ") for t in fig.findobj(Text))


def test_a_label_wraps_onto_lines_between_its_parts_and_keeps_every_character():
    from dlx.views.labels import wrap_label

    text = "optimizer.betas=[0.9, 0.999], optimizer.lr=0.0003, model=lstm, model.hidden=32 (seeds 0, 1, 2)"
    for width in (12, 30, 60, 200):
        lines = wrap_label(text, width).split("\n")
        assert "\n".join(lines).replace("\n", " ") == text  # a break replaces a space, nothing is cut
        assert all(len(line) <= width for line in lines if ", " in line)  # longer only where it cannot break
    assert wrap_label(text, 30).split("\n")[0] == "optimizer.betas=[0.9, 0.999],"  # a value's list stays whole


def test_figures_of_runs_differing_in_betas_and_model_keep_every_differing_value_whole(tmp_path):
    """Two adam betas and an RNN against an LSTM: the titles and legends name each value in
    full (before, group labels were cut at 48 characters and after 3 keys: "optimizer.betas=[0.9, 0.9…")."""
    fast = {"epochs": None, "steps": 8, "batch_size": 32, "log_every": 4, "threads": 1}
    where = tmp_path / "runs"
    betas = [
        dlx.train(
            _cfg(optimizer={"name": "adam", "lr": lr, "betas": b, "weight_decay": wd}, train=fast),
            runs_dir=where,
            quiet=True,
        )
        for b, lr, wd in (([0.9, 0.999], 0.01, 0.0), ([0.9, 0.95], 0.003, 0.0001))
    ]
    fig = plots.pictures_figure([r.path for r in betas], ["boundary", "loss"])
    texts = _texts(fig)
    for value in ("optimizer.betas=[0.9, 0.999]", "optimizer.betas=[0.9, 0.95]", "optimizer.weight_decay=0.0001"):
        assert texts.count(value) >= 2  # the picture's title and the loss legend
    # Drawn, each title stays within its own picture's cell and the legend within its axes:
    # a one-line title of three keys ran into the next picture's.
    from matplotlib.text import Text

    fig.canvas.draw()
    for sub in fig.subfigs[0].subfigs:
        for t in sub.findobj(Text):
            if "optimizer.betas" in t.get_text():
                box = t.get_window_extent()
                assert sub.bbox.x0 - 1 <= box.x0 and box.x1 <= sub.bbox.x1 + 1, t.get_text()
    loss = plots.panel_axes(fig)["loss"]
    assert loss.get_legend().get_window_extent().x1 <= loss.bbox.x1 + 1
    rec = [
        dlx.train(_cfg(RNN, model={"name": m, "hidden": 8}, optimizer={"name": "adam", "lr": lr}), runs_dir=where)
        for m, lr in (("rnn", 0.01), ("lstm", 0.003))
    ]
    groups = plots.load_groups([r.path for r in rec])
    assert [g.label.split(" (seed")[0] for g in groups] == [
        "model=rnn, optimizer.lr=0.01",
        "model=lstm, optimizer.lr=0.003",
    ]
    fig = plots.build_figure(groups)
    texts = _texts(fig)
    for g in groups:
        assert g.label in texts  # the loss legend, the time-step legend and each group's row titles
    compare = plots.compare_curves_figure({g.label: [r.metrics for r in g.runs] for g in groups})
    assert all(g.label in _texts(compare) for g in groups)
    out = tmp_path / "artifacts"
    out.mkdir()
    for name, f in (("betas", plots.pictures_figure([r.path for r in betas], ["boundary", "loss"])), ("rnn", fig)):
        f.savefig(out / f"{name}.png", dpi=plots.DPI)

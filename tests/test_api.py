"""The Python API the CLI renders: dlx.train / load_run / runs / compare return objects
with the run's data, a table and a figure, and a compact display."""

from __future__ import annotations

import json

import pytest
from conftest import CONFIGS

import dlx
from dlx.core.errors import UsageError


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("api") / "runs"
    cfg = {
        "seed": 0,
        "data": {"name": "spirals", "n_train": 256, "n_test": 128},
        "model": {"name": "mlp", "depth": 2, "width": 16},
        "activation": "tanh",
        "init": "xavier_uniform",
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"steps": 60, "batch_size": 32, "log_every": 5, "threads": 1},
    }
    return dlx.train(cfg, runs_dir=runs_dir), runs_dir


def test_a_loaded_run_holds_exactly_what_train_returned(trained):
    r, runs_dir = trained
    loaded = dlx.load_run(r.path.name, runs_dir)
    assert loaded.path == r.path and loaded.status == r.status == "completed"
    assert loaded.summary == r.summary and loaded.metrics == r.metrics
    # Probes in memory are the records probes.jsonl holds (NaN written as null).
    assert loaded.probes == json.loads(json.dumps(r.probes))
    assert loaded.config == r.config and loaded.meta["run_id"] == r.path.name
    assert dlx.load_run("last", runs_dir).path == r.path


def test_the_run_tables_hold_the_summary_numbers(trained):
    r, _ = trained
    layers = r.table()
    assert list(layers["layer"]) == [l["name"] for l in r.summary["layers"]]
    assert list(layers["grad_median"]) == [l["grad_norm"]["median"] for l in r.summary["layers"]]
    metrics = r.table("metrics")
    assert list(metrics["step"]) == [m["step"] for m in r.metrics] == list(range(5, 61, 5))
    assert r.table("verdicts")["kind"][0] == r.verdicts[0]["kind"]
    with pytest.raises(ValueError, match="unknown table"):
        r.table("nope")


def test_plot_draws_the_named_panels_for_a_saved_and_an_unsaved_run(trained):
    r, _ = trained
    from dlx.views.plots import panel_axes

    fig = r.plot(panels=["loss", "grad_heatmap", "activations"])
    names = list(panel_axes(fig))
    assert names[:2] == ["loss", "grad_heatmap:0"] and all(n.startswith("activations:0:") for n in names[2:])
    unsaved = dlx.train(r.config, save=False)
    assert unsaved.path is None and len(unsaved.probes) == len(r.probes)
    assert sorted(panel_axes(unsaved.plot())) == sorted(panel_axes(r.plot()))
    with pytest.raises(UsageError, match="did you mean 'loss'"):
        r.plot(panels=["los"])


def test_the_displays_are_compact_and_name_the_verdict(trained):
    r, _ = trained
    text = repr(r)
    assert text.startswith(f"<dlx run {r.path.name}: completed;") and r.verdict in text and len(text) < 1000
    page = r._repr_html_()
    assert "verdict" in page and r.path.name in page and len(page) < 20_000


def test_runs_lists_filters_and_sorts_like_dlx_runs(trained):
    r, runs_dir = trained
    rows = dlx.runs(runs_dir)
    assert [row["run_id"] for row in rows] == [r.path.name] and rows[0]["verdict"] == r.verdicts[0]["kind"]
    assert rows.load(0).summary == r.summary
    assert dlx.runs(runs_dir, status="diverged") == []
    with pytest.raises(UsageError, match="did you mean 'test_acc'"):
        dlx.runs(runs_dir, sort="test_ac")


def test_compare_returns_mean_and_sd_per_variant_with_its_runs(tmp_path):
    small = ["data.n_train=200", "train.steps=40", "train.batch_size=32", "train.threads=1"]
    c = dlx.compare(
        CONFIGS / "quickstart.yaml",
        over=["optimizer.lr=0.001,0.01"],
        seeds=2,
        overrides=small,
        runs_dir=tmp_path / "runs",
        max_parallel=2,
        figure=False,
    )
    assert [row.label for row in c.rows] == ["optimizer.lr=0.001", "optimizer.lr=0.01"]
    for row in c.rows:
        runs = c.runs[row.label]
        accs = [x.final["test_acc"] for x in runs]
        assert len(runs) == 2 and all(x.status == "completed" for x in runs)
        assert row.stats["test_acc"][0] == pytest.approx(sum(accs) / 2)
    t = c.table()
    assert list(t["variant"]) == ["optimizer.lr=0.001", "optimizer.lr=0.01"] and "test_acc_sd" in t.columns
    assert "2 variants x 2 seeds" in repr(c)
    assert c.plot().axes  # a Figure of the curves


def test_no_submodule_shadows_a_function_of_the_api():
    """`import dlx.X` sets the attribute dlx.X to the module: a module named like an API
    function (runs.py, compare.py) would replace dlx.runs() / dlx.compare() once imported."""
    import importlib
    import pkgutil

    for m in pkgutil.iter_modules(dlx.__path__):
        if m.name == "__main__":
            continue  # runs the CLI
        try:
            importlib.import_module(f"dlx.{m.name}")
        except ImportError:  # an optional extra (ray) not installed
            pass
    for name in ("train", "compare", "sweep", "load_run", "runs", "check", "load_config"):
        assert callable(getattr(dlx, name)) and not isinstance(getattr(dlx, name), type(dlx)), name

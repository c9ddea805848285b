"""Every panel has one owner, the panel registry: each panel a figure can draw is named in it,
`dlx plot --panels` lists each in its help, and `Run.plot(panels=[...])` takes each name.

The help is read through typer's CliRunner; it is made from panel_registry.panels_help() once
the CLI takes it from there (dlx.cli.views' PLOT_PANELS_HELP).
"""

from __future__ import annotations

import copy
import re

import pytest
from conftest import TINY
from matplotlib.figure import Figure
from typer.testing import CliRunner

import dlx
from dlx.cli.app import app
from dlx.core.errors import DlxError
from dlx.views import panel_registry, panels, pictures, plots


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A saved 2-D run with every instrument, so that most panels have something to draw."""
    cfg = copy.deepcopy(TINY)
    cfg["instruments"] = {"sharpness": True, "noise": True, "spectra": True, "every": 4}
    return dlx.train(cfg, runs_dir=tmp_path_factory.mktemp("runs"))


def test_the_registry_names_every_panel_the_figures_draw_and_nothing_else():
    assert set(panels.DRAWERS) == set(panel_registry.SERIES_PANELS)
    assert plots.USER_PANELS == panel_registry.USER_PANELS == tuple(panel_registry.SERIES_PANELS)
    assert pictures.PICTURES == plots.PICTURES == panel_registry.PICTURES == tuple(panel_registry.PICTURE_PANELS)
    assert set(panel_registry.PANELS) == set(panel_registry.SERIES_PANELS) | set(panel_registry.PICTURE_PANELS)
    assert not set(panel_registry.SERIES_PANELS) & set(panel_registry.PICTURE_PANELS)
    assert set(panel_registry.FRAME_PANELS) <= set(panel_registry.PICTURES)


def test_a_runs_panels_are_all_of_registered_kinds(run):
    names = plots.panel_names(plots.group_runs([run.series()]))
    assert {"sharpness", "noise", "spectra"} <= {n.split(":")[0] for n in names}
    assert {n.split(":")[0] for n in names} <= set(panel_registry.SERIES_PANELS)


def test_dlx_plot_help_lists_every_panel():
    r = CliRunner().invoke(app, ["plot", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert r.exit_code == 0, r.output
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", r.output).split())
    missing = [name for name in panel_registry.PANELS if not re.search(rf"(?<![\w-]){name}(?![\w-])", text)]
    assert not missing, f"dlx plot --help does not name {missing}"


@pytest.mark.parametrize("name", list(panel_registry.PANELS))
def test_run_plot_takes_every_panel_name(run, name):
    """Each name is known: drawn, or refused for this run's data or model, never as unknown."""
    try:
        fig = run.plot(panels=[name])
    except DlxError as e:
        assert "unknown panel" not in str(e)
    else:
        assert isinstance(fig, Figure)


def test_run_plot_refuses_a_name_the_registry_lacks(run):
    with pytest.raises(DlxError, match="unknown panel 'pie'"):
        run.plot(panels=["pie"])

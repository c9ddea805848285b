"""`last`, `last-run` and `last-sweep`: the run or sweep started (or resumed) most recently."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlx.cli.app import app
from dlx.core.errors import DlxError
from dlx.records.folders import find_run, find_sweep
from dlx.views.html_report import resolve


def _run(runs: Path, name: str, started: str, resumed: str | None = None) -> Path:
    d = runs / name
    d.mkdir(parents=True)
    meta = {
        "run_id": name,
        "status": "completed",
        "started": started,
        "resumes": [{"at": resumed, "step": 5}] if resumed else [],
    }
    (d / "meta.json").write_text(json.dumps(meta))
    return d


def _sweep(runs: Path, name: str, created: str, resumed: str | None = None) -> Path:
    d = runs / name
    (d / "trials").mkdir(parents=True)
    meta = {"sweep_id": name, "status": "completed", "created": created, **({"resumed": resumed} if resumed else {})}
    (d / "sweep.json").write_text(json.dumps(meta))
    return d


@pytest.fixture
def runs(tmp_path):
    runs = tmp_path / "runs"
    # Written out of order on purpose: the times in the files decide, not the write order.
    sweep = _sweep(runs, "sweep-20260102-090000-grid-aaaaaa", "2026-01-02T09:00:00+00:00")
    old = _run(runs, "20260101-080000-old-bbbbbb", "2026-01-01T08:00:00+00:00")
    new = _run(runs, "20260101-120000-new-cccccc", "2026-01-01T12:00:00+00:00")
    return runs, old, new, sweep


def test_last_is_whichever_run_or_sweep_started_last_and_last_run_last_sweep_pick_a_kind(runs):
    runs, old, new, sweep = runs
    assert resolve("last", runs) == sweep  # report takes both kinds
    assert resolve("last-run", runs) == new and resolve("last-sweep", runs) == sweep
    # A command that takes one kind reads last as that kind's last.
    assert find_run("last", runs) == find_run("last-run", runs) == new
    assert find_sweep("last", runs) == find_sweep("last-sweep", runs) == sweep


def test_a_resume_counts_as_a_start(runs):
    runs, old, new, sweep = runs
    meta = json.loads((old / "meta.json").read_text())
    meta["resumes"] = [{"at": "2026-01-03T10:00:00+00:00", "step": 40}]
    (old / "meta.json").write_text(json.dumps(meta))
    assert find_run("last", runs) == old and resolve("last", runs) == old
    meta = json.loads((sweep / "sweep.json").read_text())
    (sweep / "sweep.json").write_text(json.dumps({**meta, "resumed": "2026-01-04T10:00:00+00:00"}))
    assert resolve("last", runs) == sweep and find_run("last", runs) == old


def test_a_sweep_given_where_a_run_is_wanted_says_how_to_see_a_sweep(runs):
    runs, old, new, sweep = runs
    for ref in (sweep.name, "grid", str(sweep), "last-sweep"):
        with pytest.raises(DlxError, match="is a sweep, not a run") as e:
            find_run(ref, runs)
        assert f"dlx report {sweep.name}" in str(e.value) and f"dlx runs --sweep {sweep.name}" in str(e.value)
    with pytest.raises(DlxError, match="last-run names a run, not a sweep"):
        find_sweep("last-run", runs)
    with pytest.raises(DlxError, match="no run 'nothing'"):
        find_run("nothing", runs)  # a name that is neither stays the plain "no run" message


def test_dlx_show_and_plot_of_a_sweep_exit_1_with_that_message(runs):
    runs, old, new, sweep = runs
    for cmd in (["show", sweep.name], ["plot", "last-sweep"]):
        r = CliRunner().invoke(app, [*cmd, "--runs-dir", str(runs)], env={"COLUMNS": "200"})
        assert r.exit_code == 1 and "is a sweep, not a run" in r.output and "dlx report" in r.output, r.output


def test_last_run_with_only_sweeps_points_to_their_trials(tmp_path):
    runs = tmp_path / "runs"
    sweep = _sweep(runs, "sweep-20260102-090000-grid-aaaaaa", "2026-01-02T09:00:00+00:00")
    with pytest.raises(DlxError, match=f"no runs in .* yet.*dlx runs --sweep last, dlx show {sweep.name}/trial-0000"):
        find_run("last", runs)

"""A real notebook (tests/notebooks/dlx_in_a_notebook.ipynb) run under nbclient, as a
person runs it in Jupyter: its outputs must hold the live progress display, the
verdict, an inline PNG figure and a table."""

from __future__ import annotations

import os
import sys

import pytest
from conftest import CONFIGS, ROOT

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = ROOT / "tests" / "notebooks" / "dlx_in_a_notebook.ipynb"


def outputs(cell) -> list[dict]:
    return list(cell.get("outputs", []))


def data_of(cell, mime: str) -> list[str]:
    return [o["data"][mime] for o in outputs(cell) if "data" in o and mime in o["data"]]


@pytest.mark.slow
def test_the_notebook_runs_and_shows_progress_verdict_a_png_and_a_table(tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.setenv("DLX_NB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("DLX_NB_CONFIG", str(CONFIGS / "quickstart.yaml"))
    # The kernel must import this checkout's dlx with this interpreter's packages.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    from jupyter_client.kernelspec import KernelSpec

    # The kernel runs on this interpreter (the test's venv), whatever kernels are installed.

    client.km = client.kernel_manager_class(kernel_name="python3")
    client.km._kernel_spec = KernelSpec(
        argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        display_name="Python 3",
        language="python",
    )
    client.execute()
    cells = [c for c in nb.cells if c.cell_type == "code"]
    for c in cells:
        errors = [o for o in outputs(c) if o.get("output_type") == "error"]
        assert not errors, f"{c.source}\n{errors}"
    train, plot, table, compare, compare_plot, runs = cells[1:7]
    # The live display: an HTML progress bar (updated in place, so the file keeps its last state).
    progress = [h for h in data_of(train, "text/html") if "dlx-progress" in h]
    assert progress and "<progress" in progress[0] and "120/120" in progress[-1]
    # The verdict at the end of dlx.train, and the run's compact display.
    html = "\n".join(data_of(train, "text/html"))
    assert "verdict" in html and ("healthy" in html or "slow" in html)
    assert any(o.get("output_type") == "execute_result" for o in outputs(train))
    text = "\n".join(data_of(train, "text/plain"))
    assert "<dlx run" in text and len(text) < 2000  # compact, not 12,800 characters of dataclass
    # An inline PNG figure from r.plot() and from c.plot().
    for cell in (plot, compare_plot):
        pngs = data_of(cell, "image/png")
        assert pngs and len(pngs[0]) > 10_000
    # Tables: pandas DataFrames as HTML.
    assert "<table" in data_of(table, "text/html")[0] and "grad_median" in data_of(table, "text/html")[0]
    assert "3/3" in data_of(compare, "text/html")[0]  # the compare's own progress display
    t = data_of(compare, "text/html")[-1]
    assert "<table" in t and "optimizer.lr=0.001" in t and "test_acc_sd" in t
    assert data_of(runs, "text/html")[0].count("<tr") >= 5  # header + 1 trained + 3 compared

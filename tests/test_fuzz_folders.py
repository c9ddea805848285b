"""Fuzzed run and sweep folders: whatever JSON a folder's files hold, `dlx runs`, `show`,
`report` and `plot` answer with their view or a clear message; never a traceback, and one
bad folder never hides the others.

Hypothesis takes one real run and one real sweep (made once) and, per case, damages copies
of them: a node anywhere in meta.json, summary.json, a metrics or probes line, sweep.json
or results.json is replaced by an odd JSON value (null, a list for an object, a string, a
huge or negative number, rich markup, mathtext) or deleted. Each case holds ten damaged
folders beside an intact run (200 in all), and every command runs on them in this process (figures are
built but not drawn: the shapes are under test here, not matplotlib's layout). The
regression tests after it pin what the fuzzing found.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import traceback
from pathlib import Path

import pytest
from conftest import TINY
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import dlx
from dlx.cli.app import app

ODD = st.one_of(
    st.sampled_from(
        [None, [], {}, "", "x", 0, -1, 1e308, -1e308, True, "[old] baseline", "[red]x", "$x^$", [None], {"": None}]
    ),
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats(allow_nan=False) | st.text(max_size=6),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
        max_leaves=5,
    ),
)
DELETE = object()
HUNT = os.environ.get("DLX_FUZZ_HUNT")


def _paths(node, prefix=()):
    """Every path to a node of a parsed JSON document, the document itself first."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:4]):  # the first few records say as much as all of them
            yield from _paths(v, (*prefix, i))


def _set(doc, path, value):
    if not path:
        return value
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


def _damage(data, folder: Path, files: list[str]) -> str:
    """Replace (or delete) one node of one of the folder's JSON files; what was done."""
    name = data.draw(st.sampled_from([f for f in files if (folder / f).is_file()]))
    path = folder / name
    jsonl = name.endswith(".jsonl")
    doc = [json.loads(x) for x in path.read_text().splitlines()] if jsonl else json.loads(path.read_text())
    where = data.draw(st.sampled_from(list(_paths(doc))))
    value = data.draw(st.just(DELETE) if where and data.draw(st.booleans()) else ODD)
    if value is DELETE and where and isinstance(where[-1], int):
        value = None  # a list element is replaced, not removed
    doc = _set(copy.deepcopy(doc), where, value)
    if jsonl:
        lines = doc if isinstance(doc, list) else [doc]
        path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    else:
        path.write_text(json.dumps(doc))
    return f"{folder.name}/{name}{list(where)} = {'<deleted>' if value is DELETE else repr(value)[:60]}"


RUN_FILES = ["meta.json", "summary.json", "metrics.jsonl", "probes.jsonl"]
SWEEP_FILES = ["sweep.json", "results.json"]


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """One real run and one real two-trial sweep, never changed: each case damages copies."""
    from dlx.many.executors import TrialResult
    from dlx.many.sweeper import Sweep, plan, run_sweep

    root = tmp_path_factory.mktemp("originals")
    cfg = copy.deepcopy(TINY)
    cfg["train"] = {"steps": 24, "batch_size": 32, "log_every": 4, "eval_every": 8}
    run = dlx.train(cfg, runs_dir=root / "runs", quiet=True).path
    (root / "base.yaml").write_text(json.dumps(cfg))
    (root / "spec.yaml").write_text(json.dumps({"base": "base.yaml", "space": {"optimizer.lr": [0.01, 0.02]}}))

    class CopyExecutor:  # each trial "trains" by copying the real run
        def run(self, trials, on_result):
            for t in trials:
                dest = Path(t.runs_dir) / t.config["name"]
                shutil.copytree(run, dest)
                summary = json.loads((dest / "summary.json").read_text())
                on_result(TrialResult(t.id, "completed", dest, summary, [], 1, None))

    sweep = run_sweep(Sweep.create(plan(root / "spec.yaml"), root / "runs"), CopyExecutor()).folder
    return run, sweep


@pytest.fixture(autouse=True)
def no_drawing(monkeypatch):
    """Figures are built (where a file's shape breaks them) but not drawn: drawing (layout,
    text, rasterizing) is where the time goes, and no shape reaches it. Titles as text, not
    TeX, are tested on their own."""
    from matplotlib.figure import Figure

    def savefig(self, fname, *args, **kwargs):
        if hasattr(fname, "write"):
            fname.write(b"")
        else:
            Path(fname).write_bytes(b"")

    monkeypatch.setattr(Figure, "savefig", savefig)


@pytest.fixture(autouse=True)
def debug(monkeypatch):
    monkeypatch.setenv("DLX_DEBUG", "1")  # a bug raises (and fails the test) instead of printing one line


def invoke(*args: str) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        if HUNT:  # DLX_FUZZ_HUNT=file: collect every distinct crash site instead of stopping at one
            tb = [f for f in traceback.extract_tb(res.exc_info[2]) if "/dlx/" in f.filename][-1]
            with open(HUNT, "a") as f:
                f.write(
                    f"{args[0]} {type(res.exception).__name__}: {str(res.exception)[:80]} @ {tb.filename.split('/')[-1]}:{tb.lineno} {tb.line}\n"
                )
            return ""
        pytest.fail(f"dlx {' '.join(map(str, args))}:\n" + "".join(traceback.format_exception(*res.exc_info)))
    assert "Traceback" not in res.output, (args, res.output)
    assert res.exit_code in (0, 1, 2), (args, res.exit_code, res.output)
    return res.output


@pytest.mark.slow
@settings(
    max_examples=int(os.environ.get("DLX_FUZZ_FOLDERS", "10")),
    phases=[Phase.explicit, Phase.reuse, Phase.generate]
    + ([] if os.environ.get("DLX_FUZZ_NO_SHRINK") else [Phase.shrink]),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_odd_folders_never_crash_runs_show_report_or_plot_and_never_hide_the_others(originals, tmp_path_factory, data):
    run, sweep = originals
    runs = tmp_path_factory.mktemp("case")
    intact = shutil.copytree(run, runs / "intact-run")
    damaged = [shutil.copytree(run, runs / f"odd-run-{i}") for i in range(8)]
    sw = shutil.copytree(sweep, runs / sweep.name)
    trial = sw / "trials" / "trial-0000"
    done = [_damage(data, d, RUN_FILES) for d in damaged]
    done += [_damage(data, sw, SWEEP_FILES), _damage(data, trial, RUN_FILES)]
    note = "; ".join(done)

    listed = json.loads(invoke("runs", "--runs-dir", runs, "--json") or "[]")
    if not HUNT:
        assert "intact-run" in [r.get("run_id") for r in listed], note  # one bad folder hides nothing
        assert "intact-run" in invoke("runs", "--runs-dir", runs)
    invoke("runs", "--runs-dir", runs, "--sweep", sw.name)
    for d in damaged:
        invoke("show", d)
    invoke("show", f"{sw.name}/trial-0000", "--runs-dir", runs)
    invoke("report", damaged[0])
    invoke("report", sw)
    invoke("plot", *damaged[1:], trial, intact, "-o", runs / "p.png")

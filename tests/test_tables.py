"""The tables of `dlx runs` and `dlx compare` at 80 and 120 columns, as a user sees them
(real subprocesses, COLUMNS set): every line fits, no number is cut, every number is the
--json value written by dlx.core.fmt.num, and what was left out is said under the table."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from conftest import CONFIGS
from rich.console import Console

from dlx.core.fmt import num
from dlx.many.variants import Row
from dlx.records.folders import find_run
from dlx.views.tables import compare_table, runs_table, short_id, sweep_table

WIDTHS = (80, 120)
TINY = ["--set", "train.steps=10", "--set", "data.n_train=64", "--set", "data.n_test=64", "--set", "model.width=8"]
NUMBERS = ("train_loss", "test_loss", "train_acc", "test_acc")


def start(args, cwd, columns):
    env = dict(os.environ, COLUMNS=str(columns), DLX_CACHE_DIR=str(cwd / "cache"))
    env.pop("DLX_DATA_DIR", None)
    return subprocess.Popen(
        [sys.executable, "-m", "dlx", *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(procs):
    """Each process's stdout, once all have ended (each must succeed)."""
    outs = {}
    for key, p in procs.items():
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        outs[key] = out
    return outs


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Two real `dlx compare` runs (adam, sgd x 1 seed, tiny), one printed at 80 columns and one
    at 120 (both at once), then `dlx runs` of the first one's folder at both widths and --json."""
    cwd = tmp_path_factory.mktemp("tables")
    # Relative paths keep the lines under the table (figure: runs80/...) short.
    compare = {
        w: start(
            [
                "compare",
                CONFIGS / "quickstart.yaml",
                "--optimizers",
                "adam,sgd",
                "--seeds",
                "1",
                "--runs-dir",
                f"runs{w}",
                "--max-parallel",
                "1",
                *TINY,
            ],
            cwd,
            w,
        )
        for w in WIDTHS
    }
    compare = {80: finish({80: compare[80]})[80], 120: compare[120]}
    runs = finish(
        {
            **{w: start(["runs", "--runs-dir", "runs80"], cwd, w) for w in WIDTHS},
            "json": start(["runs", "--runs-dir", "runs80", "--json"], cwd, 80),
            "compare": compare[120],
        }
    )
    compare[120] = runs.pop("compare")
    # What each compare's mean is made of (one seed): its runs' finals, as `dlx runs --json` reads them.
    finals = {
        w: {
            json.loads((d / "meta.json").read_text())["name"]: json.loads((d / "summary.json").read_text())
            for d in (cwd / f"runs{w}").iterdir()
            if (d / "summary.json").is_file()
        }
        for w in WIDTHS
    }
    return {
        "cwd": cwd,
        "compare": compare,
        "runs": {w: runs[w] for w in WIDTHS},
        "json": json.loads(runs["json"]),
        "finals": finals,
    }


def parse(out: str) -> tuple[list[str], list[list[str]]]:
    """The headers (a header's lines joined) and the rows (a row's lines joined by newlines; rows of
    several lines have a blank line between them)."""
    lines = out.splitlines()
    heads = [[c.strip() for c in line.split("┃")] for line in lines if "┃" in line]
    headers = [" ".join(h[i] for h in heads).strip() for i in range(len(heads[0]))]
    body = [[c.strip() for c in line.split("│")] for line in lines if "│" in line]
    groups: list[list[list[str]]] = [[]]
    for cells in body:
        if not any(cells):
            groups.append([])
        elif any(not any(c) for c in body):
            groups[-1].append(cells)
        else:
            groups.append([cells])
    return headers, [["\n".join(c for c in col if c) for col in zip(*g)] for g in groups if g]


def assert_fits(out: str, width: int):
    long = [line for line in out.splitlines() if len(line) > width]
    assert not long, f"lines over {width} columns:\n" + "\n".join(long)
    assert "…" not in out and "..." not in out, out


def left_out(out: str, width: int) -> list[str]:
    note = [line for line in out.splitlines() if line.startswith(f"not shown at {width} columns: ")]
    if not note:
        return []
    return note[0].split(": ", 1)[1].split(" (")[0].split(", ")


@pytest.mark.parametrize("width", WIDTHS)
def test_runs_table_fits_and_shows_every_number_whole(made, width):
    out, rows = made["runs"][width], made["json"]
    assert_fits(out, width)
    headers, cells = parse(out)
    assert len(cells) == len(rows) == 2
    for r in rows:
        # The run id as shown is a unique part of one id, which `dlx show` takes.
        [row] = [c for c in cells if c[0] in r["run_id"]]
        assert find_run(row[0], made["cwd"] / "runs80").name == r["run_id"]
        shown = dict(zip(headers, row))
        for k in NUMBERS:
            if k in shown:
                assert shown[k] == num(r[k])
        if "steps" in shown:
            assert shown["steps"] == str(r["steps"])
        assert shown["status"] == r["status"] and shown["verdict"] == r["verdict"]
    dropped = left_out(out, width)
    assert {"run", "status", "test_acc", "verdict"} <= set(headers)
    assert set(headers) | set(dropped) == {"run", "status", "steps", "train_loss", "test_loss", "test_acc", "verdict"}
    if width == 80:
        # Compare's run ids are 50 characters: at 80 columns they lose their date, and columns are left out.
        assert dropped and "run ids without their date" in out
        assert all(c[0] == r["run_id"][16:] for c, r in zip(cells, rows))
    else:
        assert not dropped and [c[0] for c in cells] == [r["run_id"] for r in rows]


@pytest.mark.parametrize("width", WIDTHS)
def test_compare_table_fits_and_shows_every_mean_whole(made, width):
    out, finals = made["compare"][width], made["finals"][width]
    assert_fits(out, width)
    headers, cells = parse(out)
    assert [c[0] for c in cells] == ["optimizer=adam", "optimizer=sgd"]
    for row in cells:
        # One seed per variant: the mean is that run's value, and no sd is shown.
        run = finals[f"quickstart-{row[0].replace('=', '-')}-s0"]
        shown = dict(zip(headers, row))
        for k in NUMBERS:
            if k in shown:
                assert shown[k] == num(run["final"][k])
        # The run's verdict; healthy gradients in a run too short to judge say so.
        short = run["verdicts"][0]["kind"] == "healthy" and run["outcome"]["kind"] == "too_short"
        want = "too short to judge" if short else run["verdicts"][0]["kind"]
        assert " ".join(shown["verdict"].split()) == want
    dropped = left_out(out, width)
    assert {"variant", "test_acc", "verdict"} <= set(headers)
    # Named by their --json keys; only what the one-line rule leaves out (seconds, then runs).
    assert "seconds" not in dropped and set(dropped) <= {"train_seconds", "runs"}
    assert len(headers) + len(dropped) == 8
    assert bool(dropped) == (width == 80), out


def render(fitted, width: int) -> str:
    con = Console(
        width=max(width, fitted.width), file=io.StringIO(), highlight=False, soft_wrap=True, color_system=None
    )
    con.print(fitted.table, crop=False)  # as dlx.cli.app prints it: wider where it cannot fit
    con.width = width
    for line in fitted.notes():
        con.print(line, soft_wrap=False)
    return con.file.getvalue()


@pytest.mark.parametrize("width, goal", [(80, None), (80, ("test_acc", 0.9)), (120, None)])
def test_compare_over_seeds_shows_each_mean_and_sd_whole(width, goal):
    stats = {
        "train_loss": (0.0256123, 0.00123456),
        "test_loss": (0.0123, 2.5e-3),
        "train_acc": (0.98765, 0.0123),
        "test_acc": (0.912345, 0.0456),
        "train_seconds": (1.23456, 0.789),
        "steps_to_test_acc": (1234.5, 56.7),
    }
    rows = [
        Row("optimizer=adam", 3, {"completed": 3, "reached_target": 3}, stats, "healthy"),
        Row(
            "optimizer=sgd",
            3,
            {"completed": 2, "diverged": 1, "reached_target": 1},
            {k: (m * 3.3, s * 7.7) for k, (m, s) in stats.items()},
            "healthy (2/3)",
        ),
    ]
    out = render(compare_table(rows, 3, width, goal), width)
    assert_fits(out, width)
    headers, cells = parse(out)
    for r, row in zip(rows, cells):
        shown = dict(zip(headers, row))
        for k in NUMBERS:
            if k in shown:
                m, s = r.stats[k]
                assert shown[k].replace("\n", "") == f"{num(m)}±{num(s, 2)}"
        if goal:
            m, s = r.stats["steps_to_test_acc"]
            assert (
                shown["steps to test_acc=0.9"].replace("\n", "")
                == f"{num(round(m), exact_int=True)}±{num(s, 2)} ({r.statuses['reached_target']}/3)"
            )
        assert row[0] == r.label and " ".join(shown["verdict"].split()) == r.verdict
        # At 120 columns mean±sd on one line; at 80 each sd on a line under its mean.
        assert ("\n" in shown["test_acc"]) == (width == 80)
    assert set(headers).isdisjoint(left_out(out, width)) and bool(left_out(out, width)) == (width == 80)
    assert "3 (1 diverged)" in out  # a failed run: the runs column says so, and is kept longest


def test_a_short_run_id_is_used_only_where_it_is_a_unique_part_of_one_id():
    ids = [
        "20261127-091945-quickstart-a29c7a",
        "20261127-092000-quickstart-fab3eb",
        "20261128-101010-quickstart-a29c7a",
    ]  # the same random part twice
    assert short_id(ids[1], ids, 1) == "quickstart-fab3eb" and short_id(ids[1], ids, 3) == "fab3eb"
    assert short_id(ids[0], ids, 1) == ids[0] and short_id(ids[0], ids, 3) == ids[0]
    rows = [
        {
            "run_id": i,
            "name": "quickstart",
            "status": "completed",
            "steps": 30,
            "train_loss": 0.5,
            "test_loss": 0.6,
            "test_acc": 0.7,
            "verdict": "healthy",
        }
        for i in ids
    ]
    for width in (40, 80):  # too narrow for any table: drawn wider, ids and numbers whole
        out = render(runs_table(rows, width, ids=ids), width)
        assert [c[0] for c in parse(out)[1]] == ids and "0.7" in out


def test_compare_leaves_out_seconds_rather_than_wrap_a_row_over_several_lines():
    stats = {
        "train_loss": (0.724, 0.043),
        "test_loss": (1.08, 0.25),
        "train_acc": (0.695, 0.011),
        "test_acc": (0.516, 0.044),
        "train_seconds": (0.07, 0.013),
        "steps_to_test_acc": (10.0, 0.0),
    }
    rows = [
        Row(f"optimizer={o} activation={a}", 2, {"completed": 2, "reached_target": 1}, stats, "healthy")
        for o in ("adam", "sgd")
        for a in ("tanh", "relu")
    ]
    out = render(compare_table(rows, 2, 120, ("test_acc", 0.5)), 120)
    assert_fits(out, 120)
    headers, cells = parse(out)
    assert [c[0] for c in cells] == [r.label for r in rows]  # one line each
    assert cells[0][headers.index("train_loss")] == "0.724±0.043"
    assert left_out(out, 120) == ["train_seconds"]


def test_a_mean_over_fewer_seeds_than_ran_says_how_many_never_a_silent_plus_minus_zero():
    stats = {"train_loss": (2.06e24, 0.0), "test_acc": (0.34, 0.01)}
    diverged = Row("schedule=constant", 2, {"diverged": 2}, stats, "lr_too_high")
    diverged.values = {"train_loss": [2.06e24], "test_acc": [0.33, 0.35]}
    out = render(compare_table([diverged], 2, 120), 120)
    headers, cells = parse(out)
    assert cells[0][headers.index("train_loss")] == "2.06e+24 (1 of 2)"
    assert cells[0][headers.index("test_acc")] == "0.34±0.01"


def test_sweep_table_fits_and_leaves_out_seconds_then_the_last_keys():
    keys = ["optimizer.name", "optimizer.lr", "model.width", "activation"]
    rows = [
        {
            "trial": i,
            "params": {
                "optimizer.name": "rmsprop",
                "optimizer.lr": 0.000123 * (i + 1),
                "model.width": 64,
                "activation": "leaky_relu",
            },
            "value": 0.91234 - i / 100,
            "status": "completed" if i else "crashed",
            "verdict": "vanishing_through_time",
            "seconds": 12.345,
        }
        for i in range(3)
    ]
    for width in WIDTHS:
        out = render(sweep_table(rows, keys, "test_acc", "max", width), width)
        assert_fits(out, width)
        headers, cells = parse(out)
        for r, row in zip(rows, cells):
            shown = dict(zip(headers, row))
            assert shown["test_acc"] == num(r["value"]) and shown["trial"] == f"{r['trial']:04d}"
            if "lr" in shown:
                assert shown["lr"] == num(r["params"]["optimizer.lr"])
            assert shown["verdict"] == ("crashed" if r["status"] == "crashed" else r["verdict"])
        assert left_out(out, width) == ([] if width == 120 else ["seconds", "activation"])

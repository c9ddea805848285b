"""Terminal pictures: gradient heat strips (over steps and time steps), loss sparklines, at 80 columns."""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
from conftest import CONFIGS, TINY
from rich.console import Console
from typer.testing import CliRunner

import dlx
from dlx.cli.app import app
from dlx.records.folders import load_run
from dlx.views.report import MONO_RAMP, NONFINITE_MARK, RAMP_RGB, SPARK, ZERO_MARK, HeatStrip, LossSpark, run_report

RNN = {
    "seed": 0,
    "name": "rnn",
    "data": {"name": "adding", "length": 12, "n_train": 64, "n_test": 32},
    "model": {"name": "rnn", "hidden": 8},
    "activation": "tanh",
    "init": "default",
    "optimizer": {"name": "adam", "lr": 0.01},
    "train": {"loss": "mse", "steps": 8, "batch_size": 16, "log_every": 2, "eval_every": 4, "threads": 1},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny MLP run and a tiny RNN run, trained once for the module, as load_run reads them."""
    where = tmp_path_factory.mktemp("runs")
    mlp = copy.deepcopy(TINY) | {"name": "mlp"}
    return {
        "dir": where,
        "mlp": load_run(dlx.train(mlp, runs_dir=where).path),
        "rnn": load_run(dlx.train(RNN, runs_dir=where).path),
    }


def render(renderable, width: int = 80, color: bool = False) -> tuple[str, Console]:
    con = Console(
        record=True,
        width=width,
        force_terminal=color,
        color_system="truecolor" if color else None,
        file=open("/dev/null", "w"),
    )
    con.print(renderable)
    return con.export_text(styles=False, clear=False), con


def lines_of(text: str, title: str) -> list[str]:
    """The lines of a heat strip from its title to its legend."""
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith(title))
    end = next(i for i in range(start, len(lines)) if "(log scale)" in lines[i])
    return lines[start : end + 1]


def test_the_run_report_draws_the_heat_strip_and_sparkline_within_80_columns(runs):
    d = runs["mlp"]
    text, _ = render(run_report(d["summary"], d["meta"], d["metrics"], d["probes"]))
    assert max(len(l) for l in text.splitlines()) <= 80
    strip = lines_of(text, "Gradient norm per layer over steps")
    rows = strip[1:-2]
    assert [r.split()[0] for r in rows] == ["fc1", "fc2", "out"]  # one row per layer, input first
    cells = rows[0][len("fc1") + 2 :]
    assert len(cells) == len(rows[-1][len("out") + 2 :]) and len(cells) >= 16
    assert set(cells) <= set(MONO_RAMP)  # no colour on a recording console: the character ramp
    assert strip[-2].split()[:2] == ["step", "1"] and strip[-2].split()[-1] == str(d["summary"]["steps"])
    # The sparkline after the final metrics, train and test on one scale.
    spark = [l for l in text.splitlines() if l.startswith("loss train")]
    assert spark and set(spark[0].split()[2]) <= set(SPARK)
    assert any(l.strip().startswith("test") and set(l.split()[1]) <= set(SPARK + " ") for l in text.splitlines())


def test_without_series_the_report_is_the_tables_alone(runs):
    d = runs["mlp"]
    text, _ = render(run_report(d["summary"], d["meta"]))
    assert "Per-layer gradient L2 norm" in text and "Gradient norm per layer over steps" not in text
    assert "loss train" not in text


def test_the_strip_cells_follow_the_log_of_the_norm():
    # Layer a grows 1 -> 1e4 over 40 steps; layer b stays at 1e-2: the smallest value.
    steps = 40
    vals = np.stack([np.logspace(0, 4, steps), np.full(steps, 1e-2)], axis=1)
    text, _ = render(HeatStrip("t", vals, ["a", "b"], "step", 1, steps))
    rows = lines_of(text, "t")[1:3]
    a, b = rows[0][2:], rows[1][2:]
    assert a[0] != a[-1] and a[-1] == MONO_RAMP[-1]  # the largest norm: the top of the ramp
    assert set(b) == {MONO_RAMP[0]}  # the smallest: the bottom
    assert [MONO_RAMP.index(c) for c in a] == sorted(MONO_RAMP.index(c) for c in a)  # monotone
    assert "||grad|| 0.01 " in text and " 1e+04 (log scale)" in text  # the legend's scale, in norms


def test_nan_inf_and_zero_norms_get_their_own_marks_not_a_crash():
    vals = np.ones((30, 3))
    vals[10:20, 0] = np.nan  # diverged in the middle
    vals[25, 1] = np.inf
    vals[:, 2] = 0.0  # no gradient at all
    text, _ = render(HeatStrip("g", vals, ["x", "y", "z"], "step", 1, 30))
    x, y, z = (row[2:] for row in lines_of(text, "g")[1:4])
    # 30 steps on 60 cells: two cells a step.
    assert [i for i, c in enumerate(x) if c == NONFINITE_MARK] == list(range(20, 40))
    assert [i for i, c in enumerate(y) if c == NONFINITE_MARK] == [50, 51]
    assert set(z) == {ZERO_MARK}
    assert "NaN/Inf" in text and "exactly 0" in text
    # Every cell non-finite: still a picture, no exception, no scale to invent.
    text, _ = render(HeatStrip("all", np.full((5, 1), np.nan), ["w"], "step", 1, 5))
    assert NONFINITE_MARK in text and "- " in text


def test_colour_terminals_get_blocks_along_the_viridis_ramp():
    vals = np.stack([np.logspace(-3, 0, 20)], axis=1)
    _, con = render(HeatStrip("c", vals, ["a"], "step", 1, 20), color=True)
    cells = [s for s in con._record_buffer if s.text == "█" and s.style and s.style.color]
    row = cells[:60]  # 20 steps on 60 cells; the legend's ramp follows
    ends = {tuple(row[0].style.color.get_truecolor()), tuple(row[-1].style.color.get_truecolor())}
    assert ends == {RAMP_RGB[0], RAMP_RGB[-1]}  # smallest norm darkest, largest yellow


def test_the_strip_fits_narrow_consoles_and_many_layers():
    vals = np.random.default_rng(0).lognormal(size=(500, 40))
    names = [f"block{j}.conv_long_name" for j in range(40)]
    text, _ = render(HeatStrip("wide", vals, names, "step", 1, 500), width=60)
    assert max(len(l) for l in text.splitlines()) <= 60
    assert "(24 of 40 rows, evenly chosen)" in text
    # Long names lose their middle: both ends tell layers apart.
    assert "block0.…ong_name " in text and "block39…ong_name " in text  # the first and last layers are kept


def test_a_recurrent_run_draws_the_gradient_over_time_steps(runs):
    d = runs["rnn"]
    text, _ = render(run_report(d["summary"], d["meta"], d["metrics"], d["probes"]))
    assert max(len(l) for l in text.splitlines()) <= 80
    strip = lines_of(text, "Gradient reaching each time step, rnn.l0")
    rows = strip[1:-2]
    assert [r.split()[:2] for r in rows] == [["step", str(p["step"])] for p in d["probes"]]
    assert strip[-2].split() == ["t", "1", "t", "12"]
    assert "||dL/dh_t||" in strip[-1]
    # From the summary alone (no probes): the last log step, one row per recurrent layer.
    text, _ = render(run_report(d["summary"], d["meta"]))
    assert "Gradient reaching each time step at the last log step" in text


def test_the_loss_sparkline_falls_with_the_loss_and_marks_a_nan():
    metrics = [{"step": s, "train_loss": 10.0 / s} for s in range(1, 41)]
    metrics[-1]["train_loss"] = None  # diverged: NaN is stored as null
    for m in metrics[9::10]:
        m["test_loss"] = 20.0 / m["step"]  # evaluated every 10 steps
    text, _ = render(LossSpark(metrics))
    train = next(l for l in text.splitlines() if l.startswith("loss train"))
    test = next(l for l in text.splitlines() if l.lstrip().startswith("test"))
    cells = train[len("loss train ") :].split(" ")[0]
    assert cells[0] == SPARK[-1] and cells[-1] == NONFINITE_MARK
    assert [SPARK.index(c) for c in cells[:-1]] == sorted((SPARK.index(c) for c in cells[:-1]), reverse=True)
    assert "10 → 0.256" in train  # first and last finite value
    # The test series starts at its first evaluation (step 10): blank before, on the same step axis.
    tcells = test[len("loss train ") : len("loss train ") + len(cells)]
    assert tcells[0] == " " and tcells.strip()[0] in SPARK
    assert "log scale" in text and "step 1 .. 40" in text


def test_a_loss_that_never_was_finite_says_so():
    text, _ = render(LossSpark([{"step": 10, "train_loss": None}]))
    assert NONFINITE_MARK in text and "no finite value" in text


def _dlx(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "80"})


def test_dlx_show_renders_the_pictures_from_the_run_folder_alone(runs):
    r = _dlx("show", runs["rnn"]["path"].name, "--runs-dir", runs["dir"])
    assert r.exit_code == 0, r.output
    assert "Gradient norm per layer over steps" in r.output
    assert "Gradient reaching each time step, rnn.l0" in r.output
    assert "loss train" in r.output


def test_dlx_train_ends_with_the_pictures(tmp_path):
    import yaml

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    r = _dlx("train", cfg, "--runs-dir", tmp_path / "runs")
    assert r.exit_code == 0, r.output
    out = r.output
    assert out.index("Gradient norm per layer over steps") < out.index("verdict:") < out.index("loss train")


def test_the_activation_table_shows_dead_for_relu_and_negative_for_leaky_units():
    from dlx.views.report import activation_table

    relu = {
        "activations": [{"name": "act1", "mean": 0.3, "std": 0.5, "saturated": 0.0, "dead": 0.25, "negative": None}]
    }
    leaky = {
        "activations": [{"name": "act1", "mean": -1.0, "std": 0.01, "saturated": 0.0, "dead": None, "negative": 1.0}]
    }
    text, _ = render(activation_table(relu))
    assert "dead" in text and "negative" not in text and "25%" in text
    text, _ = render(activation_table(leaky))
    assert "negative" in text and "dead" not in text and "100%" in text


# ---------------------------------------------------------------- 80 columns: nothing cut
NUMBER_CUT = re.compile(r"[\d.]…|…[\d.]")  # rich's ellipsis inside a number: 1.19e-…


def _rows_by_header(text: str, title: str) -> list[dict[str, str]]:
    """The rows of a fitted table (from its title on) as {header: cell}."""
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith(title))
    header = next(l for l in lines[start:] if "┃" in l and "layer" in l)
    heads = [h.strip() for h in header.split("┃")]
    rows, i = [], lines.index(header, start) + 2
    while i < len(lines) and "│" in lines[i]:
        rows.append(dict(zip(heads, (c.strip() for c in lines[i].split("│")))))
        i += 1
    return rows


def _assert_wrapped_between_words(printed: list[str], unwrapped: str) -> None:
    """Every logical line of `unwrapped` is printed as its words, broken only at its spaces,
    each continuation line indented deeper than the line it continues."""
    at = 0
    for logical in unwrapped.split("\n"):
        first = printed[at].rstrip()
        assert logical.startswith(first), (logical, first)
        rest, at = logical[len(first) :], at + 1
        lead = len(logical) - len(logical.lstrip(" "))
        while rest:
            assert rest[0] == " ", f"broken inside a word: {first!r} + {rest!r}"
            piece = printed[at]
            assert piece.startswith(" " * (lead + 1)), f"continuation not indented: {piece!r}"
            assert rest.lstrip(" ").startswith(piece.strip()), (rest, piece)
            rest, at = rest.lstrip(" ")[len(piece.strip()) :], at + 1


def test_dlx_train_at_80_columns_cuts_no_number_and_wraps_the_verdict_between_words(tmp_path, monkeypatch):
    import json

    from dlx.core.fmt import num
    from dlx.views.report import verdict_text

    monkeypatch.chdir(tmp_path)  # a short run folder path: "run folder: runs/<id>" fits 80 columns
    small = ["--set", "data.n_train=1000", "--set", "train.epochs=3", "--set", "train.log_every=6"]
    r = _dlx("train", CONFIGS / "vanishing_sigmoid.yaml", "--runs-dir", "runs", *small)
    assert r.exit_code == 0, r.output
    out = r.output
    too_wide = [l for l in out.splitlines() if len(l.rstrip()) > 80]
    assert not too_wide, too_wide
    assert not NUMBER_CUT.search(out)
    [folder] = (tmp_path / "runs").iterdir()
    summary = json.loads((folder / "summary.json").read_text())

    # The per-layer table's numbers are summary.json's, whole (fmt.num), in every column shown.
    rows = _rows_by_header(out, "Per-layer gradient L2 norm")
    keys = {
        "first": lambda l: l["grad_norm"]["first"],
        "median": lambda l: l["grad_norm"]["median"],
        "last": lambda l: l["grad_norm"]["last"],
        "|W|": lambda l: l["weight_norm"],
        "|dW|/|W|": lambda l: l["update_ratio"],
    }
    assert [row["layer"] for row in rows] == [l["name"] for l in summary["layers"]]
    assert "median" in rows[0] and "|dW|/|W|" in rows[0]
    for row, layer in zip(rows, summary["layers"]):
        for head, value in keys.items():
            if head in row:
                assert row[head] == num(value(layer)), (layer["name"], head)

    # The verdict, its cause and remedy: long lines broken only at their spaces, indented under their text.
    assert summary["verdicts"][0]["kind"] == "vanishing"
    unwrapped = verdict_text(summary).plain
    lines = out.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("verdict: "))
    printed = lines[start:]
    _assert_wrapped_between_words(printed, unwrapped)
    assert len(printed[: printed.index("")]) > len(unwrapped.split("\n"))  # it did need wrapping


def test_dlx_show_at_80_columns_fits_and_cuts_no_number(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    small = ["--set", "data.n_train=1000", "--set", "train.epochs=3", "--set", "train.log_every=6"]
    assert _dlx("train", CONFIGS / "vanishing_sigmoid.yaml", "--runs-dir", "runs", "-q", *small).exit_code == 0
    r = _dlx("show", "last", "--runs-dir", "runs")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0].startswith("run ") and "started" in r.output  # the head: fields whole, on two lines
    assert not [l for l in lines if len(l.rstrip()) > 80 and not l.startswith(("Var(y)", "["))]
    assert not NUMBER_CUT.search(r.output)
    assert "verdict: vanishing gradients" in r.output


def _layers_summary(n: int = 4, name: str = "block12.conv_b") -> dict:
    """A summary of n layers with small gradients and sparse weights: every optional column shown."""
    return {
        "layers": [
            {
                "name": f"{name}{i}",
                "shape": [[256, 2], [256, 64]],
                "grad_norm": {"first": 1.19e-5 * 10**i, "median": 2.5e-6 * 10**i, "last": 3.3e-7 * 10**i},
                "weight_norm": 12.345,
                "update_ratio": 1.0e-4,
                "near_zero": 0.5,
            }
            for i in range(n)
        ]
    }


@pytest.mark.parametrize("width", [80, 60])
def test_the_layer_table_leaves_columns_out_in_order_and_says_so_rather_than_cut_a_number(width):
    from dlx.core.fmt import num
    from dlx.views.report import layer_table

    summary = _layers_summary()
    text, _ = render(layer_table(summary), width=width)
    assert max(len(l.rstrip()) for l in text.splitlines()) <= width
    assert not NUMBER_CUT.search(text)
    rows = _rows_by_header(text, "Per-layer gradient L2 norm")
    shown = set(rows[0])
    for row, l in zip(rows, summary["layers"]):
        assert row["layer"] == l["name"] and row["median"] == num(l["grad_norm"]["median"])
        assert row["|dW|/|W|"] == num(l["update_ratio"]) and row["|w|<1e-3"] == "50%"
    # Left out in the stated order: the bar, first, |W|, shape, last; the note names each.
    order = ["log median", "first", "|W|", "shape", "last"]
    left = [k for k in order if k not in shown]
    assert left == order[: len(left)] and left
    note = " ".join(text.split(f"not shown at {width} columns:")[1].split())
    assert note.startswith(", ".join(left) + " (dlx show RUN --json shows all)")


def test_ten_classes_fit_80_columns_with_every_count_whole():
    from dlx.views.report import class_table

    k = 10
    conf = [[1000 if i == j else 7 * j for j in range(k)] for i in range(k)]
    summary = {
        "classes": {"recall": [0.4] * k, "train_counts": [6000] * k, "test_counts": [1063] * k, "confusion": conf}
    }
    wide, _ = render(class_table(summary), width=160)
    assert "not shown" not in wide and "->9" in wide
    text, _ = render(class_table(summary), width=80)
    assert max(len(l.rstrip()) for l in text.splitlines()) <= 80
    body = [l for l in text.splitlines() if "│" in l]
    assert len(body) == k
    for i, line in enumerate(body):
        assert line.split("│")[-1].split() == [str(v) for v in conf[i]]  # every count, whole, in order
    assert "not shown at 80 columns: train" in text and "1063" in text  # test kept: train went first


def test_the_progress_line_gives_up_its_bar_then_its_numbers_never_its_totals_or_times():
    from rich.progress import Progress

    from dlx.views.progress import BAR_MIN, train_line

    p = Progress()
    task_id = p.add_task("train", total=12000, completed=11000, stats=["loss 0.1234", "acc 0.987", "test_acc 0.955"])
    task = p.tasks[task_id]
    whole = "train 11000/12000 steps loss 0.1234 acc 0.987 test_acc 0.955 0:00:00 ETA -:--:--"  # not started
    assert train_line(task, 200).plain.replace("━", "").replace("  ", " ") == whole  # the bar, 40 cells
    assert train_line(task, 200).plain.count("━") == 40
    assert train_line(task, len(whole)).plain == whole  # no room for a bar: the numbers stay
    narrow = train_line(task, len(whole) + BAR_MIN + 1).plain
    assert narrow.count("━") == BAR_MIN and len(narrow) == len(whole) + BAR_MIN + 1
    # Narrower than the totals and times alone: drawn wider (the terminal wraps it), never cut.
    assert train_line(task, 30).plain == "train 11000/12000 steps 0:00:00 ETA -:--:--"
    for width in (60, 50):
        line = train_line(task, width).plain
        assert len(line) <= width and "━" not in line
        assert "11000/12000 steps" in line and line.endswith("0:00:00 ETA -:--:--")
        kept = line.split(" steps")[1].split(" 0:00:00")[0].strip()
        assert kept or width < 60
        assert whole.split("steps ")[1].startswith(kept)  # the numbers go from the last

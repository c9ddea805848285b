"""`dlx fix`: a run's remedies, run over seeds against its own config, remove its verdict and
improve its final metric; the winner's config lands beside the run, and the report shows it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CONFIGS
from typer.testing import CliRunner

import dlx
from dlx.cli.app import app
from dlx.config.loader import load_config
from dlx.many.remedies import Candidate, FixReport, _judge, _split, candidates
from dlx.views.html_report import run_page
from dlx.views.html_run import fix_html
from dlx.views.labels import kinds_text, needed_text

# Four of the pathological examples, scaled down (2 seeds, 2 remedies, 1 round); each names
# the verdict the run must show and the remedy expected to win (measured: BENCHMARKS.md).
SCALED = {
    "vanishing_sigmoid": ("vanishing", "activation: relu + init: kaiming_normal"),
    "zero_init": ("symmetry", "activation: relu + init: kaiming_normal"),
    "dead_relu_high_lr": ("lr_too_high", "optimizer.lr: 0.01"),
    "exploding_rnn": ("exploding", None),  # any remedy that stops the blow-up
}


# Each trains a dozen runs (15-20 s on two cores): with the slow tests.
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) for n in SCALED])
def test_fix_finds_a_remedy_that_removes_the_verdict_and_improves_the_metric(name, runs_dir):
    kind, expected = SCALED[name]
    run = dlx.train(str(CONFIGS / f"{name}.yaml"), runs_dir=runs_dir, quiet=True)
    assert kind in [v["kind"] for v in run.verdicts]
    # parts=False: the combined winners' parts are the next test's (here they would double the trainings).
    report = dlx.fix(run.path, seeds=2, max_fixes=2, rounds=1, runs_dir=runs_dir, quiet=True, parts=False)
    original, w = report.rows[0], report.winner
    assert original["label"] == "original" and original["runs"] == 2
    assert w is not None, report
    assert w["gone"] == w["runs"] == 2 and kind in w["targets"]
    # Better over seeds: more runs with a final number, or a better mean.
    if len(original["values"]) == 2:
        assert w["mean"] > original["mean"] if report.goal == "max" else w["mean"] < original["mean"]
    else:
        assert len(w["values"]) > len(original["values"])  # the original diverged on a seed; the fix did not
    if expected:
        assert w["label"] == expected
    # The winning config is written beside the run and trains as it is.
    fixed = run.path / "fixed.yaml"
    assert report.fixed_path == fixed and report.command == f"dlx train {fixed}"
    cfg = load_config(fixed)
    for s in w["set"]:
        key, _, _ = s.partition("=")
        assert key.split(".")[0] in cfg.resolved()
    record = json.loads((run.path / "fix.json").read_text())
    assert record["winner"] == w["label"] and len(record["rows"]) == len(report.rows)
    # Each training is an ordinary run folder.
    assert all(p and (run.path.parent / p.split("/")[-1]).is_dir() for p in w["run_paths"])
    # The run's HTML report gets a "what fixed it" section.
    page = run_page(run.path)
    assert 'id="fixed"' in page and "What fixed it" in page and w["label"] in page


def _row(label, values, gone=2, runs=2, targets=("vanishing",)):
    import statistics

    return {
        "label": label,
        "set": [] if label == "original" else [label],
        "targets": list(targets),
        "runs": runs,
        "gone": gone,
        "values": values,
        "mean": statistics.fmean(values) if values else None,
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "goal": "max",
    }


def test_the_winner_must_remove_its_verdict_on_every_seed_and_beat_the_original():
    report = FixReport(run=None, metric="test_acc", goal="max", seeds=2, budget=None, verdicts=["vanishing"])
    report.rows = [
        _row("original", [0.33, 0.34], gone=0),
        _row("a=1", [0.95, 0.96], gone=1),  # the best numbers, but its verdict stayed on one seed
        _row("b=1", [0.80, 0.82]),
        _row("c=1", [0.30, 0.31]),  # gone, but worse
    ]
    _judge(report)
    assert report.winner["label"] == "b=1"
    assert report.rows[2]["clear"] and not report.rows[3]["improved"]


def test_a_remedy_that_finishes_where_the_original_diverged_is_better_whatever_the_mean():
    report = FixReport(run=None, metric="test_loss", goal="min", seeds=2, budget=None, verdicts=["exploding"])
    orig = _row("original", [0.10], gone=0)
    orig["goal"] = "min"
    fixed = _row("init=default", [0.16, 0.17])
    fixed["goal"] = "min"
    report.rows = [orig, fixed]
    _judge(report)
    assert report.winner is fixed and fixed["clear"] and fixed["change"] == pytest.approx(0.065)


def test_candidates_take_each_root_verdicts_fixes_in_turn_and_skip_symptoms():
    summary = {
        "verdicts": [
            {"kind": "init_scale", "fixes": [{"set": ["init=x"], "text": ""}, {"set": ["a=1"], "text": ""}]},
            {"kind": "lr_too_high", "fixes": [{"set": ["optimizer.lr=0.01"], "text": ""}, {"set": ["a=1"]}]},
            {"kind": "not_learning", "symptom_of": "init_scale", "fixes": [{"set": ["z=1"]}]},
        ]
    }
    roots, cs = candidates(summary, max_fixes=3)
    assert roots == ["init_scale", "lr_too_high"]
    assert [c.sets for c in cs] == [["init=x"], ["optimizer.lr=0.01"], ["a=1"]]
    assert cs[0].targets == ["init_scale", "not_learning"]  # a root and the symptom it explains
    assert cs[2].targets == ["init_scale", "not_learning", "lr_too_high"]  # one fix answering both
    assert isinstance(cs[0], Candidate) and cs[0].label == "init: x"


def test_a_healthy_run_has_nothing_to_fix(runs_dir):
    run = dlx.train(str(CONFIGS / "quickstart.yaml"), ["train.steps=300"], runs_dir=runs_dir, quiet=True)
    assert run.verdicts[0]["kind"] == "healthy"
    result = CliRunner().invoke(app, ["fix", str(run.path), "--runs-dir", str(runs_dir)])
    assert result.exit_code == 0 and "nothing to fix" in result.output
    assert not (run.path / "fix.json").exists()


def test_fix_of_a_missing_run_says_what_to_give(runs_dir):
    result = CliRunner().invoke(app, ["fix", "nope", "--runs-dir", str(runs_dir)])
    assert result.exit_code != 0 and "Traceback" not in result.output and "nope" in result.output


@pytest.mark.parametrize("damage", ["missing", "damaged"])
def test_fix_of_a_completed_run_without_a_usable_summary_says_so_and_what_to_do(runs_dir, tiny, damage):
    from dlx.records.folders import SUMMARY_FILE

    run = dlx.train(tiny, runs_dir=runs_dir, quiet=True)
    summary = run.path / SUMMARY_FILE
    if damage == "missing":
        summary.unlink()
    else:
        summary.write_text('{"verdicts": [')
    result = CliRunner().invoke(app, ["fix", str(run.path), "--runs-dir", str(runs_dir)])
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output and "let it finish" not in result.output
    said = " ".join(result.output.split())
    assert f"its {SUMMARY_FILE}" in said and ("missing" in said if damage == "missing" else "unreadable" in said)
    assert "train the run again" in said


def _kinds_of(run_path: str) -> set[str] | None:
    """The oracle: a trial's verdict kinds, read from its own summary.json (None: it has none)."""
    from dlx.records.folders import SUMMARY_FILE

    verdicts = json.loads((Path(run_path) / SUMMARY_FILE).read_text()).get("verdicts")
    return {v["kind"] for v in verdicts} if verdicts else None


def _gone_by_kind(run_paths: list[str], targets: list[str]) -> dict[str, int]:
    seen = [_kinds_of(p) for p in run_paths]
    return {k: sum(s is not None and k not in s for s in seen) for k in targets}


@pytest.mark.slow
def test_fix_counts_each_verdict_apart_and_runs_a_combined_remedy_part_by_part(runs_dir):
    # zero_init scaled down (its own test: line): the relu + He init remedy removes symmetry and
    # its symptoms; Xavier removes symmetry but leaves not_learning, which a single count hid.
    scaled = ["data.n_train=1000", "train.epochs=3", "train.log_every=6"]
    run = dlx.train(str(CONFIGS / "zero_init.yaml"), scaled, runs_dir=runs_dir, quiet=True)
    report = dlx.fix(run.path, seeds=2, max_fixes=2, rounds=1, runs_dir=runs_dir, quiet=True)
    w = report.winner
    assert w is not None and len(w["set"]) == 2, report
    # Per verdict, each row counts what its trials' summaries say.
    for r in report.rows:
        assert list(r["gone_by_kind"]) == r["targets"] and len(r["run_paths"]) == r["runs"] == 2
        assert r["gone_by_kind"] == _gone_by_kind(r["run_paths"], r["targets"]), r["label"]
    assert report.rows[0]["gone_by_kind"] == dict.fromkeys(report.rows[0]["targets"], 0)  # the original has them all
    # The combined winner, part by part: each override alone, over the same seeds, in its own runs,
    # counted against the winner's verdicts.
    parts = w["parts"]
    assert [p["set"] for p in parts] == [[s] for s in w["set"]]
    assert [p["label"] for p in parts] == ["activation: relu", "init: kaiming_normal"]
    for p in parts:
        assert p["runs"] == 2 and not set(p["run_paths"]) & {x for r in report.rows for x in r["run_paths"]}
        assert p["gone_by_kind"] == _gone_by_kind(p["run_paths"], w["targets"]), p["label"]
        seen = [_kinds_of(x) for x in p["run_paths"]]
        assert p["gone"] == sum(s is not None and not s & set(w["targets"]) for s in seen)
    assert w["needed"]["enough"] == [p["label"] for p in parts if p["gone"] == p["runs"]]
    for k, who in w["needed"]["by_kind"].items():
        assert who == [p["label"] for p in parts if p["gone_by_kind"][k] == p["runs"]]
    # Relu with zero weights keeps every unit a copy of the others: the activation alone never
    # removes symmetry (measured: He init alone does).
    assert parts[0]["gone_by_kind"]["symmetry"] == 0
    # fix.json: the old keys as they were, the new ones added.
    record = json.loads((run.path / "fix.json").read_text())
    row = next(r for r in record["rows"] if r["label"] == w["label"])
    assert row["gone"] == w["gone"] and row["targets"] == w["targets"] and record["winner"] == w["label"]
    assert row["gone_by_kind"] == w["gone_by_kind"] and row["parts"] == parts and "seen" not in row
    # The terminal at 80 columns: a verdict a line, the parts' table and what they say, no line cut.
    from rich.console import Console

    from dlx.cli.many import _fix_table

    con = Console(width=80, record=True, force_terminal=False)
    _fix_table(con, report)
    out = con.export_text()
    assert max(map(len, out.splitlines())) <= 80, out
    assert "symmetry seen 2/2" in out and "one part at a time (the same 2 seeds)" in out
    assert f"not_learning gone {report.rows[1]['gone_by_kind']['not_learning']}/2" in out
    assert "→ " + needed_text(w, "test_acc").split("; ")[0] in out
    page = run_page(run.path)
    assert "one part at a time" in page and "Which part:" in page


def _split_rows():
    """An original and two remedies over 2 seeds: init=x alone, and act=r + init=x together."""
    both, alone = ["symmetry", "not_learning"], ["symmetry", "not_learning"]
    orig = {**_row("original", [0.3, 0.3], gone=0, targets=both), "seen": [set(both)] * 2}
    init = {**_row("init=x", [0.4, 0.4], gone=0, targets=alone), "seen": [{"not_learning"}] * 2}
    combo = {**_row("act=r + init=x", [0.9, 0.9], targets=both), "set": ["act=r", "init=x"], "seen": [set()] * 2}
    init["set"] = ["init=x"]
    return [orig, init, combo]


def test_a_combined_remedys_parts_are_counted_against_its_own_verdicts_and_an_override_run_alone_is_not_rerun():
    report = FixReport(run=None, metric="test_acc", goal="max", seeds=2, budget=None, verdicts=["symmetry"])
    report.rows = _split_rows()
    _judge(report)
    asked = []

    def train(cs):
        asked.extend(c.sets for c in cs)
        # act=r alone: symmetry stays on one seed, not_learning on both.
        return [
            {
                **_row(c.label, [0.3, 0.35], gone=0),
                "set": c.sets,
                "seen": [{"symmetry", "not_learning"}, {"not_learning"}],
            }
            for c in cs
        ]

    _split(report, train)
    combo = report.rows[2]
    assert asked == [["act=r"]]  # init=x ran as a remedy of its own, over the same seeds
    act, init = combo["parts"]
    assert act["gone_by_kind"] == {"symmetry": 1, "not_learning": 0} and act["gone"] == 0
    assert init["gone_by_kind"] == {"symmetry": 2, "not_learning": 0} and init["gone"] == 0
    assert combo["needed"] == {"enough": [], "by_kind": {"symmetry": ["init=x"], "not_learning": []}}
    assert needed_text(combo) == "both are needed: init=x alone removes symmetry; no part alone removes not_learning"
    assert "parts" not in report.rows[1]  # one override: nothing to split


@pytest.mark.parametrize(
    "gone, expected",
    [
        ((2, 0), "a=1 is what removed the verdicts; b=1 alone does not"),
        ((2, 2), "either part alone removes the verdicts"),
        ((0, 0), "only together: no part alone removes any of its verdicts on every seed"),
    ],
)
def test_which_part_fixed_a_combined_remedy_is_said_from_the_parts_counts(gone, expected):
    whole = {**_row("a=1 + b=1", [0.9, 0.91]), "set": ["a=1", "b=1"]}
    whole["parts"] = [
        {**_row(label, [0.9, 0.91], gone=g), "gone_by_kind": {"vanishing": g}} for label, g in zip(("a=1", "b=1"), gone)
    ]
    whole["needed"] = {
        "enough": [p["label"] for p in whole["parts"] if p["gone"] == 2],
        "by_kind": {"vanishing": [p["label"] for p in whole["parts"] if p["gone"] == 2]},
    }
    assert needed_text(whole) == expected
    # A part that removes the verdicts but ends clearly worse than both together is said to.
    whole["parts"][0].update(mean=0.5, values=[0.5, 0.5], sd=0.0)
    if gone[0] == 2:
        assert needed_text(whole, "test_acc").endswith(
            "; yet test_acc is 0.5 with " + ("it" if gone == (2, 0) else "a=1") + " alone, 0.905 with all parts"
        )


def test_a_fix_record_written_before_verdicts_were_counted_apart_still_reads():
    # fix.json of an earlier dlx: rows with one "gone" count for all their verdicts, no parts.
    record = {
        "metric": "test_acc",
        "seeds": 2,
        "verdicts": ["vanishing"],
        "winner": "a=1",
        "rows": [
            {"label": "original", "runs": 2, "gone": 0, "mean": 0.3, "sd": 0.0, "values": [0.3, 0.3]},
            {"label": "a=1", "runs": 2, "gone": 2, "mean": 0.9, "sd": 0.0, "values": [0.9, 0.9], "change": 0.6},
        ],
    }
    html = fix_html(record)
    assert "has it 2/2" in html and "gone 2/2" in html and "winner: a=1" in html and "one part" not in html
    assert kinds_text(record["rows"][1]) == "gone 2/2"

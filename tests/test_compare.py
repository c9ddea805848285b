"""`dlx compare`: variants, seeds, and aggregates checked against numbers by hand."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from conftest import CONFIGS

from dlx.core.errors import ConfigError, UsageError
from dlx.many.variants import aggregate, make_variants, parse_target, split_values, steps_to, trial_configs


@dataclass
class FakeResult:
    status: str
    summary: dict | None
    metrics: list | None
    run_path: str | None = None


def result(test_acc, test_loss, seconds, curve, kind="healthy"):
    return FakeResult(
        "completed",
        {
            "final": {"test_acc": test_acc, "test_loss": test_loss, "train_loss": test_loss, "train_acc": test_acc},
            "train_seconds": seconds,
            "verdicts": [{"kind": kind}],
        },
        [{"step": s, "test_acc": a} for s, a in curve],
    )


def test_aggregate_gives_mean_and_sample_sd_over_seeds():
    rs = [
        result(0.90, 0.30, 10.0, [(100, 0.5), (200, 0.95)]),
        result(0.94, 0.20, 12.0, [(100, 0.96), (200, 0.97)]),
        result(0.98, 0.10, 14.0, [(100, 0.8), (200, 0.9)]),
    ]
    row = aggregate("optimizer=adam", rs, ("test_acc", 0.95))
    m, s = row.stats["test_acc"]
    assert m == pytest.approx(0.94)
    assert s == pytest.approx(0.04)  # sqrt(((-.04)^2 + 0 + .04^2) / 2)
    assert row.stats["test_loss"] == (pytest.approx(0.2), pytest.approx(0.1))
    assert row.stats["train_seconds"] == (pytest.approx(12.0), pytest.approx(2.0))
    # Steps to test_acc >= 0.95: 200 and 100; the third never got there.
    assert row.stats["steps_to_test_acc"] == (pytest.approx(150.0), pytest.approx(math.sqrt(5000)))
    assert row.statuses == {"completed": 3, "reached_target": 2}
    assert row.verdict == "healthy"


def test_aggregate_counts_mixed_verdicts_and_skips_failed_runs():
    rs = [
        result(0.5, 1.0, 1.0, [], "vanishing"),
        result(0.7, 0.8, 1.0, [], "healthy"),
        result(0.6, 0.9, 1.0, [], "vanishing"),
        FakeResult("crashed", None, None),
    ]
    row = aggregate("x", rs, None)
    assert row.verdict == "vanishing (2/3)"
    assert row.stats["test_acc"][0] == pytest.approx(0.6)
    assert row.statuses == {"completed": 3, "crashed": 1}


def test_a_healthy_run_too_short_to_judge_says_so_in_its_verdict_cell():
    short = result(0.54, 1.0, 1.0, [])
    short.summary["outcome"] = {"kind": "too_short"}
    assert aggregate("x", [short], None).verdict == "too short to judge"


def test_a_row_keeps_each_seeds_value_and_the_means_t_interval():
    from dlx.core.stats import t_quantile

    rs = [result(a, 0.1, 1.0, []) for a in (0.90, 0.94, 0.98)] + [FakeResult("crashed", None, None)]
    row = aggregate("x", rs, None)
    assert row.values["test_acc"] == [0.90, 0.94, 0.98]
    half = t_quantile(0.975, 2) * 0.04 / math.sqrt(3)
    lo, hi = row.interval("test_acc")
    assert lo == pytest.approx(0.94 - half) and hi == pytest.approx(0.94 + half)
    d = row.as_dict()["test_acc"]
    assert d["n"] == 3 and d["values"] == [0.90, 0.94, 0.98] and d["interval"] == [pytest.approx(lo), pytest.approx(hi)]


def test_seeds_alone_compare_the_config_with_itself_and_the_words_say_what_the_seeds_show():
    from dlx.views.spread import spread_lines

    (only,) = make_variants(None, [], seeds=5)
    assert only.sets == [] and only.label == "as configured"
    one = aggregate(only.label, [result(a, 0.1, 1.0, []) for a in (0.90, 0.94, 0.98)], None)
    (line,) = spread_lines([one])
    assert line.startswith("test_acc 0.94 ± 0.04 sd over 3 seeds") and "95% interval 0.841 to 1.04" in line
    # Two variants: a lead bigger than the seeds' spread, and one inside it.
    far = aggregate("sgd", [result(a, 0.1, 1.0, []) for a in (0.70, 0.72, 0.71)], None)
    near = aggregate("momentum", [result(a, 0.1, 1.0, []) for a in (0.93, 0.95, 0.92)], None)
    lines = spread_lines([far, one, near])
    assert lines[0].startswith("as configured: test_acc 0.94")
    assert lines[1].startswith("as configured vs momentum: test_acc +0.0067") and "cannot tell them apart" in lines[1]
    assert lines[2].startswith("as configured vs sgd: test_acc +0.23") and "larger than the seeds' spread" in lines[2]


def test_steps_to_a_loss_target_means_at_or_below():
    curve = [{"step": 10, "test_loss": 0.9}, {"step": 20, "test_loss": 0.4}, {"step": 30, "test_loss": 0.3}]
    assert steps_to(curve, ("test_loss", 0.4)) == 20
    assert steps_to(curve, ("test_loss", 0.1)) is None


def test_variants_are_the_product_of_optimizers_and_over_axes():
    vs = make_variants(["sgd", "adam"], ["activation=tanh,relu", "model.widths=[8,8],[16]"])
    assert len(vs) == 2 * 2 * 2
    assert vs[0].label == "optimizer=sgd activation=tanh model.widths=[8,8]"
    assert vs[-1].sets == ["optimizer={name: adam}", "activation=relu", "model.widths=[16]"]


def test_split_values_keeps_commas_inside_brackets():
    assert split_values("a, b,[1,2],{x: 1, y: 2}") == ["a", "b", "[1,2]", "{x: 1, y: 2}"]


def test_bad_over_and_target_are_usage_errors():
    with pytest.raises(UsageError, match="--over"):
        make_variants(None, ["activation"])
    with pytest.raises(UsageError, match="nothing to compare.*--seeds N"):
        make_variants(None, [])
    with pytest.raises(UsageError, match="--target"):
        parse_target("accuracy=0.9")


def test_trial_configs_give_each_optimizer_its_own_defaults_and_distinct_seeds():
    trials = trial_configs(CONFIGS / "quickstart.yaml", ["train.epochs=1"], make_variants(["sgd", "adam"], []), 2)
    assert [(v.label, s) for v, s, _ in trials] == [
        ("optimizer=sgd", 0),
        ("optimizer=sgd", 1),
        ("optimizer=adam", 0),
        ("optimizer=adam", 1),
    ]
    assert trials[0][2]["optimizer"]["lr"] == 0.01 and trials[2][2]["optimizer"]["lr"] == 0.001
    assert trials[1][2]["seed"] == 1 and trials[1][2]["train"]["epochs"] == 1


def test_a_variant_that_makes_a_bad_config_fails_before_any_run():
    with pytest.raises(ConfigError) as info:
        trial_configs(CONFIGS / "quickstart.yaml", [], make_variants(None, ["activation=tanh,sigmod"]), 2)
    assert any("sigmod" in p.message for p in info.value.problems)


def test_dlx_compare_runs_every_variant_and_seed_and_prints_json(tmp_path):
    import json
    import subprocess
    import sys

    runs = tmp_path / "runs"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlx",
            "compare",
            str(CONFIGS / "quickstart.yaml"),
            "--optimizers",
            "sgd,adam",
            "--seeds",
            "2",
            "--set",
            "train.steps=20",
            "--target",
            "train_acc=0.5",
            "--runs-dir",
            str(runs),
            "--max-parallel",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert [v["variant"] for v in out["variants"]] == ["optimizer=sgd", "optimizer=adam"]
    for v in out["variants"]:
        assert v["runs"] == 2 and v["statuses"]["completed"] == 2
        assert 0 <= v["test_acc"]["mean"] <= 1 and v["test_acc"]["sd"] >= 0
        assert len(v["run_paths"]) == 2
    # Four distinct run folders, one per (variant, seed), each a normal dlx run.
    folders = sorted(d for d in runs.iterdir() if (d / "summary.json").is_file())
    assert len(folders) == 4
    summary = json.loads((folders[0] / "summary.json").read_text())
    assert summary["steps"] == 20
    # sgd and adam share one stack of four, which the dlx command trains in its own process
    # (one stack's worth of trials: no worker starts).
    assert out["notes"] == ["stacked: 4 of 4 trials train as 1 stacked model(s) of 4 (--no-stack trains each alone)"]
    assert all(json.loads((f / "meta.json").read_text())["stacked"] == 4 for f in folders)
    # The figure: a real PNG beside the runs, three panels wide.
    import matplotlib.image

    figure = runs / out["figure"].split("/")[-1]
    assert figure.is_file() and figure.suffix == ".png"
    img = matplotlib.image.imread(figure)
    assert img.shape[1] > 2 * img.shape[0] > 200
    assert img[..., :3].std() > 0.05  # not a blank canvas


def test_dlx_compare_no_stack_trains_each_trial_alone_and_says_nothing_of_stacks(tmp_path):
    import json
    import subprocess
    import sys

    runs = tmp_path / "runs"
    argv = [sys.executable, "-m", "dlx", "compare", str(CONFIGS / "quickstart.yaml"), "--optimizers", "adam,sgd"]
    argv += [
        "--seeds",
        "1",
        "--set",
        "train.steps=10",
        "--runs-dir",
        str(runs),
        "--no-stack",
        "--fresh-processes",
        "--json",
    ]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["notes"] == [] and [v["runs"] for v in out["variants"]] == [1, 1]
    metas = [json.loads((d / "meta.json").read_text()) for d in runs.iterdir() if (d / "meta.json").is_file()]
    assert len(metas) == 2 and all("stacked" not in m for m in metas)
    assert len({m["pid"] for m in metas}) == 2  # a fresh process each


def test_compare_figure_draws_a_band_over_seeds(tmp_path):
    import matplotlib.image

    from dlx.views.plots import _band, compare_figure

    runs = [
        [{"step": 10, "test_loss": 1.0}, {"step": 20, "test_loss": 0.5}],
        [{"step": 10, "test_loss": 3.0}, {"step": 20, "test_loss": 1.5}],
    ]
    steps, mean, lo, hi = _band(runs, "test_loss")
    assert steps.tolist() == [10, 20] and mean.tolist() == [2.0, 1.0]
    assert lo.tolist() == [1.0, 0.5] and hi.tolist() == [3.0, 1.5]
    path = compare_figure({"a": runs, "b": runs[:1]}, tmp_path / "c.png", title="t")
    assert matplotlib.image.imread(path).shape[0] > 200


def test_malformed_over_values_are_config_problems_not_crashes():
    variants = make_variants(None, ["activation={name: relu", "seed=" + "[" * 3000])
    assert [v.label for v in variants][0].startswith("activation={name: relu")
    with pytest.raises(ConfigError):
        trial_configs(CONFIGS / "quickstart.yaml", [], variants[:1], seeds=1)


def test_a_compare_figure_names_each_optimizers_lr_in_its_legend():
    from dlx.many.variants import figure_label

    variants = make_variants(["sgd", "momentum", "adam"], [])
    configs = trial_configs(CONFIGS / "quickstart.yaml", [], variants, 1)
    labels = [figure_label(v.label, c) for v, _, c in configs]
    # Each optimizer with its own usual lr: adam 0.001, though the base config says 0.01.
    assert labels == ["optimizer=sgd (lr 0.01)", "optimizer=momentum (lr 0.01)", "optimizer=adam (lr 0.001)"]
    # An lr the variants set themselves is in the label already.
    [(v, _, c)] = trial_configs(CONFIGS / "quickstart.yaml", [], make_variants(["sgd"], ["optimizer.lr=0.3"]), 1)
    assert figure_label(v.label, c) == v.label and "optimizer.lr=0.3" in v.label


def test_a_compare_over_many_seeds_keeps_full_snapshots_for_the_first_seeds_and_none_for_the_rest(tmp_path):
    import copy

    import torch
    import yaml
    from conftest import TINY

    import dlx
    from dlx.many.variants import FULL_SNAPSHOT_SEEDS

    base = copy.deepcopy(TINY)
    base["train"] = {"steps": 40, "batch_size": 32, "log_every": 4}
    path = tmp_path / "many.yaml"
    path.write_text(yaml.safe_dump(base))
    cmp = dlx.compare(path, seeds=5, runs_dir=tmp_path / "runs", quiet=True, figure=False, max_parallel=1)
    assert any("stacked: 5 of 5" in n for n in cmp.notes)  # the lean seeds still stack with the others
    for run in cmp.runs["as configured"]:
        seed = run.meta["seed"]
        if seed < FULL_SNAPSHOT_SEEDS:
            snaps = torch.load(run.path / "snapshots.pt", weights_only=True)
            assert len(snaps["steps"]) == 11 and run.config["train"]["snapshots"] == 30  # init and every log step here
        else:
            assert not (run.path / "snapshots.pt").exists() and run.config["train"]["snapshots"] == 0
        assert (run.path / "checkpoint.pt").is_file()  # what a resume needs, always


def test_the_stacked_note_counts_every_trial_over_every_planning_window(tmp_path, monkeypatch):
    import copy

    import yaml
    from conftest import TINY

    import dlx
    import dlx.many.stack_plan

    # An executor plans MAX_STACK x slots trials at a time: 2 here, so 5 seeds take 3 windows.
    monkeypatch.setattr(dlx.many.stack_plan, "MAX_STACK", 2)
    base = copy.deepcopy(TINY)
    base["train"] = {"steps": 8, "batch_size": 32, "log_every": 4}
    path = tmp_path / "windows.yaml"
    path.write_text(yaml.safe_dump(base))
    cmp = dlx.compare(path, seeds=5, runs_dir=tmp_path / "runs", quiet=True, figure=False, max_parallel=1)
    assert cmp.notes == ["stacked: 4 of 5 trials train as 2 stacked model(s) of 2, 2 (--no-stack trains each alone)"]
    assert sorted(r.meta.get("stacked") or 1 for r in cmp.runs["as configured"]) == [1, 2, 2, 2, 2]

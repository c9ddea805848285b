"""Stopping runs on their diagnosis (train.prune, --prune-on): a pruned run is recorded as
pruned with its verdict and step, reads like any other, and a healthy run never is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import CONFIGS
from typer.testing import CliRunner

import dlx
from dlx.cli.app import app
from dlx.config.loader import load_config
from dlx.core.errors import ConfigError
from dlx.diagnosis.engine import KINDS, NOT_PRUNABLE, PRUNABLE
from dlx.run.pruning import prune_sets

ALL = list(PRUNABLE)
# A 10-layer sigmoid net (configs/vanishing_sigmoid.yaml), 155 steps: vanishing from the start.
SIGMOID = str(CONFIGS / "vanishing_sigmoid.yaml")


def test_every_verdict_kind_is_either_safe_to_prune_on_or_says_why_not():
    assert set(PRUNABLE) | set(NOT_PRUNABLE) == set(KINDS)
    assert not set(PRUNABLE) & set(NOT_PRUNABLE)
    assert all(reason for reason in {**PRUNABLE, **NOT_PRUNABLE}.values())


def test_prune_on_becomes_one_override_and_unsafe_kinds_are_refused_with_the_reason():
    assert prune_sets("vanishing, dead_units") == ["train.prune.on=[vanishing, dead_units]"]
    assert prune_sets(None) == []
    cfg = load_config(SIGMOID, prune_sets(["vanishing"]))
    assert cfg.train.prune.on == ["vanishing"] and cfg.train.prune.patience == 3
    with pytest.raises(ConfigError, match="overfitting' is not safe to stop a run on: a rise of the test loss"):
        load_config(SIGMOID, prune_sets("overfitting"))
    with pytest.raises(ConfigError, match="did you mean 'vanishing'"):
        load_config(SIGMOID, prune_sets("vanishin"))


def test_a_vanishing_run_is_pruned_with_its_verdict_and_step_and_its_folder_reads_like_any_other(runs_dir):
    run = dlx.train(SIGMOID, prune_sets("vanishing"), runs_dir=runs_dir)
    s = run.summary
    assert s["status"] == "pruned"
    p = s["pruned"]
    assert p["verdict"] == "vanishing" and "vanishing gradients" in p["message"]
    # After the warm-up (a tenth of 155 steps), then 3 log intervals in a row.
    assert p["since"] >= 0.1 * s["total_steps"] and p["step"] == p["since"] + 20 and p["checks"] == 3
    assert s["steps"] == p["step"] < s["total_steps"]
    assert f"pruned at step {p['step']}" in s["reason"]
    # Complete and readable: final numbers, verdicts, metrics to the step it stopped at, a checkpoint.
    again = dlx.load_run(run.path)
    assert again.summary["status"] == "pruned" and again.metrics[-1]["step"] == p["step"]
    assert s["final"]["test_acc"] is not None and s["verdicts"][0]["kind"] in ("init_scale", "vanishing")
    assert json.loads((run.path / "meta.json").read_text())["status"] == "pruned"
    assert (run.path / "checkpoint.pt").is_file()
    result = CliRunner().invoke(app, ["show", str(run.path)])
    assert result.exit_code == 0 and "pruned" in result.output
    # Finished: nothing to resume.
    result = CliRunner().invoke(app, ["train", "--resume", str(run.path), "--runs-dir", str(runs_dir)])
    assert result.exit_code != 0 and "has finished (pruned)" in result.output


def test_pruning_judges_the_run_so_far_and_changes_nothing_before_it_stops():
    """The pruned run's series up to its stop are the unpruned run's, number for number: the
    diagnosis reads the run (no peeking ahead: it stopped where the full run still goes on)."""
    full = dlx.train(SIGMOID, save=False)
    pruned = dlx.train(SIGMOID, prune_sets("vanishing"), save=False)
    n = len(pruned.metrics)
    assert full.summary["steps"] > pruned.summary["steps"]
    strip = lambda ms: [{k: v for k, v in m.items() if k not in ("time", "elapsed")} for m in ms]  # noqa: E731
    assert strip(pruned.metrics) == strip(full.metrics[:n])


@pytest.mark.parametrize(
    "name,sets",
    [
        ("quickstart", []),
        ("relu_he", []),
        ("batchnorm", []),
        ("lr_schedules", []),
        # Near chance for half its steps, but falling all the while: it ends healthy (0.754).
        ("vanishing_sigmoid", ["activation=relu"]),
    ],
)
def test_a_healthy_run_is_never_pruned(name, sets):
    run = dlx.train(str(CONFIGS / f"{name}.yaml"), [*sets, *prune_sets(ALL)], save=False)
    assert run.summary["status"] == "completed", run.summary["pruned"]
    assert run.summary["pruned"] is None


@pytest.mark.parametrize("name", ["sigmoid_shallow_adam_circles", "lstm_adding_15_steps"])
def test_a_plateau_with_no_cause_found_is_not_pruned_on_not_learning(name):
    """Both sit flat at chance past the warm-up, then learn: a not_learning with no root
    verdict behind it never stops a run."""
    from test_verdict_quality import HEALTHY

    run = dlx.train(HEALTHY[name], prune_sets(ALL), save=False)
    assert run.summary["status"] == "completed", run.summary["pruned"]
    assert run.verdicts[0]["kind"] == "healthy"


def _grid_sweep(tmp_path: Path) -> Path:
    base = yaml.safe_load((CONFIGS / "vanishing_sigmoid.yaml").read_text())
    base["model"]["depth"] = 6
    base["train"] = {"steps": 200, "batch_size": 64, "log_every": 10, "eval_every": 100}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    spec = {"base": "base.yaml", "metric": "test_acc", "strategy": "grid", "space": {"activation": ["sigmoid", "relu"]}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / "spec.yaml"


@pytest.mark.slow
def test_a_sweep_prunes_the_broken_trial_tells_optuna_and_keeps_the_healthy_one(tmp_path):
    spec = _grid_sweep(tmp_path)
    result = CliRunner().invoke(
        app,
        ["sweep", str(spec), "--runs-dir", str(tmp_path / "runs"), "--prune-on", "vanishing,not_learning,dead_units"],
    )
    assert result.exit_code == 0, result.output
    folder = next((tmp_path / "runs").glob("sweep-*"))
    rows = {r["trial"]: r for r in json.loads((folder / "results.json").read_text())["rows"]}
    sigmoid, relu = rows[0], rows[1]
    assert sigmoid["status"] == "pruned" and sigmoid["steps"] < 200
    assert relu["status"] == "completed" and relu["steps"] == 200
    summary = json.loads((folder / sigmoid["run"] / "summary.json").read_text())
    assert summary["pruned"]["verdict"] in ("vanishing", "not_learning")
    # The strategy knows: Optuna's journal holds the trial as PRUNED.
    states = _journal_states(folder)
    assert states[0] == "PRUNED" and states[1] == "COMPLETE", states
    # The best trial is a finished one; the table says what the pruned one was stopped on.
    assert json.loads((folder / "results.json").read_text())["rows"][0]["trial"] == 1
    assert f"pruned: {summary['pruned']['verdict']}" in result.output
    # dlx fix works on a sweep's trial (its config's train.prune is off for the fix's runs).
    report = dlx.fix(f"{folder.name}/trial-0000", seeds=1, max_fixes=1, rounds=1, runs_dir=tmp_path / "runs")
    assert report.rows[0]["statuses"] == {"completed": 1} and report.rows[0]["runs"] == 1
    assert (folder / "trials" / "trial-0000" / "fix.json").is_file()


def _journal_states(folder: Path) -> dict[int, str]:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(folder / "journal.log")))
    study = optuna.load_study(study_name="dlx", storage=storage)
    return {t.number: t.state.name for t in study.get_trials(deepcopy=False)}


@pytest.mark.slow
def test_compare_prunes_and_counts_pruned_runs(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "compare",
            SIGMOID,
            "--over",
            "activation=sigmoid,relu",
            "--seeds",
            "1",
            "--set",
            "model.depth=6",
            "--set",
            "train.steps=200",
            "--prune-on",
            "vanishing",
            "--runs-dir",
            str(tmp_path),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = {r["variant"]: r for r in json.loads(result.stdout)["variants"]}
    assert rows["activation=sigmoid"]["statuses"] == {"pruned": 1}
    assert rows["activation=relu"]["statuses"] == {"completed": 1}


def test_a_pruned_trial_leaves_its_stack_and_every_trial_keeps_its_separate_runs_numbers(tmp_path):
    """A stack of adam trials of one deep sigmoid net: the zero-init ones are pruned on their
    symmetry and leave the stack (it steps on with the others); each trial, pruned or not,
    holds the numbers of its separate run."""
    from test_stacking import _same_runs

    from dlx.many.stacking import run_stacked
    from dlx.many.worker import run_job

    base = yaml.safe_load((CONFIGS / "vanishing_sigmoid.yaml").read_text())
    base["model"]["depth"] = 4
    base["train"] = {"steps": 120, "batch_size": 64, "log_every": 10, "eval_every": 40, "prune": {"on": ["symmetry"]}}
    configs = []
    for i, (init, lr) in enumerate(
        [("zeros", 0.01), ("kaiming_normal", 0.01), ("zeros", 0.003), ("xavier_uniform", 0.003)]
    ):
        configs.append({**base, "seed": i, "name": f"t{i}", "init": init, "optimizer": {"name": "adam", "lr": lr}})
    stacked = run_stacked(configs, [tmp_path / "s"] * len(configs))
    assert [s["status"] for s in stacked] == ["pruned", "completed", "pruned", "completed"]
    for c, s in zip(configs, stacked):
        alone, _ = run_job(c, tmp_path / "a")
        assert s["summary"]["pruned"] == alone["summary"]["pruned"]
        assert s["summary"]["steps"] == alone["summary"]["steps"]
        if s["status"] == "completed":
            # (A zero-init net's outputs tie across classes: its accuracy depends on how argmax
            # breaks float ties, stacked or not, so only the survivors are compared number for number.)
            _same_runs(s, alone)

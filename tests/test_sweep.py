"""dlx sweep: spec checks, the strategies (grid / random / tpe), landing, resume, the CLI."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, TINY, interrupt_when

from dlx.config.loader import load_config
from dlx.core.errors import ConfigError, DlxError
from dlx.many.executors import LocalExecutor, TrialResult, gpu_slots
from dlx.many.sweeper import Sweep, find_sweep, plan, run_sweep
from dlx.records.folders import land_run, list_runs, sweep_status


def write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def base(tmp_path) -> Path:
    cfg = dict(TINY, train={"steps": 8, "batch_size": 32, "log_every": 4})
    return write(tmp_path / "base.yaml", cfg)


def spec(tmp_path: Path, base: Path, **over) -> Path:
    s = {
        "base": base.name,
        "metric": {"name": "test_acc", "goal": "max"},
        "strategy": "random",
        "trials": 6,
        "seed": 0,
        "space": {
            "optimizer.lr": {"loguniform": [1e-4, 1e-1]},
            "model.depth": {"int": [1, 4]},
            "activation": ["relu", "tanh"],
        },
    }
    s.update(over)
    return write(tmp_path / "sweep.yaml", s)


class FakeExecutor:
    """Runs nothing: a trial's test_acc is a fixed function of its config, told back at once.

    It pulls trials one at a time like the real executors, so the strategies are tested
    exactly as they are driven; `stop_after` raises KeyboardInterrupt like a Ctrl-C.
    """

    def __init__(self, stop_after: int | None = None, folders: bool = False):
        self.stop_after = stop_after
        self.folders = folders  # write a small run folder per trial, as a real worker would
        self.seen: list[dict] = []

    @staticmethod
    def score(cfg: dict) -> float:
        lr = cfg["optimizer"]["lr"]
        return 1.0 - abs(math.log10(lr) + 2.0) / 4 - 0.01 * cfg["model"]["depth"]

    def run(self, trials, on_result=None):
        out = []
        for t in trials:
            if self.stop_after is not None and len(out) >= self.stop_after:
                raise KeyboardInterrupt
            self.seen.append(t.config)
            summary = {"final": {"test_acc": self.score(t.config)}, "verdicts": [], "train_seconds": 0.1}
            run = None
            if self.folders:
                run = Path(t.runs_dir) / t.config["name"]
                run.mkdir(parents=True)
                write(run / "config.yaml", t.config)
                (run / "meta.json").write_text(json.dumps({"status": "completed", "name": t.config["name"]}))
                (run / "summary.json").write_text(json.dumps(summary))
            r = TrialResult(
                id=t.id,
                status="completed",
                run_path=run,
                summary=summary,
                metrics=[],
                attempts=1,
                error=None,
            )
            out.append(r)
            on_result(r)
        return out


def params_of(sw: Sweep) -> list[dict]:
    return [sw.rows[i]["params"] for i in sorted(sw.rows)]


# ---------------------------------------------------------------- the spec


def test_a_bad_spec_reports_every_problem_at_once_with_lines(tmp_path, base):
    path = write(
        tmp_path / "bad.yaml",
        textwrap.dedent(f"""\
        base: {base.name}
        metric: {{name: test_acc}}
        strategy: bayes
        trials: 4
        space:
          optimizer.lrr: [0.1, 0.01]
          optimizer.lr: {{loguniform: [0, 0.1]}}
          model.depth: {{int: [5, 2]}}
          regularization.dropout: {{uniform: [0.5, 0.5]}}
          activation: [relu, sigmoidd]
        """),
    )
    with pytest.raises(ConfigError) as e:
        plan(path)
    by_line = {p.line: p for p in e.value.problems}
    assert set(by_line) == {3, 6, 7, 8, 9, 10}
    assert "grid, random, tpe" in by_line[3].message  # unknown strategy, with the choices
    assert "unknown key 'lrr'" in by_line[6].message and "'lr'" in by_line[6].message
    assert by_line[6].path == "space.optimizer.lrr"
    assert "positive" in by_line[7].message  # loguniform from 0
    assert "empty range" in by_line[8].message and "empty range" in by_line[9].message
    assert "sigmoid" in by_line[10].message


def test_a_grid_needs_lists_and_random_needs_a_trial_count(tmp_path, base):
    with pytest.raises(ConfigError) as e:
        plan(spec(tmp_path, base, strategy="grid", trials=None))
    msgs = " | ".join(p.message for p in e.value.problems)
    assert "loguniform ranges are for random and tpe" in msgs
    with pytest.raises(ConfigError) as e:
        plan(spec(tmp_path, base, trials=None))
    assert "needs trials: N" in str(e.value)


def test_a_missing_base_and_an_empty_space_are_reported(tmp_path):
    path = write(tmp_path / "s.yaml", {"base": "nope.yaml", "strategy": "grid", "space": {}})
    with pytest.raises(ConfigError) as e:
        plan(path)
    text = str(e.value)
    assert "base config 'nope.yaml' not found" in text and "the space is empty" in text


def test_a_grid_point_that_makes_a_bad_config_fails_before_any_trial(tmp_path, base):
    # Each value alone is fine; this pair is not (momentum is SGD's, not Adam's).
    path = spec(
        tmp_path,
        base,
        strategy="grid",
        trials=None,
        space={"optimizer": [{"name": "sgd", "momentum": 0.9}, {"name": "adam", "momentum": 0.9}]},
    )
    with pytest.raises(ConfigError) as e:
        plan(path)
    assert "momentum" in str(e.value)


# ---------------------------------------------------------------- strategies


def test_grid_runs_every_point_once_in_spec_order(tmp_path, base):
    p = plan(
        spec(
            tmp_path,
            base,
            strategy="grid",
            trials=None,
            space={"activation": ["relu", "tanh"], "model.depth": {"int": [1, 3]}},
        )
    )
    assert p.total == 6
    sw = run_sweep(Sweep.create(p, tmp_path / "runs"), FakeExecutor())
    assert params_of(sw) == [{"activation": a, "model.depth": d} for a in ("relu", "tanh") for d in (1, 2, 3)]
    assert sw.meta["status"] == "completed"


@pytest.mark.parametrize("strategy", ["grid", "random", "tpe"])
def test_strategies_are_deterministic_for_a_fixed_seed(tmp_path, base, strategy):
    over = {"strategy": strategy, "trials": 14}
    if strategy == "grid":
        over = {
            "strategy": "grid",
            "trials": None,
            "space": {"optimizer.lr": [0.1, 0.01, 0.001], "activation": ["relu", "tanh"]},
        }
    p = plan(spec(tmp_path, base, **over))
    first = params_of(run_sweep(Sweep.create(p, tmp_path / "a"), FakeExecutor()))
    again = params_of(run_sweep(Sweep.create(p, tmp_path / "b"), FakeExecutor()))
    assert first == again and len(first) == p.total
    if strategy != "grid":
        other = plan(spec(tmp_path, base, **{**over, "seed": 1}))
        assert params_of(run_sweep(Sweep.create(other, tmp_path / "c"), FakeExecutor())) != first
        lrs = [x["optimizer.lr"] for x in first]
        assert all(1e-4 <= lr <= 1e-1 for lr in lrs) and len(set(lrs)) == len(lrs)


def test_tpe_after_its_random_start_proposes_near_the_best_region(tmp_path, base):
    # score peaks at lr = 1e-2: TPE's proposals after the start should sit closer to it.
    p = plan(spec(tmp_path, base, strategy="tpe", trials=30, space={"optimizer.lr": {"loguniform": [1e-5, 1.0]}}))
    sw = run_sweep(Sweep.create(p, tmp_path / "runs"), FakeExecutor())
    dist = [abs(math.log10(r["optimizer.lr"]) + 2) for r in params_of(sw)]
    assert sum(dist[-10:]) / 10 < sum(dist[:10]) / 10


def test_results_are_sorted_by_the_metric_and_the_best_config_is_written(tmp_path, base):
    p = plan(spec(tmp_path, base, metric="test_acc"))
    sw = run_sweep(Sweep.create(p, tmp_path / "runs"), FakeExecutor())
    results = json.loads((sw.folder / "results.json").read_text())
    values = [r["value"] for r in results["rows"]]
    assert values == sorted(values, reverse=True) and results["best"]["value"] == max(values)
    assert results["done"] == results["trials"] == 6

    p = plan(spec(tmp_path, base, metric={"name": "test_acc", "goal": "min"}))
    sw = run_sweep(Sweep.create(p, tmp_path / "runs2"), FakeExecutor())
    assert sw.best()["value"] == min(r["value"] for r in sw.rows.values())


def test_a_drawn_combination_that_is_invalid_is_recorded_not_run(tmp_path, base):
    # Each key alone is fine on the base (sgd); adam drawn with a momentum is not.
    p = plan(
        spec(
            tmp_path,
            base,
            trials=6,
            set=["optimizer.name=sgd"],
            space={"optimizer.name": ["sgd", "adam"], "optimizer.momentum": {"uniform": [0.1, 0.9]}},
        )
    )
    ex = FakeExecutor()
    sw = run_sweep(Sweep.create(p, tmp_path / "runs"), ex)
    bad = [r for r in sw.rows.values() if r["status"] == "config_error"]
    assert bad and all("momentum" in r["error"] for r in bad)
    assert len(ex.seen) == 6 - len(bad) and sw.done == 6


# ---------------------------------------------------------------- stopping and resuming


@pytest.mark.parametrize("strategy", ["grid", "random", "tpe"])
def test_resume_finishes_a_stopped_sweep_without_redoing_trials(tmp_path, base, strategy):
    over = {"strategy": strategy, "trials": 8}
    if strategy == "grid":
        over = {
            "strategy": "grid",
            "trials": None,
            "space": {"optimizer.lr": [0.1, 0.03, 0.01, 0.003], "activation": ["relu", "tanh"]},
        }
    p = plan(spec(tmp_path, base, **over))
    sw = Sweep.create(p, tmp_path / "runs")
    with pytest.raises(KeyboardInterrupt):
        run_sweep(sw, FakeExecutor(stop_after=3))
    assert sw.done == 3 and json.loads((sw.folder / "sweep.json").read_text())["status"] == "interrupted"

    again = FakeExecutor()
    resumed = run_sweep(Sweep.open(sw.folder), again)
    assert len(again.seen) == 5  # only the trials not finished before
    assert sorted(resumed.rows) == list(range(8)) and resumed.meta["status"] == "completed"
    if strategy == "grid":
        assert params_of(resumed) == [
            {"optimizer.lr": lr, "activation": a} for lr in (0.1, 0.03, 0.01, 0.003) for a in ("relu", "tanh")
        ]
    # Nothing is left for a second resume.
    assert FakeExecutor().run(Sweep.open(sw.folder).pending()) == []


def test_a_sweep_being_run_cannot_be_resumed_twice_and_the_refusal_changes_nothing(tmp_path, base):
    sw = Sweep.create(plan(spec(tmp_path, base)), tmp_path / "runs")  # holds the sweep's lock while it runs
    run_sweep_part = FakeExecutor(stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(sw, run_sweep_part)
    again = Sweep.open(sw.folder)  # the first resume holds the lock now ...
    before = {p.name: p.read_bytes() for p in sw.folder.iterdir() if p.is_file()}
    with pytest.raises(DlxError, match=r"being run by another process \(pid \d+ on .+\); one process runs a sweep"):
        Sweep.open(sw.folder)  # ... so a second one (another open file: flock refuses it even here) is refused
    assert {p.name: p.read_bytes() for p in sw.folder.iterdir() if p.is_file()} == before
    assert sweep_status(again.meta, sw.folder) == "running"
    run_sweep(again, FakeExecutor())  # finishing releases the lock: the sweep is whole
    assert (
        again.done == 6 and sweep_status(json.loads((sw.folder / "sweep.json").read_text()), sw.folder) == "completed"
    )
    Sweep.open(sw.folder).unlock()


# ---------------------------------------------------------------- a damaged or edited sweep folder


def grid_spec(tmp_path, base, **over) -> Path:
    return spec(tmp_path, base, strategy="grid", trials=None, space={"optimizer.lr": [0.1, 0.03, 0.01, 0.003]}, **over)


def stopped_grid(tmp_path, base, done: int = 2) -> Sweep:
    """A 4-point grid stopped after `done` trials landed, its lock released as a dead driver's would be."""
    sw = Sweep.create(plan(grid_spec(tmp_path, base)), tmp_path / "runs")
    with pytest.raises(KeyboardInterrupt):
        run_sweep(sw, FakeExecutor(stop_after=done, folders=True))
    return sw


def lrs(sw: Sweep) -> list[float]:
    return [sw.rows[i]["params"]["optimizer.lr"] for i in sorted(sw.rows)]


def resume_via_cli(folder: Path, monkeypatch) -> str:
    """`dlx sweep --resume` in this process, trials told by the FakeExecutor: its output."""
    from typer.testing import CliRunner

    import dlx.cli.app
    import dlx.many.backends

    monkeypatch.setattr(dlx.many.backends, "build_executor", lambda *a: FakeExecutor(folders=True))
    res = CliRunner().invoke(dlx.cli.app.app, ["sweep", "--resume", str(folder), "--runs-dir", str(folder.parent)])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return res.output


@pytest.mark.parametrize("cut", ["mid-record", "newline"])
def test_a_journal_torn_by_a_crash_is_cut_back_to_its_last_record_and_the_sweep_finishes_whole(
    tmp_path, base, monkeypatch, cut
):
    sw = stopped_grid(tmp_path, base)
    journal = sw.folder / "journal.log"
    data = journal.read_bytes()
    last = data[:-1].rfind(b"\n") + 1
    # Power lost mid-append: half of the last record written; or all of it but its newline.
    journal.write_bytes(data[: last + (len(data) - last) // 2] if cut == "mid-record" else data[:-1])
    out = resume_via_cli(sw.folder, monkeypatch)
    if cut == "mid-record":
        assert "note:" in out and "journal.log" in out and "torn" in out
        assert (sw.folder / "journal.log.torn").read_bytes() == data[last : last + (len(data) - last) // 2]
    assert "Traceback" not in out
    assert json.loads((sw.folder / "sweep.json").read_text())["status"] == "completed"
    done = Sweep.open(sw.folder)
    assert lrs(done) == [0.1, 0.03, 0.01, 0.003]
    assert sorted(p.name for p in (sw.folder / "trials").iterdir()) == [f"trial-{i:04d}" for i in range(4)]
    done.unlock()


def test_an_edited_spec_is_refused_saying_what_changed_and_the_restored_one_runs_each_point_once(tmp_path, base):
    sw = stopped_grid(tmp_path, base, done=1)
    # The driver died right after asking for the next trial, before giving it parameters.
    sw.study.ask()
    sw.unlock()
    spec_file = sw.folder / "spec.yaml"
    original = spec_file.read_text()
    results = (sw.folder / "results.json").read_bytes()

    edits = {
        "an unknown key": (original + "wat: 1\n", r"wat: \(absent\) -> 1"),
        "changed grid values": (
            original.replace("0.03", "0.3"),
            r"space\.optimizer\.lr: \[0\.1, 0\.03, .*\] -> \[0\.1, 0\.3,",
        ),
        "a new dimension": (original.replace("space:\n", "space:\n  activation: [relu, tanh]\n"), "space.activation"),
        "not YAML any more": ("space: [\n", "no longer reads as a spec"),
    }
    for what, (text, said) in edits.items():
        spec_file.write_text(text)
        with pytest.raises(DlxError, match=said) as e:
            Sweep.open(sw.folder)
        assert "was edited after the sweep started" in str(e.value) and "dlx sweep" in str(e.value), what
        assert (sw.folder / "results.json").read_bytes() == results, what  # a refusal changes nothing

    spec_file.write_text(original)
    done = run_sweep(Sweep.open(sw.folder), FakeExecutor(folders=True))
    assert lrs(done) == [0.1, 0.03, 0.01, 0.003]  # every grid point exactly once, none drawn at random


def test_more_trials_for_a_random_search_is_an_edit_accepted_with_a_note(tmp_path, base):
    sw = Sweep.create(plan(spec(tmp_path, base, trials=3)), tmp_path / "runs")
    run_sweep(sw, FakeExecutor())
    spec_file = sw.folder / "spec.yaml"
    spec_file.write_text(spec_file.read_text().replace("trials: 3", "trials: 5"))
    again = Sweep.open(sw.folder)
    assert again.notes == ["spec.yaml: trials 3 -> 5: the same search, run to the new count"]
    run_sweep(again, FakeExecutor())
    assert sorted(again.rows) == list(range(5)) and again.meta["status"] == "completed"


@pytest.mark.parametrize("damage", ["not JSON", "a list", "rows lost"])
def test_a_damaged_results_file_is_rebuilt_from_the_trial_folders(tmp_path, base, damage):
    sw = stopped_grid(tmp_path, base, done=3)
    results = sw.folder / "results.json"
    data = json.loads(results.read_text())
    results.write_text(
        {"not JSON": '{"rows": [', "a list": "[1, 2]", "rows lost": json.dumps({**data, "rows": data["rows"][:1]})}[
            damage
        ]
    )
    again = Sweep.open(sw.folder)
    assert again.done == 3 and lrs(again) == [0.1, 0.03, 0.01]
    assert any("rebuilt" in n for n in again.notes)
    run_sweep(again, FakeExecutor(folders=True))
    rows = json.loads(results.read_text())["rows"]
    assert sorted(r["trial"] for r in rows) == [0, 1, 2, 3] and all(r["status"] == "completed" for r in rows)


def test_a_missing_journal_is_refused_not_silently_restarted(tmp_path, base):
    sw = stopped_grid(tmp_path, base)
    (sw.folder / "journal.log").unlink()
    before = (sw.folder / "results.json").read_bytes()
    with pytest.raises(
        DlxError,
        match=r"journal\.log is missing: .* \(2 trial\(s\) were done\)\. Restore the file, or start a new sweep",
    ):
        Sweep.open(sw.folder)
    assert (sw.folder / "results.json").read_bytes() == before
    assert sweep_status(json.loads((sw.folder / "sweep.json").read_text()), sw.folder) == "interrupted"


@pytest.mark.parametrize("filename", ["_x.yaml", "my sweep \u00fc.yaml", "-.yaml"])
def test_any_spec_file_name_gives_valid_trial_names(tmp_path, base, filename):
    path = spec(tmp_path, base, trials=2)
    path = path.rename(tmp_path / filename)
    ex = FakeExecutor()
    sw = run_sweep(Sweep.create(plan(path), tmp_path / "runs"), ex)
    for cfg in ex.seen:  # each trial's config, name included, is a valid dlx config
        load_config(write(tmp_path / "trial.yaml", cfg))
    assert sw.folder.name.isascii() and " " not in sw.folder.name


def test_a_trial_config_error_shows_its_problems_not_a_header(tmp_path, monkeypatch):
    from dlx.many.worker import run_job

    bad = copy.deepcopy(TINY)
    bad["model"]["widht"] = 8
    result, code = run_job(bad, tmp_path / "runs")
    assert (result["status"], code) == ("config_error", 2)
    assert "problem" not in result["error"] and "model.widht" in result["error"] and "width" in result["error"]


def test_find_sweep_by_id_part_and_last(tmp_path, base):
    sw = run_sweep(Sweep.create(plan(spec(tmp_path, base, trials=1)), tmp_path / "runs"), FakeExecutor())
    assert find_sweep("last", tmp_path / "runs") == sw.folder
    assert find_sweep(sw.folder.name[-6:], tmp_path / "runs") == sw.folder
    with pytest.raises(Exception, match="no sweep"):
        find_sweep("zzz", tmp_path / "runs")


# ---------------------------------------------------------------- landing


def test_landing_moves_a_run_once_and_drops_a_duplicate(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "meta.json").write_text(d.name)
    dest = tmp_path / "trials" / "trial-0000"
    assert land_run(a, dest) is True and (dest / "meta.json").read_text() == "a"
    assert land_run(b, dest) is False  # a second attempt of the same trial
    assert not b.exists() and (dest / "meta.json").read_text() == "a"


def test_gpu_slots_share_or_span_gpus():
    assert gpu_slots(2, 0.5) == ["0", "0", "1", "1"]
    assert gpu_slots(1, 1) == ["0"]
    assert gpu_slots(4, 2) == ["0,1", "2,3"]
    assert gpu_slots(0, 0.5) == []


def test_each_local_trial_gets_its_gpu_slot_as_cuda_visible_devices(tmp_path):
    from dlx.many.executors import Trial

    cfg = dict(TINY, train={"steps": 2, "batch_size": 32, "log_every": 2, "device": "cpu"})
    ex = LocalExecutor(gpus_per_trial=0.5, gpus=2, threads_per_trial=1)
    assert ex.max_parallel == 4
    results = ex.run([Trial(f"t{i}", cfg, tmp_path / "runs") for i in range(4)])
    assert all(r.status == "completed" for r in results)
    seen = sorted(json.loads((r.run_path / "meta.json").read_text()).get("cuda_visible_devices") or "" for r in results)
    assert seen == ["0", "0", "1", "1"]


# ---------------------------------------------------------------- real trials, the CLI


def dlx(*args, cwd: Path, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dlx.cli.app", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=240,
        **kw,
    )


def load_run_meta(folder: Path, trial: int) -> dict:
    return json.loads((folder / "trials" / f"trial-{trial:04d}" / "meta.json").read_text())


@pytest.mark.slow
def test_dlx_sweep_runs_real_trials_and_retries_one_killed_once(tmp_path, base):
    path = spec(tmp_path, base, trials=4)
    flag = tmp_path / "crashed"
    r = dlx(
        "sweep",
        str(path),
        "--runs-dir",
        "runs",
        "--max-parallel",
        "2",
        cwd=tmp_path,
        env={"DLX_TEST_CRASH_ONCE": str(flag)},
    )
    assert r.returncode == 0, r.stderr + r.stdout
    assert flag.is_file()  # one attempt really did die with exit 137
    folder = find_sweep("last", tmp_path / "runs")
    trials = sorted(p.name for p in (folder / "trials").iterdir())
    assert trials == [f"trial-{i:04d}" for i in range(4)]  # every trial exactly once
    assert not (folder / ".staging").exists()
    results = json.loads((folder / "results.json").read_text())
    assert sorted(r["trial"] for r in results["rows"]) == [0, 1, 2, 3]
    # The one attempt that died was one job: one trial, or a stack of trials retried together.
    retried = [r for r in results["rows"] if r["attempts"] == 2]
    assert retried and all(r["attempts"] in (1, 2) for r in results["rows"])
    if len(retried) > 1:
        stacked = {load_run_meta(folder, r["trial"]).get("stacked") for r in retried}
        assert stacked == {len(retried)}
    assert all(r["status"] == "completed" for r in results["rows"])
    best = load_config(folder / "best.yaml")  # a runnable config
    assert best.optimizer.lr == pytest.approx(results["best"]["params"]["optimizer.lr"])
    assert "best: trial" in r.stdout and "best.yaml" in r.stdout
    rows = list_runs(folder / "trials")
    assert [x["status"] for x in rows] == ["completed"] * 4
    listed = dlx("runs", "--sweep", folder.name[-6:], "--runs-dir", "runs", "--json", cwd=tmp_path)
    assert [x["run_id"] for x in json.loads(listed.stdout)] == trials


@pytest.mark.slow
def test_ctrl_c_stops_a_sweep_cleanly_and_resume_finishes_it(tmp_path, base):
    cfg = dict(TINY, train={"steps": 1500, "batch_size": 32, "log_every": 50})
    write(base, cfg)
    path = spec(tmp_path, base, trials=5)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dlx.cli.app", "sweep", str(path), "--runs-dir", "runs", "--max-parallel", "2"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def landed():  # one trial landed and recorded, others still running: Ctrl-C the sweep now
        found = list((tmp_path / "runs").glob("sweep-*/trials/trial-*"))
        try:
            return found if found and json.loads((found[0].parents[1] / "sweep.json").read_text())["done"] else []
        except (OSError, ValueError):
            return []

    found, out, err = interrupt_when(proc, landed, timeout=120)
    folder = found[0].parents[1]
    assert proc.returncode == 130, err
    assert "dlx sweep --resume" in out + err
    meta = json.loads((folder / "sweep.json").read_text())
    assert meta["status"] == "interrupted" and 1 <= meta["done"] < 5
    done_before = meta["done"]

    r = dlx("sweep", "--resume", folder.name, "--runs-dir", "runs", "--max-parallel", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr + r.stdout
    # A trial that finished its last step as the Ctrl-C came lands in its folder uncounted;
    # the resume finds it there and counts it (never fewer than the sweep recorded).
    m = re.search(r"(\d+) done before", r.stdout)
    assert m and done_before <= int(m.group(1)) < 5, r.stdout
    assert sorted(p.name for p in (folder / "trials").iterdir()) == [f"trial-{i:04d}" for i in range(5)]
    results = json.loads((folder / "results.json").read_text())
    assert results["done"] == 5 and json.loads((folder / "sweep.json").read_text())["status"] == "completed"


def test_dlx_sweep_bad_spec_exits_2_before_any_trial(tmp_path, base):
    path = write(tmp_path / "s.yaml", {"base": base.name, "strategy": "grdi", "space": {"optimizer.lrr": [1]}})
    r = dlx("sweep", str(path), "--runs-dir", "runs", cwd=tmp_path)
    assert r.returncode == 2
    assert "grid" in r.stderr and "lrr" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


@pytest.mark.slow
def test_dlx_sweep_usage_errors(tmp_path, base):
    r = dlx("sweep", cwd=tmp_path)
    assert r.returncode == 2 and "give a sweep spec" in r.stderr
    r = dlx("sweep", str(spec(tmp_path, base)), "--executor", "rya", cwd=tmp_path)
    assert r.returncode == 2 and "did you mean 'ray'" in r.stderr
    r = dlx("sweep", "--resume", "nothing-here", "--runs-dir", "runs", cwd=tmp_path)
    assert r.returncode == 1 and "no sweep 'nothing-here'" in r.stderr


def test_example_sweep_specs_are_valid():
    specs = sorted((ROOT / "configs").glob("sweep_*.yaml"))
    assert specs
    for s in specs:
        assert plan(s).total >= 2


def test_the_python_api_runs_and_resumes_a_sweep(tmp_path, base):
    import dlx

    path = spec(tmp_path, base, trials=3)
    with pytest.raises(KeyboardInterrupt):
        dlx.sweep(path, runs_dir=tmp_path / "runs", executor=FakeExecutor(stop_after=1))
    sw = dlx.sweep(resume="last", runs_dir=tmp_path / "runs", executor=FakeExecutor())
    assert sw.done == 3 and sw.best()["value"] == max(r["value"] for r in sw.rows.values())
    import dlx.many.sweeper  # the module never shadows the function

    assert callable(dlx.sweep) and dlx.sweep is dlx.many.sweeper.sweep
    with pytest.raises(dlx.DlxError):
        dlx.sweep(path, resume="last", runs_dir=tmp_path / "runs")


def test_a_trial_is_found_as_sweep_slash_trial(tmp_path, base):
    from dlx.records.folders import find_run

    sw = Sweep.create(plan(spec(tmp_path, base, trials=1)), tmp_path / "runs")
    trial = sw.folder / "trials" / "trial-0000"
    trial.mkdir(parents=True)
    (trial / "meta.json").write_text("{}")
    assert find_run(f"{sw.folder.name[-6:]}/trial-0000", tmp_path / "runs") == trial
    assert find_run("last/trial-0000", tmp_path / "runs") == trial
    with pytest.raises(Exception, match="no run 'trial-0001'"):
        find_run("last/trial-0001", tmp_path / "runs")


# ---------------------------------------------------------------- a full disk, a stopped driver, a second resume

# Checkpoints every 4 steps, a metrics line every 2: a trial cut off midway has a checkpoint to
# resume from and lines past it to drop. One thread: a resumed run is the uninterrupted one exactly.
STEPPED = {"steps": 12, "batch_size": 32, "log_every": 2, "checkpoint_every": 4, "threads": 1}
TIMES = {"time", "train_seconds", "samples_per_s", "run_id"}


def no_times(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMES} for r in records]


def series(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


class InProcessExecutor:
    """Trains the trials in this process with the worker's own code (dlx.many.worker.run_trials) and
    tells them back as LocalExecutor does: one job per trial, or with stack=True every trial in
    one job (stacked as dlx.many.stacking can). A trial stopped by a signal stops the run as the
    driver's Ctrl-C does: KeyboardInterrupt once its job has ended."""

    def __init__(self, stack: bool = False):
        self.stack = stack
        self.seen: list = []  # the executors.Trial objects pulled, in order

    def run(self, trials, on_result=None):
        from dlx.many.worker import run_trials

        jobs = [list(trials)] if self.stack else ([t] for t in trials)
        out = []
        for job in jobs:
            self.seen += job
            wire = [
                {"config": t.config, "runs_dir": str(t.runs_dir), **({"resume": str(t.resume)} if t.resume else {})}
                for t in job
            ]
            results, _ = run_trials(json.loads(json.dumps({"trials": wire, "stack": True})))  # as sent to a worker
            for t, r in zip(job, results):
                res = TrialResult(
                    id=t.id,
                    status=r["status"],
                    run_path=Path(r["run_path"]) if r.get("run_path") else None,
                    summary=r.get("summary"),
                    metrics=r.get("metrics"),
                    attempts=1,
                    error=r.get("error"),
                )
                out.append(res)
                on_result(res)
            if any(r["status"] == "interrupted" for r in results):
                raise KeyboardInterrupt
        return out


def full_disk(monkeypatch, fills: dict[int, str]) -> None:
    """The disk fills up under these trials' run folders (trial index -> the file whose first
    write is the last that fits): every later atomic write there fails with ENOSPC, the
    status a failing run tries to record included, as on a real full disk."""
    import errno

    import dlx.records.jsonio
    import dlx.records.runs

    real = dlx.records.jsonio.write_atomic
    full: set[int] = set()

    def write_atomic(path, text):
        m = re.search(r"[/\\]\.staging[/\\]trial-(\d{4})[/\\]", str(path))
        index = int(m.group(1)) if m else None
        if index in full:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, text)
        if index in fills and Path(path).name == fills[index]:
            full.add(index)

    for module in (dlx.records.jsonio, dlx.records.runs):  # write_json's writes, and RunFolder's own
        monkeypatch.setattr(module, "write_atomic", write_atomic)


def reference_run(sw: Sweep, index: int, runs_dir: Path) -> Path:
    """Trial `index` of the sweep trained once, never stopped."""
    import dlx

    config = sw.plan.config(sw.plan.grid_point(index))
    config["name"] = f"{sw.plan.slug}-t{index:04d}"
    return dlx.train(config, runs_dir=runs_dir, quiet=True).path


@pytest.mark.parametrize("stack", [False, True], ids=["alone", "stacked"])
def test_a_full_disk_records_each_trial_as_its_folder_says_and_resume_reruns_the_failed_ones(
    tmp_path, monkeypatch, stack
):
    base = write(tmp_path / "base.yaml", dict(TINY, train=STEPPED))
    sw = Sweep.create(plan(grid_spec(tmp_path, base)), tmp_path / "runs")
    # Trial 1's disk fills once its summary is written (its last checkpoint then fails); alone,
    # trial 2's fills at its first checkpoint, mid-run. A stack fails as one: trial 1 ends it.
    fills = {1: "summary.json"} if stack else {1: "summary.json", 2: "checkpoint.pt"}
    with monkeypatch.context() as m:
        full_disk(m, fills)
        run_sweep(sw, InProcessExecutor(stack=stack))
    rows = sw.rows
    # A folder whose summary is written is the run it says, not `failed`.
    assert rows[1]["status"] == "completed" and rows[1]["error"] is None
    failed = sorted(i for i, r in rows.items() if r["status"] != "completed")
    assert failed and all(rows[i]["status"] == "failed" for i in failed)
    assert all("No space left on device" in rows[i]["error"] for i in failed)
    if not stack:
        assert failed == [2]
    landed = sorted(p.name for p in (sw.folder / "trials").iterdir())
    assert landed == [f"trial-{i:04d}" for i in sorted(set(rows) - set(failed))]
    assert all((sw.folder / "trials" / name / "summary.json").is_file() for name in landed)
    # An incomplete folder stays in .staging, for the resume.
    assert all(any(sw.staging(i).iterdir()) for i in failed)

    again = InProcessExecutor(stack=stack)  # space freed
    resumed = run_sweep(Sweep.open(sw.folder), again)
    assert [t.id for t in again.seen] == [f"trial-{i:04d}" for i in failed]  # only what failed
    assert all(r["status"] == "completed" for r in resumed.rows.values()) and resumed.done == 4
    assert sorted(p.name for p in (sw.folder / "trials").iterdir()) == [f"trial-{i:04d}" for i in range(4)]
    assert all((sw.folder / "trials" / f"trial-{i:04d}" / "summary.json").is_file() for i in range(4))
    assert not (sw.folder / ".staging").exists()
    assert json.loads((sw.folder / "sweep.json").read_text())["status"] == "completed"
    if not stack:
        # Trial 2 continued from the checkpoint it wrote before the disk filled, to the numbers
        # of a run never stopped.
        assert again.seen[0].resume is not None
        run = sw.folder / "trials" / "trial-0002"
        meta = json.loads((run / "meta.json").read_text())
        assert [r["step"] for r in meta["resumes"]] == [4]
        ref = reference_run(resumed, 2, tmp_path / "reference")
        assert no_times(series(run)) == no_times(series(ref))
        assert (
            json.loads((run / "summary.json").read_text())["final"]
            == json.loads((ref / "summary.json").read_text())["final"]
        )
    assert FakeExecutor().run(Sweep.open(sw.folder).pending()) == []  # nothing left


def test_a_resumed_sweep_continues_its_interrupted_trial_from_its_checkpoint_not_from_step_0(tmp_path, monkeypatch):
    import signal

    from dlx.run.trainer import Trainer

    base = write(tmp_path / "base.yaml", dict(TINY, train=STEPPED))
    sw = Sweep.create(
        plan(spec(tmp_path, base, strategy="grid", trials=None, space={"optimizer.lr": [0.1, 0.03, 0.01]})),
        tmp_path / "runs",
    )
    real = Trainer._train_step

    def step(self, row, xb, yb):  # the driver is stopped (SIGINT) during trial 1's step 7
        if self.cfg.name.endswith("-t0001") and self.step == 7:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, row, xb, yb)

    with monkeypatch.context() as m:
        m.setattr(Trainer, "_train_step", step)
        with pytest.raises(KeyboardInterrupt):
            run_sweep(sw, InProcessExecutor())
    assert sorted(sw.rows) == [0]
    [stopped] = list(sw.staging(1).iterdir())
    assert json.loads((stopped / "meta.json").read_text())["status"] == "interrupted"

    again = InProcessExecutor()
    resumed = run_sweep(Sweep.open(sw.folder), again)  # opening keeps the stopped attempt
    assert sorted((t.id, t.resume) for t in again.seen) == [("trial-0001", stopped), ("trial-0002", None)]
    assert resumed.done == 3 and all(r["status"] == "completed" for r in resumed.rows.values())
    run = sw.folder / "trials" / "trial-0001"
    meta = json.loads((run / "meta.json").read_text())
    assert [r["step"] for r in meta["resumes"]] == [7]  # from its checkpoint, not step 0
    steps = [r["step"] for r in series(run)]
    assert steps == sorted(set(steps)) and steps[0] == 2  # every step once, the first ones kept
    ref = reference_run(resumed, 1, tmp_path / "reference")
    assert no_times(series(run)) == no_times(series(ref))
    assert (
        json.loads((run / "summary.json").read_text())["final"]
        == json.loads((ref / "summary.json").read_text())["final"]
    )


def test_a_worker_resumes_a_trial_from_its_stopped_run_alone_never_in_a_stack(tmp_path, monkeypatch):
    """The executor hands a worker process the run to resume (what the sweep's test above does in-process)."""
    import signal

    import dlx
    from dlx.many.executors import Trial
    from dlx.run.trainer import Trainer

    cfg = dict(TINY, name="resumable", train=STEPPED)
    real = Trainer._train_step

    def step(self, row, xb, yb):
        if self.step == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, row, xb, yb)

    with monkeypatch.context() as m:
        m.setattr(Trainer, "_train_step", step)
        stopped = dlx.train(cfg, runs_dir=tmp_path / "a", quiet=True)
    assert stopped.status == "interrupted"
    ex = LocalExecutor(max_parallel=1, retries=0)
    a, b = ex.run([Trial("a", cfg, tmp_path / "a", resume=stopped.path), Trial("b", dict(cfg, seed=1), tmp_path / "b")])
    assert a.status == b.status == "completed" and a.run_path == stopped.path
    meta = json.loads((a.run_path / "meta.json").read_text())
    assert [r["step"] for r in meta["resumes"]] == [5] and "stacked" not in meta
    assert "stacked" not in json.loads((b.run_path / "meta.json").read_text())
    ref = dlx.train(cfg, runs_dir=tmp_path / "reference", quiet=True).path
    assert no_times(series(a.run_path)) == no_times(series(ref))


HOLD_LOCK = (
    "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); "
    "print('locked', flush=True); sys.stdin.read()"
)


@pytest.mark.skipif(not Path("/proc/locks").is_file(), reason="the lock's holder is read from /proc/locks (Linux)")
def test_a_refused_resume_names_the_live_holder_of_the_sweep_not_its_dead_last_driver(tmp_path, base):
    sw = stopped_grid(tmp_path, base)
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout)
    meta = json.loads((sw.folder / "sweep.json").read_text())
    (sw.folder / "sweep.json").write_text(json.dumps({**meta, "pid": dead}))  # the stopped driver, gone
    # The live holder: a resume that has taken the lock and not yet written its pid anywhere.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(sw.folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(DlxError, match=rf"being run by another process \(pid {holder.pid} on ") as e:
            Sweep.open(sw.folder)
        assert f"pid {dead} " not in str(e.value)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)

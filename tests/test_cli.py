"""The dlx command as a user runs it: real subprocesses, real output, real signals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONFIGS, interrupt_when


def dlx(*args, cwd=None, env=None, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "dlx", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_train_prints_layer_table_verdict_metrics_and_run_folder(tmp_path):
    runs = tmp_path / "runs"
    p = dlx("train", CONFIGS / "quickstart.yaml", "--set", "train.epochs=2", "--runs-dir", runs)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "Per-layer gradient L2 norm" in out
    for layer in ("fc1", "fc2", "fc3", "out"):
        assert layer in out
    assert out.index("fc1") < out.index("out")  # input layer first
    assert "verdict: healthy" in out
    assert "test_acc" in out
    folder = Path(out.split("run folder:")[1].strip())
    assert folder.parent == runs and (folder / "summary.json").is_file()
    assert "Traceback" not in p.stderr


def test_train_exit_code_3_when_the_run_diverges(tmp_path):
    p = dlx("train", CONFIGS / "exploding.yaml", "--runs-dir", tmp_path / "runs", "-q")
    assert p.returncode == 3
    assert "run folder:" in p.stdout


def test_train_json_prints_the_summary(tmp_path):
    p = dlx("train", CONFIGS / "quickstart.yaml", "--set", "train.epochs=1", "--runs-dir", tmp_path / "r", "--json")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["status"] == "completed" and [l["name"] for l in summary["layers"]][0] == "fc1"


def test_show_renders_a_run_from_its_folder_alone(tmp_path):
    runs = tmp_path / "runs"
    assert dlx("train", CONFIGS / "zero_init.yaml", "--set", "train.epochs=1", "--runs-dir", runs, "-q").returncode == 0
    p = dlx("show", "last", "--runs-dir", runs)
    assert p.returncode == 0, p.stderr
    assert "symmetric units" in p.stdout and "fc1" in p.stdout
    run_id = next(runs.iterdir()).name
    j = json.loads(dlx("show", run_id[-6:], "--runs-dir", runs, "--json").stdout)
    assert j["meta"]["run_id"] == run_id and j["summary"]["verdicts"][0]["kind"] == "symmetry"


def test_ctrl_c_stops_training_keeps_metrics_and_exits_130(tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dlx",
            "train",
            str(CONFIGS / "quickstart.yaml"),
            "--set",
            "train.epochs=100000",
            "--runs-dir",
            str(runs),
            "-q",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def logged():  # a run folder with a few intervals logged
        found = list(runs.glob("*/metrics.jsonl")) if runs.exists() else []
        return found[0] if found and len(found[0].read_text().splitlines()) >= 3 else None

    metrics, out, err = interrupt_when(proc, logged)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    meta = json.loads((metrics.parent / "meta.json").read_text())
    assert meta["status"] == "interrupted"
    summary = json.loads((metrics.parent / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["steps"] >= 30
    assert (metrics.parent / "checkpoint.pt").is_file()


def test_mnist_without_files_or_download_names_the_four_files(tmp_path):
    env = {**os.environ, "DLX_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("DLX_DATA_DIR", None)
    p = dlx("validate", CONFIGS / "mnist_mlp.yaml", "--set", "data.download=false", env=env)
    assert p.returncode == 2
    for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert f in p.stderr
    assert "Traceback" not in p.stderr


def test_python_module_and_console_script_agree():
    p = dlx("--version")
    assert p.returncode == 0 and p.stdout.startswith("dlx ")


def test_a_crash_mid_run_keeps_the_logged_metrics_and_says_where(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dlx.cli.app import app
    from dlx.run.trainer import Trainer

    real = Trainer._train_step

    def crash(self, *a, **k):
        if self.step == 25:
            raise RuntimeError("simulated device failure")
        return real(self, *a, **k)

    monkeypatch.setattr(Trainer, "_train_step", crash)
    runs = tmp_path / "runs"
    res = CliRunner().invoke(app, ["train", str(CONFIGS / "quickstart.yaml"), "--runs-dir", str(runs), "-q"])
    assert res.exit_code == 1
    assert "dlx train failed: RuntimeError: simulated device failure" in res.output
    (folder,) = list(runs.iterdir())
    assert str(folder) in res.output.replace("\n", "")
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["status"] == "failed" and "simulated device failure" in meta["error"]
    steps = [json.loads(l)["step"] for l in (folder / "metrics.jsonl").read_text().splitlines()]
    assert steps == [10, 20]  # both intervals before the crash are on disk


@pytest.mark.slow
def test_runs_lists_every_run_with_status_and_sorts_best_first(tmp_path):
    runs = tmp_path / "runs"
    assert (
        dlx("train", CONFIGS / "quickstart.yaml", "--set", "train.epochs=3", "--runs-dir", runs, "-q").returncode == 0
    )
    assert dlx("train", CONFIGS / "exploding.yaml", "--runs-dir", runs, "-q").returncode == 3
    # A run whose process vanished while "running" is reported as interrupted.
    ghost = runs / "20000101-000000-ghost-abcdef"
    ghost.mkdir()
    (ghost / "meta.json").write_text(json.dumps({"run_id": ghost.name, "status": "running", "pid": 2**22 + 12345}))
    rows = json.loads(dlx("runs", "--runs-dir", runs, "--json", "--sort", "test_acc").stdout)
    assert [r["status"] for r in rows][0] == "completed"  # the only one with a test_acc comes first
    assert {r["status"] for r in rows} == {"completed", "diverged", "interrupted"}
    diverged = json.loads(dlx("runs", "--runs-dir", runs, "--json", "--status", "diverged").stdout)
    assert len(diverged) == 1 and diverged[0]["verdict"] == "init_scale"  # the root cause, N(0, 1) init
    p = dlx("runs", "--runs-dir", runs)
    assert p.returncode == 0 and "3 run(s)" in p.stdout
    bad = dlx("runs", "--runs-dir", runs, "--status", "complete")
    assert bad.returncode == 2 and "did you mean 'completed'" in bad.stderr


@pytest.mark.slow
def test_a_running_run_whose_process_is_gone_is_interrupted_everywhere(tmp_path, tiny):
    # One function (runs.run_status) decides: dlx show, dlx runs, the HTML report and the
    # Python API (runs.load_run) all say interrupted, with or without a summary yet.
    import dlx as dlx_api
    from dlx.records.folders import load_run
    from dlx.views.html_report import write_report

    runs = tmp_path / "runs"
    folder = dlx_api.train(dict(tiny, name="killed"), runs_dir=runs).path
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that existed on this machine and no longer does
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps(dict(meta, status="running", pid=gone.pid)))
    for with_summary in (True, False):
        if not with_summary:
            (folder / "summary.json").unlink()
        assert load_run(folder)["status"] == "interrupted"
        show = dlx("show", folder.name, "--runs-dir", runs)
        assert show.returncode == 0, show.stderr
        out = show.stdout.replace(str(tmp_path), "")  # the folder's path holds this test's name
        assert "interrupted" in out and "running" not in out
        assert json.loads(dlx("show", folder.name, "--runs-dir", runs, "--json").stdout)["status"] == "interrupted"
        rows = json.loads(dlx("runs", "--runs-dir", runs, "--json").stdout)
        assert [r["status"] for r in rows] == ["interrupted"]
        page = write_report(folder, tmp_path / f"report-{with_summary}.html").read_text()
        assert 'class="pill st-interrupted"' in page  # the pill under the title, and the meta table's row
        assert 'class="pill st-running"' not in page and "<dd>running</dd>" not in page
        assert "<dd>interrupted</dd>" in page

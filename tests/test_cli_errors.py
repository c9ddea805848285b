"""The real `dlx` command on user mistakes: exit codes, messages on stderr, never a traceback.

Every command runs as `python -m dlx ...` in its own temporary folder (a copy of
configs/broken.yaml and configs/quickstart.yaml under ./configs). The commands
that import torch take ~3 s each, so the module starts them all at once and the
tests read their results.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from dlx.components.activations import ACTIVATIONS

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

COMMANDS: dict[str, list[str]] = {
    "validate_broken": ["validate", "configs/broken.yaml"],
    "train_broken": ["train", "configs/broken.yaml", "--runs-dir", "runs"],
    "train_missing": ["train", "configs/nope.yaml", "--runs-dir", "runs"],
    "validate_missing": ["validate", "configs/nope.yaml"],
    "validate_quickstart": ["validate", "configs/quickstart.yaml"],
    "validate_bad_set": ["validate", "configs/quickstart.yaml", "--set", "optimizer.lr=abc", "--set", "train.epochs"],
    "train_bad_set": [
        "train",
        "configs/quickstart.yaml",
        "--set",
        "optimizer.lr=abc",
        "--set",
        "train.epochs",
        "--runs-dir",
        "runs",
    ],
    "validate_ignored_key": ["validate", "configs/quickstart.yaml", "--set", "train.tbptt=5"],
    "train_ignored_key": ["train", "configs/quickstart.yaml", "--set", "train.tbptt=5", "--runs-dir", "runs"],
    "show_nonexistent": ["show", "nonexistent", "--runs-dir", "X"],
    "show_last_empty": ["show", "last", "--runs-dir", "X"],
    "list_activation": ["list", "activation"],
    "list_bogus": ["list", "bogus"],
    "list_typo": ["list", "activatoin"],
    "help": ["--help"],
    "train_help": ["train", "--help"],
    "validate_help": ["validate", "--help"],
}


@dataclass
class Result:
    args: list[str]
    cwd: Path
    returncode: int
    stdout: str
    stderr: str

    def problem_lines(self) -> list[str]:
        """The '  - where: key: message' lines of a config error."""
        return [line[4:].rstrip() for line in self.stderr.splitlines() if line.startswith("  - ")]


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> dict[str, Result]:
    """Every command in COMMANDS, run concurrently, each with cwd its own temporary folder."""
    base = tmp_path_factory.mktemp("cli")
    env = {k: v for k, v in os.environ.items() if k not in ("DLX_DATA_DIR", "COLUMNS", "LINES")}
    env["DLX_CACHE_DIR"] = str(base / "cache")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["COLUMNS"] = "120"
    procs = {}
    for name, args in COMMANDS.items():
        cwd = base / name
        (cwd / "configs").mkdir(parents=True)
        for f in ("broken.yaml", "quickstart.yaml"):
            shutil.copy(CONFIGS / f, cwd / "configs" / f)
        procs[name] = (
            cwd,
            subprocess.Popen(
                [sys.executable, "-m", "dlx", *args],
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
    results = {}
    try:
        for name, (cwd, proc) in procs.items():
            out, err = proc.communicate(timeout=120)
            results[name] = Result(COMMANDS[name], cwd, proc.returncode, out, err)
    finally:
        for _, proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def assert_no_traceback(r: Result) -> None:
    for stream in (r.stdout, r.stderr):
        assert "Traceback" not in stream, stream
        assert not re.search(r'File ".*", line \d+', stream), stream


BROKEN_PATHS = [
    "data",
    "model.widht",
    "activation",
    "init.std",
    "optimizer.betas",
    "regularization.dropout",
    "regularization.norm",
    "train.epochs",
    "train.loss",
]


# ---------------------------------------------------------------- a broken config


def test_validate_broken_config_exits_2(cli):
    assert cli["validate_broken"].returncode == 2


def test_validate_broken_config_lists_every_problem_with_its_line(cli):
    r = cli["validate_broken"]
    lines = r.problem_lines()
    assert len(lines) >= 8
    text = (r.cwd / "configs" / "broken.yaml").read_text().splitlines()
    for path in BROKEN_PATHS:
        hits = [line for line in lines if re.match(rf"configs/broken\.yaml:\d+: {re.escape(path)}: ", line)]
        assert len(hits) == 1, (path, lines)
        number = int(hits[0].split(":")[1])
        assert text[number - 1].startswith(path.split(".")[0] + ":"), (hits[0], text[number - 1])
    assert f"{len(lines)} problems in the config" in r.stderr


def test_validate_broken_config_says_did_you_mean(cli):
    err = cli["validate_broken"].stderr
    for hint in [
        "did you mean 'spirals'?",
        "did you mean 'width'?",
        "did you mean 'sigmoid'?",
        "did you mean 'batch'?",
        "did you mean 'cross_entropy'?",
    ]:
        assert hint in err


def test_validate_broken_config_prints_no_traceback_and_nothing_on_stdout(cli):
    r = cli["validate_broken"]
    assert_no_traceback(r)
    assert r.stdout.strip() == ""
    assert r.stderr.startswith("error:")


def test_train_broken_config_exits_2_with_the_same_problems_as_validate(cli):
    t, v = cli["train_broken"], cli["validate_broken"]
    assert t.returncode == 2
    assert_no_traceback(t)
    assert t.problem_lines() == v.problem_lines()
    assert len(t.problem_lines()) >= 8


def test_train_broken_config_creates_no_run_folder(cli):
    r = cli["train_broken"]
    assert not (r.cwd / "runs").exists()


def test_a_key_the_model_ignores_stops_validate_and_train_with_exit_2_and_no_traceback(cli):
    v, t = cli["validate_ignored_key"], cli["train_ignored_key"]
    for r in (v, t):
        assert r.returncode == 2
        assert_no_traceback(r)
    assert (
        v.problem_lines()
        == t.problem_lines()
        == ["--set train.tbptt=5: train.tbptt: mlp ignores it; it is honoured by rnn, lstm, gru; remove it"]
    )
    assert not (t.cwd / "runs").exists()
    assert sorted(p.name for p in r.cwd.iterdir()) == ["configs"]


# ---------------------------------------------------------------- a missing config file


def test_train_missing_config_exits_2_with_a_clear_message(cli):
    r = cli["train_missing"]
    assert r.returncode == 2
    assert_no_traceback(r)
    assert "not found" in r.stderr and "configs/nope.yaml" in r.stderr
    assert not (r.cwd / "runs").exists()


def test_validate_missing_config_says_the_same_as_train(cli):
    v, t = cli["validate_missing"], cli["train_missing"]
    assert v.returncode == 2
    assert_no_traceback(v)
    assert v.stderr == t.stderr


def test_missing_config_message_does_not_send_the_user_to_dlx_list(cli):
    err = cli["train_missing"].stderr
    assert "<config>" not in err
    assert "dlx list" not in err


# ---------------------------------------------------------------- bad --set


def test_bad_set_cites_the_set_and_exits_2(cli):
    r = cli["validate_bad_set"]
    assert r.returncode == 2
    assert_no_traceback(r)
    lines = r.problem_lines()
    assert any(line.startswith("--set optimizer.lr=abc: optimizer.lr: ") for line in lines), lines
    assert any(line.startswith("--set train.epochs: ") and "key.path=value" in line for line in lines), lines


def test_train_with_bad_set_reports_the_same_and_creates_no_run_folder(cli):
    t, v = cli["train_bad_set"], cli["validate_bad_set"]
    assert t.returncode == 2
    assert_no_traceback(t)
    assert t.problem_lines() == v.problem_lines()
    assert not (t.cwd / "runs").exists()


# ---------------------------------------------------------------- a good config


def test_validate_good_config_exits_0_and_says_ok(cli):
    r = cli["validate_quickstart"]
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok configs/quickstart.yaml")
    assert "mlp" in r.stdout and "spirals" in r.stdout
    assert_no_traceback(r)
    assert not (r.cwd / "runs").exists()  # validate never trains


# ---------------------------------------------------------------- other commands


def test_show_nonexistent_run_fails_with_a_clear_message(cli):
    r = cli["show_nonexistent"]
    assert r.returncode != 0
    assert_no_traceback(r)
    assert "nonexistent" in r.stderr and "in X" in r.stderr
    assert r.stderr.startswith("error:")


def test_show_last_without_runs_says_how_to_make_one(cli):
    r = cli["show_last_empty"]
    assert r.returncode != 0
    assert_no_traceback(r)
    assert "dlx train" in r.stderr


def test_list_activation_lists_every_activation(cli):
    r = cli["list_activation"]
    assert r.returncode == 0, r.stderr
    for name in ACTIVATIONS.names(aliases=True):
        assert re.search(rf"(^|\W){re.escape(name)}(\W|$)", r.stdout, re.M), name
    # only activations: no optimizer table
    assert "adam" not in r.stdout


def test_list_unknown_kind_exits_2_and_lists_the_valid_kinds(cli):
    r = cli["list_bogus"]
    assert r.returncode == 2
    assert_no_traceback(r)
    assert "unknown kind 'bogus'" in r.stderr
    for kind in ["activation", "init", "optimizer", "schedule", "data", "model"]:
        assert kind in r.stderr


def test_list_misspelled_kind_suggests_the_closest(cli):
    r = cli["list_typo"]
    assert r.returncode == 2
    assert "did you mean 'activation'?" in r.stderr


@pytest.mark.parametrize(
    "name, words",
    [
        ("help", ["train", "validate", "show", "list"]),
        ("train_help", ["--set", "--runs-dir", "config"]),
        ("validate_help", ["--set", "config"]),
    ],
)
def test_help_exits_0_and_describes_the_commands(cli, name, words):
    r = cli[name]
    assert r.returncode == 0, r.stderr
    assert_no_traceback(r)
    for w in words:
        assert w in r.stdout

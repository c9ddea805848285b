"""Every command's --help as a person reads it, shell completion, and a fast `dlx --help`."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT
from typer.testing import CliRunner

from dlx.cli.app import app

COMMANDS = ["train", "validate", "show", "summary", "compare", "sweep", "runs", "report", "examples", "plot", "list"]


def _help(*args: str) -> str:
    r = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "100"})
    assert r.exit_code == 0, r.output
    return r.output


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_has_no_angle_bracket_type_labels_and_flags_show_no_value(command):
    out = _help(*([command] if command else []))
    # typer 0.29 writes `--json <bool>` (as if the flag took a value) and `<str>`, `<path>`.
    assert not re.search(r"<(bool|str|path|int|float|list\[[^\]]*\])>", out), out
    for line in out.splitlines():
        m = re.match(r"│\s+(--json|--quiet|--help|--init-check|--version)\b(.*)", line)
        if m:  # a flag's row goes straight from its names to its help text
            assert not re.search(r"\b(BOOL|BOOLEAN|TEXT)\b", m.group(2)), line


def test_help_keeps_square_brackets_that_rich_markup_would_eat():
    flat = " ".join(_help("sweep").split())
    assert "pip install 'dlx[ray]'" in flat
    assert "pip install 'dlx'" not in flat
    flat = " ".join(_help("lab").split())
    assert "pip install 'dlx[lab]'" in flat and "pip install 'dlx'" not in flat


def test_value_options_name_what_they_take():
    out = _help("sweep")
    assert re.search(r"--runs-dir\s+PATH", out) and re.search(r"--max-parallel\s+INTEGER \[x>=1\]", out)
    assert re.search(r"--set\s+-s\s+KEY.PATH=VALUE", out)


def _dlx(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dlx", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def test_show_completion_prints_a_bash_script_for_the_dlx_command():
    # Typer detects the shell from the process tree; this hook makes it take the named one.
    p = _dlx("--show-completion", "bash", _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    assert p.returncode == 0, p.stderr
    assert "complete -o default -F _dlx_completion dlx" in p.stdout
    assert "_DLX_COMPLETE=complete_bash" in p.stdout  # for `dlx`, even when run as python -m dlx
    assert "--install-completion" in _help()


def test_the_completion_script_completes_command_names():
    p = _dlx(_DLX_COMPLETE="complete_bash", COMP_WORDS="dlx tr", COMP_CWORD="1")
    assert p.returncode == 0 and p.stdout.split() == ["train"]


def test_dlx_help_imports_no_torch():
    """--help answers at once: torch and the other heavy modules load inside the commands."""
    code = (
        "import sys\nsys.argv = ['dlx', '--help']\nfrom dlx.cli.app import main\ntry:\n    main()\n"
        "except SystemExit:\n    pass\nprint(sorted(m for m in ('torch', 'numpy', 'matplotlib', 'optuna') "
        "if m in sys.modules))"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "[]"


def test_reading_runs_imports_no_torch(tmp_path):
    """`dlx runs` and `dlx show` read run folders: they start in well under a second, without torch."""
    import json

    run = tmp_path / "runs" / "20260101-000000-demo-abcdef"
    run.mkdir(parents=True)
    (run / "meta.json").write_text(json.dumps({"run_id": run.name, "status": "completed", "name": "demo"}))
    (run / "summary.json").write_text(
        json.dumps(
            {
                "status": "completed",
                "verdict": "healthy: fine",
                "steps": 1,
                "verdicts": [{"kind": "healthy", "message": "healthy: fine"}],
                "layers": [],
                "final": {"test_acc": 0.5},
            }
        )
    )
    for args in (["runs"], ["show", "last"]):
        code = (
            f"import sys\nsys.argv = ['dlx', *{args!r}, '--runs-dir', {str(tmp_path / 'runs')!r}]\n"
            "from dlx.cli.app import main\ntry:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in ('torch', 'optuna') if m in sys.modules))"
        )
        p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip().splitlines()[-1] == "[]", (args, p.stdout)

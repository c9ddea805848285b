"""The README's promises that a script can hold it to: the install order CI runs, the MNIST checksums."""

from __future__ import annotations

import re

from conftest import ROOT

from dlx.components.data import mnist as M

README = (ROOT / "README.md").read_text()


def _first_block() -> list[str]:
    block = re.search(r"^```\n(.*?)^```", README, re.S | re.M).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_first_command_a_reader_runs_installs_a_cpu_torch_before_dlx():
    cmds = _first_block()
    assert cmds[0].startswith("pip install torch") and "whl/cpu" in cmds[0]
    assert cmds[1:] == ["pip install -e .", "pip install -e '.[dev,ray]' && pytest", "pytest -m slow"]
    assert README.index("CPU build of torch first") < README.index("pip install -e .")


def test_ci_runs_the_readme_install_and_test_commands_exactly():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for cmd in _first_block()[1:]:
        assert cmd in ci, cmd
    torch_line = next(i for i, line in enumerate(ci) if "pip install" in line and "torch" in line)
    assert torch_line < ci.index("pip install -e .")  # a CPU torch first there too


def test_the_mnist_offline_section_lists_the_checksums_dlx_verifies():
    section = README.split("#### MNIST offline")[1].split("\n## ")[0]
    for name, md5 in M.FILES.items():
        assert re.search(rf"\|\s*{name}\s*\|\s*{md5}\s*\|", section), name
    for where in ("data.root", "$DLX_DATA_DIR", "~/.cache/dlx/mnist"):
        assert where in section

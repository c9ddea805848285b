"""dlx installed as a user gets it (a non-editable wheel, no clone in sight) finds its
examples by name: `dlx train quickstart` and `dlx examples copy NAME` from an empty folder.

Offline and quick: the venv sees the running interpreter's packages (torch, ...) and pip
builds the wheel with the setuptools already installed (--no-build-isolation, --no-deps).
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT


def _run(args, cwd, env, timeout=300):
    p = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(map(str, args))} exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    return p


@pytest.mark.slow
def test_a_wheel_installed_outside_the_clone_trains_and_copies_its_examples_by_name(tmp_path):
    pytest.importorskip(
        "setuptools",
        minversion="70.1",  # bdist_wheel without the wheel package
        reason="pip --no-build-isolation builds with the installed setuptools (pip install -e '.[dev]' brings it)",
    )
    # The source as a wheel is built from it, copied so the build leaves nothing in the clone.
    src = tmp_path / "src"
    shutil.copytree(ROOT / "dlx", src / "dlx", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)

    # No pip of its own (ensurepip would bring an old setuptools that shadows ours): this
    # interpreter's pip installs into it (pip --python).
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv], tmp_path, None)
    # When the running interpreter is itself a venv, --system-site-packages reaches only its
    # base Python: point the new venv at this one's site-packages (torch, setuptools, ...).
    # A plain path line: the .pth files there (an editable dlx's finder) are not run.
    (site_dir,) = (venv / "lib").glob("python3*/site-packages")
    (site_dir / "_parent_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", NO_COLOR="1", COLUMNS="120")
    bin_ = venv / "bin"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            bin_ / "python",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            src,
        ],
        tmp_path,
        env,
    )

    work = tmp_path / "work"  # an empty folder, outside the clone
    work.mkdir()
    where = _run([bin_ / "python", "-c", "import dlx; print(dlx.__file__)"], work, env).stdout.strip()
    assert Path(where).resolve().is_relative_to(venv.resolve()), f"dlx imported from {where}, not the wheel"

    # The lab's page ships in the wheel (package data, no network at run time).
    pkg = Path(where).parent
    assert {"index.html", "lab.js", "lab.css"} <= {p.name for p in (pkg / "lab" / "static").iterdir()}

    _run([bin_ / "dlx", "train", "quickstart", "--set", "train.epochs=1", "-q"], work, env)
    (run,) = (work / "runs").iterdir()
    assert (run / "summary.json").is_file()

    p = _run([bin_ / "dlx", "examples", "copy", "vanishing_sigmoid", "."], work, env)
    assert (work / "vanishing_sigmoid.yaml").is_file() and "dlx train vanishing_sigmoid.yaml" in p.stdout
    _run([bin_ / "dlx", "validate", "vanishing_sigmoid.yaml"], work, env)
    assert len(_run([bin_ / "dlx", "examples"], work, env).stdout.splitlines()) > 43

"""Shared fixtures: a temp runs folder, the real MNIST folder, small configs."""

from __future__ import annotations

import copy
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"

# A tiny, fast, healthy experiment; tests copy and change it.
TINY = {
    "seed": 0,
    "data": {"name": "spirals", "n_train": 256, "n_test": 128},
    "model": {"name": "mlp", "depth": 2, "width": 16},
    "activation": "relu",
    "init": "kaiming_normal",
    "optimizer": {"name": "adam", "lr": 0.01},
    "train": {"epochs": 2, "batch_size": 32, "log_every": 4},
}


# The files whose tests take longest, started first: with --dist loadfile each file runs
# whole on one worker, so a long file scheduled last keeps one core busy while the other
# idles. Measured with --durations (the examples' and the verdict suite's real runs, the
# Ray cluster, the pages in Chromium, the live lab).
LONGEST_FIRST = (
    "test_examples.py",
    "test_verdict_quality.py",
    "test_html_report.py",
    "test_ray.py",
    "test_cli_errors.py",
    "test_lab.py",
    "test_lab_page.py",
    "test_fuzz_folders.py",
    "test_sweep.py",
    "test_fix.py",
    "test_executors.py",
    "test_driver_stack.py",
    "test_faults.py",
    "test_papers.py",
    "test_resume.py",
    "test_cli.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def _train_summary(job: tuple) -> tuple[str, object]:
    """In a pool worker: train one (config, overrides, env) unsaved on one thread; its summary,
    or the error's text (a failure shows in the test that reads it, not as a broken pool)."""
    import os
    import traceback

    cfg, overrides, env = job
    os.environ.update(env)
    try:
        import torch

        import dlx

        torch.set_num_threads(1)
        return "ok", dlx.train(cfg, list(overrides), save=False, quiet=True).summary
    except Exception:
        return "error", traceback.format_exc()


def train_in_parallel(jobs: dict[str, tuple], workers: int | None = None) -> dict[str, tuple[str, object]]:
    """Many small single-threaded trainings at once, one per core: {name: ("ok", summary) or
    ("error", traceback)}. The suites of real runs (verdict quality, the examples) use it:
    on a 2-core machine it halves their time. Spawned workers (a fork of a process whose
    torch already started its thread pool can hang)."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    workers = workers or max(1, min(len(jobs), os.cpu_count() or 1))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {name: pool.submit(_train_summary, job) for name, job in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


@pytest.fixture
def tiny():
    """A fresh deep copy of the tiny config dict."""
    return copy.deepcopy(TINY)


@pytest.fixture
def runs_dir(tmp_path):
    return tmp_path / "runs"


@pytest.fixture
def mnist_dir():
    if not (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST not found at {MNIST_DIR} (../shared/data/mnist beside the checkout)")
    return MNIST_DIR


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """No test reads or writes the user's ~/.cache or a DLX_DATA_DIR set outside."""
    monkeypatch.setenv("DLX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DLX_DATA_DIR", raising=False)


def interrupt_when(proc, ready, timeout: float = 60.0, poll: float = 0.05, sig: int = signal.SIGINT):
    """Ctrl-C (or send sig to) a real subprocess once ready() returns something truthy:
    (that value, stdout, stderr).

    Fails if the process ends first or never gets ready; never leaves it running.
    """
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = ready()
            if value:
                break
            if proc.poll() is not None:
                pytest.fail(
                    f"the process ended (exit {proc.returncode}) before it could be interrupted: "
                    f"{proc.stderr.read() if proc.stderr else ''}"
                )
            time.sleep(poll)
        else:
            pytest.fail(f"the process was not ready to interrupt within {timeout:g} s")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return value, out, err


# Debian's chromium, driven by Playwright (never a downloaded browser): the lab's page tests.
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def browser():
    if CHROMIUM is None:
        if os.environ.get("DLX_REQUIRE_CHROMIUM"):
            pytest.fail("DLX_REQUIRE_CHROMIUM is set and no chromium is installed")
        pytest.skip("no chromium installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()

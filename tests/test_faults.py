"""Faults reproduced for real: runs started at once, SIGKILL mid-run, damaged MNIST
files and downloads, out of memory, an unwritable runs folder.

Each test makes the fault happen (real processes, real signals, real files
truncated, a real HTTP server that hangs up) and asserts what dlx kept and what
it told the person.
"""

from __future__ import annotations

import datetime as dt
import gzip
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import CONFIGS, MNIST_DIR, ROOT, TINY

from dlx.components.data import mnist as M
from dlx.core.errors import DlxError
from dlx.records import folders as R
from dlx.records import runs as RF  # the module RunFolder looks its helpers up in (patched below)

HAVE_MNIST = all((MNIST_DIR / f"{n}.gz").is_file() for n in M.FILES)
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason=f"real MNIST files not found in {MNIST_DIR}")
LABELS = "train-labels-idx1-ubyte"  # the smallest file: every MNIST fault is planted in it
NO_PROXY = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


def tiny_yaml(tmp_path: Path, **train) -> Path:
    cfg = {**TINY, "train": {**TINY["train"], "threads": 1, **train}}
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def dlx_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "dlx", *map(str, args)]


def env_for(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in NO_PROXY and k != "DLX_DATA_DIR"}
    return {**env, "DLX_CACHE_DIR": str(tmp_path / "cache"), "no_proxy": "127.0.0.1,localhost", "OMP_NUM_THREADS": "1"}


def invoke(args: list[str]):
    """The CLI in this process (monkeypatches apply); returns click's Result."""
    from typer.testing import CliRunner

    from dlx.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args])


def assert_clean_exit(res, code: int = 1) -> None:
    """Exited by itself with `code`, a message and no traceback (CliRunner Result)."""
    assert res.exit_code == code, res.output
    assert isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output


# --- eight runs started at once --------------------------------------------------


@pytest.mark.slow
def test_eight_runs_started_at_once_give_eight_distinct_complete_folders(tmp_path):
    cfg = tiny_yaml(tmp_path)
    runs = tmp_path / "runs"
    procs = [
        subprocess.Popen(
            dlx_cmd("train", cfg, "--runs-dir", runs, "-q"),
            env=env_for(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    try:
        deadline, outs = time.time() + 240, []  # under pytest-timeout's 300 s, so a hang says which run
        for i, p in enumerate(procs):
            try:
                outs.append(p.communicate(timeout=max(1.0, deadline - time.time())))
            except subprocess.TimeoutExpired:
                pytest.fail(f"dlx train #{i} of 8 still running after 240 s")
    finally:
        for p in procs:  # no orphan keeps running after a failure
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    entries = sorted(runs.iterdir())
    # Nothing but the eight folders: no .tmp-* folder, no .write-test or .tmp file left over.
    assert len(entries) == 8 and all(e.is_dir() and not e.name.startswith(".") for e in entries), entries
    printed = {Path(out.split("run folder:")[-1].strip()).name for out, _ in outs}
    assert printed == {e.name for e in entries}  # each process names its own folder
    for d in entries:
        meta = json.loads((d / "meta.json").read_text())
        summary = json.loads((d / "summary.json").read_text())
        assert meta["run_id"] == d.name and summary["run_id"] == d.name
        assert meta["status"] == summary["status"] == "completed"
        assert yaml.safe_load((d / "config.yaml").read_text())["model"]["width"] == 16
        metrics = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
        assert [m["step"] for m in metrics] == [4, 8, 12, 16]  # 2 epochs x 8 steps, every 4th
        assert [p["step"] for p in R.read_jsonl(d / "probes.jsonl")] == [4, 8, 12, 16]
        assert not [f.name for f in d.iterdir() if f.name.startswith(".")]
    assert len({json.loads((d / "meta.json").read_text())["pid"] for d in entries}) == 8


def test_a_run_id_taken_by_another_starter_is_never_shared(tmp_path, monkeypatch):
    """The collisions the 8-process test can only hit by chance, forced: the id's folder
    exists, its temp folder is held by another starter, the rename loses a race."""
    runs = tmp_path / "runs"
    ids = iter(["same", "same", "same", "held", "raced", "fresh"])
    monkeypatch.setattr(RF, "new_run_id", lambda name: next(ids))
    first = R.RunFolder(runs, "x")
    first.open("a: 1\n", {})
    first.close()
    (runs / ".tmp-held").mkdir()  # another process is writing run "held" right now
    real_rename = os.rename

    def lose_the_race(src, dst):
        if Path(dst).name == "raced":  # another process lands "raced" first
            Path(dst).mkdir()
            (Path(dst) / "meta.json").write_text("{}")
        return real_rename(src, dst)

    monkeypatch.setattr(RF.os, "rename", lose_the_race)
    second = R.RunFolder(runs, "x")
    second.open("a: 2\n", {})
    second.close()
    assert first.run_id == "same" and second.run_id == "fresh"
    assert (runs / "same" / "config.yaml").read_text() == "a: 1\n"
    assert (runs / "fresh" / "config.yaml").read_text() == "a: 2\n"
    assert json.loads((runs / "fresh" / "meta.json").read_text())["run_id"] == "fresh"
    assert (runs / "raced" / "meta.json").read_text() == "{}"  # the winner's folder untouched
    assert sorted(p.name for p in runs.iterdir()) == [".tmp-held", "fresh", "raced", "same"]


# --- SIGKILL mid-run and stale `running` runs ------------------------------------


def test_a_sigkilled_run_is_listed_interrupted_with_whole_files_and_at_most_one_interval_lost(tmp_path):
    cfg = tiny_yaml(tmp_path, epochs=100000, log_every=4)
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        dlx_cmd("train", cfg, "--runs-dir", runs, "-q"),
        env=env_for(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline, folder, meta = time.time() + 90, None, {}
        while time.time() < deadline:
            found = [d for d in runs.glob("*") if (d / "meta.json").is_file()] if runs.exists() else []
            if found:
                folder = found[0]
                meta = json.loads((folder / "meta.json").read_text())
                # Alive and beating: the heartbeat has moved on since the start.
                if meta["heartbeat"] != meta["started"] and len(R.read_jsonl(folder / "metrics.jsonl")) >= 5:
                    break
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        else:
            pytest.fail("the run never logged 5 intervals and a second heartbeat")
        assert R.run_status(meta) == "running"  # a live run is not called dead
        assert (meta["pid"], meta["host"], meta["boot_id"]) == (proc.pid, socket.gethostname(), R.boot_id())
        logged_before = R.read_jsonl(folder / "metrics.jsonl")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    rows = json.loads(
        subprocess.run(
            dlx_cmd("runs", "--runs-dir", runs, "--json"),
            capture_output=True,
            text=True,
            env=env_for(tmp_path),
            timeout=60,
        ).stdout
    )
    assert [(r["run_id"], r["status"]) for r in rows] == [(folder.name, "interrupted")]
    # Every JSON file parses; the .jsonl files hold whole lines, but for at most a torn last one.
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["status"] == "running" and meta["run_id"] == folder.name  # as the kill left it
    yaml.safe_load((folder / "config.yaml").read_text())
    for f in folder.iterdir():
        if f.suffix == ".json":
            json.loads(f.read_text())
    lines = {}
    for name in ("metrics.jsonl", "probes.jsonl"):
        text = (folder / name).read_text()
        whole = text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")[:-2]
        lines[name] = [json.loads(line)["step"] for line in whole]  # raises if any line is torn
        assert len(R.read_jsonl(folder / name)) == len(whole)
    metrics, probes = lines["metrics.jsonl"], lines["probes.jsonl"]
    # Nothing seen on disk before the kill is lost, the intervals run without a gap, and the
    # two files differ by at most the one interval the kill cut between their appends.
    assert metrics[: len(logged_before)] == [m["step"] for m in logged_before]
    assert metrics == list(range(4, 4 * len(metrics) + 1, 4))
    assert probes == metrics[: len(probes)] and len(metrics) - len(probes) in (0, 1)


def _meta(**kw):
    fresh = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    return {
        "status": "running",
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "boot_id": R.boot_id(),
        "heartbeat": fresh,
        **kw,
    }


def _ago(seconds: float) -> str:
    return (dt.datetime.now().astimezone() - dt.timedelta(seconds=seconds)).isoformat(timespec="seconds")


DEAD_PID = 2**22 + 12345  # above the default pid_max: no such process


@pytest.mark.parametrize(
    "meta, status",
    [
        (_meta(), "running"),
        (_meta(heartbeat=_ago(R.STALE_AFTER_S + 60)), "interrupted"),  # pid alive, but reused: no heartbeat for ages
        (_meta(boot_id="another-boot"), "interrupted"),  # rebooted since: the pid is someone else's
        (_meta(pid=DEAD_PID), "interrupted"),
        (_meta(host="other-host", pid=DEAD_PID), "running"),  # another host's pid tells nothing; beat is fresh
        (_meta(host="other-host", heartbeat=_ago(R.STALE_AFTER_S + 60)), "interrupted"),
        ({"status": "running", "pid": DEAD_PID}, "interrupted"),  # written before heartbeats existed
        ({"status": "running", "pid": os.getpid()}, "running"),
        (_meta(status="completed", pid=DEAD_PID), "completed"),
    ],
    ids=[
        "live",
        "stale-heartbeat",
        "rebooted",
        "pid-gone",
        "other-host-fresh",
        "other-host-stale",
        "legacy-dead",
        "legacy-alive",
        "finished",
    ],
)
def test_a_running_run_is_judged_by_pid_boot_and_heartbeat(tmp_path, meta, status):
    assert R.run_status(meta) == status
    d = tmp_path / "runs" / "20000101-000000-x-abcdef"
    d.mkdir(parents=True)
    (d / "meta.json").write_text(json.dumps(meta))
    assert [r["status"] for r in R.list_runs(tmp_path / "runs")] == [status]


def test_a_killed_but_unreaped_process_counts_as_gone():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert R.pid_alive(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.time() + 10
        while R.pid_alive(child.pid) and time.time() < deadline:  # a zombie until we wait() for it
            time.sleep(0.02)
        assert not R.pid_alive(child.pid)
        assert R.run_status({"status": "running", "pid": child.pid}) == "interrupted"
    finally:
        child.kill()
        child.wait()


def test_heartbeat_is_rewritten_at_intervals_but_at_most_every_few_seconds(tmp_path, monkeypatch):
    folder = R.RunFolder(tmp_path / "runs", "x")
    folder.open("a: 1\n", {"started": "then"})
    meta = json.loads((folder.path / "meta.json").read_text())
    assert meta["status"] == "running" and meta["heartbeat"]
    writes = []
    monkeypatch.setattr(RF, "write_json", lambda path, obj: writes.append(obj["heartbeat"]))
    for _ in range(10):  # intervals in quick succession: the one written at open() is fresh enough
        folder.heartbeat()
    assert writes == []
    folder._beat -= R.HEARTBEAT_EVERY_S  # as if HEARTBEAT_EVERY_S had passed
    folder.heartbeat()
    folder.heartbeat()
    assert len(writes) == 1
    folder.meta["status"] = "completed"  # a finished run beats no more
    folder._beat -= 10 * R.HEARTBEAT_EVERY_S
    folder.heartbeat()
    assert len(writes) == 1
    folder.close()


# --- out of memory ---------------------------------------------------------------


def _oom_at_step(monkeypatch, step: int):
    import torch

    from dlx.run.trainer import Trainer

    real = Trainer._train_step

    def step_or_oom(self, *a, **k):
        if self.step == step:
            raise torch.cuda.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 7.79 GiB "
                "total capacity; 6.10 GiB already allocated)"
            )
        return real(self, *a, **k)

    monkeypatch.setattr(Trainer, "_train_step", step_or_oom)


def test_out_of_memory_fails_the_run_keeps_its_metrics_and_suggests_a_smaller_batch(tmp_path, monkeypatch, tiny):
    import dlx

    _oom_at_step(monkeypatch, 10)
    runs = tmp_path / "runs"
    with pytest.raises(DlxError) as e:
        dlx.train(tiny, runs_dir=runs)
    msg = str(e.value)
    assert "out of memory" in msg and "train.batch_size=16" in msg and "smaller model" in msg
    assert "Tried to allocate 2.00 GiB" in msg and "step 10" in msg
    (folder,) = runs.iterdir()
    assert str(folder) in msg
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["status"] == "failed" and "train.batch_size" in meta["reason"]
    assert "OutOfMemoryError" in meta["error"]  # the traceback is kept for whoever debugs it
    assert [m["step"] for m in R.read_jsonl(folder / "metrics.jsonl")] == [4, 8]  # both intervals before
    assert [r["status"] for r in R.list_runs(runs)] == ["failed"]


def test_out_of_memory_through_the_cli_is_a_message_not_a_traceback(tmp_path, monkeypatch):
    _oom_at_step(monkeypatch, 6)
    runs = tmp_path / "runs"
    res = invoke(["train", tiny_yaml(tmp_path), "--runs-dir", runs, "-q"])
    assert_clean_exit(res, 1)
    out = res.output.replace("\n", "")
    assert "out of memory" in out and "--set train.batch_size=16" in out
    (folder,) = runs.iterdir()
    assert str(folder) in out
    assert json.loads((folder / "meta.json").read_text())["status"] == "failed"


# --- an unwritable runs folder ---------------------------------------------------


@pytest.mark.slow
def test_an_unwritable_runs_folder_fails_before_training_with_a_clear_message(tmp_path):
    cfg = tiny_yaml(tmp_path, epochs=100000)  # would run for minutes if training started
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    # All three fail for root too (tests may run as root, for whom chmod blocks nothing).
    for runs, why in [
        (afile / "runs", f"{afile} is a file, not a folder"),
        (afile, f"{afile} is a file, not a folder"),
        (Path("/proc/dlx-test-runs"), "cannot write to the runs folder /proc/dlx-test-runs"),
    ]:
        p = subprocess.run(
            dlx_cmd("train", cfg, "--runs-dir", runs), capture_output=True, text=True, env=env_for(tmp_path), timeout=60
        )
        assert p.returncode == 1, p.stdout + p.stderr
        assert "Traceback" not in p.stderr and "error:" in p.stderr
        err = p.stderr.replace("\n", "")
        assert str(runs) in err and why in err and "--runs-dir" in err
        # Training never started: no step was taken (no progress line) and no run folder was made.
        assert " steps " not in p.stdout + p.stderr and not list(tmp_path.rglob("meta.json"))
    assert afile.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_a_read_only_runs_folder_fails_before_training(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir(mode=0o500)
    try:
        res = invoke(["train", tiny_yaml(tmp_path), "--runs-dir", runs, "-q"])
    finally:
        runs.chmod(0o700)
    assert_clean_exit(res, 1)
    assert "cannot write to the runs folder" in res.output and list(runs.iterdir()) == []


# --- damaged MNIST files ---------------------------------------------------------


def _labels() -> bytes:
    return gzip.decompress((MNIST_DIR / f"{LABELS}.gz").read_bytes())


def _idx(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, arr.ndim]) + np.array(arr.shape, dtype=">u4").tobytes() + arr.tobytes()


def _tampered() -> bytes:
    raw = bytearray(_labels())
    raw[-1] = (raw[-1] + 1) % 10  # a valid label file, one label changed
    return bytes(raw)


FAULTS = {  # name: (the bytes of train-labels-idx1-ubyte.gz, words the message must hold)
    "truncated-gz": (lambda: (MNIST_DIR / f"{LABELS}.gz").read_bytes()[:-500], "bad gzip data"),
    "garbage-gz": (lambda: gzip.compress(b"")[:10] + os.urandom(4000), "bad gzip data"),
    "not-gzip": (lambda: b"<html>404 Not Found</html>", "not a gzip file"),
    "wrong-magic": (lambda: gzip.compress(b"\x08\x01" + _labels()[2:]), "wrong magic number"),
    "wrong-count": (lambda: gzip.compress(_idx(np.zeros(59999, np.uint8))), "expected (60000,)"),
    "wrong-checksum": (lambda: gzip.compress(_tampered()), "wrong checksum"),
}


def _plant(folder: Path, content: bytes) -> Path:
    """folder with the three good files (links to the real ones) and a bad labels file."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in M.FILES:
        if n != LABELS:
            (folder / f"{n}.gz").symlink_to(MNIST_DIR / f"{n}.gz")
    bad = folder / f"{LABELS}.gz"
    bad.write_bytes(content)
    return bad


def _mnist_args(tmp_path: Path, *sets: str) -> list:
    args = [
        "train",
        CONFIGS / "mnist_mlp.yaml",
        "--runs-dir",
        tmp_path / "runs",
        "-q",
        "--set",
        "data.n_train=128",
        "--set",
        "data.n_test=64",
        "--set",
        "train.batch_size=32",
        "--set",
        "train.steps=2",
    ]
    for s in sets:
        args += ["--set", s]
    return args


@needs_mnist
@pytest.mark.parametrize("where", ["data_dir", "cache"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_damaged_mnist_file_is_named_and_never_kept_in_the_cache(tmp_path, monkeypatch, fault, where):
    content, words = FAULTS[fault][0](), FAULTS[fault][1]
    cache = tmp_path / "cache" / "mnist"
    if where == "data_dir":
        monkeypatch.setenv("DLX_DATA_DIR", str(tmp_path / "mine"))
        bad = _plant(tmp_path / "mine", content)
    else:
        bad = _plant(cache, content)
    res = invoke(_mnist_args(tmp_path, "data.download=false"))
    assert_clean_exit(res, 1)
    out = res.output.replace("\n", "")
    assert str(bad) in out and words in out
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())  # no run started
    if where == "data_dir":
        # The person's own folder: told what to do, their file left alone; the cache untouched.
        assert "delete it and run again with data.download: true" in out
        assert bad.read_bytes() == content
        assert not cache.exists()
    else:
        # dlx's cache: the bad copy is gone, so the next run fetches a good one.
        assert "removed it from its cache" in out and "data.download: true" in out
        assert not bad.exists()
        assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in M.FILES if n != LABELS)


@needs_mnist
def test_good_mnist_files_still_load_after_the_checks():
    ds = M.MNIST(name="mnist", root=str(MNIST_DIR), n_train=100, n_test=50).load(seed=0)
    assert ds.x_train.shape == (100, 784) and int(ds.y_train.max()) <= 9


# --- a download that goes wrong ---------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # the client hangs up on the cut transfer: expected


class _Mirror(http.server.BaseHTTPRequestHandler):
    """/good/ the real labels file; /cut/ says its full length, sends half and hangs up;
    /tampered/ a valid gzip of a valid label file with one label changed."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        mode, name = self.path.strip("/").split("/", 1)
        if name != f"{LABELS}.gz" or mode not in ("good", "cut", "tampered"):
            self.send_error(404)
            return
        body = gzip.compress(_tampered()) if mode == "tampered" else (MNIST_DIR / name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if mode == "cut" else body)
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def mirror():
    if not HAVE_MNIST:
        pytest.skip(f"real MNIST files not found in {MNIST_DIR}")
    server = _Server(("127.0.0.1", 0), _Mirror)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _cache_but_labels(tmp_path: Path) -> Path:
    cache = tmp_path / "cache" / "mnist"
    cache.mkdir(parents=True)
    for n in M.FILES:
        if n != LABELS:
            (cache / f"{n}.gz").symlink_to(MNIST_DIR / f"{n}.gz")
    return cache


def test_a_download_cut_off_halfway_fails_dlx_train_cleanly_and_keeps_nothing(tmp_path, mirror):
    cache = _cache_but_labels(tmp_path)
    p = subprocess.run(
        dlx_cmd(*_mnist_args(tmp_path, f"data.mirrors=[{mirror}/cut/]")),
        capture_output=True,
        text=True,
        env=env_for(tmp_path),
        timeout=120,
    )
    assert p.returncode == 1, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    err = p.stderr.replace("\n", " ")
    assert f"could not download MNIST file {LABELS}.gz" in err
    assert f"{mirror}/cut/{LABELS}.gz" in err and ("cut off" in err or "closed early" in err)
    assert "by hand" in err and str(cache) in err  # what to do, and where the files go
    # No partial file under any name: the next run starts clean.
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in M.FILES if n != LABELS)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_a_download_with_the_wrong_checksum_fails_cleanly_and_keeps_nothing(tmp_path, mirror):
    cache = _cache_but_labels(tmp_path)
    res = invoke(_mnist_args(tmp_path, f"data.mirrors=[{mirror}/tampered/]"))
    assert_clean_exit(res, 1)
    out = res.output.replace("\n", " ")
    assert f"{LABELS}.gz" in out and "MD5" in out and "by hand" in out
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in M.FILES if n != LABELS)
    # The same command with a good mirror then works: nothing bad was left in the way.
    res = invoke(_mnist_args(tmp_path, f"data.mirrors=[{mirror}/good/]"))
    assert res.exit_code == 0, res.output
    assert M.read_verified(cache / f"{LABELS}.gz", LABELS).shape == (60000,)


def test_a_partial_download_left_by_a_killed_process_is_swept_later(tmp_path, mirror):
    cache = _cache_but_labels(tmp_path)
    old = cache / f".{LABELS}.abc123.part"  # what SIGKILL mid-download leaves behind
    old.write_bytes(b"half a file")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    young = cache / f".{LABELS}.def456.part"  # maybe another process downloading right now
    young.write_bytes(b"in progress")
    M.download(cache, [f"{mirror}/good/"])
    assert not old.exists() and young.exists()
    assert M.read_verified(cache / f"{LABELS}.gz", LABELS).shape == (60000,)


def test_one_writer_per_run_a_second_resume_is_refused_while_the_first_holds_the_folder(tmp_path):
    """Two `--resume` of one interrupted run at once both passed the status check and wrote
    into the same folder; now the writer holds an flock on the folder for its whole life."""
    import dlx

    cfg = {**TINY, "train": {"steps": 40, "batch_size": 32, "log_every": 4, "threads": 1}}

    class Stop:
        def on_interval(self, trainer, record):
            if record["step"] == 8:
                trainer.interrupt()

    r = dlx.train(cfg, runs_dir=tmp_path / "runs", callbacks=[Stop()])
    assert r.status == "interrupted"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDONLY)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)",
            str(r.path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DlxError, match="being written by another process"):
            dlx.train(resume=r.path.name, runs_dir=tmp_path / "runs")
        # Nothing was rewritten: the interrupted run is as it was.
        assert json.loads((r.path / "meta.json").read_text())["status"] == "interrupted"
    finally:
        holder.kill()
        holder.wait()
    resumed = dlx.train(resume=r.path.name, runs_dir=tmp_path / "runs")
    assert resumed.status == "completed" and resumed.summary["steps"] == 40


def test_a_running_run_is_running_while_its_writer_holds_the_folder_whatever_the_heartbeat(tmp_path):
    """On this host the writer's lock is the evidence: a run stopped with Ctrl-Z past the
    heartbeat timeout is still running; a pid that is alive but holds no lock (reused) is not."""
    run = tmp_path / "runs" / "20260101-000000-demo-abcdef"
    run.mkdir(parents=True)
    stale = _ago(R.STALE_AFTER_S + 60)
    meta = {**_meta(heartbeat=stale), "writer_lock": True}
    (run / "meta.json").write_text(json.dumps(meta))
    assert R.run_status(meta, run) == "interrupted"  # our pid, alive, but not writing this run
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDONLY)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert R.run_status(meta, run) == "running"
        assert [r["status"] for r in R.list_runs(tmp_path / "runs")] == ["running"]
    finally:
        holder.kill()
        holder.wait()
    assert R.run_status(meta, run) == "interrupted"


# ---------------------------------------------------------------- hostile .npz files

_NPZ_CASES = r'''
import io, json, resource, sys, zipfile
import numpy as np
import torch

import dlx
from dlx.core.errors import ConfigError

torch.set_num_threads(1)
folder = sys.argv[1]


def npz(name, header_only=None, **arrays):
    """An .npz of these arrays; header_only: (key, shape) written as a header with no data,
    the way a zip bomb of zeros reads (numpy allocates the shape's bytes before reading)."""
    path = f"{folder}/{name}.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for k, a in arrays.items():
            buf = io.BytesIO()
            np.save(buf, a)
            zf.writestr(k + ".npy", buf.getvalue())
        if header_only:
            key, shape = header_only
            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
            zf.writestr(key + ".npy", buf.getvalue() + b"\0" * 64)
    return path


x, y = np.zeros((8, 3)), np.arange(8) % 2
cases = {
    "bomb": npz("bomb", ("x_train", (60_000, 10_000)), y_train=np.zeros(60_000, int), x_test=x, y_test=y),
    "label 1e12": npz("huge_label", x_train=x, y_train=np.r_[y[:7], 10**12], x_test=x, y_test=y),
    "label 5e6": npz("big_label", x_train=x, y_train=np.r_[y[:7], 5 * 10**6], x_test=x, y_test=y),
    "strings": npz("strings", x_train=np.array([["a", "b", "c"]] * 8), y_train=y, x_test=x, y_test=y),
    "0-d": npz("scalar", x_train=np.float64(1.0), y_train=y, x_test=x, y_test=y),
    "0 features": npz("empty", x_train=np.zeros((8, 0)), y_train=y, x_test=np.zeros((8, 0)), y_test=y),
}
# The memory bound: what this process maps now plus 1 GiB. Decompressing the bomb (4.8 GB)
# or building a 10^12-unit output layer would fail here with MemoryError, not a config error.
vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + 2**30, resource.getrlimit(resource.RLIMIT_AS)[1]))
out = {}
for what, path in cases.items():
    cfg = {"data": {"name": "arrays", "path": path}, "model": {"name": "mlp", "depth": 1, "width": 8},
           "train": {"steps": 2, "batch_size": 4}}
    try:
        dlx.train(cfg, save=False, quiet=True)
        out[what] = "trained"
    except ConfigError as e:
        out[what] = "config error: " + str(e)
    except BaseException as e:
        out[what] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
'''


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="the memory bound reads /proc (Linux)")
def test_hostile_npz_files_are_config_errors_before_any_large_allocation(tmp_path):
    """A zip bomb (a header promising 4.8 GB of zeros), labels that would ask for a 10^12-unit
    output layer, strings, a 0-d array and samples of 0 features: each a config error naming
    the problem, in a process whose address space is bounded to 1 GiB past what it maps."""
    script = tmp_path / "cases.py"
    script.write_text(_NPZ_CASES)
    p = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    expect = {
        "bomb": r"600,\d+,\d+ numbers .* more than the 268,435,456 dlx loads in memory",
        "label 1e12": r"a class label of 1,000,000,000,000 means .* more than the 100,000",
        "label 5e6": r"a class label of 5,000,000 means",
        "strings": r"x_train .* holds strings .* dlx trains on numbers",
        "0-d": r"x_train .* is a single number \(a 0-d array\)",
        "0 features": r"x_train .* has samples of shape \(0,\): no features",
    }
    for what, pattern in expect.items():
        assert out[what].startswith("config error: "), (what, out[what])
        assert re.search(pattern, out[what]), (what, out[what])


# ---------------------------------------------------------------- the small messages


def test_a_full_disk_at_start_says_so_and_leaves_no_write_test_file(tmp_path, monkeypatch):
    import errno

    from dlx.core.errors import DlxError
    from dlx.records.folders import prepare_runs_dir

    real = Path.write_text

    def full(self, *a, **k):  # the file is created, then the write fails: what ENOSPC does
        if self.name.startswith(".write-test"):
            real(self, "")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(DlxError, match=r"No space left on device\. Free some space on that disk, or pass --runs-dir"):
        prepare_runs_dir(tmp_path / "runs")
    assert list((tmp_path / "runs").iterdir()) == []


def test_a_failed_atomic_write_leaves_no_temp_file_and_a_deleted_folder_is_named_not_the_temp(tmp_path, monkeypatch):
    from dlx.records.folders import write_atomic

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, "replace", fail)
        with pytest.raises(OSError):
            write_atomic(tmp_path / "meta.json", "{}")
    assert list(tmp_path.iterdir()) == []
    gone = tmp_path / "run"
    with pytest.raises(FileNotFoundError) as e:
        write_atomic(gone / "meta.json", "{}")  # the run folder was deleted while the run ran
    assert e.value.filename == str(gone / "meta.json") and "folder was deleted" in str(e.value)


def test_figure_titles_are_text_not_tex_and_an_unknown_file_type_is_refused_before_drawing(tmp_path):
    from typer.testing import CliRunner

    import dlx
    from dlx.cli.app import app

    cfg = dict(TINY, train={"steps": 8, "batch_size": 32, "log_every": 4})
    run = dlx.train(cfg, runs_dir=tmp_path / "runs", quiet=True).path
    res = CliRunner().invoke(app, ["plot", str(run), "--title", "costs $5 and $x^{", "-o", str(tmp_path / "a.png")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    # Only the user's text is escaped: matplotlib's own labels (10^-1 ticks on a log axis) stay TeX.
    from matplotlib.text import Text

    from dlx.views.plots import build_figure, load_groups

    fig = build_figure(load_groups([run]), title="costs $5")
    assert fig._suptitle.get_text() == r"costs \$5"
    assert all(t._parse_math for t in fig.findobj(Text))
    res = CliRunner().invoke(app, ["plot", str(run), "-o", str(tmp_path / "a.xyz")])
    assert res.exit_code == 2 and "cannot write a figure as a.xyz: matplotlib writes" in res.output
    assert ".png" in res.output and not (tmp_path / "a.xyz").exists()


def test_a_second_ctrl_c_still_names_the_run_folder_and_how_to_resume(tmp_path, monkeypatch):
    from test_resume import ctrl_c_in_step
    from typer.testing import CliRunner

    from dlx.cli.app import app

    cfg = tiny_yaml(tmp_path, epochs=50, checkpoint_every=10)  # a checkpoint at step 12, then two Ctrl-C at 20
    ctrl_c_in_step(monkeypatch, at=20, presses=2)
    res = CliRunner().invoke(app, ["train", str(cfg), "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert res.exit_code == 130
    [run] = (tmp_path / "runs").iterdir()
    assert str(run) in res.output.replace("\n", "")
    assert f"continue it with: dlx train --resume {run.name} --runs-dir {tmp_path / 'runs'}" in res.output.replace(
        "\n", ""
    )

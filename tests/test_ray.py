"""RayExecutor: trials as Ray tasks on a real two-node localhost cluster, with kills.

The cluster test starts a head and a second node as separate `ray start --block`
process trees (each its own session, so a test can kill a node whole), all bound
to 127.0.0.1, with token auth on in every process. Ray resolves 127.0.0.1 to the
machine's outward IP when multi-node clusters are enabled, so:
  head:   RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (single-machine mode: every server on loopback)
  node:   `ray start` with services.resolve_ip_for_localhost patched to keep 127.0.0.1
          (a worker node refuses single-machine mode)
  driver: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, so ray.init keeps 127.0.0.1 too.
A real cluster needs none of this: its nodes use their real addresses.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from conftest import ROOT, TINY

import dlx
from dlx.core.errors import DlxError, UsageError
from dlx.many.executors import Trial
from dlx.many.ray_executor import MISSING_RAY, materialize_run, read_tree

STEPS = 2500  # about 2 s of training per trial on one core: long enough to be killed mid-way


def _cfg(seed: int, steps: int = STEPS) -> dict:
    c = copy.deepcopy(TINY)
    c["seed"] = seed
    c["train"] = {"steps": steps, "batch_size": 32, "log_every": 250}
    return c


# ------------------------------------------------------------ without a cluster


def test_a_run_folder_is_materialized_whole_under_its_id_and_nothing_is_left_beside_it(tmp_path):
    files = {
        "meta.json": b'{"status": "completed"}',
        "summary.json": b"{}",
        "metrics.jsonl": b"",
        "sub/deep/file.bin": bytes(range(256)) * 1000,
    }
    dest = materialize_run(files, tmp_path / "runs", "20260101-000000-run-abc123")
    assert dest == tmp_path / "runs" / "20260101-000000-run-abc123"
    assert read_tree(dest) == files  # every file, byte for byte, empty ones included
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [dest.name]  # no .tmp-* left


def test_materializing_the_same_run_twice_keeps_one_folder(tmp_path):
    runs = tmp_path / "runs"
    first = materialize_run({"a.txt": b"first"}, runs, "r1")
    again = materialize_run({"a.txt": b"second"}, runs, "r1")
    assert first == again and (first / "a.txt").read_bytes() == b"first"
    assert [p.name for p in runs.iterdir()] == ["r1"]


def test_a_file_name_leaving_the_run_folder_is_refused_and_no_folder_appears(tmp_path):
    runs = tmp_path / "runs"
    for bad in ("../escape.txt", "/etc/passwd", "a/../../b"):
        with pytest.raises(ValueError, match="refusing to write"):
            materialize_run({"ok.txt": b"x", bad: b"y"}, runs, "r1")
        assert list(runs.iterdir()) == []
    assert not (tmp_path / "escape.txt").exists()


def test_without_ray_installed_the_executor_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    from dlx.many.ray_executor import RayExecutor

    with pytest.raises(UsageError) as e:
        RayExecutor("127.0.0.1:6379")
    assert str(e.value) == MISSING_RAY == "the ray executor needs the extra: pip install 'dlx[ray]'"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_or_malformed_address_is_a_sentence_not_a_hang(monkeypatch):
    ray = pytest.importorskip("ray")
    from dlx.many.ray_executor import RayExecutor

    port = _free_port()  # nothing listens there
    tried = []
    # Refused by the port probe, never handed to ray.init (which retries for minutes).
    monkeypatch.setattr(ray, "init", lambda *a, **k: tried.append(k) or pytest.fail("ray.init was called"))
    with pytest.raises(DlxError) as e:
        RayExecutor(f"127.0.0.1:{port}")
    assert tried == []
    assert f"127.0.0.1:{port}" in str(e.value) and "ray start --head" in str(e.value)
    with pytest.raises(UsageError, match="not HOST:PORT"):
        RayExecutor("head-node-without-port")


# ------------------------------------------------------------ a real cluster


def _tree(root: int) -> list[int]:
    """root and every process below it (via /proc), parents first."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(d))
    out, stack = [], [root]
    while stack:
        p = stack.pop()
        out.append(p)
        stack += children.get(p, [])
    return out


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a `ray start --block` process and everything it started, all at once:
    a node dying whole. Ray workers sit in their own process groups, hence the walk."""
    pids = _tree(proc.pid)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def _wait_for(predicate, timeout: float, what: str, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout:g}s waiting for {what}")


NODE_CMD = (
    "import sys, ray._private.services as s; s.resolve_ip_for_localhost = lambda host: host; "
    "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"
)


class Cluster:
    """A head and one more node on 127.0.0.1, each a `ray start --block` process tree."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        # Ray puts Unix sockets under its temp dir (108-byte limit): keep that path short.
        self.ray_tmp = Path(tempfile.mkdtemp(prefix="dlxray-", dir="/tmp"))
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": os.urandom(16).hex(),
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONPATH": str(ROOT),
        }
        self.procs: dict[str, subprocess.Popen] = {}

    def _start(self, name: str, argv: list[str], env: dict) -> None:
        log = open(self.tmp / f"{name}.log", "wb")
        self.procs[name] = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.tmp
        )
        log.close()

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def _wait_started(self, name: str) -> None:
        def started():
            if self.procs[name].poll() is not None:
                pytest.fail(f"ray {name} exited early:\n{self.log(name)[-3000:]}")
            return "Ray runtime started" in self.log(name)

        _wait_for(started, 60, f"the ray {name} to start")

    COMMON = ["--num-cpus", "1", "--block", "--disable-usage-stats", "--object-store-memory", str(100 << 20)]

    def start(self) -> None:
        common = self.COMMON
        self._start(
            "head",
            [
                sys.executable,
                "-m",
                "ray.scripts.scripts",
                "start",
                "--head",
                "--node-ip-address",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--include-dashboard=false",
                "--dashboard-agent-listen-port",
                str(_free_port()),
                "--temp-dir",
                str(self.ray_tmp / "head"),
                *common,
            ],
            {**self.env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
        )
        self._wait_started("head")
        self.start_node()

    def start_node(self) -> None:
        """Start the second node (again, after a test killed it: a new node, its own temp dir)."""
        self.node_starts = getattr(self, "node_starts", 0) + 1
        self._start(
            "node",
            [
                sys.executable,
                "-c",
                NODE_CMD,
                "start",
                "--address",
                self.address,
                "--node-ip-address",
                "127.0.0.1",
                "--temp-dir",
                str(self.ray_tmp / f"node{self.node_starts}"),
                *self.COMMON,
            ],
            self.env,
        )
        self._wait_started("node")

    def node_pids(self) -> set[int]:
        return set(_tree(self.procs["node"].pid)) if self.procs["node"].poll() is None else set()

    def kill(self, name: str) -> None:
        if name in self.procs and self.procs[name].poll() is None:
            _kill_tree(self.procs[name])

    def stop(self) -> None:
        for name in ("node", "head"):
            try:
                self.kill(name)
            except Exception:
                pass
        import shutil

        shutil.rmtree(self.ray_tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    pytest.importorskip("ray")
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


DRIVER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import ray
    import dlx
    from dlx.many.executors import Trial
    from dlx.many.ray_executor import RayExecutor

    spec = json.loads(Path(sys.argv[1]).read_text())
    ex = RayExecutor(spec["address"], num_cpus=1, max_retries=2, env=spec["env"])
    # The second node may still be registering its CPU: ask again once both are counted.
    deadline = time.time() + 30
    while ray.cluster_resources().get("CPU", 0) < spec["cpus"] and time.time() < deadline:
        time.sleep(0.2)
    ex = RayExecutor(spec["address"], num_cpus=1, max_retries=2, env=spec["env"], stack=spec["stack"])
    progress = open(spec["progress"], "a")

    def on_row(r):
        progress.write(json.dumps({"id": f"trial-{r['trial']:04d}", "node": r["node"], "status": r["status"]}) + "\\n")
        progress.flush()

    try:
        if spec.get("sweep"):  # a real sweep: the parent lands each trial in the sweep folder
            sw = dlx.sweep(spec["sweep"], runs_dir=spec["runs_dir"], executor=ex, on_row=on_row)
            Path(spec["out"]).write_text(
                json.dumps({"max_parallel": ex.max_parallel, "folder": str(sw.folder), "notes": ex.notes})
            )
            sys.exit(0)
        trials = [Trial(t["id"], t["config"], Path(spec["runs_dir"])) for t in spec["trials"]]
        results = ex.run(trials)
    except KeyboardInterrupt:
        print("stopped cleanly", flush=True)
        sys.exit(130)
    rows = [{"id": r.id, "status": r.status, "run_path": str(r.run_path) if r.run_path else None,
             "attempts": r.attempts, "node": r.node, "error": r.error} for r in results]
    Path(spec["out"]).write_text(json.dumps({"max_parallel": ex.max_parallel, "results": rows, "notes": ex.notes}))
""")


def _driver(
    cluster: Cluster,
    work: Path,
    trials: list[Trial] | None,
    cpus: int,
    sweep: Path | None = None,
    stack: bool = True,
) -> tuple[subprocess.Popen, dict]:
    work.mkdir(exist_ok=True)
    (work / "started").mkdir()
    spec = {
        "address": cluster.address,
        "cpus": cpus,
        "env": {"DLX_TEST_STARTED_DIR": str(work / "started")},
        "runs_dir": str(work / "runs"),
        "progress": str(work / "progress.jsonl"),
        "out": str(work / "out.json"),
        "trials": [{"id": t.id, "config": t.config} for t in trials or []],
        "sweep": str(sweep) if sweep else None,
        "stack": stack,
    }
    (work / "spec.json").write_text(json.dumps(spec))
    (work / "driver.py").write_text(DRIVER)
    env = {**cluster.env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    proc = subprocess.Popen(
        [sys.executable, str(work / "driver.py"), str(work / "spec.json")],
        env=env,
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, spec


def _started(work: Path) -> list[dict]:
    """The hook files: one per task attempt that began, oldest first."""
    out = []
    for f in (work / "started").glob("*.json"):
        try:
            out.append(json.loads(f.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return sorted(out, key=lambda s: s["time"])


def _progress(work: Path) -> list[dict]:
    path = work / "progress.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.slow
def test_a_stack_on_ray_is_one_task_and_lands_the_local_executors_run_folders(cluster, tmp_path):
    import numpy as np

    from dlx.many.executors import LocalExecutor
    from dlx.many.stack_plan import plan_stacks

    configs = {f"s{i}": _cfg(seed=i, steps=300) for i in range(4)}
    configs["dropout"] = {**_cfg(seed=9, steps=300), "regularization": {"dropout": 0.1}}  # cannot stack
    for c in configs.values():
        c["train"]["log_every"] = 50
    work = tmp_path / "ray"
    proc, _ = _driver(cluster, work, [Trial(k, c, Path()) for k, c in configs.items()], cpus=2)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out[-5000:]
    report = _json(work / "out.json")
    # The oracle: the same trials on the local executor, stacked the same way (2 slots).
    local = LocalExecutor(max_parallel=2, threads_per_trial=1)
    alone = local.run([Trial(k, c, tmp_path / "local") for k, c in configs.items()])

    # Both follow plan_stacks for the 2 slots; what it says is the stack_plan tests' business.
    ids = list(configs)
    jobs, notes = plan_stacks(list(configs.values()), 2)
    stacked = {ids[i]: len(j) for j in jobs for i in j if len(j) > 1}
    assert report["notes"] == notes == local.notes and notes[0].startswith("stacked: 4 of 5 trials")
    assert sorted(stacked) == ["s0", "s1", "s2", "s3"]
    # A stack is one Ray task: its trials started together in one worker process.
    pid = {s["trial"]: s["pid"] for s in _started(work)}
    assert all(len({pid[ids[i]] for i in j}) == 1 for j in jobs)
    for row, res in zip(report["results"], alone):
        assert row["id"] == res.id and (row["status"], row["attempts"], res.status) == ("completed", 1, "completed")
        ray_run = Path(row["run_path"])
        assert ray_run.parent == work / "runs"
        assert _json(ray_run / "meta.json").get("stacked") == _json(res.run_path / "meta.json").get("stacked")
        assert _json(ray_run / "meta.json").get("stacked") == stacked.get(res.id)
        assert sorted(p.name for p in ray_run.iterdir()) == sorted(p.name for p in res.run_path.iterdir())
        got, want = _rows(ray_run), _rows(res.run_path)
        assert len(got) == len(want) >= 6 and [sorted(r) for r in got] == [sorted(r) for r in want]
        for a, b in zip(got, want):
            for k in a:
                if k != "time":
                    np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-6)
        fa, fb = (_json(p / "summary.json")["final"] for p in (ray_run, res.run_path))
        for k in ("train_loss", "test_loss", "train_acc", "test_acc"):
            np.testing.assert_allclose(fa[k], fb[k], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_a_sweep_on_two_nodes_survives_a_killed_worker_and_a_dead_node_with_one_folder_per_trial(cluster, tmp_path):
    import yaml

    t0 = time.monotonic()
    work = tmp_path / "sweep"
    work.mkdir()
    n = 6
    (work / "base.yaml").write_text(yaml.safe_dump(_cfg(seed=0)))
    (work / "sweep.yaml").write_text(
        yaml.safe_dump(
            {"base": "base.yaml", "metric": "test_acc", "strategy": "grid", "space": {"seed": list(range(n))}}
        )
    )
    # --no-stack: one task per trial, so each kill below hits one trial (stacks: the tests below).
    proc, spec = _driver(cluster, work, None, cpus=2, sweep=work / "sweep.yaml", stack=False)
    try:
        # 1. SIGKILL the worker process of the first trial to start, mid-trial.
        first = _wait_for(lambda: _started(work), 60, "a first trial to start")[0]
        time.sleep(0.5)
        os.kill(first["pid"], signal.SIGKILL)

        # 2. Once the second node has finished a trial, kill that node whole while it
        #    runs its next one.
        node_id = _wait_for(
            lambda: next((s["node"] for s in _started(work) if s["pid"] in cluster.node_pids()), None),
            60,
            "a trial on the second node",
        )
        _wait_for(
            lambda: any(r["node"] == node_id for r in _progress(work)), 60, "a trial to complete on the second node"
        )
        done = {r["id"] for r in _progress(work)}
        victim = _wait_for(
            lambda: next(
                (s for s in _started(work) if s["node"] == node_id and s["trial"] not in done and _alive(s["pid"])),
                None,
            ),
            60,
            "the second node to start another trial",
        )
        time.sleep(0.5)
        cluster.kill("node")

        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, out[-5000:]
    report = json.loads((work / "out.json").read_text())
    folder = Path(report["folder"])
    results = json.loads((folder / "results.json").read_text())
    rows = sorted(results["rows"], key=lambda r: r["trial"])
    by_id = {f"trial-{r['trial']:04d}": r for r in rows}

    assert report["max_parallel"] == 2  # the cluster's 2 CPUs / 1 CPU per trial
    assert [r["trial"] for r in rows] == list(range(n)) and results["done"] == n
    assert all(r["status"] == "completed" and r["error"] is None for r in rows), rows
    assert len({r["node"] for r in rows}) == 2  # trials landed from both nodes
    # Both killed attempts were retried and finished elsewhere / later, counted exactly.
    assert by_id[first["trial"]]["attempts"] >= 2
    assert by_id[victim["trial"]]["attempts"] >= 2 and by_id[victim["trial"]]["node"] != node_id
    assert all(r["attempts"] <= 3 for r in rows)

    # Exactly once: one complete run folder per trial in the sweep folder, nothing in
    # flight left behind (no duplicate, no .tmp-*, no staging).
    assert sorted(p.name for p in (folder / "trials").iterdir()) == [f"trial-{i:04d}" for i in range(n)]
    assert not (folder / ".staging").exists()
    for i in range(n):
        trial = folder / "trials" / f"trial-{i:04d}"
        meta = json.loads((trial / "meta.json").read_text())
        summary = json.loads((trial / "summary.json").read_text())
        assert meta["status"] == "completed" and meta["seed"] == i
        assert summary["steps"] == STEPS
        assert (trial / "config.yaml").is_file() and (trial / "metrics.jsonl").stat().st_size > 0
    assert json.loads((folder / "sweep.json").read_text())["status"] == "completed"

    # The head's scratch folders were removed: by each task's finally, and the killed
    # worker's by a later task on that node (its pid was dead).
    [scratch] = (cluster.ray_tmp / "head").rglob("dlx-scratch")
    assert list(scratch.iterdir()) == []
    print(
        f"\ncluster sweep with 2 kills: {elapsed:.1f}s; killed {first['trial']} (worker), "
        f"{victim['trial']} (node); attempts {[r['attempts'] for r in rows]}"
    )


@pytest.mark.slow
@pytest.mark.slow
def test_a_config_error_on_the_cluster_is_reported_once_and_not_retried(cluster, tmp_path):
    bad = _cfg(seed=0, steps=5)
    bad["model"]["widht"] = 8
    proc, _ = _driver(cluster, tmp_path / "bad", [Trial("bad", bad, Path())], cpus=1)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    [r] = json.loads((tmp_path / "bad" / "out.json").read_text())["results"]
    assert (r["status"], r["attempts"], r["run_path"]) == ("config_error", 1, None)
    assert "model.widht" in r["error"]


@pytest.mark.slow
def test_dlx_compare_over_seeds_runs_its_stack_on_the_cluster(cluster, tmp_path):
    config = tmp_path / "seeds.yaml"
    cfg = dict(_cfg(seed=0, steps=40), name="seeds")
    cfg["train"]["log_every"] = 10
    config.write_text(json.dumps(cfg))  # JSON is YAML
    runs = tmp_path / "runs"
    env = {**cluster.env, "COLUMNS": "200", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # see the module docstring
    p = subprocess.run(
        [sys.executable, "-m", "dlx", "compare", str(config), "--seeds", "3", "--executor", "ray",
         "--address", cluster.address, "--max-parallel", "1", "--runs-dir", str(runs)],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "stacked: 3 of 3 trials" in p.stdout + p.stderr and "over 3 seeds" in p.stdout
    folders = sorted(d for d in runs.iterdir() if d.is_dir())
    assert len(folders) == 3
    assert sorted(_json(d / "meta.json")["seed"] for d in folders) == [0, 1, 2]
    assert all(_json(d / "meta.json").get("stacked") == 3 for d in folders)
    # The same three trainings on this machine give the same numbers.
    local = dlx.compare(config, seeds=3, runs_dir=tmp_path / "local", quiet=True, figure=False, max_parallel=1)
    want = sorted(r.final["test_loss"] for rs in local.runs.values() for r in rs)
    got = sorted(_json(d / "summary.json")["final"]["test_loss"] for d in folders)
    assert got == pytest.approx(want, rel=1e-4, abs=1e-6)


@pytest.mark.slow
def test_ctrl_c_cancels_the_running_trial_and_the_driver_exits_promptly(cluster, tmp_path):
    work = tmp_path / "interrupted"
    proc, _ = _driver(cluster, work, [Trial("long", _cfg(seed=0, steps=10**6), Path())], cpus=1)
    try:
        started = _wait_for(lambda: _started(work), 60, "the trial to start")[0]
        mine = f"dlx-scratch/{started['pid']}-*"
        _wait_for(lambda: list(cluster.ray_tmp.rglob(mine)), 10, "the trial's scratch folder")
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)  # promptly: a trial of 10**6 steps is not waited for
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "stopped cleanly" in out, out[-3000:]
    assert not (work / "runs").exists() or list((work / "runs").iterdir()) == []
    # The task was cancelled, not left training: its scratch folder is gone within the grace time.
    _wait_for(lambda: not list(cluster.ray_tmp.rglob(mine)), 10, "the cancelled task's scratch folder to be removed")


@pytest.mark.slow
def test_a_stack_whose_node_dies_mid_stack_is_retried_whole_and_each_trial_lands_once(cluster, tmp_path):
    import yaml

    if cluster.procs["node"].poll() is not None:
        cluster.start_node()  # the sweep test above killed it
    work = tmp_path / "stacks"
    work.mkdir()
    n, steps = 4, 2 * STEPS
    (work / "base.yaml").write_text(yaml.safe_dump(_cfg(seed=0, steps=steps)))
    (work / "sweep.yaml").write_text(
        yaml.safe_dump(
            {"base": "base.yaml", "metric": "test_acc", "strategy": "grid", "space": {"seed": list(range(n))}}
        )
    )
    proc, _ = _driver(cluster, work, None, cpus=2, sweep=work / "sweep.yaml")
    node_tmp = cluster.ray_tmp / f"node{cluster.node_starts}"
    try:
        # The stack on the second node: its trials started in one worker there ...
        first = _wait_for(
            lambda: next((s for s in _started(work) if s["pid"] in cluster.node_pids()), None),
            90,
            "a stack to start on the second node",
        )
        pid, node_id = first["pid"], first["node"]

        # ... and are mid-training: each has logged rows in the task's scratch folder.
        def training():
            stack = sorted(s["trial"] for s in _started(work) if s["pid"] == pid)
            files = list(node_tmp.rglob(f"dlx-scratch/{pid}-*/t*/*/metrics.jsonl"))
            return len(stack) >= 2 and len(files) == len(stack) and all(f.stat().st_size > 0 for f in files) and stack

        victims = _wait_for(training, 60, "the stack's trials to log their first rows")
        cluster.kill("node")
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out[-5000:]
    report = _json(work / "out.json")
    folder = Path(report["folder"])
    rows = {f"trial-{r['trial']:04d}": r for r in _json(folder / "results.json")["rows"]}

    assert report["notes"][0].startswith("stacked: 4 of 4 trials train as 2 stacked model(s) of 2, 2")
    assert len(victims) == 2 and sorted(rows) == [f"trial-{i:04d}" for i in range(n)]
    assert all(r["status"] == "completed" and r["error"] is None for r in rows.values()), rows
    # The dead stack ran again, whole (both trials in one new task), on the node left; counted exactly.
    assert [(rows[v]["attempts"], rows[v]["node"] != node_id) for v in victims] == [(2, True)] * 2
    assert all(r["attempts"] == 1 for t, r in rows.items() if t not in victims)
    retried = {s["pid"] for s in _started(work) if s["trial"] in victims and s["pid"] != pid}
    assert len(retried) == 1
    # One complete run folder per trial, each a stacked run, nothing in flight left behind.
    assert sorted(p.name for p in (folder / "trials").iterdir()) == sorted(rows)
    assert not (folder / ".staging").exists()
    for i in range(n):
        trial = folder / "trials" / f"trial-{i:04d}"
        meta = _json(trial / "meta.json")
        assert (meta["status"], meta["seed"], meta["stacked"]) == ("completed", i, 2)
        assert _json(trial / "summary.json")["steps"] == steps
        assert len(_rows(trial)) == steps // 250


def test_dlx_sweep_with_an_unreachable_ray_address_fails_before_making_a_sweep(tmp_path):
    pytest.importorskip("ray")
    import yaml

    (tmp_path / "base.yaml").write_text(yaml.safe_dump(_cfg(seed=0, steps=5)))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"base": "base.yaml", "space": {"seed": [0, 1]}}))
    port = _free_port()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlx.cli.app",
            "sweep",
            "s.yaml",
            "--executor",
            "ray",
            "--address",
            f"127.0.0.1:{port}",
            "--runs-dir",
            "runs",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and f"cannot reach a Ray cluster at 127.0.0.1:{port}" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "runs").exists()

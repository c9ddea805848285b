"""RayExecutor: trials as Ray tasks on a cluster, with the same run() as LocalExecutor.

Needs the optional extra: pip install 'dlx[ray]'. dlx itself (same version, same
Python) must be installed on every node of the cluster: a task imports dlx there.

Stacks (stack=True, the default, as LocalExecutor): trials that share an architecture
and data (dlx.many.stack_plan.plan_stacks, for as many slots as run at once) are one
Ray task that trains them as one stacked model (dlx.many.stacking.run_stacked); each
still gets its own run folder and result. Trials that cannot stack are one task each.
on_note(text) hears plan_stacks' notes (what was stacked, what was not and why).

No shared filesystem is needed. A task trains into a scratch folder on its node
(under that node's Ray temp dir; a stack: one sub-folder per trial), reads each
finished run folder back as {relative path: bytes}, deletes the scratch folder and
returns the files with the results and the node id. Only the parent (this process)
writes into trial.runs_dir: it writes the files under .tmp-<run_id> and renames that
to <run_id>, so a run folder appears whole or not at all.

Retries: each attempt is one Ray task submitted with max_retries=0; when its worker
or node dies (WorkerCrashedError, NodeDiedError, a lost result object) the executor
submits the trial (a stack: the whole stack) again, at most max_retries more times, so
TrialResult.attempts is exact. Errors in training are not retried: jobs.run_job and
run_stacked catch them and return status failed / config_error. A trial whose every
attempt died ends "crashed". A trial with `resume` (a stopped sweep's) starts over
here, like any other: its checkpoint is on the driver's machine, not on the nodes.

Connecting: RayExecutor(address) calls ray.init(address=...) unless Ray is already
initialized in this process. address=None attaches to RAY_ADDRESS or the cluster
last started on this machine with `ray start`, else starts a local Ray instance.

Authentication (token auth, as in Ray 2.60): a cluster started with
RAY_AUTH_MODE=token accepts only processes presenting its token, and ray.init with
an explicit address turns token auth on only when RAY_AUTH_MODE=token is set in
that process. So every process (head, each node, the dlx driver) needs the same:
    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=<the same secret everywhere>
(or RAY_AUTH_TOKEN_PATH naming a file that holds it; ~/.ray/auth_token is read
when neither is set). A missing or wrong token makes ray.init fail after about 20 s
with "Failed to connect"; that is reported as a DlxError naming these variables.
`ray start` without RAY_AUTH_MODE runs without auth unless ~/.ray/auth_token exists;
a local instance started by ray.init() (address=None, no cluster found) turns token
auth on and writes ~/.ray/auth_token if absent. Ray's local_mode no longer exists.

A typical cluster:
    head$   ray start --head --port 6379 --num-cpus 8
    node$   ray start --address HEAD_IP:6379 --num-cpus 8
    driver$ dlx sweep SWEEP.yaml --executor ray --address HEAD_IP:6379

Test hook: if DLX_TEST_STARTED_DIR is set in the task's environment (pass it in
`env`, which reaches tasks as runtime_env env_vars), each task writes
<dir>/<trial id>.<pid>.json = {"trial", "pid", "node", "time"} as it starts (a stack:
one file per trial, the same pid), so a test can find a worker process (or its node)
and kill it mid-trial. Never set it otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable

from dlx.core.errors import DlxError, UsageError
from dlx.many.executors import Trial, TrialQueue, TrialResult, next_job
from dlx.many.stack_plan import StackTally

MISSING_RAY = "the ray executor needs the extra: pip install 'dlx[ray]'"
WAIT_S = 0.5  # ray.wait timeout: how often the loop comes back to notice Ctrl-C
PROBE_TIMEOUT_S = 5.0
CANCEL_GRACE_S = 5.0
SCRATCH = "dlx-scratch"  # folder in each node's Ray temp dir holding running trials


def import_ray():
    """The ray module, or a UsageError telling how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError(MISSING_RAY) from None
    return ray


# ------------------------------------------------------------ files of a run folder


def read_tree(root: Path) -> dict[str, bytes]:
    """Every file under root as {posix relative path: bytes}."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _safe_relpath(rel: str) -> PurePosixPath:
    p = PurePosixPath(rel)
    # The files come over the network: never let a name write outside the run folder.
    if p.is_absolute() or not p.parts or ".." in p.parts:
        raise ValueError(f"refusing to write {rel!r}: not a plain path inside a run folder")
    return p


def materialize_run(files: dict[str, bytes], runs_dir: Path, run_id: str) -> Path:
    """Write a run folder's files as runs_dir/<run_id>, atomically: all of them or nothing.

    Returns the folder. The files are written and fsynced under .tmp-<run_id> first,
    then the folder is renamed; if <run_id> already exists (the same run written
    twice) the copy is dropped and the existing folder returned.
    """
    from dlx.records.folders import land_run, prepare_runs_dir

    _safe_relpath(run_id)
    if "/" in run_id:
        raise ValueError(f"run id {run_id!r} contains a '/'")
    runs_dir = prepare_runs_dir(Path(runs_dir))
    dest = runs_dir / run_id
    tmp = runs_dir / f".tmp-{run_id}"
    shutil.rmtree(tmp, ignore_errors=True)  # left by a parent killed mid-write
    tmp.mkdir()
    try:
        for rel, data in files.items():
            path = tmp.joinpath(*_safe_relpath(rel).parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    land_run(tmp, dest)
    return dest


# ------------------------------------------------------------ the task (on a worker)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _clean_stale_scratch(root: Path) -> None:
    """Remove scratch folders of tasks whose worker was killed (no finally ran for them)."""
    for d in root.glob("*-*"):
        pid = d.name.split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def _started_hook(trial_id: str, node: str) -> None:
    where = os.environ.get("DLX_TEST_STARTED_DIR")
    if not where:
        return
    info = {"trial": trial_id, "pid": os.getpid(), "node": node, "time": time.time()}
    path = Path(where) / f"{trial_id}.{os.getpid()}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(info))
    os.replace(tmp, path)  # a test polling the folder never reads half a file


def _scratch(ctx) -> Path:
    """A fresh scratch folder for this task, under this node's Ray temp dir."""
    try:
        root = Path(ctx.get_temp_dir()) / SCRATCH
        root.mkdir(parents=True, exist_ok=True)
    except (OSError, AssertionError, AttributeError):
        root = Path(tempfile.gettempdir()) / SCRATCH
        root.mkdir(parents=True, exist_ok=True)
    _clean_stale_scratch(root)
    # The pid in the name lets a later task on this node remove it if this worker is killed.
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=root))


def _packed(result: dict[str, Any]) -> dict[str, Any]:
    """A trial's result with its run folder's files, for the parent to land."""
    run_id, files = None, {}
    if result.get("run_path"):
        src = Path(result["run_path"])
        run_id, files = src.name, read_tree(src)
    result["run_path"] = None  # a path on that node; the parent sets its own
    return {"result": result, "run_id": run_id, "files": files}


def run_trial_task(trial_id: str, config: dict, threads: int) -> dict[str, Any]:
    """The body of one Ray task: train config on this node, return result + run files."""
    import ray

    from dlx.many.jobs import run_job

    started = time.time()
    ctx = ray.get_runtime_context()
    node = ctx.get_node_id()
    _started_hook(trial_id, node)
    work = _scratch(ctx)
    try:
        result, code = run_job(config, work, threads, started)
        out = _packed(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {**out, "code": code, "node": node, "pid": os.getpid()}


def run_stack_task(trial_ids: list[str], configs: list[dict], threads: int) -> dict[str, Any]:
    """The body of one Ray task for a stack: train these configs together on this node
    (dlx.many.stacking.run_stacked, each trial in its own sub-folder of the scratch folder);
    return {"trials": [result + run files, one per config], "node", "pid"}."""
    import ray

    started = time.time()
    ctx = ray.get_runtime_context()
    node = ctx.get_node_id()
    for trial_id in trial_ids:
        _started_hook(trial_id, node)
    work = _scratch(ctx)
    try:
        import torch

        from dlx.many.stacking import run_stacked

        # The stack's thread budget is the task's CPUs (run_stacked sizes its threads within it).
        torch.set_num_threads(max(1, int(threads)))
        results = run_stacked(configs, [work / f"t{k}" for k in range(len(configs))], started)
        trials = [_packed(r) for r in results]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"trials": trials, "node": node, "pid": os.getpid()}


# ------------------------------------------------------------ connecting


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a plain HOST:PORT address; None for forms Ray resolves itself."""
    if address in ("auto", "local") or "://" in address:
        return None
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UsageError(
            f"--address {address!r} is not HOST:PORT; give the Ray head's address, "
            f"e.g. 10.0.0.5:6379 (the port passed to `ray start --head --port`)"
        )
    return host.strip("[]"), int(port)


def connect(address: str | None) -> bool:
    """ray.init(address) unless Ray is initialized already; True when this call connected."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    if address:
        hp = _host_port(address)
        if hp is not None:
            # ray.init retries an unreachable address for minutes: check the port first.
            try:
                socket.create_connection(hp, timeout=PROBE_TIMEOUT_S).close()
            except OSError as e:
                raise DlxError(
                    f"cannot reach a Ray cluster at {address}: {e.strerror or e}. "
                    f"Start one there with `ray start --head --port {hp[1]}`, or fix "
                    f"--address (HOST:PORT of the head node)."
                ) from None
    try:
        # log_to_driver=False: the trials' output stays in Ray's logs; dlx prints its own rows.
        ray.init(address=address or None, log_to_driver=False, logging_level=logging.WARNING)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # ConnectionError, RuntimeError, AuthenticationError, ValueError...
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise DlxError(
            f"cannot connect to {where}: {type(e).__name__}: {e}. Check that it is running "
            f"(`ray status --address {address or 'HOST:PORT'}`), that this shell has the same "
            f"RAY_AUTH_MODE and RAY_AUTH_TOKEN as the cluster (or neither, if it runs without "
            f"token auth), and the same Ray and Python versions."
        ) from None
    return True


# ------------------------------------------------------------ the executor


def _retryable(ray, e: BaseException) -> bool:
    """A system failure (worker or node died, result lost): another attempt may succeed."""
    exc = ray.exceptions
    return not isinstance(e, (exc.RayTaskError, exc.RuntimeEnvSetupError, exc.TaskCancelledError))


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


class RayExecutor:
    """Runs trials as Ray tasks (num_cpus / num_gpus each) on a Ray cluster.

    stack (default): trials that can train together are one task, a stacked model
    (dlx.many.stacking); each still gets its own run folder and result. on_note(text)
    hears what was stacked and what could not be, and why (also kept in .notes).
    """

    def __init__(
        self,
        address: str | None = None,
        num_cpus: float = 1,
        num_gpus: float = 0,
        max_retries: int = 2,
        max_parallel: int | None = None,
        env: dict | None = None,
        stack: bool = True,
        on_note: Callable[[str], Any] | None = None,
    ):
        if num_cpus < 0 or num_gpus < 0:
            raise UsageError("num_cpus and num_gpus per trial must be >= 0")
        self.ray = import_ray()
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.max_retries = max(0, int(max_retries))
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.threads = max(1, int(num_cpus))
        self._connected = connect(address)
        resources = self.ray.cluster_resources()
        cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
        where = f"the Ray cluster at {address}" if address else "the local Ray instance"
        if num_gpus > 0 and gpus < num_gpus:
            raise UsageError(
                f"each trial asks for {num_gpus:g} GPU(s) and {where} has {gpus:g}; "
                f"add GPU nodes or leave the GPU option out"
            )
        if num_cpus > cpus:
            raise UsageError(
                f"each trial asks for {num_cpus:g} CPU(s) and {where} has {cpus:g}; ask for fewer CPUs per trial"
            )
        # Default: as many trials as fit at once (on the nodes present now); never more,
        # so the trials iterable is only asked for a point when a slot is really free.
        fit = cpus / num_cpus if num_cpus > 0 else max(cpus, 1.0)
        if num_gpus > 0:
            fit = min(fit, gpus / num_gpus)
        self.max_parallel = max(1, int(max_parallel or int(fit + 1e-9)))
        self.stack = stack
        self.on_note = on_note
        self.notes: list[str] = []  # every note given, in order (also for callers without on_note)
        self.tally = StackTally()  # what was stacked, over every window planned
        self._remote = None
        self._remote_stack = None

    def _note(self, text: str) -> None:
        self.notes.append(text)
        if self.on_note is not None:
            self.on_note(text)

    def close(self) -> None:
        """Disconnect from Ray if this executor connected (a local instance it started stops)."""
        if self._connected and self.ray.is_initialized():
            self.ray.shutdown()
        self._connected = False

    def _submit(self, trials: list[Trial]):
        """One Ray task for this job: a lone trial, or a stack of several."""
        if self._remote is None:
            self._remote = self.ray.remote(run_trial_task)
            self._remote_stack = self.ray.remote(run_stack_task)
        opts: dict[str, Any] = {
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "max_retries": 0,
        }  # retried here, so attempts are counted
        if self.env:
            opts["runtime_env"] = {"env_vars": self.env}
        if len(trials) == 1:
            return self._remote.options(**opts).remote(trials[0].id, trials[0].config, self.threads)
        ids, configs = [t.id for t in trials], [t.config for t in trials]
        return self._remote_stack.options(**opts).remote(ids, configs, self.threads)

    def _finish(self, trials: list[Trial], ref, number: int) -> list[TrialResult] | None:
        """The attempt's TrialResults (one per trial of the job), or None when its worker
        died and the job (a stack: all of it) should be retried."""
        ray = self.ray

        def ended(status: str, error: str) -> list[TrialResult]:
            return [
                TrialResult(
                    id=t.id, status=status, run_path=None, summary=None, metrics=None, attempts=number, error=error
                )
                for t in trials
            ]

        try:
            out = ray.get(ref)
        except ray.exceptions.RayError as e:
            if _retryable(ray, e):
                if number <= self.max_retries:
                    return None
                return ended(
                    "crashed",
                    f"the Ray worker running it died on all {number} attempts "
                    f"(last: {type(e).__name__}: {_first_line(e)})",
                )
            error = f"{type(e).__name__}: {e}"
            if "No module named 'dlx" in error:
                error += "\n(dlx must be installed on every node of the Ray cluster)"
            return ended("failed", error)
        node = out.get("node")
        return [self._landed(t, one, number, node) for t, one in zip(trials, out.get("trials") or [out])]

    @staticmethod
    def _landed(trial: Trial, out: dict, number: int, node: str | None) -> TrialResult:
        """A trial's result from its task, its run folder written into trial.runs_dir."""
        result = out["result"]
        run_path = None
        if out.get("run_id"):
            run_path = materialize_run(out["files"], trial.runs_dir, out["run_id"])
        return TrialResult(
            id=trial.id,
            status=result["status"],
            run_path=run_path,
            summary=result.get("summary"),
            metrics=result.get("metrics"),
            attempts=number,
            error=result.get("error"),
            started=result.get("started"),
            ended=result.get("ended"),
            node=node,
        )

    def _next_job(self, queue: TrialQueue, planned: list[list[int]]) -> tuple[list[int], int] | None:
        return next_job(queue, planned, self.stack, self.max_parallel, self._note, self.tally)

    def run(self, trials: Iterable[Trial], on_result: Callable[[TrialResult], Any] | None = None) -> list[TrialResult]:
        """Run every trial; results in pull order, on_result(result) called as each finishes.

        Trials are pulled from the iterable only when a slot is free: one at a time, or
        with stacking as many as a stack per slot can take. Ctrl-C cancels the running
        tasks and re-raises KeyboardInterrupt.
        """
        ray = self.ray
        queue = TrialQueue(trials)
        pulled = queue.pulled
        results: dict[int, TrialResult] = {}
        running: dict[Any, tuple[list[int], int]] = {}  # ObjectRef -> (trial indices, attempt number)
        planned: list[list[int]] = []  # pulled and planned, not submitted yet
        try:
            while True:
                while len(running) < self.max_parallel:
                    nxt = self._next_job(queue, planned)
                    if nxt is None:
                        break
                    indices, n = nxt
                    running[self._submit([pulled[i] for i in indices])] = (indices, n)
                if not running:
                    break
                done, _ = ray.wait(list(running), num_returns=1, timeout=WAIT_S)
                for ref in done:
                    indices, n = running.pop(ref)
                    res = self._finish([pulled[i] for i in indices], ref, n)
                    if res is None:
                        queue.retry(indices, n + 1)
                        continue
                    for i, r in zip(indices, res):
                        results[i] = r
                        if on_result is not None:
                            on_result(r)
        except BaseException:
            self._cancel(list(running))
            raise
        return [results[i] for i in range(len(pulled))]

    def _cancel(self, refs: list, grace_s: float = CANCEL_GRACE_S) -> None:
        """Cancel running tasks: KeyboardInterrupt in each (its run ends, its scratch is
        removed), then kill the workers of those still running after grace_s."""
        ray = self.ray
        for ref in refs:
            try:
                ray.cancel(ref)
            except Exception:
                pass  # already finished or its node is gone
        left = refs
        try:
            if refs:
                _, left = ray.wait(refs, num_returns=len(refs), timeout=grace_s)
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: stop waiting, kill the rest now
        except Exception:
            pass
        for ref in left:
            try:
                ray.cancel(ref, force=True)
            except Exception:
                pass

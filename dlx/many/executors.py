"""Executors run trials (config dicts) as ordinary dlx train runs; compare and sweep use them.

Every executor has one method, run(trials, on_result): it pulls trials from the iterable
only when it has a free slot (so a sweep can ask its search strategy for the next point
after the previous results were told), calls on_result as each trial ends, and returns
the results in the order the trials were pulled. A result's run_path is a run folder on
this machine, inside the trial's runs_dir.

LocalExecutor starts one fresh `python -m dlx.many.worker` process per trial attempt (never a
fork of a process holding torch state), at most max_parallel at once, and retries
attempts whose process died. A retry starts a new run folder: the dead attempt's folder
(if it got that far) stays behind with meta status "running" (killed) or "failed".
With gpus_per_trial each attempt holds a GPU slot, handed to it as CUDA_VISIBLE_DEVICES.
The Ray executor (dlx/ray_executor.py, the optional extra dlx[ray]) has the same shape.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from dlx.many.stack_plan import MAX_STACK, StackTally  # light: json and math only (workers start before torch loads)

STATUSES = ("completed", "diverged", "interrupted", "failed", "config_error", "crashed", "pruned")
POLL_S = 0.05
STDERR_TAIL = 2000


def stop_signals_raise_keyboard_interrupt():
    """SIGTERM, SIGHUP and SIGQUIT to this (parent) process act as Ctrl-C while trials run:
    KeyboardInterrupt, so the executor stops its workers (their runs end interrupted) instead
    of dying and leaving them running in their own sessions (signals.handling: main thread
    only, a signal ignored at start stays ignored, the previous handlers come back)."""
    from dlx.core.signals import handling

    def handler(signum, frame):
        raise KeyboardInterrupt

    return handling((signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT), handler)


# The executor's temp folder (each attempt's result and stderr) is named after the driver's
# pid: its workers remove it if the driver dies (worker._stop_when_orphaned), and the next
# executor on this machine removes any whose driver and workers all died at once.
WORKDIR_PREFIX = "dlx-exec-"


def remove_stale_workdirs() -> None:
    """Remove the temp folders of drivers that are gone (an orphaned worker still stopping in
    one finds it gone and writes nothing there: its result has no reader)."""
    from dlx.records.folders import pid_alive

    for d in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*-*"):
        pid = d.name[len(WORKDIR_PREFIX) :].partition("-")[0]
        if pid.isdigit() and not pid_alive(pid) and d.is_dir():
            shutil.rmtree(d, ignore_errors=True)


@dataclass
class Trial:
    """One config to train; id is unique within a batch and used for nothing on disk."""

    id: str
    config: dict
    runs_dir: Path
    # A run folder of this trial's config that stopped (a sweep's driver was stopped, a full
    # disk): the worker continues it from its checkpoint (dlx train --resume), alone, never
    # stacked. The Ray executor trains on other machines and starts such a trial over.
    resume: Path | None = None


@dataclass
class TrialResult:
    """How a trial ended; error is a person-readable reason for config_error / failed / crashed."""

    id: str
    status: str  # completed | diverged | pruned | interrupted | failed | config_error | crashed
    run_path: Path | None
    summary: dict | None
    metrics: list | None
    attempts: int
    error: str | None
    # Wall-clock times (time.time()) of the last attempt's worker process, as it measured them.
    started: float | None = None
    ended: float | None = None
    node: str | None = None  # where it ran: a Ray node id; None for this machine


class _Loops(list):
    """The stacks a driver-trained job has started (run_stacked appends each): stop() ends
    them after their step, as a first Ctrl-C ends a worker's, and one started later too."""

    stopping = False

    def append(self, loop) -> None:
        super().append(loop)
        if self.stopping:
            self.stop()

    def stop(self) -> None:
        self.stopping = True
        for loop in self:
            loop._signal = loop._signal or "SIGINT"
            loop._interrupted = True


class _Workdir:
    """The executor's temp folder (workers' results and stderr), made when a worker first
    needs it: a compare the driver trains alone leaves none behind, even killed outright."""

    def __init__(self, tmp: tempfile.TemporaryDirectory | None = None):
        self._tmp = tmp

    @property
    def path(self) -> Path:
        if self._tmp is None:
            remove_stale_workdirs()
            self._tmp = tempfile.TemporaryDirectory(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-")
        return Path(self._tmp.name)

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


class _DriverSlot:
    """The driver's own slot: a stacked job trained in a thread of this process, which
    has imported torch already, instead of one more worker importing it again (on two
    cores, three torch imports at once were half of a 9-trial compare). It looks like a
    warm worker to the executor's loop: one line {"code": N} on a pipe once the job's
    result is written. Only where dlx owns the process (the dlx command): the stack sets
    torch's thread count, which is process-wide."""

    def __init__(self):
        read, self._write = os.pipe()
        self.stdout = os.fdopen(read, "r")
        self.thread: threading.Thread | None = None
        self.loops = _Loops()
        self.busy: _Attempt | None = None

    def start(self, job: dict) -> None:
        self.loops = _Loops()
        self.thread = threading.Thread(target=self._train, args=(job, self.loops), name="dlx-driver-stack", daemon=True)
        self.thread.start()

    def _train(self, job: dict, loops: _Loops) -> None:
        from dlx.many.worker import run_trials

        code = 1
        try:
            results, code = run_trials(job, started=time.time(), loops=loops)
            self.busy.driver_result = {"results": results, "pid": os.getpid()}
        except BaseException:  # no result: the executor retries the job (in a worker)
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            with contextlib.suppress(OSError):
                os.write(self._write, (json.dumps({"code": code}) + "\n").encode())

    def stop(self, grace_s: float) -> None:
        """End the running stack after its step (its trials interrupted, checkpointed)."""
        self.loops.stop()
        if self.thread is not None:
            self.thread.join(grace_s)

    def close(self) -> None:
        if self.thread is not None and self.thread.is_alive():
            return  # still stopping (past the grace): its pipe stays open for its last line
        with contextlib.suppress(OSError):
            os.close(self._write)
        self.stdout.close()


@dataclass
class _Attempt:
    """One try at a job: one trial, or a stack of trials trained together in one process."""

    indices: list[int]  # positions in the trial list
    number: int  # 1-based attempt number
    result_path: Path
    proc: subprocess.Popen | None = None  # a fresh process for this attempt (warm=False)
    worker: "_Worker | None" = None  # or the warm worker running it
    driver: "_DriverSlot | None" = None  # or this process (a stack in a thread)
    driver_result: dict | None = None  # the driver's job's result, kept in memory
    stderr_path: Path | None = None
    stderr_file: Any = field(repr=False, default=None)
    slot: int | None = None  # index into LocalExecutor.slots while it runs


@dataclass
class _Worker:
    """A warm worker: one `python -m dlx.many.worker --serve` process that imported torch once and
    runs job after job (each a clean run: its own seeds, threads and signal handlers)."""

    proc: subprocess.Popen
    stderr_path: Path
    stderr_file: Any = field(repr=False)
    slot: int | None = None
    busy: _Attempt | None = None


class TrialQueue:
    """The trials an executor still owes: retries first, then new ones pulled from the
    iterable one at a time (so a sweep asks for its next point only when a slot is free)."""

    def __init__(self, trials: Iterable[Trial]):
        self._source = iter(trials)
        self.pulled: list[Trial] = []  # every trial taken so far, in order
        self._ids: set[str] = set()
        self._retry: list[tuple[list[int], int]] = []
        self._exhausted = False

    def retry(self, indices: list[int] | int, attempt: int) -> None:
        """Run these trials (one job) again as attempt number `attempt`."""
        self._retry.append(([indices] if isinstance(indices, int) else list(indices), attempt))

    def next_retry(self) -> tuple[list[int], int] | None:
        return self._retry.pop(0) if self._retry else None

    def pull(self) -> int | None:
        """The index of the next new trial, or None when the iterable is exhausted."""
        if self._exhausted:
            return None
        trial = next(self._source, None)
        if trial is None:
            self._exhausted = True
            return None
        if trial.id in self._ids:
            raise ValueError(f"trial id {trial.id!r} used twice; ids must be unique within a batch")
        self._ids.add(trial.id)
        self.pulled.append(trial)
        return len(self.pulled) - 1


def _tail(path: Path, n: int = STDERR_TAIL) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-n:].strip()


def gpu_slots(gpus: int, gpus_per_trial: float) -> list[str]:
    """CUDA_VISIBLE_DEVICES values, one per concurrent trial: 0.5 per trial on 2 GPUs
    gives ["0", "0", "1", "1"]; 2 per trial on 4 GPUs gives ["0,1", "2,3"]."""
    if gpus_per_trial <= 0:
        raise ValueError("gpus_per_trial must be positive")
    if gpus_per_trial <= 1:
        per_gpu = int(1 / gpus_per_trial + 1e-9)  # 0.5 -> 2 trials share a GPU; 0.4 -> 2
        return [str(g) for g in range(gpus) for _ in range(per_gpu)]
    k = math.ceil(gpus_per_trial)
    return [",".join(str(g) for g in range(j * k, (j + 1) * k)) for j in range(gpus // k)]


def _count_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


class LocalExecutor:
    """Runs trials in parallel child processes on this machine.

    warm (default): max_parallel worker processes each import torch once and run trial
    after trial; a worker that dies is replaced and its trials retried. warm=False starts
    a fresh process per attempt. stack (default): trials that share an architecture and
    data are trained together as one stacked model in one process (dlx/stacking.py says
    which can); each still gets its own run folder and result. on_note(text) hears what
    was stacked and what could not be, and why.
    """

    def __init__(
        self,
        max_parallel: int | None = None,
        retries: int = 2,
        threads_per_trial: int | None = None,
        env: dict[str, str] | None = None,
        gpus_per_trial: float | None = None,
        gpus: int | None = None,
        warm: bool = True,
        stack: bool = True,
        on_note: Callable[[str], Any] | None = None,
        in_driver: bool = False,
    ):
        cpus = os.cpu_count() or 1
        self.slots: list[str] | None = None
        if gpus_per_trial:
            n = _count_gpus() if gpus is None else gpus
            self.slots = gpu_slots(n, gpus_per_trial)
            if not self.slots:
                from dlx.core.errors import UsageError

                raise UsageError(
                    f"--gpus-per-trial {gpus_per_trial:g} needs {math.ceil(gpus_per_trial)} GPU(s) "
                    f"per trial and this machine has {n}; leave the option out to run on the CPU"
                )
        default = len(self.slots) if self.slots else cpus
        self.max_parallel = max(1, min(max_parallel or default, len(self.slots) if self.slots else 10**9))
        self.retries = max(0, retries)
        # Split the cores between the trials: N workers each using every core thrash.
        self.threads_per_trial = threads_per_trial or max(1, cpus // self.max_parallel)
        self.env = dict(env or {})
        self.warm, self.stack = warm, stack
        # The driver trains stacks itself in a thread (one worker fewer imports torch): the
        # dlx command's compare on the CPU, where stacking and warm workers are on.
        self.in_driver = bool(in_driver and warm and stack and not self.slots)
        self.on_note = on_note
        self.notes: list[str] = []  # every note given, in order (also for callers without on_note)
        self.tally = StackTally()  # what was stacked, over every window planned
        self._early: tuple[tempfile.TemporaryDirectory, list[_Worker]] | None = None

    def start_workers(self, expected: int | None = None) -> None:
        """Start the warm workers now (they import torch while the caller prepares its
        trials); run() takes them over, and stop_workers() ends them if run() never comes.
        With in_driver, `expected` trials that one stack holds (at most MAX_STACK) start none:
        the driver trains them alone (the rule in docs/DESIGN.md), and a worker starts only
        for a trial that cannot join its stack."""
        if not self.warm or self._early is not None or self.slots:
            return
        if self.in_driver and expected is not None and expected <= MAX_STACK:
            return
        remove_stale_workdirs()
        tmp = tempfile.TemporaryDirectory(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-")
        env = self._child_env()
        workers = []
        for i in range(self.max_parallel - self.in_driver):
            path = Path(tmp.name) / f"w{i}.stderr"
            proc, err = self._spawn(env, None, path, serve=True)
            workers.append(_Worker(proc, path, err, None))
        self._early = (tmp, workers)

    def stop_workers(self) -> None:
        """End workers started by start_workers() that run() did not take over."""
        if self._early is not None:
            tmp, workers = self._early
            self._early = None
            self._close(workers)
            tmp.cleanup()

    def _note(self, text: str) -> None:
        self.notes.append(text)
        if self.on_note is not None:
            self.on_note(text)

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        t = str(self.threads_per_trial)
        # Set before torch loads in the child, so OpenMP/MKL pools start at the right size.
        env.setdefault("OMP_NUM_THREADS", t)
        env.setdefault("MKL_NUM_THREADS", t)
        return env

    def _job(self, pulled: list[Trial], indices: list[int], result_path: Path) -> dict:
        return {
            "trials": [
                {
                    "config": pulled[i].config,
                    "runs_dir": str(pulled[i].runs_dir),
                    **({"resume": str(pulled[i].resume)} if pulled[i].resume else {}),
                }
                for i in indices
            ],
            "result_path": str(result_path),
            "threads": self.threads_per_trial,
            "driver": os.getpid(),  # the worker stops when this process is gone
        }

    def _spawn(self, env: dict, slot: int | None, stderr_path: Path, serve: bool):
        if slot is not None:
            env = {**env, "CUDA_VISIBLE_DEVICES": self.slots[slot]}
        err = open(stderr_path, "wb")
        # A new session: the terminal's Ctrl-C reaches only the parent, which stops the
        # children itself (once, in order) instead of each getting a second SIGINT mid-cleanup.
        proc = subprocess.Popen(
            [sys.executable, "-m", "dlx.many.worker", *(["--serve"] if serve else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE if serve else subprocess.DEVNULL,
            stderr=err,
            env=env,
            start_new_session=True,
        )
        return proc, err

    def _start(
        self,
        pulled: list[Trial],
        indices: list[int],
        number: int,
        workdir: "_Workdir",
        env: dict,
        slot: int | None,
        workers: list[_Worker],
    ) -> _Attempt:
        stem = f"t{indices[0]}-a{number}"
        result_path = workdir.path / f"{stem}.json"
        job = self._job(pulled, indices, result_path)
        if not self.warm:
            stderr_path = workdir.path / f"{stem}.stderr"
            proc, err = self._spawn(env, slot, stderr_path, serve=False)
            try:
                proc.stdin.write(json.dumps(job).encode())
                proc.stdin.close()
            except BrokenPipeError:
                pass  # the child died at once; its exit code tells the rest
            return _Attempt(
                indices, number, result_path, proc=proc, stderr_path=stderr_path, stderr_file=err, slot=slot
            )
        worker = next((w for w in workers if w.busy is None and w.slot == slot), None)
        if worker is None:
            stderr_path = workdir.path / f"w{len(workers)}.stderr"
            proc, err = self._spawn(env, slot, stderr_path, serve=True)
            worker = _Worker(proc, stderr_path, err, slot)
            workers.append(worker)
        att = _Attempt(indices, number, result_path, worker=worker, stderr_path=worker.stderr_path, slot=slot)
        worker.busy = att
        try:
            worker.proc.stdin.write(json.dumps(job).encode() + b"\n")
            worker.proc.stdin.flush()
        except BrokenPipeError:
            pass  # it died: its EOF on stdout says so
        return att

    def _ended(self, att: _Attempt, workers: list[_Worker]) -> int | None:
        """The attempt's exit code once it ended (a warm worker's code for this job), else None."""
        if att.proc is not None:
            return att.proc.poll()
        if att.driver is not None:
            att.driver.busy = None
            return int(json.loads(att.driver.stdout.readline())["code"])
        w = att.worker
        line = w.proc.stdout.readline()  # only called when select() said it is readable
        if line:
            try:
                code = int(json.loads(line)["code"])
            except (ValueError, KeyError, TypeError):
                code = 1
            w.busy = None
            return code
        # EOF: the worker died mid-job (a result it wrote first still counts). A fresh worker
        # takes its place for the next job.
        code = w.proc.wait()
        w.stderr_file.close()
        workers.remove(w)
        return code

    def _finish(self, pulled: list[Trial], att: _Attempt, code: int) -> list[TrialResult] | None:
        """The attempt's TrialResults, or None when it crashed and should be retried."""
        if att.stderr_file is not None:
            att.stderr_file.close()
        data = att.driver_result
        if data is None and att.result_path is not None and att.result_path.is_file():
            try:
                data = json.loads(att.result_path.read_text())
            except (OSError, json.JSONDecodeError):
                data = None
        if data is not None and code in (0, 1, 2):
            out = []
            for i, r in zip(att.indices, data["results"]):
                out.append(
                    TrialResult(
                        id=pulled[i].id,
                        status=r["status"],
                        run_path=Path(r["run_path"]) if r.get("run_path") else None,
                        summary=r.get("summary"),
                        metrics=r.get("metrics"),
                        attempts=att.number,
                        error=r.get("error"),
                        started=r.get("started"),
                        ended=r.get("ended"),
                    )
                )
            return out
        if att.number <= self.retries:
            return None
        why = f"signal {-code}" if code < 0 else f"exit code {code}"
        if data is None:
            why += ", no result written"
        tail = _tail(att.stderr_path) if att.stderr_path else ""
        error = f"worker process died ({why}) on all {att.number} attempts" + (f"; stderr:\n{tail}" if tail else "")
        return [
            TrialResult(
                id=pulled[i].id,
                status="crashed",
                run_path=None,
                summary=None,
                metrics=None,
                attempts=att.number,
                error=error,
            )
            for i in att.indices
        ]

    def _next_job(self, queue: TrialQueue, planned: list[list[int]], slots: int) -> tuple[list[int], int] | None:
        return next_job(queue, planned, self.stack, slots, self._note, self.tally)

    def run(self, trials: Iterable[Trial], on_result: Callable[[TrialResult], Any] | None = None) -> list[TrialResult]:
        """Run every trial; results in trial order, on_result(result) called as each finishes.

        Trials are pulled from the iterable only when a slot is free (with stacking, as
        many as the free slot's stack can take).
        """
        queue = TrialQueue(trials)
        pulled = queue.pulled
        results: dict[int, TrialResult] = {}
        running: list[_Attempt] = []
        planned: list[list[int]] = []
        free = list(range(len(self.slots))) if self.slots else []
        env = self._child_env()
        driver = None
        # The driver alone (in_driver, no workers started): trials are planned for one slot, so
        # those that stack form one stack, which the driver trains; workers start on demand.
        plan_slots = 1 if self.in_driver and self._early is None else self.max_parallel
        if self._early is None:
            workdir, workers = _Workdir(), []
        else:
            (tmp, workers), self._early = self._early, None
            workdir = _Workdir(tmp)
        with stop_signals_raise_keyboard_interrupt():
            if self.in_driver:
                driver = _DriverSlot()
            try:
                while True:
                    while len(running) < self.max_parallel:
                        nxt = self._next_job(queue, planned, plan_slots)
                        if nxt is None:
                            break
                        indices, n = nxt
                        if driver is not None and driver.busy is None and len(indices) > 1 and n == 1:
                            running.append(self._start_in_driver(pulled, indices, driver))
                            continue
                        slot = free.pop(0) if self.slots else None
                        running.append(self._start(pulled, indices, n, workdir, env, slot, workers))
                    if not running:
                        break
                    done = self._wait(running)
                    for att in done:
                        code = self._ended(att, workers)
                        if code is None:
                            continue
                        running.remove(att)
                        if att.slot is not None:
                            free.append(att.slot)
                        res = self._finish(pulled, att, code)
                        if res is None:
                            queue.retry(att.indices, att.number + 1)
                            continue
                        for i, r in zip(att.indices, res):
                            results[i] = r
                            if on_result is not None:
                                on_result(r)
                self._close(workers)
            except BaseException:
                self._stop(running, workers)
                raise
            finally:
                if driver is not None:
                    driver.close()
                workdir.cleanup()
        return [results[i] for i in range(len(pulled))]

    def _start_in_driver(self, pulled: list[Trial], indices: list[int], driver: _DriverSlot) -> _Attempt:
        att = _Attempt(indices, 1, result_path=None, driver=driver)
        driver.busy = att
        driver.start({**self._job(pulled, indices, None), "stack": True})
        return att

    @staticmethod
    def _wait(running: list[_Attempt]) -> list[_Attempt]:
        """The attempts that may have ended: fresh processes are polled, warm workers are
        waited on together (a result line or EOF on their stdout) for up to POLL_S."""
        warm = {att.worker.proc.stdout.fileno(): att for att in running if att.worker is not None}
        warm.update({att.driver.stdout.fileno(): att for att in running if att.driver is not None})
        if warm:
            ready, _, _ = select.select(list(warm), [], [], POLL_S)
        else:
            time.sleep(POLL_S)
            ready = []
        return [att for att in running if att.proc is not None] + [warm[fd] for fd in ready]

    @staticmethod
    def _close(workers: list[_Worker], grace_s: float = 5.0) -> None:
        """Idle workers end at EOF on their stdin; any that do not are killed."""
        for w in workers:
            with contextlib.suppress(OSError):
                w.proc.stdin.close()
        deadline = time.monotonic() + grace_s
        for w in workers:
            try:
                w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
            w.stderr_file.close()
            with contextlib.suppress(OSError):
                w.proc.stdout.close()
        workers.clear()

    @staticmethod
    def _stop(running: list[_Attempt], workers: list[_Worker], grace_s: float = 5.0) -> None:
        """SIGINT every child (its runs end as interrupted), then kill what is left after grace_s;
        the driver's own stack ends after its step the same way."""
        procs = [att.proc for att in running if att.proc is not None] + [w.proc for w in workers]
        for proc in procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGINT)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace_s
        try:
            for att in running:
                if att.driver is not None:
                    att.driver.stop(max(0.0, deadline - time.monotonic()))
            for proc in procs:
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: stop waiting, kill the rest now
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for f in [att.stderr_file for att in running] + [w.stderr_file for w in workers]:
            if f is not None and not f.closed:
                f.close()


def next_job(
    queue: TrialQueue,
    planned: list[list[int]],
    stack: bool,
    slots: int,
    note: Callable[[str], Any],
    tally: Any = None,
) -> tuple[list[int], int] | None:
    """The next job an executor starts (local or Ray): a retry, a planned stack, or newly
    pulled trials ((indices, attempt); None when none is left). Stacking pulls what a stack
    per slot can hold and plans them (stack_plan.plan_stacks), its notes told to `note`; a
    trial continuing a stopped run resumes its own checkpoint, alone."""
    retry = queue.next_retry()
    if retry is not None:
        return retry
    if planned:
        return planned.pop(0), 1
    if not stack:
        i = queue.pull()
        return None if i is None else ([i], 1)
    from dlx.many.stack_plan import plan_stacks

    new: list[int] = []
    while len(new) < MAX_STACK * slots:
        i = queue.pull()
        if i is None:
            break
        new.append(i)
    if not new:
        return None
    resuming = [i for i in new if queue.pulled[i].resume]
    fresh = [i for i in new if i not in resuming]
    groups, notes = plan_stacks([queue.pulled[i].config for i in fresh], slots, tally) if fresh else ([], [])
    for line in notes:
        note(line)
    planned.extend([[i] for i in resuming] + [[fresh[k] for k in g] for g in groups])
    return planned.pop(0), 1

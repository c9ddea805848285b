"""The run and sweep folders: reading and writing them (their layout, every file name, is
dlx.records.layout)."""

from __future__ import annotations

import datetime as dt
import errno
import json
import math
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from dlx.core.errors import DamagedFile, DlxError
from dlx.records.layout import (  # noqa: F401  (the layout's names, also read from here)
    CHECKPOINT_FILE,
    CONFIG_FILE,
    FIX_RECORD,
    FIXED_CONFIG,
    INSTRUMENTS_FILE,
    META_FILE,
    METRICS_FILE,
    PROBES_FILE,
    SERIES,
    SNAPSHOTS_FILE,
    SUMMARY_FILE,
)

STATUSES = ("running", "completed", "diverged", "failed", "interrupted", "pruned")

# A running run rewrites its heartbeat at log intervals, but at most this often:
# a tiny run logs hundreds of intervals a second and each rewrite is an fsync.
HEARTBEAT_EVERY_S = 2.0
# A `running` run whose heartbeat is older than this is taken for dead. It must
# exceed the longest log interval (steps + evaluation) of a live run: calling a
# live run interrupted invites a --resume into a folder still being written.
STALE_AFTER_S = 30 * 60
# The errors of a disk with no room left: space freed, what failed on them can run again.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def jsonable(obj: Any) -> Any:
    """Plain JSON: arrays to lists, NaN/Inf to null (standard JSON has neither)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "f" and not np.isfinite(obj).all():
            return jsonable(obj.tolist())  # slow path: NaN/Inf to null one by one
        return obj.tolist()  # all finite: one C call
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write to a temp file beside `path`, fsync, rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    mode = "wb" if isinstance(text, bytes) else "w"
    try:
        with open(tmp, mode) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)  # a full disk, a kill: never leave the half-written temp file
        if isinstance(e, FileNotFoundError) and not path.parent.is_dir():
            # Not the temp file's name: the folder it was to go in is gone (deleted meanwhile).
            raise FileNotFoundError(
                errno.ENOENT, "its folder was deleted while dlx was writing it", str(path)
            ) from None
        raise


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(jsonable(obj), indent=2) + "\n")


# git_commit's answers for a few seconds: a stack or a worker opens many runs at once, and
# each lookup is a git process (~10 ms).
_GIT_CACHE: dict[str, tuple[float, str | None]] = {}
GIT_CACHE_S = 10.0


def git_commit(cwd: Path | None = None) -> str | None:
    key = str(Path(cwd or os.getcwd()).resolve())
    hit = _GIT_CACHE.get(key)
    if hit is not None and time.monotonic() - hit[0] < GIT_CACHE_S:
        return hit[1]
    value = _git_commit(cwd)
    _GIT_CACHE[key] = (time.monotonic(), value)
    return value


def _git_commit(cwd: Path | None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str]:
    import torch

    from dlx.core.version import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "dlx": __version__,
        "numpy": np.__version__,
    }


def prepare_runs_dir(runs_dir: Path) -> Path:
    """The runs folder, created and checked writable before any training starts."""
    runs_dir = Path(runs_dir)
    probe = runs_dir / f".write-test-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        try:
            probe.write_text("ok")
        finally:
            probe.unlink(missing_ok=True)  # created, then the write failed (a full disk): gone too
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (runs_dir, *runs_dir.parents) if p.exists() and not p.is_dir()), runs_dir)
        raise DlxError(
            f"cannot write to the runs folder {runs_dir}: {blocker} is a file, not a folder. "
            f"Move that file or pass --runs-dir to write elsewhere."
        ) from None
    except OSError as e:
        fix = {
            errno.ENOSPC: "Free some space on that disk",
            errno.EDQUOT: "Free some space (your disk quota is used up)",
            errno.EROFS: "That file system is read-only",
        }.get(e.errno, "Fix its permissions")
        raise DlxError(
            f"cannot write to the runs folder {runs_dir}: {e.strerror or e}. {fix}, or pass --runs-dir to write elsewhere."
        ) from None
    return runs_dir


def new_run_id(name: str | None) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    # A random suffix keeps ids unique when several runs start in the same second.
    return f"{stamp}-{name or 'run'}-{secrets.token_hex(3)}"


def boot_id() -> str | None:
    """This boot of this machine (Linux): a pid recorded under another boot is someone else's now."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def liveness() -> dict[str, Any]:
    """The meta.json fields by which run_status() tells a live `running` run from a dead one."""
    # writer_lock: this run's writer holds an flock on the folder (RunFolder.lock), so on this
    # host run_status can ask the lock instead of trusting the pid or the heartbeat.
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "boot_id": boot_id(),
        "heartbeat": now(),
        "writer_lock": True,
    }


def writer_alive(path: Path) -> bool | None:
    """Whether a process holds the run folder's writer lock (RunFolder.lock) right now; None
    where flock does not exist (Windows)."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing drops a shared lock taken just to test
    return False


def take_lock(folder: Path) -> int | None:
    """An exclusive flock on a folder itself (no lock file to leave behind), held until the
    returned descriptor is closed or this process ends however it ends (kill -9 too: the
    kernel drops it). BlockingIOError when another process holds it; None where flock does
    not exist (Windows: the status checks alone guard a resume). The descriptor is not
    inherited by child processes (PEP 446), so a worker never keeps its driver's lock."""
    try:
        import fcntl
    except ImportError:
        return None
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


def lock_pid(folder: Path) -> int | None:
    """The pid of the process holding take_lock's flock on `folder` now, from /proc/locks
    (Linux); None where that cannot be read. The pid a folder's meta records is its last
    writer's, which may be dead while a newer process (a resume still opening) holds it."""
    try:
        st = os.stat(folder)
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    # "1: FLOCK  ADVISORY  WRITE 4065 08:01:1234 0 EOF": device major:minor in hex, inode in
    # decimal; a waiter's line has "->" after the number and holds nothing.
    where = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in lines:
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == where and parts[4].isdigit():
            pid = int(parts[4])
            return pid if pid > 0 else None  # 0/-1: a holder outside this pid namespace
    return None


def lock_holder(folder: Path, meta: dict[str, Any] | None) -> str:
    """Who holds a folder's lock, for a refusal: the live holder's pid where the system says
    (lock_pid), else the pid and host its meta recorded."""
    pid = lock_pid(folder)
    if pid is not None:
        return f"pid {pid} on {socket.gethostname()}"
    meta = meta if isinstance(meta, dict) else {}
    return f"pid {meta.get('pid')} on {meta.get('host') or 'this machine'}" if meta.get("pid") else "another process"


class RunFolder:
    """A run being written: created under a temp name, renamed once its first files are complete."""

    def __init__(self, runs_dir: Path, name: str | None):
        self.runs_dir = prepare_runs_dir(runs_dir)
        self.name = name
        self._pick_id()
        self._files: dict[str, Any] = {}
        self.meta: dict[str, Any] = {}
        self._beat = 0.0

    def _pick_id(self) -> None:
        self.run_id = new_run_id(self.name)
        self.path = self.runs_dir / self.run_id
        self._tmp = self.runs_dir / f".tmp-{self.run_id}"

    def open(self, config_yaml: str, meta: dict[str, Any]) -> None:
        # Several processes may start in this runs folder at once: an id is ours once
        # mkdir of its temp folder succeeded (exclusive) and the rename to the final
        # name succeeded (it fails onto an existing, never empty, run folder). On a
        # clash, take a new id: two runs never share a folder.
        for _ in range(100):
            if self.path.exists():
                self._pick_id()
                continue
            try:
                self._tmp.mkdir()
            except FileExistsError:
                self._pick_id()
                continue
            try:
                write_atomic(self._tmp / "config.yaml", config_yaml)
                self.meta = {"run_id": self.run_id, "status": "running", **liveness(), **meta}
                write_json(self._tmp / "meta.json", self.meta)
                os.rename(self._tmp, self.path)
                break
            except OSError as e:
                shutil.rmtree(self._tmp, ignore_errors=True)  # never leave a .tmp-* folder behind
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                self._pick_id()
            except BaseException:
                shutil.rmtree(self._tmp, ignore_errors=True)
                raise
        else:
            raise DlxError(f"could not find a free run id in {self.runs_dir} after 100 tries")
        self._beat = time.monotonic()
        self.lock()
        for name in ("metrics.jsonl", "probes.jsonl"):
            self._files[name] = open(self.path / name, "a", encoding="utf-8")

    def lock(self) -> None:
        """Become the run's one writer for the life of this process (take_lock), before anything
        in it is rewritten. A second writer (two --resume of one run at once) is refused,
        naming the holder."""
        try:
            self._lock_fd = take_lock(self.path)
        except BlockingIOError:
            raise DlxError(
                f"run {self.path.name} is being written by another process ({lock_holder(self.path, self.meta)}); "
                f"one process writes a run at a time: wait for it to end, or stop it, then resume"
            ) from None

    def append(self, name: str, record: dict[str, Any]) -> None:
        f = self._files.get(name)
        if f is None:  # a series only some runs have (instruments.jsonl): opened at its first line
            f = self._files[name] = open(self.path / name, "a", encoding="utf-8")
        f.write(json.dumps(jsonable(record)) + "\n")
        f.flush()

    def update_meta(self, **fields: Any) -> None:
        self.meta.update(fields)
        write_json(self.path / "meta.json", self.meta)

    def heartbeat(self) -> None:
        """Say the run is alive (see run_status); called per log interval, written at most every HEARTBEAT_EVERY_S."""
        t = time.monotonic()
        if t - self._beat >= HEARTBEAT_EVERY_S and self.meta.get("status") == "running":
            self._beat = t
            self.update_meta(heartbeat=now())

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.path / "summary.json", summary)

    def write_checkpoint(self, state: dict[str, Any]) -> None:
        import io

        import torch

        buf = io.BytesIO()
        torch.save(state, buf)
        write_atomic(self.path / "checkpoint.pt", buf.getvalue())

    def write_snapshots(self, snapshots: dict[str, Any]) -> None:
        import io

        import torch

        buf = io.BytesIO()
        torch.save(snapshots, buf)
        write_atomic(self.path / SNAPSHOTS_FILE, buf.getvalue())

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
        fd = getattr(self, "_lock_fd", None)
        if fd is not None:  # closing the descriptor releases the lock
            os.close(fd)
            self._lock_fd = None

    @classmethod
    def existing(cls, path: Path) -> "RunFolder":
        """A run folder on disk, to continue (--resume); nothing changes on disk until resume()."""
        self = cls.__new__(cls)
        self.path = Path(path)
        self.runs_dir, self.run_id, self.name = self.path.parent, self.path.name, None
        self._files, self._beat = {}, 0.0
        try:
            self.meta = json.loads((self.path / "meta.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DlxError(f"{self.path} is not a readable run folder (meta.json: {e})") from None
        return self

    def resume(self, logged_step: int, **meta: Any) -> None:
        """Reopen for appending, status `running` again. Lines past logged_step (written
        after the checkpoint, or the partial interval of a Ctrl-C) are dropped first: the
        resumed run writes them again, so no step appears twice."""
        for tmp in self.path.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)  # a write_atomic cut off by a kill: never a file anyone reads
        for name in SERIES:
            path = self.path / name
            if name not in ("metrics.jsonl", "probes.jsonl") and not path.is_file():
                continue
            keep = []
            for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
                try:
                    step = json.loads(line)["step"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line torn by a kill mid-write
                if step <= logged_step:
                    keep.append(line + "\n")
            write_atomic(path, "".join(keep))
            self._files[name] = open(path, "a", encoding="utf-8")
        self._beat = time.monotonic()
        self.update_meta(status="running", **liveness(), **meta)


def land_run(src: Path, dest: Path) -> bool:
    """Move a finished run folder to its final name by one atomic rename (same filesystem).

    False when dest already exists: a duplicate attempt of the same trial, which is
    dropped (src removed) so every trial has exactly one folder.
    """
    src, dest = Path(src), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        # rename() would replace an empty dest folder silently; a hard link of a folder is
        # impossible, so check first: the parent is the only writer of dest, no race here.
        if dest.exists():
            raise FileExistsError(dest)
        os.rename(src, dest)
        return True
    except FileExistsError:
        shutil.rmtree(src, ignore_errors=True)
        return False


def finished_summary(run: Path) -> dict[str, Any] | None:
    """A run folder's summary.json if the run ended for good (FINISHED); None for a folder
    without one (a run stopped, failed or cut off by a full disk before its end was written).
    The folder, not the worker's word, says how a run ended: a run whose last write after
    its summary failed is still whole."""
    summary = read_object(Path(run) / SUMMARY_FILE)[0]
    if summary is None:
        return None
    if "status" not in summary:  # a summary that leaves it out: the status meta.json ended with
        summary = {**summary, "status": (read_object(Path(run) / META_FILE)[0] or {}).get("status")}
    return summary if summary["status"] in FINISHED else None


def resumable_run(attempts: Path) -> Path | None:
    """The run folder under `attempts` (a sweep trial's staging folder: one run folder per
    attempt) that `dlx train --resume` can continue: interrupted or failed, not finished, no
    live writer, with a checkpoint; the newest such. None when there is none."""
    found = []
    for run in Path(attempts).glob("*"):
        meta = read_object(run / META_FILE)[0] if run.is_dir() and not run.name.startswith(".") else None
        if meta is None or not (run / CHECKPOINT_FILE).is_file() or finished_summary(run) is not None:
            continue
        if run_status(meta, run) in ("interrupted", "failed"):
            found.append(run)
    return newest(found)


def now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def command_line() -> list[str]:
    return [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else []


# ---------------------------------------------------------------- reading runs


def run_folders(runs_dir: Path) -> list[Path]:
    """Every run folder (one with a meta.json) in runs_dir, oldest id first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return sorted(d for d in runs_dir.iterdir() if (d / "meta.json").is_file())


# `last` is the run or sweep started (or resumed) most recently; `last-run` and `last-sweep`
# pick one kind. A command that takes one kind reads `last` as that kind's last.
LAST = ("last", "last-run", "last-sweep")


def started_at(folder: Path) -> tuple[float, float]:
    """When a run or sweep folder was last started: its start time or its latest --resume
    (epoch seconds), then its meta file's mtime to order two started in the same second."""
    marker = folder / ("sweep.json" if (folder / "sweep.json").is_file() else "meta.json")
    mtime = marker.stat().st_mtime
    try:
        meta = json.loads(marker.read_text())
        times = [
            meta.get("started"),
            meta.get("created"),
            meta.get("resumed"),
            *[r.get("at") for r in meta.get("resumes") or [] if isinstance(r, dict)],
        ]
        latest = max(dt.datetime.fromisoformat(t).timestamp() for t in times if isinstance(t, str))
    except (OSError, ValueError, TypeError, AttributeError):  # unreadable, or no times: the mtime alone
        latest = mtime
    return latest, mtime


def newest(folders: list[Path]) -> Path | None:
    """The folder started (or resumed) most recently; None for none."""
    return max(folders, key=started_at, default=None)


def find_run(ref: str | Path, runs_dir: Path = Path("runs")) -> Path:
    """A run folder from a path, a run id (or unique prefix/suffix of one), or 'last' / 'last-run'.

    A sweep's trial is found as SWEEP/trial-NNNN (SWEEP: its id or a unique part of it). A
    sweep given here (or 'last-sweep') is a DlxError saying how to see a sweep.
    """
    sweep, slash, trial = str(ref).partition("/")
    if slash and not Path(ref).exists() and trial.startswith("trial-"):
        return find_folder(trial, run_folders(find_sweep(sweep, runs_dir) / "trials"), runs_dir, "meta.json", "run", "")
    try:
        return find_folder(
            "last" if str(ref) == "last-run" else ref,
            run_folders(runs_dir),
            runs_dir,
            "meta.json",
            "run",
            "train one with: dlx train CONFIG",
        )
    except DlxError as e:
        folder = _a_sweep(ref, runs_dir)
        if folder is None:
            sweeps = sweep_folders(runs_dir) if str(ref) in LAST else []
            if sweeps:  # only sweeps here: their trials are the runs
                raise DlxError(
                    f"{e}; the trials of the last sweep are runs: dlx runs --sweep last, "
                    f"dlx show {newest(sweeps).name}/trial-0000"
                ) from None
            raise
    name = folder.name
    raise DlxError(
        f"{'the last sweep, ' + name + ',' if str(ref) in LAST else repr(str(ref))} is a sweep, "
        f"not a run: see it with `dlx report {name}` (one page, every trial) or `dlx runs "
        f"--sweep {name}` (its trials as runs), or one trial with `dlx show {name}/trial-0000`"
    )


def _a_sweep(ref: str | Path, runs_dir: Path) -> Path | None:
    """The sweep folder ref names (never by 'last', which means a run where a run is wanted)."""
    if str(ref) in ("last", "last-run"):
        return None
    try:
        return find_sweep(ref, runs_dir)
    except DlxError:
        return None


def sweep_folders(runs_dir: Path) -> list[Path]:
    """Every sweep folder (one with a sweep.json) in runs_dir, oldest id first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    return sorted(d for d in runs_dir.iterdir() if (d / "sweep.json").is_file())


def find_sweep(ref: str | Path, runs_dir: Path = Path("runs")) -> Path:
    """A sweep folder from a path, a sweep id (or a unique part of one), or 'last' / 'last-sweep'.

    Here, not in dlx.many.sweeper, so that finding a folder never loads the config schema (torch)."""
    if str(ref) == "last-run":
        raise DlxError("last-run names a run, not a sweep: give a sweep's folder or id, or last-sweep")
    return find_folder(
        "last" if str(ref) == "last-sweep" else ref,
        sweep_folders(runs_dir),
        runs_dir,
        "sweep.json",
        "sweep",
        "start one with: dlx sweep SPEC",
    )


def find_folder(ref: str | Path, folders: list[Path], runs_dir: Path, marker: str, what: str, start: str) -> Path:
    """A folder holding `marker` from a path, an id (or a unique part of one), or 'last'
    (the one started or resumed most recently)."""
    p = Path(ref)
    if (p / marker).is_file():
        return p
    if str(ref) == "last":
        if not folders:
            raise DlxError(f"no {what}s in {runs_dir} yet; {start}")
        return newest(folders)
    hits = [d for d in folders if d.name == str(ref)] or [d for d in folders if str(ref) in d.name]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise DlxError(
            f"'{ref}' matches {len(hits)} {what}s in {runs_dir}: "
            + ", ".join(d.name for d in hits[:5])
            + ("..." if len(hits) > 5 else "")
            + "; give more of the id"
        )
    raise DlxError(f"no {what} '{ref}': not a {what} folder, and no {what} id in {runs_dir} contains it")


def read_jsonl(path: Path, problems: list[str] | None = None) -> list[dict[str, Any]]:
    """Records of a .jsonl file: JSON objects with an integer step. A torn last line (a crash
    mid-write) is skipped silently; other lines that are not such records are skipped and,
    given a problems list, counted there by the file's name."""
    if not path.is_file():
        return []
    out, odd = [], 0
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            odd += i < len(lines) - 1
            continue
        if isinstance(record, dict) and is_int(record.get("step")):
            out.append(record)
        else:
            odd += 1
    if odd and problems is not None:
        problems.append(f"{path.name}: {odd} line(s) that are not step records skipped")
    return out


# probes.jsonl keys whose first axis is the steps of the log interval (its length varies
# from record to record); every other array has one shape in all records of a run.
PER_STEP = ("grad_norm", "loss")


def _shape(v: Any) -> tuple[int, ...] | None:
    """The shape of a number, null or rectangular nested list of them; None for anything else."""
    if v is None or is_number(v):
        return ()
    if not isinstance(v, list):
        return None
    try:
        a = np.asarray(v)
    except (ValueError, TypeError, OverflowError):  # ragged, or ints past any dtype
        return None
    if a.dtype.kind in "biuf":
        return a.shape
    if a.dtype.kind == "O" and all(x is None or is_number(x) for x in a.ravel().tolist()):
        return a.shape  # numbers with nulls (NaN or Inf as JSON writes them)
    return None


def check_series(records: list[dict[str, Any]], problems: list[str] | None, name: str) -> list[dict[str, Any]]:
    """Records whose values the views can stack: each value a number, null or rectangular
    array, and each key's array of one shape across records (PER_STEP keys: one shape past
    their first axis). A value that breaks this is dropped from its record, counted by name."""
    # Each value's shape, computed once (past the first axis for PER_STEP keys); None: it has none.
    shaped = [{k: _shape(v) for k, v in r.items()} for r in records]
    counts: dict[str, dict[tuple, int]] = {}
    for sh in shaped:
        for k, v in sh.items():
            if v is not None:
                if k in PER_STEP:
                    sh[k] = v = v[1:]
                counts.setdefault(k, {}).setdefault(v, 0)
                counts[k][v] += 1
    usual = {k: max(c, key=c.get) for k, c in counts.items()}
    dropped = 0
    out = []
    for r, sh in zip(records, shaped):
        keep = {
            k: v
            for k, v in r.items()
            if sh[k] is not None and sh[k] == usual[k] and (k not in ("step", "first_step") or is_int(v))
        }
        dropped += len(r) - len(keep)
        out.append(keep)
    if dropped and problems is not None:
        problems.append(f"{name}: {dropped} value(s) of an unexpected shape left out")
    return out


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """A JSON number that is a float: an int past float's range (10**400) is not one."""
    return isinstance(v, float) or (is_int(v) and -(2**1023) < v < 2**1023)


# What a view meets in a file of the wrong shape (a null where a list was, a string for a
# number, a key missing): it leaves that part out, naming the file, instead of crashing.
SHAPE_ERRORS = (TypeError, KeyError, AttributeError, ValueError, IndexError, ZeroDivisionError, OverflowError)


def read_object(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """A JSON file that must hold an object: (the object, None), or (None, why not)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, f"{path.name}: missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"{path.name}: unreadable ({e})"
    if not isinstance(data, dict):
        return None, f"{path.name}: holds a {type(data).__name__}, not an object"
    return data, None


def final_metrics(summary: dict[str, Any]) -> dict[str, Any]:
    """summary.json's final metrics, {} when the file holds something else there."""
    final = summary.get("final")
    return final if isinstance(final, dict) else {}


def verdict_kind(summary: dict[str, Any]) -> str | None:
    """The kind of summary.json's first verdict (the root cause, or healthy); None if it has none."""
    verdicts = summary.get("verdicts")
    first = verdicts[0] if isinstance(verdicts, list) and verdicts else None
    kind = first.get("kind") if isinstance(first, dict) else None
    return kind if isinstance(kind, str) else None


def pruned_kind(summary: dict[str, Any]) -> str | None:
    """The verdict kind train.prune stopped the run on (summary.json "pruned"); None if it was not pruned."""
    pruned = summary.get("pruned")
    kind = pruned.get("verdict") if isinstance(pruned, dict) else None
    return kind if isinstance(kind, str) else None


def write_compare_record(runs_dir: Path, name: str, record: dict[str, Any]) -> Path:
    """runs_dir/compare-NAME.json: a dlx compare's variants (mean and sd over seeds, verdict,
    their run folders), figure and notes; `dlx report` makes the compare's page from it."""
    path = Path(runs_dir) / f"compare-{name}.json"
    write_json(path, record)
    return path




def write_fix_record(run_path: Path, record: dict[str, Any], fixed_yaml: str | None) -> tuple[Path, Path | None]:
    """A run's fix.json (and, when a remedy won, fixed.yaml: its config). A new fix replaces
    the last one's files: fixed.yaml never outlives the record that names it."""
    run_path = Path(run_path)
    fixed = run_path / FIXED_CONFIG
    if fixed_yaml is not None:
        write_atomic(fixed, fixed_yaml)
    else:
        fixed.unlink(missing_ok=True)
    write_json(run_path / FIX_RECORD, record)
    return run_path / FIX_RECORD, (fixed if fixed_yaml is not None else None)


def read_fix_record(run_path: Path) -> dict[str, Any] | None:
    """The run's fix.json when it has a readable one (None otherwise: no fix was run, or it is damaged)."""
    path = Path(run_path) / FIX_RECORD
    if not path.is_file():
        return None
    obj, _ = read_object(path)
    return obj if isinstance(obj, dict) and isinstance(obj.get("rows"), list) else None


def compare_records(runs_dir: Path) -> list[Path]:
    """Every compare record in runs_dir, oldest first (by the time that ends its name)."""
    found = Path(runs_dir).glob("compare-*.json") if Path(runs_dir).is_dir() else []
    return sorted(found, key=lambda p: (p.stem[-15:], p.name))


def is_compare_record(path: Path) -> bool:
    obj, _ = read_object(path) if Path(path).is_file() and Path(path).suffix == ".json" else (None, None)
    return isinstance(obj, dict) and isinstance(obj.get("variants"), list)


# A run's statuses once it has ended for good (its summary.json written): never resumed.
FINISHED = ("completed", "diverged", "pruned")


def read_tensors(path: Path, map_location: Any = "cpu", mmap: bool = False) -> Any:
    """What torch.save wrote to path (tensors in dicts and lists): the one place dlx reads
    .pt files. DamagedFile, naming the file, when it cannot: truncated, random bytes, or a
    pickle of anything but tensors. weights_only=True always, so such a file runs no code;
    torch's own message is not passed on (it advises weights_only=False, which would).
    mmap: the tensors stay on disk until used (a huge snapshots.pt is not read whole)."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        # weights_only's unpickler refuses a class or function ("Unsupported global: ...")
        # and any opcode it does not know (random bytes).
        crafted = "global" in str(e).lower()
        reason = (
            "it holds Python objects, not only tensors (dlx never runs code from a file)"
            if crafted
            else "it is not a file torch.save wrote (damaged?)"
        )
    except OSError as e:
        reason = f"{e.strerror or type(e).__name__}"
    except Exception:  # torch raises RuntimeError, EOFError, ... for a truncated zip
        reason = "it is damaged (truncated?) or not a file torch.save wrote"
    raise DamagedFile(path, reason)


def read_snapshots(path: Path, mmap: bool = False) -> dict[str, Any] | None:
    """A run folder's snapshots.pt (see the layout above), None when it has none. DamagedFile
    when it is there but unreadable. mmap: see read_tensors."""
    f = Path(path) / SNAPSHOTS_FILE
    if not f.is_file():
        return None
    snaps = read_tensors(f, mmap=mmap)
    try:
        ok = isinstance(snaps, dict) and len(snaps["steps"]) == len(snaps["states"]) == len(snaps["losses"])
    except SHAPE_ERRORS:
        ok = False
    if not ok:
        raise DamagedFile(f, "not the snapshots dlx writes (steps, losses and states of one length)")
    return snaps


def load_run(path: Path) -> dict[str, Any]:
    """meta, status, config (text), summary, metrics and probes of a run folder, and the
    problems found reading it (each naming its file: a summary that is not an object is
    dropped, odd jsonl lines skipped). DlxError when meta.json is not a readable object.

    status is run_status(meta), the status as it stands now (a `running` run whose process
    is gone is `interrupted`); every view of a run reads it, never meta["status"] raw.
    """
    path = Path(path)
    meta, why = read_object(path / "meta.json")
    if meta is None:
        raise DlxError(f"{path} is not a readable run folder ({why})")
    problems: list[str] = []
    summary = None
    if (path / "summary.json").is_file():
        summary, why = read_object(path / "summary.json")
        if why:
            problems.append(f"{why}; shown without it")
    try:
        config = (path / "config.yaml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        config = ""
    return {
        "path": path,
        "meta": meta,
        "status": run_status(meta, path),
        "config": config,
        "summary": summary,
        "metrics": check_series(read_jsonl(path / "metrics.jsonl", problems), problems, "metrics.jsonl"),
        "probes": check_series(read_jsonl(path / "probes.jsonl", problems), problems, "probes.jsonl"),
        "instruments": read_jsonl(path / "instruments.jsonl", problems),
        "problems": problems,
    }


def pid_alive(pid: Any) -> bool:
    """A process with this pid exists on this machine (a zombie, dead but not yet reaped, does not count)."""
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        pass  # it exists, owned by another user
    except (OSError, TypeError, ValueError, OverflowError):
        return False
    try:
        # /proc/PID/stat: "pid (comm) state ...", comm may hold spaces and parentheses.
        return Path(f"/proc/{int(pid)}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(pid, 0) is all we know


def _age_s(stamp: Any) -> float | None:
    """Seconds since an ISO time with a UTC offset (as now() writes), None if unreadable."""
    try:
        t = dt.datetime.fromisoformat(str(stamp))
    except ValueError:
        return None
    if t.tzinfo is None:
        return None
    return (dt.datetime.now(dt.timezone.utc) - t).total_seconds()


def run_status(meta: dict[str, Any], path: Path | None = None) -> str:
    """The status of a run as it stands now: a `running` run whose process is gone is `interrupted`.

    A killed process (SIGKILL, power loss, reboot) never gets to write its status.
    Given the folder, on this host, for a run whose writer locks it (meta writer_lock): the
    lock tells (RunFolder.lock; the kernel drops it when the writer dies). Otherwise its pid
    tells (and boot_id, since pids are reused after a reboot); on another host only the
    heartbeat can: older than STALE_AFTER_S means dead. Metas written before the liveness
    fields existed are judged by pid alone.
    """
    status = meta.get("status", "?")
    if status != "running":
        return status if isinstance(status, str) else "?"
    if path is not None and meta.get("writer_lock") and meta.get("host") == socket.gethostname():
        # Its writer holds the folder's lock while it lives, however long it is stopped
        # (Ctrl-Z) and whatever its heartbeat says; a dead writer, or a pid reused by another
        # process, holds none.
        if meta.get("boot_id") and boot_id() and meta["boot_id"] != boot_id():
            return "interrupted"
        alive = writer_alive(path)
        if alive is not None:
            return "running" if alive else "interrupted"
    age = _age_s(meta.get("heartbeat")) if meta.get("heartbeat") else None
    if age is not None and age > STALE_AFTER_S:
        return "interrupted"
    host = meta.get("host")
    if host is not None and host != socket.gethostname():
        return "running"  # another machine's pid means nothing here; the heartbeat is fresh
    if meta.get("boot_id") and boot_id() and meta["boot_id"] != boot_id():
        return "interrupted"
    return "running" if pid_alive(meta.get("pid")) else "interrupted"


def sweep_status(meta: dict[str, Any], folder: Path) -> str:
    """A sweep's status as it stands now: `running` only while its driver holds the sweep
    folder's lock (Sweep takes it with take_lock); a driver killed outright (SIGKILL, power
    loss) leaves `running` in sweep.json and is `interrupted` here. On another host, or
    without flock, the pid or the word written is all there is."""
    status = meta.get("status", "?") if isinstance(meta, dict) else "?"
    if status != "running":
        return str(status)
    if meta.get("host") not in (None, socket.gethostname()):
        return "running"
    alive = writer_alive(folder)
    if alive is None:
        alive = pid_alive(meta.get("pid"))
    return "running" if alive else "interrupted"


def list_runs(runs_dir: Path = Path("runs"), skipped: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per run folder (oldest first): id, name, status, steps, final metrics, verdict.

    A run still marked `running` whose process is gone (killed, machine rebooted,
    heartbeat stale: see run_status) is shown as `interrupted`: nothing will ever finish it.
    A folder whose meta.json is not a readable object is left out and named in `skipped`;
    a field of the wrong type shows as missing. One bad folder never hides the others.
    """
    rows = []
    for d in run_folders(runs_dir):
        meta, why = read_object(d / "meta.json")
        if meta is None:
            if skipped is not None:
                skipped.append(f"{d.name} ({why})")
            continue
        summary = read_object(d / "summary.json")[0] or {}
        final = final_metrics(summary)
        rows.append(
            {
                "run_id": d.name,
                "name": meta.get("name") if isinstance(meta.get("name"), str) else None,
                "status": run_status(meta, d),
                "started": meta.get("started") if isinstance(meta.get("started"), str) else None,
                "steps": summary.get("steps") if is_int(summary.get("steps")) else None,
                **{
                    k: final.get(k) if is_number(final.get(k)) else None
                    for k in ("train_loss", "train_acc", "test_loss", "test_acc")
                },
                "verdict": verdict_kind(summary),
                "path": str(d),
            }
        )
    return rows

"""A run folder being written (RunFolder), and what its meta.json records of where the run
came from (command line, git commit, versions)."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from dlx.core.errors import DlxError
from dlx.records.jsonio import jsonable, write_atomic, write_json
from dlx.records.layout import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    META_FILE,
    METRICS_FILE,
    PROBES_FILE,
    SERIES,
    SNAPSHOTS_FILE,
    SUMMARY_FILE,
)
from dlx.records.locks import HEARTBEAT_EVERY_S, liveness, lock_holder, now, take_lock

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


def command_line() -> list[str]:
    return [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else []


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
                write_atomic(self._tmp / CONFIG_FILE, config_yaml)
                self.meta = {"run_id": self.run_id, "status": "running", **liveness(), **meta}
                write_json(self._tmp / META_FILE, self.meta)
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
        for name in (METRICS_FILE, PROBES_FILE):
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
        write_json(self.path / META_FILE, self.meta)

    def heartbeat(self) -> None:
        """Say the run is alive (see run_status); called per log interval, written at most every HEARTBEAT_EVERY_S."""
        t = time.monotonic()
        if t - self._beat >= HEARTBEAT_EVERY_S and self.meta.get("status") == "running":
            self._beat = t
            self.update_meta(heartbeat=now())

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.path / SUMMARY_FILE, summary)

    def write_checkpoint(self, state: dict[str, Any]) -> None:
        import io

        import torch

        buf = io.BytesIO()
        torch.save(state, buf)
        write_atomic(self.path / CHECKPOINT_FILE, buf.getvalue())

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
            self.meta = json.loads((self.path / META_FILE).read_text())
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
            if name not in (METRICS_FILE, PROBES_FILE) and not path.is_file():
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

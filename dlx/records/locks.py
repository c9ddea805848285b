"""Who is writing a run or sweep folder, and whether it still lives: the liveness fields of
meta.json, the folder's writer lock (flock) and the status a reader judges from them
(see the layout's Liveness)."""

from __future__ import annotations

import datetime as dt
import os
import socket
from pathlib import Path
from typing import Any

STATUSES = ("running", "completed", "diverged", "failed", "interrupted", "pruned")

# A running run rewrites its heartbeat at log intervals, but at most this often:
# a tiny run logs hundreds of intervals a second and each rewrite is an fsync.
HEARTBEAT_EVERY_S = 2.0
# A `running` run whose heartbeat is older than this is taken for dead. It must
# exceed the longest log interval (steps + evaluation) of a live run: calling a
# live run interrupted invites a --resume into a folder still being written.
STALE_AFTER_S = 30 * 60


def now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


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

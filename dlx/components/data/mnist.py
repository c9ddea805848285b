"""The real MNIST digits, read from the four IDX files (gzipped or not).

The files are looked for in data.root, $DLX_DATA_DIR and the cache, in that
order; with `download: true` missing ones are fetched into data.root (or the
cache), each verified against the MD5 of its uncompressed contents before it
is kept. Every file is verified again when loaded (shape, then MD5: ~0.1 s), so
a damaged or altered file is an error naming it, never silently wrong digits; a
bad file in dlx's own cache is removed, so the cache never keeps one.

Images stay uint8: the Dataset's scale/shift turn each batch into float, so a
60k-image set costs 47 MB rather than 188 MB on the device.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dlx.components.data.base import DATASETS, Dataset, DataSpec
from dlx.core.errors import DlxError
from dlx.core.paths import Directory

# name -> MD5 of the uncompressed contents, so a file verifies whether or not
# it is gzipped (and whatever gzip level a mirror used).
FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}

DEFAULT_MIRRORS: list[str] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]

N_TRAIN, N_TEST, SIDE, N_CLASSES = 60000, 10000, 28, 10
SHAPES: dict[str, tuple[int, ...]] = {
    "train-images-idx3-ubyte": (N_TRAIN, SIDE, SIDE),
    "train-labels-idx1-ubyte": (N_TRAIN,),
    "t10k-images-idx3-ubyte": (N_TEST, SIDE, SIDE),
    "t10k-labels-idx1-ubyte": (N_TEST,),
}
MEAN, STD = 0.1307, 0.3081  # the customary train-set statistics of x/255

Report = Callable[[str, int, "int | None"], None]

_GZIP_MAGIC = b"\x1f\x8b"
_IDX_UINT8 = 0x08
_CHUNK = 1 << 20
_HINT = "delete it and run again with data.download: true, or fetch it again by hand"


class CorruptFile(DlxError):
    """An MNIST file that is not what it should be; names the file and what is wrong."""

    def __init__(self, path: Path, what: str, hint: str = _HINT):
        self.path, self.what = Path(path), what
        super().__init__(f"{path}: {what}. The file is damaged or not an MNIST IDX file; {hint}.")


def _corrupt(path: Path, what: str) -> CorruptFile:
    return CorruptFile(path, what)


def _gunzip(raw: bytes) -> bytes:
    """The uncompressed bytes; OSError/EOFError/zlib.error if the stream is bad."""
    return gzip.decompress(raw)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The uint8 array stored in an IDX file, gzipped or raw (read-only view)."""
    path = Path(path)
    return _parse_idx(_uncompressed(path), path)


def _uncompressed(path: Path) -> bytes:
    """The file's bytes, gunzipped if they are gzip (whatever the name says)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DlxError(f"{path}: cannot read ({e.strerror or e})") from e
    # Sniff the content rather than trust the suffix: people gunzip files and
    # keep the name, or the reverse.
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = _gunzip(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise _corrupt(path, f"bad gzip data ({e})") from e
    elif path.suffix == ".gz" and raw[:2] != b"\0\0":
        raise _corrupt(path, "not a gzip file (no gzip header)")
    return raw


def _parse_idx(raw: bytes, path: Path) -> np.ndarray:
    if len(raw) < 4:
        raise _corrupt(path, f"only {len(raw)} bytes, shorter than the IDX header")
    if raw[0] != 0 or raw[1] != 0:
        raise _corrupt(path, f"wrong magic number {raw[:4].hex()} (an IDX file starts with 0000)")
    if raw[2] != _IDX_UINT8:
        raise _corrupt(path, f"IDX element type 0x{raw[2]:02x}, expected 0x08 (uint8)")
    ndim = raw[3]
    if not 1 <= ndim <= 4:
        raise _corrupt(path, f"IDX header says {ndim} dimensions, expected 1 to 4")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _corrupt(path, f"truncated header ({len(raw)} bytes, need {header})")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise _corrupt(path, f"{what}: {len(raw)} bytes, but dims {dims} need {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def cache_dir() -> Path:
    """Where downloads go when data.root is not set."""
    if os.environ.get("DLX_CACHE_DIR"):
        return Path(os.environ["DLX_CACHE_DIR"]).expanduser() / "mnist"
    # XDG says an empty value counts as unset.
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "dlx" / "mnist"
    return Path.home() / ".cache" / "dlx" / "mnist"


def candidate_roots(root: Path | None = None) -> list[Path]:
    """The folders searched for the four files, first match wins."""
    roots: list[Path] = []
    if root is not None:
        roots.append(Path(root).expanduser())
    if os.environ.get("DLX_DATA_DIR"):
        roots.append(Path(os.environ["DLX_DATA_DIR"]).expanduser())
    roots.append(cache_dir())
    out: list[Path] = []
    for r in roots:
        if r not in out:
            out.append(r)
    return out


def _find(root: Path, name: str) -> Path | None:
    for p in (root / f"{name}.gz", root / name):
        if p.is_file():
            return p
    return None


def locate(root: Path | None = None) -> Path | None:
    """The first candidate folder holding all four files (by name; nothing is read)."""
    for r in candidate_roots(root):
        if all(_find(r, name) is not None for name in FILES):
            return r
    return None


class _MirrorFailed(Exception):
    """One mirror could not supply one file; the reason goes into the final error."""


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every OS/filesystem.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fetch(url: str, dest: Path, name: str, md5: str, report: Report | None, timeout: float) -> Path:
    """Download url into dest/NAME.gz if it gunzips to the expected MD5."""
    final = dest / f"{name}.gz"
    # Same folder as the final name, so os.replace is an atomic rename.
    fd, tmp_name = tempfile.mkstemp(dir=dest, prefix=f".{name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                req = urllib.request.Request(url, headers={"User-Agent": "dlx"})
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    length = resp.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    done = 0
                    if report is not None:
                        report(name, done, total)
                    while True:
                        chunk = resp.read(_CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        done += len(chunk)
                        if report is not None:
                            report(name, done, total)
            except urllib.error.HTTPError as e:
                raise _MirrorFailed(f"HTTP {e.code} {e.reason}") from e
            except urllib.error.URLError as e:
                raise _MirrorFailed(f"cannot connect ({e.reason})") from e
            except http.client.IncompleteRead as e:
                raise _MirrorFailed(f"connection closed early ({len(e.partial)} more bytes expected)") from e
            except (http.client.HTTPException, OSError) as e:  # includes timeouts and resets
                raise _MirrorFailed(f"transfer failed ({type(e).__name__}: {e})") from e
            except ValueError as e:  # urllib's verdict on a malformed URL
                raise _MirrorFailed(f"bad URL ({e})") from e
            # http.client does not always raise when the body stops short of
            # Content-Length, so count the bytes ourselves.
            if total is not None and done != total:
                raise _MirrorFailed(f"body cut off: got {done} of {total} bytes")
            out.flush()
            os.fsync(out.fileno())
        try:
            data = _gunzip(tmp.read_bytes())
        except (OSError, EOFError, zlib.error) as e:
            raise _MirrorFailed(f"not a valid gzip file ({e})") from e
        got = hashlib.md5(data).hexdigest()
        if got != md5:
            raise _MirrorFailed(f"MD5 of the uncompressed file is {got}, expected {md5}")
        os.replace(tmp, final)
        _fsync_dir(dest)
        return final
    finally:
        # Also reached on KeyboardInterrupt: never leave a partial download.
        if tmp.exists():
            tmp.unlink()


# A .part file untouched this long is left by a killed download (SIGKILL skips
# _fetch's cleanup); younger ones may belong to a download running right now.
STALE_PART_S = 600


def _remove_stale_parts(dest: Path) -> None:
    for name in FILES:
        for part in dest.glob(f".{name}.*.part"):
            try:
                if time.time() - part.stat().st_mtime > STALE_PART_S:
                    part.unlink()
            except OSError:
                pass  # another process removed or renamed it first


def download(
    dest: str | os.PathLike,
    mirrors: list[str] | None = None,
    report: Report | None = None,
    timeout: float = 30.0,
) -> Path:
    """Fetch the files missing from dest, trying mirrors in order; returns dest.

    `report(name, done_bytes, total_bytes_or_None)` is called as bytes arrive.
    """
    dest = Path(dest).expanduser()
    mirrors = DEFAULT_MIRRORS if mirrors is None else list(mirrors)
    if not mirrors:
        raise DlxError("cannot download MNIST: the list of mirrors is empty")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DlxError(f"cannot create the MNIST folder {dest} ({e.strerror or e})") from e
    _remove_stale_parts(dest)
    for name, md5 in FILES.items():
        if _find(dest, name) is not None:
            continue
        failures = []
        for mirror in mirrors:
            url = (mirror if mirror.endswith("/") else mirror + "/") + name + ".gz"
            try:
                _fetch(url, dest, name, md5, report, timeout)
                break
            except _MirrorFailed as e:
                failures.append(f"  - {url}: {e}")
        else:
            names = ", ".join(f"{n}.gz" for n in FILES)
            raise DlxError(
                f"could not download MNIST file {name}.gz; every mirror failed:\n"
                + "\n".join(failures)
                + f"\nDownload {names} by hand (gzipped or not) and put them in {dest}, "
                "or in a folder named by data.root or $DLX_DATA_DIR."
            )
    return dest


def _stamp(root: Path) -> tuple:
    paths = [_find(root, name) for name in FILES]
    if any(p is None for p in paths):
        raise DlxError(f"MNIST files disappeared from {root}; run again")
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths)


def read_verified(path: Path, name: str) -> np.ndarray:
    """The array of MNIST file NAME at path, checked: a valid IDX file, the right shape, the right MD5."""
    raw = _uncompressed(path)
    arr = _parse_idx(raw, path)
    if arr.shape != SHAPES[name]:
        raise _corrupt(path, f"holds an array of shape {arr.shape}, expected {SHAPES[name]} for {name}")
    got = hashlib.md5(raw).hexdigest()
    if got != FILES[name]:
        raise _corrupt(path, f"wrong checksum: the MD5 of its uncompressed contents is {got}, expected {FILES[name]}")
    return arr


def _in_cache(path: Path) -> bool:
    try:
        return path.parent.resolve() == cache_dir().resolve()
    except OSError:
        return False


@lru_cache(maxsize=1)
def _read_all(stamp: tuple, drop_bad: bool = True) -> tuple[np.ndarray, ...]:
    # Keyed by path/size/mtime so a sweep in one process parses the files once,
    # yet a replaced file is read again. The arrays are read-only views.
    # drop_bad False (checking a config): a damaged cached copy is named, never removed.
    out = []
    for (p, _, _), name in zip(stamp, FILES):
        path = Path(p)
        try:
            out.append(read_verified(path, name))
        except CorruptFile as e:
            if not (drop_bad and _in_cache(path)):
                raise  # the user's own folder: say what is wrong, never delete their files
            # dlx's cache holds only what dlx downloaded: drop the bad copy so the
            # next run fetches a good one instead of failing on it again.
            try:
                path.unlink()
            except OSError:
                raise e from None
            raise CorruptFile(
                path, e.what, "dlx removed it from its cache; run again with data.download: true to fetch a fresh copy"
            ) from None
    return tuple(out)


def _subset(n: int, total: int, seed: int, stream: int) -> np.ndarray | None:
    if n >= total:
        return None
    # One stream per split, so the test subset does not depend on n_train.
    rng = np.random.default_rng([stream, seed])
    return np.sort(rng.choice(total, size=n, replace=False))


def _tensor(a: np.ndarray, idx: np.ndarray | None) -> torch.Tensor:
    # Fancy indexing copies; the full set needs an explicit copy because the
    # parsed arrays are read-only (and shared by the cache).
    return torch.from_numpy(a[idx] if idx is not None else a.copy())


def _where(root: Path | None) -> list[tuple[Path, str]]:
    """Each folder searched, with what put it on the list."""
    roles = []
    if root is not None:
        roles.append((Path(root).expanduser(), "data.root"))
    if os.environ.get("DLX_DATA_DIR"):
        roles.append((Path(os.environ["DLX_DATA_DIR"]).expanduser(), "$DLX_DATA_DIR"))
    roles.append((cache_dir(), "the cache"))
    out: list[tuple[Path, str]] = []
    for folder, role in roles:
        if folder not in [f for f, _ in out]:
            out.append((folder, role))
    return out


def _searched(root: Path | None) -> str:
    """Each folder searched and what it lacks: `/data (data.root): has 1 of the 4 files, not ...`."""
    parts = []
    for folder, role in _where(root):
        if not folder.is_dir():
            state = "does not exist" if not folder.exists() else "is not a folder"
        else:
            missing = [n for n in FILES if _find(folder, n) is None]
            present = [n for n in FILES if n not in missing]
            state = (
                "holds none of the 4 files"
                if not present
                else f"lacks {', '.join(missing)}"
                if len(missing) <= len(present)
                else f"holds only {', '.join(present)}"
            )
        parts.append(f"{folder} ({role}): {state}")
    return "; ".join(parts)


def _not_found_message(root: Path | None) -> str:
    # Kept short: a config problem is clipped at 500 characters.
    names = ", ".join(FILES)
    return (
        f"MNIST not found. Searched {_searched(root)}. Put {names} (.gz or not) in one of them "
        f"or in data.root, or set data.download: true (README: MNIST offline)"
    )


def _download_or_explain(root: Path | None, mirrors: list[str], report: Report | None = None) -> Path:
    """download() into data.root or the cache; its failure says first where the files were looked for."""
    dest = Path(root).expanduser() if root is not None else cache_dir()
    try:
        return download(dest, mirrors, report=report)
    except DlxError as e:
        raise DlxError(
            f"MNIST not found. Searched {_searched(root)}.\ndata.download is true, so dlx tried "
            f"to fetch the files into {dest}, and could not: {e}"
        ) from None


class MNISTFiles(DataSpec):
    """Where the MNIST files come from and how many samples: shared by mnist and seq_mnist."""

    root: Directory | None = Field(None, description="folder with the four IDX files (.gz or not)")
    download: bool = Field(False, description="fetch missing files into root (or the cache)")
    mirrors: list[str] = Field(default_factory=lambda: list(DEFAULT_MIRRORS))
    n_train: int = Field(N_TRAIN, ge=1, le=N_TRAIN)
    n_test: int = Field(N_TEST, ge=1, le=N_TEST)
    normalize: bool = Field(True, description="True: (x/255 - 0.1307)/0.3081; False: raw pixel values 0..255")

    @model_validator(mode="after")
    def _files_available(self):
        # Fail at config time, not minutes into a sweep.
        if not self.download and locate(self.root) is None:
            raise ValueError(_not_found_message(self.root))
        if self.download and not self.mirrors and locate(self.root) is None:
            raise ValueError("MNIST not found locally and download is true, but mirrors is empty")
        return self

    def prepare(self, report=None) -> None:
        if self.download and locate(self.root) is None:
            _download_or_explain(self.root, self.mirrors, report=report)

    def load(self, seed: int) -> Dataset:
        return self.read(seed, fetch=True)

    def peek(self, seed: int) -> Dataset:
        # Checking a config never fetches: files not here yet (download: true, else the
        # validator above refused) are checked as stand-ins of the real shape.
        if locate(self.root) is None:
            return self._blank(self.n_train, self.n_test)
        return self.read(seed, fetch=False)

    def read(self, seed: int, fetch: bool) -> Dataset:
        """The data; fetch: download missing files (when download is true) and drop a damaged
        copy from dlx's cache. Without it nothing is created or deleted."""
        raise NotImplementedError

    def _scale_shift(self) -> tuple[float, float]:
        return (1.0 / (255.0 * STD), -MEAN / STD) if self.normalize else (1.0, 0.0)

    def stand_in(self, seed: int) -> Dataset:
        """Two blank images of feature_shape(), without finding or downloading a file."""
        return self._blank(2, 2)

    def _blank(self, n_train: int, n_test: int) -> Dataset:
        # One zero image repeated by expand(): as many samples as asked (batch sizes are
        # checked against n_train) in the memory of one.
        one = torch.zeros((1, *self.feature_shape()), dtype=torch.uint8)
        scale, shift = self._scale_shift()
        return Dataset(
            name=self.name,
            x_train=one.expand(n_train, *one.shape[1:]),
            y_train=torch.zeros(1, dtype=torch.long).expand(n_train),
            x_test=one.expand(n_test, *one.shape[1:]),
            y_test=torch.zeros(1, dtype=torch.long).expand(n_test),
            task="classification",
            n_classes=N_CLASSES,
            scale=scale,
            shift=shift,
        )


class Augmentation(BaseModel):
    """Random per-image shifts (pixels) and rotations (degrees) of training batches."""

    model_config = ConfigDict(extra="forbid")
    shift: float = Field(2.0, ge=0, le=14, description="the largest shift, in pixels")
    rotate: float = Field(10.0, ge=0, le=180, description="the largest rotation, in degrees")


@DATASETS.register("mnist")
class MNIST(MNISTFiles):
    """The real MNIST digits (60k train / 10k test, 28x28 grey), kept as uint8."""

    flatten: bool = Field(True, description="True: (N, 784) for MLPs; False: (N, 1, 28, 28) for CNNs")
    augment: Augmentation | None = Field(
        None, description="random shifts and rotations of each training batch (dlx/augment.py)"
    )

    def feature_shape(self):
        return (SIDE * SIDE,) if self.flatten else (1, SIDE, SIDE)

    def read(self, seed: int, fetch: bool) -> Dataset:
        root = locate(self.root)
        if root is None:
            if not (self.download and fetch):
                raise DlxError(_not_found_message(self.root))
            root = _download_or_explain(self.root, self.mirrors)
        x_tr, y_tr, x_te, y_te = _read_all(_stamp(root), fetch)

        i_tr = _subset(self.n_train, N_TRAIN, seed, 0)
        i_te = _subset(self.n_test, N_TEST, seed, 1)
        shape = (-1, SIDE * SIDE) if self.flatten else (-1, 1, SIDE, SIDE)
        scale, shift = self._scale_shift()
        return Dataset(
            name="mnist",
            x_train=_tensor(x_tr, i_tr).reshape(shape),
            y_train=_tensor(y_tr, i_tr).long(),
            x_test=_tensor(x_te, i_te).reshape(shape),
            y_test=_tensor(y_te, i_te).long(),
            task="classification",
            n_classes=N_CLASSES,
            scale=scale,
            shift=shift,
            augment=(self.augment.shift, self.augment.rotate) if self.augment else None,
        )

"""MNIST: the IDX parser, where files are looked for, the verified download, the spec.

Tests that need the real files read them from ../shared/data/mnist beside the
checkout and are skipped when it is absent. Downloads are served by a local
HTTP server on 127.0.0.1: no test reaches the network or touches ~.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import shutil
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from dlx.components.data import DATASETS
from dlx.components.data import mnist as M
from dlx.core.errors import DlxError

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
HAVE_REAL = all((REAL / f"{n}.gz").is_file() for n in M.FILES)
needs_real = pytest.mark.skipif(not HAVE_REAL, reason=f"real MNIST files not found in {REAL}")

LABELS = "train-labels-idx1-ubyte"  # the smallest file: failure tests fetch only this one


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No test sees the user's cache, data dir or proxy settings."""
    monkeypatch.setenv("DLX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DLX_DATA_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + np.array(arr.shape, dtype=">u4").tobytes()
    return header + arr.tobytes()


def spec(**kw):
    return DATASETS.parse({"name": "mnist", **kw})


# --- read_idx -----------------------------------------------------------------


@needs_real
def test_read_idx_parses_real_files_gzipped_and_raw(tmp_path):
    expect = {
        "train-images-idx3-ubyte": (60000, 28, 28),
        "train-labels-idx1-ubyte": (60000,),
        "t10k-images-idx3-ubyte": (10000, 28, 28),
        "t10k-labels-idx1-ubyte": (10000,),
    }
    for name, shape in expect.items():
        gz = M.read_idx(REAL / f"{name}.gz")
        raw_path = tmp_path / name
        raw_path.write_bytes(gzip.decompress((REAL / f"{name}.gz").read_bytes()))
        raw = M.read_idx(raw_path)
        for a in (gz, raw):
            assert a.shape == shape and a.dtype == np.uint8
        assert np.array_equal(gz, raw)
        if "labels" in name:
            assert gz.min() == 0 and gz.max() == 9
        else:
            assert gz.max() == 255


def test_read_idx_sniffs_content_not_suffix(tmp_path):
    data = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw_named_gz = tmp_path / "a.gz"
    raw_named_gz.write_bytes(idx_bytes(data))
    gz_named_raw = tmp_path / "b"
    gz_named_raw.write_bytes(gzip.compress(idx_bytes(data)))
    assert np.array_equal(M.read_idx(raw_named_gz), data)
    assert np.array_equal(M.read_idx(gz_named_raw), data)


GOOD = idx_bytes(np.zeros((3, 4, 4)))


@pytest.mark.parametrize(
    "fname, content, why",
    [
        ("imgs", GOOD[:-5], "truncated"),
        ("imgs", GOOD[:6], "truncated header"),
        ("imgs", GOOD + b"xx", "trailing bytes"),
        ("imgs", b"\x08\x03" + GOOD[2:], "wrong magic"),
        ("imgs", GOOD[:2] + b"\x0d" + GOOD[3:], "0x0d"),
        ("imgs", b"", "shorter than the IDX header"),
        ("imgs.gz", b"this is not gzip at all", "not a gzip file"),
        ("imgs.gz", gzip.compress(GOOD)[:-12], "bad gzip"),
        ("imgs.gz", gzip.compress(GOOD)[:10] + b"\xff" * 20, "bad gzip"),
    ],
    ids=[
        "truncated",
        "truncated-header",
        "trailing",
        "magic",
        "dtype",
        "empty",
        "not-gzip",
        "truncated-gzip",
        "garbage-gzip",
    ],
)
def test_read_idx_rejects_corrupt_file_naming_it(tmp_path, fname, content, why):
    path = tmp_path / fname
    path.write_bytes(content)
    with pytest.raises(DlxError) as e:
        M.read_idx(path)
    msg = str(e.value)
    assert str(path) in msg and why in msg and "delete" in msg


# --- where the files are looked for --------------------------------------------


def fake_set(folder: Path, gz: bool = True, skip: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in M.FILES:
        if n != skip:
            (folder / (f"{n}.gz" if gz else n)).write_bytes(b"")
    return folder


def test_cache_dir_prefers_dlx_then_xdg_then_home(tmp_path, monkeypatch):
    assert M.cache_dir() == tmp_path / "cache" / "mnist"
    monkeypatch.delenv("DLX_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert M.cache_dir() == tmp_path / "xdg" / "dlx" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert M.cache_dir() == tmp_path / "home" / ".cache" / "dlx" / "mnist"


def test_locate_checks_root_then_data_dir_env_then_cache(tmp_path, monkeypatch):
    root = fake_set(tmp_path / "root")
    env = fake_set(tmp_path / "env", gz=False)  # uncompressed names count too
    cache = fake_set(tmp_path / "cache" / "mnist")
    monkeypatch.setenv("DLX_DATA_DIR", str(env))
    assert M.candidate_roots(root) == [root, env, cache]
    assert M.locate(root) == root
    assert M.locate(None) == env
    monkeypatch.delenv("DLX_DATA_DIR")
    assert M.locate(None) == cache
    incomplete = fake_set(tmp_path / "partial", skip=LABELS)
    assert M.locate(incomplete) == cache
    shutil.rmtree(cache)
    assert M.locate(incomplete) is None


# --- download from a local server ----------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # clients hang up on purpose (timeouts); keep the test output clean


class _Mirror(http.server.SimpleHTTPRequestHandler):
    """Serves www/<mirror>/NAME.gz; /cut/ lies about the length, /slow/ hangs."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        name = self.path.rsplit("/", 1)[-1]
        if self.path.startswith("/cut/"):
            body = (Path(self.directory) / "good" / name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if self.path.startswith("/slow/"):
            time.sleep(1.0)
            return
        super().do_GET()


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """Base URL of a local server; mirrors are base + '/good/', '/bad/', ..."""
    if not HAVE_REAL:
        pytest.skip(f"real MNIST files not found in {REAL}")
    www = tmp_path_factory.mktemp("www")
    for d in ("good", "flipped", "tampered"):
        (www / d).mkdir()
    for n in M.FILES:
        shutil.copy(REAL / f"{n}.gz", www / "good" / f"{n}.gz")
    gz = (REAL / f"{LABELS}.gz").read_bytes()
    flipped = bytearray(gz)
    for i in range(len(gz) // 2, len(gz) // 2 + 16):
        flipped[i] ^= 0xFF  # breaks the deflate stream or its CRC
    (www / "flipped" / f"{LABELS}.gz").write_bytes(bytes(flipped))
    data = bytearray(gzip.decompress(gz))
    data[-1] = (data[-1] + 1) % 10  # still a valid label file, wrong MD5
    (www / "tampered" / f"{LABELS}.gz").write_bytes(gzip.compress(bytes(data)))

    server = _Server(("127.0.0.1", 0), partial(_Mirror, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def all_but_labels(dest: Path) -> Path:
    """dest holding every file except LABELS, so a download fetches only that one."""
    dest.mkdir(parents=True)
    for n in M.FILES:
        if n != LABELS:
            (dest / f"{n}.gz").symlink_to(REAL / f"{n}.gz")
    return dest


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir() if p.name != f"{LABELS}.gz" and not p.is_symlink())


def md5_of_gz(path: Path) -> str:
    return hashlib.md5(gzip.decompress(path.read_bytes())).hexdigest()


def test_download_fetches_all_files_verified_with_progress(tmp_path, mirror):
    dest = tmp_path / "dl"
    seen: dict[str, tuple[int, int | None]] = {}
    got = M.download(dest, [mirror + "/good/"], report=lambda n, done, total: seen.update({n: (done, total)}))
    assert got == dest
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{n}.gz" for n in M.FILES)
    for n, md5 in M.FILES.items():
        assert md5_of_gz(dest / f"{n}.gz") == md5
        size = (REAL / f"{n}.gz").stat().st_size
        assert seen[n] == (size, size)
    assert M.locate(dest) == dest


def test_download_skips_files_already_present(tmp_path, mirror):
    dest = all_but_labels(tmp_path / "dl")
    fetched = []
    M.download(dest, [mirror + "/good"], report=lambda n, d, t: fetched.append(n))  # no trailing slash
    assert set(fetched) == {LABELS}
    assert md5_of_gz(dest / f"{LABELS}.gz") == M.FILES[LABELS]


@pytest.mark.parametrize("bad", ["flipped", "tampered", "cut", "missing"])
def test_download_rejects_bad_mirror_and_uses_next(tmp_path, mirror, bad):
    dest = all_but_labels(tmp_path / "dl")
    M.download(dest, [f"{mirror}/{bad}/", f"{mirror}/good/"])
    assert md5_of_gz(dest / f"{LABELS}.gz") == M.FILES[LABELS]
    assert leftovers(dest) == []


def test_download_times_out_on_hanging_mirror_and_uses_next(tmp_path, mirror):
    dest = all_but_labels(tmp_path / "dl")
    M.download(dest, [f"{mirror}/slow/", f"{mirror}/good/"], timeout=0.2)
    assert md5_of_gz(dest / f"{LABELS}.gz") == M.FILES[LABELS]


def test_download_all_mirrors_bad_raises_and_keeps_nothing(tmp_path, mirror):
    dest = all_but_labels(tmp_path / "dl")
    mirrors = [f"{mirror}/{m}/" for m in ("flipped", "tampered", "cut", "missing")]
    with pytest.raises(DlxError) as e:
        M.download(dest, mirrors)
    msg = str(e.value)
    assert f"{LABELS}.gz" in msg and str(dest) in msg
    reasons = {line.split(": ", 1)[0].strip(" -"): line for line in msg.splitlines()}
    for url, why in zip(mirrors, ("gzip", "MD5", "cut off", "404")):
        assert why in reasons[f"{url}{LABELS}.gz"]
    assert not (dest / f"{LABELS}.gz").exists()
    assert leftovers(dest) == []
    assert M.locate(dest) is None


def test_download_interrupted_leaves_no_partial_file(tmp_path, mirror):
    dest = all_but_labels(tmp_path / "dl")

    def interrupt(name, done, total):
        if done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        M.download(dest, [f"{mirror}/good/"], report=interrupt)
    assert not (dest / f"{LABELS}.gz").exists()
    assert leftovers(dest) == []


def test_load_downloads_into_cache_when_enabled(tmp_path, mirror):
    s = spec(download=True, mirrors=[f"{mirror}/good/"], n_train=100, n_test=50)
    ds = s.load(seed=0)
    assert M.locate(None) == tmp_path / "cache" / "mnist"
    assert ds.x_train.shape == (100, 784) and ds.x_test.shape == (50, 784)


# --- the spec -------------------------------------------------------------------


def test_spec_without_files_or_download_is_a_validation_error_naming_files(tmp_path):
    with pytest.raises(ValidationError) as e:
        DATASETS.parse({"name": "mnist"})
    msg = str(e.value)
    assert "MNIST not found" in msg and str(tmp_path / "cache" / "mnist") in msg
    for n in M.FILES:
        assert n in msg
    assert "(.gz or not)" in msg and "data.root" in msg and "data.download: true" in msg


@pytest.mark.parametrize("made", [False, True])
def test_a_wrong_dlx_data_dir_is_named_with_what_it_lacks_and_the_four_file_names(tmp_path, monkeypatch, made):
    wrong = tmp_path / "wrong"
    if made:
        wrong.mkdir()
        (wrong / "train-images-idx3-ubyte.gz").write_bytes(b"")  # one of four, by name
    monkeypatch.setenv("DLX_DATA_DIR", str(wrong))
    with pytest.raises(ValidationError) as e:
        DATASETS.parse({"name": "mnist"})
    msg = str(e.value)
    state = "holds only train-images-idx3-ubyte" if made else "does not exist"
    assert f"{wrong} ($DLX_DATA_DIR): {state}" in msg
    assert f"{tmp_path / 'cache' / 'mnist'} (the cache): does not exist" in msg
    assert all(n in msg for n in M.FILES) and "download failed" not in msg and "mirror" not in msg
    assert len(e.value.errors()[0]["msg"]) < 500  # a config problem is clipped past 500 characters


def test_with_download_on_and_no_network_the_error_names_the_folders_searched_first(tmp_path, monkeypatch):
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    monkeypatch.setenv("DLX_DATA_DIR", str(wrong))
    s = spec(download=True, mirrors=["http://127.0.0.1:9/"])  # nothing listens on port 9
    with pytest.raises(DlxError) as e:
        s.load(seed=0)
    msg = str(e.value)
    assert msg.startswith(f"MNIST not found. Searched {wrong} ($DLX_DATA_DIR): holds none of the 4 files")
    assert f"tried to fetch the files into {tmp_path / 'cache' / 'mnist'}, and could not" in msg
    assert "by hand" in msg


def test_spec_rejects_subset_sizes_beyond_mnist(tmp_path):
    fake_set(tmp_path / "root")
    with pytest.raises(ValidationError):
        spec(root=str(tmp_path / "root"), n_train=60001)
    with pytest.raises(ValidationError):
        spec(root=str(tmp_path / "root"), n_test=0)


def test_load_rejects_files_with_wrong_counts(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    for n in M.FILES:
        shape = (10, 28, 28) if "images" in n else (10,)
        (root / n).write_bytes(idx_bytes(np.zeros(shape)))
    with pytest.raises(DlxError, match="expected"):
        spec(root=str(root)).load(seed=0)


@needs_real
def test_load_subset_is_determined_by_seed():
    s = spec(root=str(REAL), n_train=1000, n_test=500)
    a, b, c = s.load(seed=0), s.load(seed=0), s.load(seed=1)
    assert a.x_train.shape == (1000, 784) and a.x_test.shape == (500, 784)
    assert a.x_train.dtype == torch.uint8 and a.y_train.dtype == torch.int64
    for k in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(a, k), getattr(b, k))
    assert not torch.equal(a.x_train, c.x_train) and not torch.equal(a.x_test, c.x_test)
    # The test subset does not shift when only n_train changes.
    d = spec(root=str(REAL), n_train=2000, n_test=500).load(seed=0)
    assert torch.equal(a.x_test, d.x_test)


@needs_real
def test_load_normalisation_gives_zero_mean_unit_std_and_raw_mode_is_0_255():
    ds = spec(root=str(REAL)).load(seed=0)
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    assert ds.task == "classification" and ds.n_classes == 10 and ds.out_dim == 10
    x = ds.as_float(ds.x_train)
    assert abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1) < 0.05
    assert ds.x_train.is_contiguous()
    ds.x_train[0, 0] = 1  # writable: not a view of the parser's buffer

    raw = spec(root=str(REAL), normalize=False, flatten=False, n_train=100, n_test=10).load(seed=0)
    assert raw.x_train.shape == (100, 1, 28, 28) and raw.in_dim == 784
    assert (raw.scale, raw.shift) == (1.0, 0.0)
    assert raw.as_float(raw.x_train).max().item() == 255.0


def test_dlx_train_downloads_mnist_with_a_progress_bar_then_trains(tmp_path, mirror):
    """The whole path a new user takes: no files anywhere, download: true, dlx train."""
    import os
    import subprocess
    import sys

    cfg = Path(__file__).resolve().parents[1] / "configs" / "mnist_mlp.yaml"
    env = {**os.environ, "DLX_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "120"}
    env.pop("DLX_DATA_DIR", None)
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "dlx",
            "train",
            str(cfg),
            "--set",
            f"data.mirrors=[{mirror}/good/]",
            "--set",
            "train.steps=20",
            "--set",
            "data.n_test=500",
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert p.returncode == 0, p.stderr
    assert "download" in p.stdout + p.stderr
    cached = sorted(f.name for f in (tmp_path / "cache" / "mnist").iterdir())
    assert cached == sorted(f"{n}.gz" for n in M.FILES)
    assert "verdict:" in p.stdout


def test_checking_a_config_never_downloads_or_creates_a_folder(tmp_path, monkeypatch):
    """dlx validate and dlx.check with download: true and no files anywhere: ok, read-only;
    only training fetches. The model is checked on stand-ins of the real shape and count."""
    from typer.testing import CliRunner

    import dlx
    from dlx.cli.app import app

    fetched = []
    monkeypatch.setattr(M, "download", lambda *a, **k: fetched.append(a) or pytest.fail("checking downloaded"))
    root = tmp_path / "any" / "dir"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"data: {{name: mnist, root: {root}, download: true, mirrors: ['http://127.0.0.1:9/']}}\n"
        "model: {name: mlp}\ntrain: {batch_size: 64}\n"
    )
    r = CliRunner().invoke(app, ["validate", str(cfg)])
    assert r.exit_code == 0 and r.output.startswith("ok"), r.output
    dlx.check(str(cfg), ["data.name=seq_mnist", "model.name=rnn"])
    data = dlx.check(str(cfg)).data.peek(0)  # what the lab's size check reads
    assert data.x_train.shape == (M.N_TRAIN, 784) and len(data.y_test) == M.N_TEST
    assert fetched == [] and not (tmp_path / "any").exists() and not (tmp_path / "cache").exists()

"""A run's .pt files damaged or crafted (a pickle of an object whose loading runs code, a
truncated file, random bytes): report, plot, animate and landscape name the file, leave out
what needs it and draw the rest; no file runs code, and torch's advice to load it with
weights_only=False never reaches the user. And dlx animate on a snapshots.pt of thousands
of states draws at most animate.MAX_FRAMES frames."""

from __future__ import annotations

import copy
import os
import shutil

import pytest
import torch
from conftest import TINY
from typer.testing import CliRunner

import dlx
from dlx.cli.app import app
from dlx.core.errors import DamagedFile
from dlx.records.folders import CHECKPOINT_FILE, SNAPSHOTS_FILE, read_snapshots, read_tensors
from dlx.views import animate as animate_module

MARKER = "dlx-crafted-pickle-ran"


class _Hostile:
    """Pickled, it asks the loader to call os.system (a crafted file's classic payload)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _damage(path, how: str, tmp_path) -> None:
    if how == "crafted":
        torch.save({"model": _Hostile(str(tmp_path / MARKER))}, path)
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    else:
        path.write_bytes(os.urandom(3000))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    cfg = copy.deepcopy(TINY)
    cfg["train"] = {"steps": 24, "batch_size": 32, "log_every": 4}
    return dlx.train(cfg, runs_dir=tmp_path_factory.mktemp("runs"), quiet=True).path


def _copy(trained, tmp_path, name: str):
    return shutil.copytree(trained, tmp_path / name)


def _invoke(*args) -> tuple[int, str]:
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.output
    assert "Traceback" not in r.output and "weights_only" not in r.output, r.output
    return r.exit_code, r.output


@pytest.mark.parametrize("how", ["crafted", "truncated", "random"])
def test_a_damaged_pt_file_is_named_never_run_and_never_met_with_torchs_advice(trained, tmp_path, how):
    run = _copy(trained, tmp_path, "bad")
    for name in (CHECKPOINT_FILE, SNAPSHOTS_FILE):
        _damage(run / name, how, tmp_path)
        with pytest.raises(DamagedFile, match=name) as e:
            read_tensors(run / name)
        assert "weights_only" not in str(e.value)
    with pytest.raises(DamagedFile, match=SNAPSHOTS_FILE):
        read_snapshots(run)
    assert not (tmp_path / MARKER).exists()  # the payload never ran


@pytest.mark.parametrize("how", ["crafted", "truncated", "random"])
def test_report_plot_and_landscape_leave_out_a_damaged_run_and_draw_the_rest(trained, tmp_path, how):
    bad = _copy(trained, tmp_path, "bad")
    for name in (CHECKPOINT_FILE, SNAPSHOTS_FILE):
        _damage(bad / name, how, tmp_path)
    code, out = _invoke("report", bad, "-o", tmp_path / "r.html")
    assert code == 0, out
    page = (tmp_path / "r.html").read_text()
    assert f"{CHECKPOINT_FILE} cannot be read" in page  # each picture's note names the file
    code, out = _invoke("plot", trained, bad, "--panels", "boundary,loss", "-o", tmp_path / "p.png")
    assert code == 0 and (tmp_path / "p.png").is_file(), out
    assert "left out" in out and CHECKPOINT_FILE in out
    code, out = _invoke("landscape", trained, bad, "--grid", "5", "-o", tmp_path / "l.png")
    assert code == 0 and (tmp_path / "l.png").is_file(), out
    assert "left out" in out and "bad" in out
    assert not (tmp_path / MARKER).exists()


def test_a_view_with_nothing_left_to_draw_names_the_damaged_file_and_fails(trained, tmp_path):
    bad = _copy(trained, tmp_path, "bad")
    _damage(bad / SNAPSHOTS_FILE, "crafted", tmp_path)
    code, out = _invoke("animate", bad, "-o", tmp_path / "a.gif")
    assert code == 1 and SNAPSHOTS_FILE in out and "cannot be read" in out, out
    assert not (tmp_path / MARKER).exists()


def test_animate_with_a_damaged_checkpoint_draws_from_the_snapshots_and_names_it(trained, tmp_path):
    bad = _copy(trained, tmp_path, "bad")
    _damage(bad / CHECKPOINT_FILE, "crafted", tmp_path)
    code, out = _invoke("animate", bad, "-o", tmp_path / "a.gif")
    assert code == 0 and (tmp_path / "a.gif").is_file(), out
    assert "left out" in out and CHECKPOINT_FILE in out
    assert not (tmp_path / MARKER).exists()


def test_animate_of_thousands_of_snapshots_draws_at_most_max_frames(trained, tmp_path, monkeypatch):
    from PIL import Image

    run = _copy(trained, tmp_path, "many")
    snaps = read_snapshots(run)
    n = 3000
    # One state repeated: a file of 3000 states as a crafted or older snapshots.pt holds them.
    many = {"steps": list(range(n)), "losses": [1.0] * n, "states": [snaps["states"][-1]] * n}
    torch.save(many, run / SNAPSHOTS_FILE)
    monkeypatch.setattr(animate_module, "MAX_FRAMES", 5)  # the cap, small: five frames draw fast
    drawn = []
    real = animate_module._render
    monkeypatch.setattr(animate_module, "_render", lambda frame, *a: drawn.append(frame["step"]) or real(frame, *a))
    code, out = _invoke("animate", run, "-o", tmp_path / "a.gif")
    assert code == 0, out
    assert drawn == [0, 750, 1500, 2249, 2999]  # evenly spread, first and last kept
    assert Image.open(tmp_path / "a.gif").n_frames == 5
    assert f"holds {n} snapshots" in out


def test_frame_indices_keep_every_snapshot_up_to_the_cap_then_spread_evenly():
    from dlx.views.animate import frame_indices

    assert frame_indices(3, 5) == [0, 1, 2]
    picked = frame_indices(3000, 60)
    assert len(picked) == 60 and picked[0] == 0 and picked[-1] == 2999

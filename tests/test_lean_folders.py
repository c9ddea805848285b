"""Lean run folders (issue 30): probes.jsonl's float32 measurements written as float32's
shortest text, and train.snapshots: 0 (a compare's seeds past the first 3) keeping no
snapshots.pt, with every view and a resume still working on such a folder."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from conftest import TINY
from typer.testing import CliRunner

import dlx
from dlx.cli.app import app
from dlx.config.loader import load_config
from dlx.core.errors import ConfigError
from dlx.core.jsonable import jsonable
from dlx.run.history import PROBE_KEYS, probes_record


def _config(steps: int = 40, log_every: int = 4, **train) -> dict:
    c = copy.deepcopy(TINY)
    c["train"] = {"steps": steps, "batch_size": 32, "log_every": log_every, **train}
    return c


class _Records:
    """The trainer's interval records, as it measured them (before any file)."""

    def __init__(self):
        self.records = []

    def on_interval(self, trainer, record):
        self.records.append(copy.deepcopy(record))


def test_probes_hold_the_float32_values_measured_in_shorter_text(tmp_path):
    spy = _Records()
    run = dlx.train(_config(), runs_dir=tmp_path / "runs", quiet=True, callbacks=[spy])
    lines = (run.path / "probes.jsonl").read_text().splitlines()
    assert len(lines) == len(spy.records) == 10
    for line, rec in zip(lines, spy.records):
        p = json.loads(line)
        pairs = [("grad_norm", "grad_norm"), ("loss", "loss_steps")] + [(k, k) for k in PROBE_KEYS if k in rec]
        for key, measured in pairs:
            want = np.asarray(rec[measured], dtype=np.float32)
            got = np.asarray(p[key], dtype=np.float64).astype(np.float32)
            assert got.shape == want.shape and np.array_equal(got.view(np.uint32), want.view(np.uint32)), key
        # Shorter than the float64 reprs of the same float32 values it was written as before.
        old = {k: np.asarray(rec[m], dtype=np.float32).astype(np.float64) for k, m in pairs}
        assert len(line) < 0.8 * len(json.dumps(jsonable({**p, **old})))
    assert "0.3479059040546417" not in lines[0]  # no 17-digit reprs of float32 values
    # A resumed History reads back exactly the float64s of the float32s the trainer measured.
    from dlx.run.history import History

    h = History()
    h.restore(
        [json.loads(m) for m in (run.path / "metrics.jsonl").read_text().splitlines()],
        [json.loads(x) for x in lines],
        None,
    )
    np.testing.assert_array_equal(h.grad, np.concatenate([r["grad_norm"] for r in spy.records]))
    np.testing.assert_array_equal(h.last["weight_norm"], spy.records[-1]["weight_norm"])


def test_float32_text_is_numpys_shortest_text_of_each_float32_at_every_magnitude():
    from dlx.core.jsonable import float32_text

    rng = np.random.default_rng(0)
    values = np.concatenate(
        [
            rng.random(20000),
            rng.standard_normal(20000) * 10.0 ** rng.integers(-40, 39, 20000),
            [0.0, -0.0, 1.0, 0.5, 0.1, 1e-45, 3.4e38, 16777217.0],
        ]
    ).astype(np.float32)
    got = float32_text(values.reshape(-1, 4))
    assert got.shape == (len(values) // 4, 4)
    got = got.ravel()
    np.testing.assert_array_equal(got.astype(np.float32), values)  # lossless
    np.testing.assert_array_equal(got, values.astype(str).astype(np.float64))  # numpy's shortest text, parsed
    assert json.dumps(float32_text(np.float32([0.3479059040546417])).tolist()) == "[0.3479059]"


def test_non_finite_probe_values_are_written_as_before():
    from dlx.core.jsonable import float32_text

    grad = float32_text(np.array([[0.1, np.nan], [np.inf, -np.inf]], dtype=np.float32))
    loss = float32_text(np.array([2.5, np.nan], dtype=np.float32))
    rec = {"step": 2, "first_step": 1, "grad_norm": grad, "loss_steps": loss, "diverged": {"step": 1}}
    p = json.loads(json.dumps(jsonable(probes_record(rec))))
    assert p["grad_norm"] == [[0.1, None], [None, None]] and p["loss"] == [2.5, None]
    assert p["diverged"] == {"step": 1} and p["step"] == 2


def test_a_lean_run_keeps_no_snapshots_and_every_view_still_works(tmp_path):
    run = dlx.train(_config(snapshots=0), runs_dir=tmp_path / "runs", quiet=True)
    assert run.status == "completed" and run.config["train"]["snapshots"] == 0
    assert not (run.path / "snapshots.pt").exists() and (run.path / "checkpoint.pt").is_file()
    cli = CliRunner()
    for args in (
        ["show", str(run.path)],
        ["report", str(run.path)],
        ["plot", str(run.path), "-o", str(tmp_path / "p.png")],
        ["plot", str(run.path), "--panels", "boundary,units,warp,histograms", "-o", str(tmp_path / "q.png")],
        ["runs", "--runs-dir", str(tmp_path / "runs")],
    ):
        r = cli.invoke(app, args)
        assert r.exit_code == 0 and "Traceback" not in r.output, (args, r.output)
    html = (run.path / "report.html").read_text()
    assert "decision boundary from init to the end" in html and "no snapshots.pt" not in html
    # Nothing to animate, said plainly.
    r = cli.invoke(app, ["animate", str(run.path)])
    assert r.exit_code == 2 and "kept none (train.snapshots: 0" in r.output, r.output
    # The filmstrip: the init drawn again from the seed, and the end from checkpoint.pt.
    from dlx.views.pictures import boundary, filmstrip

    strip = filmstrip(run.path, grid=20)
    assert [b.step for b in strip] == [0, 40]
    np.testing.assert_array_equal(strip[1].probs, boundary(run.path, grid=20).probs)
    full = dlx.train(_config(), runs_dir=tmp_path / "full", quiet=True)  # the same seed, with snapshots
    np.testing.assert_allclose(strip[0].probs, filmstrip(full.path, grid=20)[0].probs, rtol=0, atol=1e-6)
    # The landscape's line runs from that init to the end.
    from dlx.views.landscape import line

    assert line(run.path, points=5).start == "init"


def test_an_interrupted_lean_run_resumes_to_the_run_never_stopped(tmp_path):
    whole = dlx.train(_config(steps=60, snapshots=0), runs_dir=tmp_path / "a", quiet=True)

    class StopAt:
        def on_interval(self, trainer, record):
            if trainer.step == 24:
                trainer.interrupt()

    first = dlx.train(
        _config(steps=60, snapshots=0, checkpoint_every=10), runs_dir=tmp_path / "b", quiet=True, callbacks=[StopAt()]
    )
    assert first.status == "interrupted" and not (first.path / "snapshots.pt").exists()
    r = CliRunner().invoke(app, ["train", "--resume", str(first.path)])
    assert r.exit_code == 0, r.output
    assert not (first.path / "snapshots.pt").exists()
    a = torch.load(whole.path / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(first.path / "checkpoint.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    ja, jb = (json.loads((p / "summary.json").read_text()) for p in (whole.path, first.path))
    assert ja["layers"] == jb["layers"] and ja["final"] == jb["final"]
    assert (whole.path / "probes.jsonl").read_text() == (first.path / "probes.jsonl").read_text()


@pytest.mark.parametrize(("value", "says"), [(1, "1 would keep the init alone"), (-1, "greater than or equal to 0")])
def test_snapshots_of_one_or_below_zero_get_a_clear_config_message(value, says):
    with pytest.raises(ConfigError) as info:
        load_config(_config(snapshots=value))
    [p] = info.value.problems
    assert "train.snapshots" in str(p) and says in str(p), str(p)
    assert load_config(_config(snapshots=0)).train.snapshots == 0

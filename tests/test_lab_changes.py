"""Changes while a run trains (train.changes, the lab's knobs), the lab's step mode (one
update followed phase by phase), the network view's live data, and `dlx lab RUN`."""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import dlx
from dlx.config.loader import load_config
from dlx.core.errors import ConfigError

TINY = {
    "seed": 3,
    "data": {"name": "spirals", "n_train": 300},
    "model": {"name": "mlp", "depth": 2, "width": 8},
    "optimizer": {"name": "sgd", "lr": 0.05},
    "train": {"steps": 60, "batch_size": 30, "log_every": 10, "device": "cpu", "threads": 1},
}
SCHEDULE = [
    {"step": 20, "set": {"optimizer.lr": 0.001, "regularization.l2": 0.01}},
    {"step": 25, "set": {"train.batch_size": 60}},  # waits for the epoch start at step 30
]


def _with(changes=None, **train):
    cfg = json.loads(json.dumps(TINY))
    cfg["train"].update(train)
    if changes is not None:
        cfg["train"]["changes"] = changes
    return cfg


def _numbers(path: Path) -> list[dict]:
    """metrics.jsonl without its clock."""
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


def _events(path: Path) -> list[dict]:
    f = path / "events.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines()] if f.is_file() else []


# ---------------------------------------------------------------- train.changes


def test_a_bad_change_names_its_key_and_the_fix():
    for change, says in [
        ({"step": 5, "set": {"optimizer.lrr": 0.1}}, "did you mean 'optimizer.lr'"),
        ({"step": 5, "set": {"optimizer.lr": -1}}, "optimizer.lr must be > 0"),
        ({"step": 5, "set": {"train.batch_size": 2.5}}, "positive integer"),
        ({"step": 5, "set": {"regularization.dropout": 1.0}}, "below 1"),
        ({"step": -1, "set": {"optimizer.lr": 0.1}}, "train.changes.0.step"),
        ({"step": 5, "set": {}}, "one or more keys"),
    ]:
        with pytest.raises(ConfigError) as e:
            load_config(_with([change]))
        assert "train.changes.0" in str(e.value) and says in str(e.value), str(e.value)
    # Every key a change may set is listed where dlx list and the docs read the schema.
    from dlx.config.schema import Train

    desc = Train.model_fields["changes"].description
    assert all(k in desc for k in ("optimizer.lr", "regularization.l2", "regularization.l1", "train.batch_size"))
    # A model built without dropout modules has nowhere to change dropout: refused at the check.
    with pytest.raises(ConfigError, match="without dropout modules"):
        dlx.check(_with([{"step": 5, "set": {"regularization.dropout": 0.2}}]))
    # ... and a run with changes never trains in a stack (its loop does not apply them).
    from dlx.many.stack_plan import why_not

    assert "train.changes" in why_not(load_config(_with(SCHEDULE)))


def test_a_schedule_applies_at_its_steps_is_recorded_reproduces_and_shows(tmp_path):
    runs = tmp_path / "runs"
    r = dlx.train(_with(SCHEDULE), runs_dir=runs, quiet=True)
    rows = _numbers(r.path)
    assert [m["lr"] for m in rows if m["step"] <= 20] == [0.05] * 2
    assert all(m["lr"] == pytest.approx(0.001) for m in rows if m["step"] > 20)
    ev = _events(r.path)
    assert [(e["step"], e["set"]) for e in ev] == [
        (20, {"optimizer.lr": 0.001, "regularization.l2": 0.01}),
        (30, {"train.batch_size": 60}),  # the first epoch start (300 / 30 = 10 steps) at or after 25
    ]
    assert ev[0]["was"] == {"optimizer.lr": 0.05, "regularization.l2": 0.0} and ev[0]["at"]
    # The config carries the schedule: dlx train config.yaml reproduces the run exactly.
    again = dlx.train(r.path / "config.yaml", runs_dir=runs, quiet=True)
    assert _numbers(again.path) == rows and _events(again.path)[1]["step"] == 30
    # The changes have their effect: the same run without them ends elsewhere.
    plain = dlx.train(_with(), runs_dir=runs, quiet=True)
    assert _numbers(plain.path)[-1]["train_loss"] != rows[-1]["train_loss"]
    # dlx show and the run's HTML report list them.
    from rich.console import Console

    from dlx.views.html_run import run_page
    from dlx.views.report import run_report

    buf = io.StringIO()
    Console(file=buf, width=200).print(run_report(r.summary, r.meta, events=ev))
    text = buf.getvalue()
    assert "changes: step 20 optimizer.lr 0.05 -> 0.001" in text and "step 30 train.batch_size 30 -> 60" in text
    html = run_page(r.path)
    assert "Changes while it trained" in html and "step 20 optimizer.lr 0.05 -&gt; 0.001" in html


class StopAt:
    """Interrupts the run at the end of the interval of `step` (as a first Ctrl-C there)."""

    def __init__(self, step: int):
        self.step = step

    def on_interval(self, trainer, record):
        if trainer.step == self.step:
            trainer.interrupt()


@pytest.mark.parametrize("stop", [20, 40])
def test_a_resumed_changed_run_equals_one_never_stopped(tmp_path, stop):
    """Stopped at 20: its changes of step 20 come after the checkpoint and are applied by the
    resumed run; at 40: every change is past, re-applied from the schedule (penalty, batch
    size and its epoch count, which the checkpoint does not hold)."""
    runs = tmp_path / "runs"
    whole = dlx.train(_with(SCHEDULE), runs_dir=runs, quiet=True)
    cut = dlx.train(_with(SCHEDULE), runs_dir=runs, quiet=True, callbacks=[StopAt(stop)])
    assert cut.status == "interrupted" and cut.summary["steps"] == stop
    done = dlx.train(resume=cut.path, runs_dir=runs, quiet=True)
    assert done.status == "completed"
    assert _numbers(done.path) == _numbers(whole.path)
    assert [(e["step"], e["set"]) for e in _events(done.path)] == [(e["step"], e["set"]) for e in _events(whole.path)]
    assert done.summary["final"] == whole.summary["final"]


def test_a_change_config_yaml_gained_after_the_checkpoint_resumes_but_an_earlier_one_is_refused(tmp_path):
    """dlx lab writes a change into config.yaml when it takes it, which may be after the last
    checkpoint: a change at or after the checkpoint's step still resumes (and is applied); one
    before it would rewrite history and is refused, as any other edit of config.yaml."""
    from dlx.core.errors import DlxError

    runs = tmp_path / "runs"
    cut = dlx.train(_with(SCHEDULE), runs_dir=runs, quiet=True, callbacks=[StopAt(20)])
    saved = yaml.safe_load((cut.path / "config.yaml").read_text())
    for step, ok in [(10, False), (20, True)]:
        edited = json.loads(json.dumps(saved))
        edited["train"]["changes"].append({"step": step, "set": {"regularization.l1": 0.001}})
        (cut.path / "config.yaml").write_text(yaml.safe_dump(edited))
        if not ok:
            with pytest.raises(DlxError, match="differs from the config saved"):
                dlx.train(resume=cut.path, runs_dir=runs, quiet=True)
            continue
        done = dlx.train(resume=cut.path, runs_dir=runs, quiet=True)
        assert done.status == "completed"
        first = _events(done.path)[0]  # the changes of one step are applied, and listed, together
        assert first["step"] == 20
        assert first["set"] == {"optimizer.lr": 0.001, "regularization.l2": 0.01, "regularization.l1": 0.001}


# ---------------------------------------------------------------- the lab


def _client(runs_dir: Path, **kw):
    from starlette.testclient import TestClient

    from dlx.lab.server import create_app

    app = create_app(runs_dir, **kw)
    return app, TestClient(app, base_url="http://127.0.0.1", headers={"x-dlx-token": app.state.lab.token})


def _wait(client, run: str, ok, what: str, timeout: float = 30) -> dict:
    t = time.monotonic() + timeout
    while time.monotonic() < t:
        s = client.get(f"/api/runs/{run}").json()
        if ok(s):
            return s
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}: {s}")


def _paused_at(client, run: str, step: int) -> dict:
    return _wait(client, run, lambda s: s["status"] == "paused" and s["step"] == step, f"paused at {step}")


def test_a_lab_change_is_applied_recorded_streamed_and_the_run_reproduces_and_resumes(tmp_path):
    runs = tmp_path / "runs"
    app, client = _client(runs)
    cfg = _with(steps=200)
    with client:
        r = client.post("/api/runs", json={"session": "s", "config": cfg, "play": False})
        assert r.status_code == 200, r.json()
        rid = r.json()["run"]
        lab_run = app.state.lab.runs[rid]
        _paused_at(client, rid, 0)
        # The network is drawn before play: the very first event carries it.
        first = lab_run.events[0]
        assert first["step"] == 0 and [layer["name"] for layer in first["net"]["layers"]] == ["fc1", "fc2", "out"]
        for body, says in [
            ({"lr": -1}, "lr: optimizer.lr must be > 0"),
            ({"dropout": 0.3}, "without dropout modules"),
            ({"batch_size": 10_000}, "larger than the 300 training samples"),
            ({"momentum": 0.9}, "unknown knob"),
            ({}, "at least one knob"),
            ({"lr": True}, "must be a number"),
        ]:
            r = client.post(f"/api/runs/{rid}/change", json=body)
            assert r.status_code == 400 and says in r.json()["error"], (body, r.json())
        client.post(f"/api/runs/{rid}/step", json={})
        _paused_at(client, rid, 10)
        r = client.post(f"/api/runs/{rid}/change", json={"lr": 0.001})
        assert r.status_code == 200 and r.json() == {"run": rid, "pending": {"optimizer.lr": 0.001}}
        client.post(f"/api/runs/{rid}/step", json={})
        _paused_at(client, rid, 20)
        client.post(f"/api/runs/{rid}/stop", json={})
        _wait(client, rid, lambda s: s["status"] == "interrupted", "the stop")
        path = Path(client.get(f"/api/runs/{rid}").json()["path"])
    changes = [e for e in lab_run.events if "change" in e]
    assert changes == [{"run": rid, "step": 10, "change": {"optimizer.lr": 0.001}}]
    rows = _numbers(path)
    assert [(m["step"], m["lr"]) for m in rows] == [(10, 0.05), (20, 0.001)]
    assert [(e["step"], e["set"]) for e in _events(path)] == [(10, {"optimizer.lr": 0.001})]
    saved = yaml.safe_load((path / "config.yaml").read_text())
    assert saved["train"]["changes"] == [{"step": 10, "set": {"optimizer.lr": 0.001}}]
    # The lab run resumes (dlx train --resume) and its config.yaml reproduces it from scratch.
    done = dlx.train(resume=path, runs_dir=runs, quiet=True)
    again = dlx.train(path / "config.yaml", runs_dir=runs, quiet=True)
    assert done.status == again.status == "completed"
    assert _numbers(done.path) == _numbers(again.path) and done.summary["final"] == again.summary["final"]


def test_step_mode_takes_exactly_one_step_and_its_phases_agree_with_the_files_and_the_formulas(tmp_path):
    runs = tmp_path / "runs"
    app, client = _client(runs)
    with client:
        rid = client.post("/api/runs", json={"session": "s", "config": _with(steps=200), "play": False}).json()["run"]
        lab_run = app.state.lab.runs[rid]
        _paused_at(client, rid, 0)
        client.post(f"/api/runs/{rid}/step", json={})
        _paused_at(client, rid, 10)
        for unit, says in [("fc9:0", "no dense layer"), ("fc1:8", "units 0 to 7"), ("fc1", "LAYER:INDEX")]:
            r = client.post(f"/api/runs/{rid}/phases", json={"unit": unit})
            assert r.status_code == 400 and says in r.json()["error"], (unit, r.json())
        r = client.post(f"/api/runs/{rid}/phases", json={"unit": "fc1:3"})
        assert r.status_code == 200 and r.json() == {"run": rid, "step": 10, "unit": "fc1:3"}
        _paused_at(client, rid, 11)  # exactly one step
        time.sleep(0.1)
        assert client.get(f"/api/runs/{rid}").json()["step"] == 11
        (ev,) = [e for e in lab_run.events if "phases" in e]
        # The next phases go to the second layer, whose unit has 8 inputs.
        r = client.post(f"/api/runs/{rid}/phases", json={"unit": "fc2:0"})
        assert r.status_code == 200
        _paused_at(client, rid, 12)
        ev2 = [e for e in lab_run.events if "phases" in e][-1]
        client.post(f"/api/runs/{rid}/stop", json={})
        _wait(client, rid, lambda s: s["status"] == "interrupted", "the stop")
        path = Path(client.get(f"/api/runs/{rid}").json()["path"])
    rows = {m["step"]: m for m in (json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines())}
    probes = {p["step"]: p for p in (json.loads(x) for x in (path / "probes.jsonl").read_text().splitlines())}
    assert rows[11]["first_step"] == 11 and rows[12]["first_step"] == 12  # each logged alone
    names = [layer["name"] for layer in json.loads((path / "meta.json").read_text())["layers"]]
    for e, step, layer in [(ev, 11, "fc1"), (ev2, 12, "fc2")]:
        p = e["phases"]
        assert e["step"] == step and p["unit"].startswith(layer)
        f = p["forward"]
        assert f["activation"] == "relu" and len(f["inputs"]) == len(f["weights"]) == (2 if layer == "fc1" else 8)
        pre = sum(a * b for a, b in zip(f["inputs"], f["weights"])) + f["bias"]
        assert f["pre"] == pytest.approx(pre, rel=1e-5, abs=1e-6) and f["post"] == pytest.approx(
            max(pre, 0.0), abs=1e-6
        )
        assert p["loss"]["recorded"] == rows[step]["train_loss"]  # exactly as logged
        assert np.float32(p["loss"]["value"]) == np.float32(p["loss"]["recorded"])  # the step's float32 loss
        b = p["backward"]
        recorded = probes[step]["grad_norm"][0][names.index(layer)]
        assert b["recorded_layer_grad_norm"] == pytest.approx(recorded, rel=1e-6)
        assert b["layer_grad_norm"] == pytest.approx(recorded, rel=1e-5)
        assert 0 <= b["weight_grad_norm"] <= b["layer_grad_norm"] and math.isfinite(b["dL_dpre"])
        if f["pre"] <= 0:  # a relu unit off for the sample passes no gradient back
            assert b["dL_dpre"] == 0
        u = p["update"]
        assert u["lr"] == 0.05
        # Plain sgd: w_after = w_before - lr * grad (the formula as the oracle).
        want = np.float32(u["w_before"]) - np.float32(u["lr"]) * np.float32(u["grad"])
        np.testing.assert_allclose(u["w_after"], want, rtol=1e-6, atol=1e-7)
        assert u["w_before"][: len(f["weights"])] == f["weights"]


def test_a_small_dense_net_sends_its_weights_and_a_wide_one_a_summary():
    from dlx.lab.runs import lab_pictures
    from dlx.run.trainer import Trainer

    trainer = Trainer(load_config(_with()))
    trainer.model.eval()
    out = lab_pictures(trainer)
    net = out["net"]
    x = trainer.data.as_float(trainer.data.x_train[:1])[0].numpy()
    assert net["probe"]["x"] == pytest.approx(x.tolist())
    h = x.astype(np.float64)
    for layer, (name, m), pre, post in zip(
        net["layers"], trainer.model.probe_layers(), net["probe"]["pre"], net["probe"]["post"]
    ):
        w, b = m.weight.detach().numpy().astype(np.float64), m.bias.detach().numpy().astype(np.float64)
        assert layer["name"] == name and np.array(layer["W"]).shape == w.shape
        assert np.asarray(layer["W"]).tolist() == [[float(f"{v:.4g}") for v in row] for row in w]  # rounded to 4 digits
        assert np.asarray(layer["b"]).tolist() == [float(f"{v:.4g}") for v in b]
        np.testing.assert_allclose(pre, w @ h + b, rtol=1e-5, atol=1e-6)  # pre = W x + b
        assert layer["activation"] == ("relu" if name != "out" else "none")
        np.testing.assert_allclose(post, np.maximum(pre, 0) if name != "out" else pre, atol=1e-7)
        h = np.array(post)
        assert all(sum(u["counts"]) == 256 and len(u["counts"]) == 12 for u in layer["unit_hist"])
        assert len(layer["unit_hist"]) == w.shape[0] and layer["unit_grad"] is None  # no step yet
    assert [len(u["maps"]) for u in out["units"]] == [8, 8]  # every hidden unit
    # A 3x512 net: a summary per layer, not its weights.
    wide = Trainer(load_config({**_with(), "model": {"name": "mlp", "depth": 3, "width": 512}}))
    wide.model.eval()
    out = lab_pictures(wide)
    assert "net" not in out and [s["name"] for s in out["net_summary"]] == ["fc1", "fc2", "fc3", "out"]
    s = out["net_summary"][0]
    assert s["units"] == 512 and 0 <= s["dead"] <= 512 and s["saturated"] is None and s["grad"] is None
    assert out["net_summary"][-1]["dead"] is None  # the output layer has no activation
    assert [len(u["maps"]) for u in out["units"]] == [16, 16, 16]


def test_dlx_lab_run_scrubs_through_a_finished_runs_snapshots(tmp_path):
    runs = tmp_path / "runs"
    r = dlx.train(_with(SCHEDULE), runs_dir=runs, quiet=True)
    from dlx.records.folders import read_snapshots

    snaps = read_snapshots(r.path)
    for ref in ("last", str(r.path), r.path.name):
        app, client = _client(runs, config=ref)
        with client:
            assert client.get("/api/initial").json()["replay"] == r.path.name
            info = client.get("/api/replay").json()
            assert info["run"] == r.path.name and info["steps"] == snaps["steps"]
            assert info["config"]["train"]["changes"] and [x["name"] for x in info["network"]["layers"]] == [
                "fc1",
                "fc2",
                "out",
            ]
            if ref != "last":
                continue
            i = len(info["steps"]) // 2
            ev = client.get(f"/api/replay/{i}").json()
            assert ev["step"] == snaps["steps"][i] and ev["replay"] is True
            w = snaps["states"][i]["fc1.weight"].numpy()
            assert ev["net"]["layers"][0]["W"] == [[float(f"{v:.4g}") for v in row] for row in w]
            assert {"hist", "surface", "units", "metrics"} <= set(ev)
            logged = [m["step"] for m in _numbers(r.path)]
            assert ev["metrics_step"] == min(logged, key=lambda s: abs(s - ev["step"]))
            assert client.get("/api/replay/999").status_code == 404
    # dlx lab CONFIG still takes an example's name and a YAML path; a lab without a run has no replay.
    cfg_file = tmp_path / "mine.yaml"
    cfg_file.write_text(yaml.safe_dump(_with()))
    for ref in ("quickstart", str(cfg_file)):
        app, client = _client(runs, config=ref)
        with client:
            assert (
                client.get("/api/initial").json()["name"] == ref and "replay" not in client.get("/api/initial").json()
            )
            assert client.get("/api/replay").status_code == 404

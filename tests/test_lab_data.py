"""dlx lab, a better Playground: your own data (POST /api/data), a divergence as a lesson
(POST /api/runs/{run}/fix) and a run's weights as a download (GET /api/runs/{run}/weights),
through the lab's own routes with its token and Origin."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

from dlx.lab.server import create_app  # noqa: E402

ORIGIN = "http://127.0.0.1"
MODEL = {"name": "mlp", "depth": 2, "width": 16}
TRAIN = {"steps": 30, "batch_size": 16, "log_every": 10}


@pytest.fixture
def lab(tmp_path):
    app = create_app(tmp_path / "runs")
    headers = {"x-dlx-token": app.state.lab.token, "origin": ORIGIN}
    with TestClient(app, base_url=ORIGIN, headers=headers) as client:
        client.lab = app.state.lab
        yield client


def _csv_of_three_classes(n: int = 60) -> tuple[str, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    labels = np.array([10, 20, 30])
    x = np.round(rng.normal(0, 1, (n, 2)) + np.arange(n)[:, None] % 3 * 3, 6)
    y = labels[np.arange(n) % 3]
    text = "a,b,kind\n" + "\n".join(f"{a},{b},{c}" for (a, b), c in zip(x, y))
    return text, x, y


def _rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Rows (features, target) sorted, to compare tables whatever their order."""
    a = np.column_stack([x, y])
    return a[np.lexsort(a.T[::-1])]


def _finish(lab, reply: dict, timeout: float = 60):
    assert reply.status_code == 200, reply.text
    run = lab.lab.runs[reply.json()["run"]]
    run.thread.join(timeout)
    assert run.done
    return run


def _checkpoint(path: Path) -> dict:
    import torch

    return torch.load(path / "checkpoint.pt", weights_only=True)


def test_a_csv_trains_in_the_lab_and_its_run_folder_trains_the_same_data_again(lab, tmp_path):
    import torch

    import dlx

    text, x, y = _csv_of_three_classes()
    r = lab.post("/api/data", json={"csv": text})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["summary"] == {
        "task": "classification",
        "n_train": 48,  # 80/20 within each class of 20
        "n_test": 12,
        "features": 2,
        "classes": [10, 20, 30],
        "columns": ["a", "b", "kind"],
    }
    path = Path(got["data"]["path"])
    assert (
        got["data"]["name"] == "arrays" and path.is_absolute() and path.parent == (tmp_path / "runs/lab-data").resolve()
    )
    # Named by its content; the same upload, the same file (never written twice).
    assert path.name == hashlib.sha256(path.read_bytes()).hexdigest()[:16] + ".npz"
    assert lab.post("/api/data", json={"csv": text}).json()["data"]["path"] == str(path)
    assert len(list(path.parent.iterdir())) == 1
    with np.load(path) as z:
        saved = {k: z[k] for k in z.files}
    assert saved["y_train"].dtype == np.int64 and sorted(set(saved["y_test"].tolist())) == [0, 1, 2]
    assert np.bincount(saved["y_test"]).tolist() == [4, 4, 4]  # stratified
    both = (np.concatenate([saved["x_train"], saved["x_test"]]), np.concatenate([saved["y_train"], saved["y_test"]]))
    assert np.array_equal(_rows(*both), _rows(x, (y // 10 - 1)))  # the CSV's rows, labels 10 20 30 -> 0 1 2

    config = {"data": got["data"], "model": MODEL, "optimizer": {"name": "adam", "lr": 0.01}, "train": TRAIN}
    run = _finish(lab, lab.post("/api/runs", json={"session": "s", "config": config}))
    assert run.status == "completed", run.error
    import yaml

    assert yaml.safe_load((run.path / "config.yaml").read_text())["data"]["path"] == str(path)
    again = dlx.train(run.path / "config.yaml", runs_dir=tmp_path / "again", quiet=True)
    assert again.status == "completed"
    assert _checkpoint(again.path)["data"] == _checkpoint(run.path)["data"]  # the same arrays, split alike

    # Its weights: a state_dict that torch.load(weights_only=True) reads, the checkpoint's model.
    w = lab.get(f"/api/runs/{run.id}/weights")
    assert w.status_code == 200
    assert w.headers["content-disposition"] == f'attachment; filename="{run.path.name}-weights.pt"'
    weights = torch.load(io.BytesIO(w.content), weights_only=True)
    model = _checkpoint(run.path)["model"]
    assert weights.keys() == model.keys() and all(torch.equal(weights[k], model[k]) for k in model)
    # GET with ?token= (a link the page offers), and not without it.
    plain = TestClient(lab.app, base_url=ORIGIN)
    assert plain.get(f"/api/runs/{run.id}/weights?token={lab.lab.token}").status_code == 200
    assert plain.get(f"/api/runs/{run.id}/weights").status_code == 403


def test_points_drawn_on_the_page_train_and_a_npz_keeps_its_own_split(lab):
    rng = np.random.default_rng(0)
    pts = [[float(a), float(b), int(a > 0)] for a, b in rng.uniform(-1, 1, (40, 2))]
    r = lab.post("/api/data", json={"points": pts, "task": "classification"})
    assert r.status_code == 200, r.text
    assert r.json()["summary"]["classes"] == [0, 1] and r.json()["summary"]["n_test"] == 8
    config = {"data": r.json()["data"], "model": MODEL, "optimizer": {"name": "adam", "lr": 0.01}, "train": TRAIN}
    run = _finish(lab, lab.post("/api/runs", json={"session": "s", "config": config}))
    assert run.status == "completed", run.error
    assert any("surface" in ev for ev in run.events)  # 2-D classes: the page draws the boundary

    values = [[a, b, a * b + 0.5] for a, b, _ in pts]
    r = lab.post("/api/data", json={"points": values, "task": "regression"})
    assert r.json()["summary"]["task"] == "regression" and r.json()["summary"]["classes"] is None

    # A .npz with its own split keeps it; x and y alone are split here.
    x = rng.normal(0, 1, (30, 3))
    four = _npz(x_train=x[:20], y_train=np.arange(20) % 2, x_test=x[20:], y_test=np.arange(10) % 2)
    r = lab.post("/api/data", json={"npz_base64": four})
    assert r.status_code == 200, r.text
    assert (r.json()["summary"]["n_train"], r.json()["summary"]["n_test"]) == (20, 10)
    with np.load(r.json()["data"]["path"]) as z:
        assert np.array_equal(z["x_train"], x[:20]) and np.array_equal(z["x_test"], x[20:])
    # As the page's FileReader gives it: a data: URL.
    url = "data:application/octet-stream;base64," + four
    assert lab.post("/api/data", json={"npz_base64": url}).json()["data"] == r.json()["data"]
    r = lab.post("/api/data", json={"npz_base64": _npz(x=x, y=x.sum(1))})
    assert r.json()["summary"] | {"columns": None} == {
        "task": "regression",
        "n_train": 24,
        "n_test": 6,
        "features": 3,
        "classes": None,
        "columns": None,
    }


def _npz(compressed: bool = False, **arrays) -> str:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return base64.b64encode(buf.getvalue()).decode()


def _crafted_npz(name: str, shape: tuple[int, ...]) -> str:
    """A .npz whose array's header claims `shape` and holds no data: read, it would ask for
    gigabytes (a zip bomb's header)."""
    import zipfile

    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f8", "fortran_order": False, "shape": shape})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr(name + ".npy", head.getvalue())
        zf.writestr("y.npy", head.getvalue())
    return base64.b64encode(out.getvalue()).decode()


def _table(rows: list[str]) -> str:
    return "\n".join(rows)


GOOD = [f"{i % 7},{i % 5},{i % 2}" for i in range(12)]


def test_each_bad_upload_gets_a_400_with_one_sentence_that_says_what_and_where(lab, tmp_path):
    ragged = ["a,b,c", *GOOD[:5], "1,2", *GOOD[5:]]
    word = ["a,b,c", GOOD[0], "1,abc,0", *GOOD[1:]]
    cases = [
        ({"csv": _table(ragged)}, "row 7 has 2 columns, the first row has 3"),
        ({"csv": _table(word)}, "row 3 column 2 is 'abc', not a number"),
        ({"csv": _table([*GOOD, "1,nan,0"])}, "row 13 column 2 is 'nan', not a finite number"),
        ({"csv": _table([*GOOD, "1,-inf,0"])}, "row 13 column 2 is '-inf', not a finite number"),
        ({"csv": _table([*GOOD, "1,1e300,0"])}, "row 13 column 2 is '1e300', beyond the ±1e+30"),
        ({"csv": _table([*GOOD, "1,,0"])}, "row 13 column 2 is empty"),
        ({"csv": _table(GOOD[:5])}, "the CSV has 5 rows of numbers; the lab needs at least 10"),
        ({"csv": _table([f"{i},{i % 2}" for i in range(20)])}, "at least 2 feature columns"),
        ({"csv": _table([",".join(["1"] * 66)] * 12)}, "65 features, more than the 64"),
        ({"csv": _table([f"{i},{i},3" for i in range(12)])}, "one class (3); a classification needs at least 2"),
        ({"csv": _table(["1,2,0"] * 50_001)}, "more than 50,000 rows"),
        ({"csv": "a,b,c\n" + '"' + "x" * 200_000 + '",1,2\n'}, "the CSV does not parse at row"),
        ({"csv": 5}, "csv must be the CSV file's text"),
        (
            {"npz_base64": _npz(x_train=np.ones((8, 2)), y_train=np.ones(8), x_test=np.ones((4, 2)))},
            "the .npz lacks y_test",
        ),
        ({"npz_base64": _npz(a=np.ones(3))}, "has neither x_train, y_train, x_test, y_test nor x and y (it has a)"),
        ({"npz_base64": "%%%"}, "npz_base64 is not base64"),
        ({"npz_base64": base64.b64encode(b"hello").decode()}, "npz_base64 is not a .npz"),
        ({"npz_base64": _npz(compressed=True, x=np.zeros((60_000, 2)), y=np.zeros(60_000))}, "60,000 rows, more than"),
        ({"npz_base64": _crafted_npz("x", (10**12, 2))}, "1,000,000,000,000 rows, more than the 50,000"),
        ({"npz_base64": _crafted_npz("x", (10, 10**9))}, "1000000000 features; the lab takes 2 to 64"),
        ({"npz_base64": _npz(x=np.array([[1, 2]] * 12, dtype=object), y=np.ones(12))}, "holds object values"),
        ({"npz_base64": _npz(x=np.ones((12, 2, 2)), y=np.ones(12))}, "the lab takes a table"),
        ({"npz_base64": _npz(x=np.ones((12, 2)), y=np.ones(11))}, "x has 12 rows but y has 11"),
        (
            {"npz_base64": _npz(x=np.full((12, 2), np.inf), y=np.ones(12))},
            "x row 1 column 1 is inf, not a finite number",
        ),
        ({"points": [[0, 0, 1]] * 12}, "points need a task"),
        ({"points": "here", "task": "classification"}, "points must be a list"),
        ({"points": [[0, 0, 1]] * 3, "task": "classification"}, "3 points; the lab needs at least 10"),
        ({"points": [[0, 0, 1]] * 11 + [[0, 0]], "task": "classification"}, "point 12 is not [x, y, label]"),
        ({"points": [[0, 0, 1]] * 11 + [[0, "a", 1]], "task": "classification"}, "point 12 number 2 is not a number"),
        ({"points": [[0, 0, 1]] * 11 + [[0, 0.5, 1.5]], "task": "classification"}, "a class label must be an integer"),
        ({"points": [[0, 0, 1]] * 12, "task": "sorting"}, "task must be classification or regression"),
        ({"csv": "a", "points": []}, "give exactly one of csv, npz_base64 or points"),
        ({"url": "file:///etc/passwd"}, "unknown key 'url'"),
    ]
    for body, says in cases:
        r = lab.post("/api/data", json=body)
        assert r.status_code == 400 and says in r.json()["error"], (says, r.status_code, r.text[:300])
        assert "Traceback" not in r.text and str(tmp_path) not in r.text
    # JSON the browser's own JSON.stringify never writes: NaN, a 400-digit integer, deep nesting.
    raw = [
        (b'{"points": [' + b"[0, 0, 1], " * 11 + b'[0, NaN, 1]], "task": "regression"}', "point 12 number 2 is nan"),
        (b'{"points": [' + b"[1, 2, 0], " * 11 + b"[1, " + b"9" * 400 + b', 0]], "task": "regression"}', "beyond"),
        (b'{"csv": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not JSON"),
        (b'{"points": [' + b"[0, 0, 1]," * 11 + b"[0, 0, 1e999]], " + b'"task": "regression"}', "is inf"),
    ]
    for body, says in raw:
        r = lab.post("/api/data", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400 and says in r.json()["error"], (says, r.text[:300])
    assert not (tmp_path / "runs/lab-data").exists() or not list((tmp_path / "runs/lab-data").iterdir())


def test_the_data_route_takes_2_mib_keeps_the_labs_security_rules_and_other_routes_keep_theirs(lab):
    big = "a,b,c\n" + "\n".join(f"{i}.25,{i % 97}.5,{i % 3}" for i in range(12_000))  # ~200 KB
    assert 64 * 1024 < len(big) < 2 * 1024 * 1024
    assert lab.post("/api/data", json={"csv": big}).status_code == 200
    assert lab.post("/api/check", json={"csv": big}).status_code == 413  # the lab's other routes: 64 KiB
    r = lab.post("/api/data", json={"csv": "1,2,3\n" * 400_000})  # 2.4 MB
    assert r.status_code == 413 and "2 MiB" in r.json()["error"]
    body = json.dumps({"csv": big})
    r = lab.post("/api/data", content=body, headers={"content-type": "text/plain"})
    assert r.status_code == 415  # a form can post text/plain cross-site without asking
    r = lab.post("/api/data", json={"csv": big}, headers={"origin": "http://evil.example"})
    assert r.status_code == 403 and "own page" in r.json()["error"]
    plain = TestClient(lab.app, base_url=ORIGIN)
    assert plain.post("/api/data", json={"csv": big}).status_code == 403  # no token


def test_a_diverged_run_gives_the_remedy_that_fix_tries_and_it_does_not_diverge(lab, tmp_path):
    import dlx
    from dlx.lab.lessons import lesson
    from dlx.lab.runs import LabError

    diverging = {
        "data": {"name": "teacher", "n_train": 256},
        "model": {"name": "mlp", "depth": 2, "width": 16},
        "optimizer": {"name": "sgd", "lr": 5.0},
        "train": {"steps": 60, "batch_size": 32, "log_every": 5, "loss": "mse"},
    }
    # Before it ends: no lesson and no weights yet.
    paused = lab.post("/api/runs", json={"session": "p", "config": diverging, "play": False}).json()["run"]
    assert lab.post(f"/api/runs/{paused}/fix", json={}).status_code == 409
    r = lab.get(f"/api/runs/{paused}/weights")
    assert r.status_code == 409 and "still" in r.json()["error"]
    lab.post(f"/api/runs/{paused}/stop", json={})

    run = _finish(lab, lab.post("/api/runs", json={"session": "s", "config": diverging}))
    assert run.status == "diverged", run.error
    r = lab.post(f"/api/runs/{run.id}/fix", json={})
    assert r.status_code == 200, r.text
    got = r.json()
    # The root (a learning rate too high) is named, the divergence among what its remedy removes.
    assert got["kind"] == "lr_too_high" and "diverged" in got["answers"] and got["cause"] and got["remedy"]
    assert got["sets"] == ["optimizer.lr=0.5"]
    assert all("=" in s for s in got["sets"])
    # Run B: the original config with those sets does not diverge.
    fixed = dlx.train(run.path / "config.yaml", got["sets"], runs_dir=tmp_path / "b", quiet=True)
    assert fixed.status == "completed" and "diverged" not in [v["kind"] for v in fixed.summary["verdicts"]]
    # A diverged run keeps no checkpoint: no weights.
    r = lab.get(f"/api/runs/{run.id}/weights")
    assert r.status_code == 409 and "no checkpoint" in r.json()["error"]
    assert lab.post("/api/runs/nope/fix", json={}).status_code == 404
    # A healthy run is no lesson, nor a verdict whose remedy no --set expresses.
    with pytest.raises(LabError, match="nothing to fix, the run's verdict is healthy: learned") as e:
        lesson({"verdict": "healthy: learned", "verdicts": [{"kind": "healthy", "fixes": []}]})
    assert e.value.status == 409
    with pytest.raises(LabError, match="no remedy of overfitting is a config change dlx can run; .*more data"):
        lesson({"verdicts": [{"kind": "overfitting", "fixes": [], "remedy": "more data"}]})
    t = time.monotonic() + 30
    while not lab.lab.runs[paused].done and time.monotonic() < t:
        time.sleep(0.05)

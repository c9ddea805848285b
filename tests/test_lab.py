"""dlx lab: the live page, end to end in a real headless Chromium (Debian's, driven by
Playwright), and the server against malformed and hostile requests."""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")

from dlx.lab import create_app  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("DLX_TEST_ARTIFACTS", Path(__file__).resolve().parent.parent / "test-artifacts"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The lab's app on a free loopback port, in a thread of this process."""

    def __init__(self, runs_dir: Path, token: str | None = None, max_active: int = 4):
        self.app = create_app(runs_dir, token, max_active)
        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        t = time.monotonic() + 20
        while not self.server.started and time.monotonic() < t:
            time.sleep(0.05)
        assert self.server.started
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _post(url: str, body, token: str | None = None) -> tuple[int, dict]:
    import httpx

    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    headers = {"x-dlx-token": token} if token else {}
    r = httpx.post(url, content=data, headers=headers, timeout=30)
    return r.status_code, (r.json() if r.headers.get("content-type", "").startswith("application/json") else {})


QUICK = {
    "data": {"name": "spirals", "n_train": 500},
    "model": {"name": "mlp", "depth": 2, "width": 16},
    "optimizer": {"name": "adam", "lr": 0.01},
    "train": {"steps": 40, "batch_size": 32, "log_every": 10},
}


def test_malformed_and_hostile_requests_get_an_error_and_the_server_stays_up(tmp_path):
    with Server(tmp_path / "runs", max_active=3) as srv:
        api = srv.url + "/api/runs"
        cases = [
            (b"{not json", 400, "not JSON"),
            (b"[1, 2]", 400, "JSON object"),
            ({"session": "s", "config": "rm -rf /"}, 400, "mapping"),
            (
                {"session": "s", "config": {**QUICK, "model": {"name": "mlp", "depth": 3, "width": 10**9}}},
                400,
                "problems",
            ),
            (
                {"session": "s", "config": {**QUICK, "model": {"name": "mlp", "depth": 4, "width": 4000}}},
                400,
                "parameters",
            ),
            ({"session": "s", "config": QUICK, "sets": ["../../etc/passwd=1"]}, 400, "problems"),
            ({"session": "s", "config": {**QUICK, "../../x": 1}}, 400, "problems"),
            ({"session": "../..", "config": QUICK}, 400, "session"),
            ({"session": "s", "config": QUICK, "slot": "C"}, 400, "slot"),
            (b"x" * 100_000, 413, "bytes"),
        ]
        for body, code, says in cases:
            status, data = _post(api, body)
            assert status == code and says in json.dumps(data), (body[:80] if isinstance(body, bytes) else body, data)
        # 50 concurrent starts from 50 pages: at most max_active train, the rest are told to wait.
        results = []

        def one(i):
            results.append(
                _post(api, {"session": f"page{i}", "config": {**QUICK, "train": {**QUICK["train"], "steps": 400}}})
            )

        threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        codes = [c for c, _ in results]
        assert len(codes) == 50 and set(codes) <= {200, 429} and 1 <= codes.count(200) <= 3
        assert all("try again" in d["error"] for c, d in results if c == 429)
        lab = srv.app.state.lab
        assert len(lab.active()) <= 3
        status, _ = _post(srv.url + "/api/runs/nope/play", {})
        assert status == 404
        import httpx

        assert httpx.get(srv.url + "/", timeout=10).status_code == 200  # still up


def test_a_lab_bound_beyond_loopback_refuses_requests_without_its_token(tmp_path):
    with Server(tmp_path / "runs", token="s3cret") as srv:
        import httpx

        assert httpx.get(srv.url + "/", timeout=10).status_code == 403
        assert httpx.get(srv.url + "/?token=wrong", timeout=10).status_code == 403
        assert httpx.get(srv.url + "/?token=s3cret", timeout=10).status_code == 200
        status, data = _post(srv.url + "/api/runs", {"session": "s", "config": QUICK})
        assert status == 403 and "token" in data["error"]
        status, data = _post(srv.url + "/api/runs", {"session": "s", "config": QUICK}, token="s3cret")
        assert status == 200


def test_dlx_lab_refuses_a_non_loopback_bind_without_printing_a_token(monkeypatch):
    import dlx.lab as lab

    seen = {}
    monkeypatch.setattr(lab, "uvicorn", None, raising=False)

    def fake_run(app, host, port, log_level):
        seen["app"] = app

    import uvicorn as uv

    monkeypatch.setattr(uv, "run", fake_run)
    printed = []
    lab.serve(None, "0.0.0.0", 9999, Path("runs"), False, 2, lambda url, token: printed.append((url, token)))
    url, token = printed[0]
    assert token and f"token={token}" in url and seen["app"].state.lab.token == token
    printed.clear()
    lab.serve(None, "127.0.0.1", 9999, Path("runs"), False, 2, lambda url, token: printed.append((url, token)))
    assert printed[0][1] is None and seen["app"].state.lab.token is None


@pytest.fixture
def browser():
    if CHROMIUM is None:
        if os.environ.get("DLX_REQUIRE_CHROMIUM"):
            pytest.fail("DLX_REQUIRE_CHROMIUM is set and no chromium is installed")
        pytest.skip("no chromium installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _set(page, key: str, value: str) -> None:
    el = page.locator(f'[data-key="{key}"]')
    if el.evaluate("e => e.tagName") == "SELECT":
        el.select_option(value)
    else:
        el.fill(value)


def test_the_page_shows_vanishing_sigmoid_gradients_then_a_relu_he_net_changes_the_boundary(browser, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with Server(tmp_path / "runs") as srv:
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(srv.url + "/")
        for key, value in {
            "activation": "sigmoid",
            "model.depth": "10",
            "model.width": "64",
            "init": "xavier_uniform",
            "optimizer.name": "sgd",
            "optimizer.lr": "0.1",
            "train.batch_size": "64",
            "train.steps": "300",
            "data.n_train": "2000",
        }.items():
            _set(page, key, value)
        page.click("#play")
        page.wait_for_function("() => window.dlxLab.slots.A && window.dlxLab.slots.A.done", timeout=120_000)
        page.wait_for_function("() => window.dlxLab.slots.A.verdict !== null", timeout=10_000)
        page.screenshot(path=str(ARTIFACTS / "lab-sigmoid-depth10.png"), full_page=True)
        last = json.loads(page.locator("#slot-A .heat").get_attribute("data-last"))
        assert len(last) == 11 and last[-1] - last[0] > 2  # input layer > 100x below the output layer
        verdict = page.locator("#slot-A .verdict").inner_text()
        kinds = page.evaluate("window.dlxLab.slots.A.verdict.kinds")
        assert "vanishing" in kinds and "vanishing" in verdict.lower()
        before = page.locator("#slot-A .surface").get_attribute("data-pred")
        # Then relu + He: reset (same seed, same init), play, and the boundary changes.
        _set(page, "activation", "relu")
        _set(page, "init", "kaiming_normal")
        _set(page, "optimizer.name", "adam")
        _set(page, "optimizer.lr", "0.01")
        page.click("#reset")
        page.wait_for_function("() => window.dlxLab.slots.A && window.dlxLab.slots.A.events >= 1", timeout=60_000)
        page.click("#play")
        page.wait_for_function("() => window.dlxLab.slots.A.done", timeout=120_000)
        after = page.locator("#slot-A .surface").get_attribute("data-pred")
        classes = int(page.locator("#slot-A .surface").get_attribute("data-classes"))
        page.screenshot(path=str(ARTIFACTS / "lab-relu-he.png"), full_page=True)
        assert after != before and classes == 3
        assert page.evaluate("window.dlxLab.slots.A.verdict.kind") != "vanishing"
        # A bad value: dlx's own config error, next to its control.
        _set(page, "optimizer.lr", "-1")
        page.click("#reset")
        page.wait_for_selector("[data-key='optimizer.lr'] + .err", timeout=10_000)
        assert "greater than" in page.locator("[data-key='optimizer.lr'] + .err").inner_text()
        # The quickstart example, run B: updates arrive within one log interval plus 200 ms.
        page.check("input[name=slot][value=B]")
        page.select_option("#example", "quickstart")
        page.wait_for_function("() => window.dlxLab.example && window.dlxLab.example.includes('quickstart')")
        page.fill("#sets", "train.epochs=null\ntrain.steps=300")
        seen = page.evaluate("window.dlxLab.latency.length")
        page.click("#play")
        page.wait_for_function("() => window.dlxLab.slots.B && window.dlxLab.slots.B.done", timeout=120_000)
        page.screenshot(path=str(ARTIFACTS / "lab-quickstart-b.png"), full_page=True)
        latency = page.evaluate("window.dlxLab.latency")[seen:]
        med = statistics.median(latency)
        report = {"median_ms": med, "max_ms": max(latency), "n": len(latency)}
        (ARTIFACTS / "lab-latency.json").write_text(json.dumps(report))
        assert len(latency) >= 30 and med < 200 and max(latency) < 1000, report
        # The only console error: the browser's note on the deliberately refused request (400).
        assert [e for e in errors if "400 (Bad Request)" not in e] == [] and len(errors) <= 1
        # Every lab run is a normal run folder.
        from dlx.folders import list_runs

        runs = list_runs(tmp_path / "runs")
        assert {r["name"] for r in runs} == {"lab-a", "quickstart"} and len(runs) == 3


def test_stopping_the_server_ends_its_runs_checkpointed_and_resumable(tmp_path):
    import dlx

    with Server(tmp_path / "runs") as srv:
        long = {**QUICK, "train": {**QUICK["train"], "steps": 10**6}}
        status, data = _post(srv.url + "/api/runs", {"session": "s", "config": long})
        assert status == 200
        run = srv.app.state.lab.runs[data["run"]]
        t = time.monotonic() + 30
        while len(run.events) < 5 and time.monotonic() < t:
            time.sleep(0.05)
    # The server stops (Ctrl-C): its runs end as Ctrl-C ends dlx train.
    assert run.done and run.status == "interrupted"
    from dlx.folders import list_runs

    (folder,) = list_runs(tmp_path / "runs")
    assert folder["status"] == "interrupted"
    resumed = dlx.load_run(folder["run_id"], runs_dir=tmp_path / "runs")
    assert (resumed.path / "checkpoint.pt").is_file()


def test_dlx_lab_config_is_where_the_page_starts_and_a_bad_one_is_refused_before_serving(tmp_path):
    from starlette.testclient import TestClient

    from dlx.errors import UsageError

    with TestClient(create_app(tmp_path / "runs", config="quickstart")) as client:
        r = client.get("/api/initial")
        assert r.json()["name"] == "quickstart" and "spirals" in r.json()["yaml"]
    with pytest.raises(UsageError, match="did you mean the example .quickstart."):
        create_app(tmp_path / "runs", config="quickstrt")

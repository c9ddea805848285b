"""dlx lab's page, issue 31 (a better Playground): the network view, your own data, step mode,
knobs changed while a run trains, the round trip (YAML, weights, replay) and a divergence's
lesson, each in a real headless Chromium (Debian's, driven by Playwright) on a real
`dlx lab --port 0 --no-browser` process. A check whose server route is missing is skipped,
naming the route, after the test's other checks ran."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from test_lab import LabProcess as Lab  # noqa: E402  (a real `dlx lab` process, as test_lab starts it)
from test_lab import set_knob  # noqa: E402  (a knob set as a person sets it)


def _routes(tmp_path: Path) -> set[str]:
    from dlx.lab.server import create_app

    return {getattr(r, "path", "") for r in create_app(tmp_path / "routes-of").routes}


@pytest.fixture
def lab(tmp_path):
    proc = Lab(tmp_path / "runs")
    yield proc
    proc.close()


def _knobs(page, values: dict[str, str], sets: str = "") -> None:
    for key, value in values.items():
        set_knob(page, key, value)
    page.fill("#sets", sets)


def _open(browser, lab, width=1400, height=1000):
    page = browser.new_page(viewport={"width": width, "height": height})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(lab.page)
    return page, errors


def _metrics(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]


def _only_run(runs_dir: Path, name: str = "lab-a") -> Path:
    from dlx.records.folders import list_runs

    (run,) = [r for r in list_runs(runs_dir) if r["name"] == name]
    return runs_dir / run["run_id"]


STROKES = "() => [...document.querySelectorAll('#slot-A [data-edge]')].map((e) => e.getAttribute('stroke') + e.getAttribute('stroke-width'))"


def test_the_network_view_before_play_then_live_weights_step_phases_and_an_lr_changed_mid_run(browser, lab, tmp_path):
    routes, missing = _routes(tmp_path), []
    page, errors = _open(browser, lab)
    _knobs(
        page,
        {"model.depth": "2", "model.width": "4", "data.n_train": "200", "train.steps": "3000"},
        "train.log_every=5",
    )
    # Before play: one element per hidden unit (2 layers of 4) and per weight (2x4 + 4x4 + 4x3, spirals' 3 classes).
    page.wait_for_function(
        "() => document.querySelectorAll('#slot-A [data-unit]').length === 8"
        " && document.querySelectorAll('#slot-A [data-edge]').length === 36",
        timeout=20_000,
    )
    units = page.evaluate("() => [...document.querySelectorAll('#slot-A [data-unit]')].map((e) => e.dataset.unit)")
    assert units == [f"fc{k}:{j}" for k in (1, 2) for j in range(4)]
    assert page.locator('#slot-A line[data-edge="fc2:3:1"]').count() == 1
    # Reset: the run starts paused at step 0 and its first event carries the weights.
    page.click("#reset")
    page.wait_for_function("() => { const a = window.dlxLab.slots.A; return a && a.run && a.net; }", timeout=60_000)
    before = page.evaluate(STROKES)
    assert len(set(before)) > 4  # coloured by each weight's sign and size
    page.wait_for_function(
        "() => [...document.querySelectorAll('#slot-A canvas[data-unit]')].every((e) => e.dataset.drawn)"
    )
    # Hover: the unit's value and its formula with the numbers in; an edge: its weight.
    page.hover('#slot-A [data-unit="fc1:0"]')
    tip = page.locator("#tip")
    tip.wait_for(state="visible")
    text = tip.inner_text()
    assert "fc1 unit 0" in text and "z = " in text and "→ relu →" in text, text
    page.dispatch_event('#slot-A line[data-edge="fc2:0:0"]', "mouseover")  # a line 1 px wide: no pointer aims that well
    page.wait_for_function("() => document.getElementById('tip').dataset.for === 'fc2:0:0'")
    assert "w[0][0] = " in tip.inner_text()
    # Click: the unit's gradient and activation histogram.
    page.click('#slot-A [data-unit="fc2:1"]')
    panel = page.locator("#slot-A .unitpanel")
    panel.wait_for(state="visible")
    assert "fc2 unit 1" in panel.inner_text() and "gradient" in panel.inner_text()
    assert len(json.loads(panel.locator("canvas.unithist").get_attribute("data-counts"))) >= 2
    run = page.evaluate("window.dlxLab.slots.A.run")
    # Step mode: exactly one step, its four phases for the chosen unit.
    if "/api/runs/{run}/phases" in routes:
        t = time.monotonic() + 30
        while lab.status(run)["status"] != "paused" and time.monotonic() < t:
            time.sleep(0.05)
        at = lab.status(run)["step"]
        page.click("#phases")
        page.wait_for_function("() => document.querySelectorAll('#slot-A .phase').length === 4", timeout=30_000)
        time.sleep(0.3)
        now = lab.status(run)
        assert now["step"] == at + 1 and now["status"] == "paused", (at, now)
        shown = page.evaluate("() => [...document.querySelectorAll('#slot-A .phase')].map((e) => e.dataset.phase)")
        assert shown == ["forward", "loss", "backward", "update"]
        phases = page.evaluate("window.dlxLab.slots.A.phases")
        assert phases["unit"] == "fc2:1" and "→" in page.locator('#slot-A .phase[data-phase="update"]').inner_text()
        assert page.locator('#slot-A .phase[data-phase="loss"]').inner_text().count("recorded") == 1
    else:
        missing.append("POST /api/runs/{run}/phases")
    # Play: after 50 steps the lines' colours (and widths) have changed with the weights.
    page.click("#play")
    # Pictures of the weights come less often than the steps' metrics: wait for the lines
    # themselves (a picture from before step 50 may have moved only a few of them).
    page.wait_for_function(
        f"(before) => {{ const now = ({STROKES})(); return window.dlxLab.slots.A.step >= 50"
        " && now.filter((s, k) => s !== before[k]).length > before.length / 2; }",
        arg=before,
        timeout=60_000,
    )
    after = page.evaluate(STROKES)
    assert sum(a != b for a, b in zip(before, after)) > len(before) // 2
    # lr changed while it trains: an event, a mark on the curves, and metrics.jsonl from that step.
    if "/api/runs/{run}/change" in routes:
        set_knob(page, "optimizer.lr", "0.002")
        page.wait_for_function("() => window.dlxLab.slots.A.changes.length >= 1", timeout=30_000)
        change = page.evaluate("window.dlxLab.slots.A.changes[0]")
        assert change["change"] == {"optimizer.lr": 0.002}
        at = change["step"]
        assert page.evaluate("window.dlxLab.slots.A.run") == run  # the same run: no restart
        page.wait_for_function(f"() => window.dlxLab.slots.A.step >= {at + 20}", timeout=60_000)
        page.click("#pause")
        assert "optimizer.lr → 0.002" in page.locator("#slot-A .changes").inner_text()
        assert at in json.loads(page.locator("#slot-A canvas.curves").get_attribute("data-changes"))
        lines = _metrics(_only_run(tmp_path / "runs"))
        lrs = [(m["step"], m["lr"]) for m in lines]
        first = next(s for s, lr in lrs if lr == pytest.approx(0.002))
        assert at <= first <= at + 5, (at, lrs)
        assert all(lr == pytest.approx(0.01) for s, lr in lrs if s < first)
        assert all(lr == pytest.approx(0.002) for s, lr in lrs if s >= first)
    else:
        missing.append("POST /api/runs/{run}/change")
    assert errors == []
    if missing:
        pytest.skip(f"the server lacks {', '.join(missing)}")


def _blobs_csv(path: Path) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    rows = ["x1,x2,label"]
    for k, (cx, cy) in enumerate([(-1.0, -1.0), (1.0, -1.0), (0.0, 1.0)]):
        for x, y in rng.normal([cx, cy], 0.3, size=(50, 2)):
            rows.append(f"{x:.4f},{y:.4f},{k}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_your_own_data_from_a_csv_and_drawn_points_trains_and_the_yaml_round_trips(browser, lab, tmp_path):
    import yaml

    import dlx
    from dlx.records.folders import list_runs

    if "/api/data" not in _routes(tmp_path):
        pytest.skip("the server lacks POST /api/data")
    runs_dir = tmp_path / "runs"
    page, errors = _open(browser, lab)
    _knobs(
        page,
        {"model.depth": "2", "model.width": "8", "train.steps": "30", "train.batch_size": "8"},
        "train.log_every=1",
    )
    assert "2 MiB" in page.locator("#datapanel .limits").first.inner_text()
    page.set_input_files("#datafile", str(_blobs_csv(tmp_path / "blobs.csv")))
    page.wait_for_function(
        "() => document.getElementById('datasummary').textContent.includes('3 classes')", timeout=20_000
    )
    page.wait_for_function("() => /name: arrays/.test(document.getElementById('yaml').textContent)", timeout=20_000)
    page.click("#play")
    page.wait_for_function("() => { const a = window.dlxLab.slots.A; return a && a.run && a.done; }", timeout=60_000)
    assert "completed" in page.locator("#slot-A .status").inner_text()
    (listed,) = list_runs(runs_dir)
    assert listed["name"] == "lab-a" and listed["status"] == "completed"
    # The YAML the page offers trains under dlx train to the same first 10 losses.
    page.click("text=the exact config (YAML)")
    with page.expect_download() as got:
        page.click("#download")
    cfg = yaml.safe_load(Path(got.value.path()).read_text())
    assert cfg["data"]["name"] == "arrays"
    again = dlx.train(cfg, runs_dir=tmp_path / "cli", quiet=True)
    lab_losses = [m["train_loss"] for m in _metrics(runs_dir / listed["run_id"])][:10]
    cli_losses = [m["train_loss"] for m in _metrics(Path(again.path))][:10]
    assert len(lab_losses) == 10 and cli_losses == pytest.approx(lab_losses, rel=1e-5, abs=1e-7)
    # Points drawn on the data panel: two classes, clicked left and right, then trained.
    page.click("#draw summary")
    pad = page.locator("#drawpad")
    box = pad.bounding_box()
    for k, xs in ((0, (0.15, 0.3)), (1, (0.7, 0.85))):
        page.select_option("#draw-class", str(k))
        for i in range(10):
            pad.click(position={"x": box["width"] * xs[i % 2], "y": box["height"] * (0.1 + 0.08 * i)})
    assert pad.get_attribute("data-points") == "20"
    page.click("#draw-use")
    page.wait_for_function(
        "() => document.getElementById('datasummary').textContent.includes('2 classes')", timeout=20_000
    )
    first = page.evaluate("window.dlxLab.slots.A.run")
    page.click("#play")
    page.wait_for_function(
        "(old) => { const a = window.dlxLab.slots.A; return a.run !== old && a.done; }", arg=first, timeout=60_000
    )
    runs = list_runs(runs_dir)
    assert len(runs) == 2 and all(r["status"] == "completed" for r in runs)
    trained = [yaml.safe_load((runs_dir / r["run_id"] / "config.yaml").read_text())["data"] for r in runs]
    assert all(d["name"] == "arrays" for d in trained) and trained[0]["path"] != trained[1]["path"]
    assert errors == []


LEGEND_WALK = """() => {
  const labelled = (e) => e.hasAttribute('title') || e.hasAttribute('aria-label')
    || [...e.children].some((c) => c.tagName.toLowerCase() === 'title');
  const bad = [];
  for (const el of document.querySelectorAll('canvas, button, .swatch, .key, svg line, svg rect, svg circle, svg image, svg path, svg polygon, svg ellipse')) {
    let ok = labelled(el);
    for (let g = el.parentElement; !ok && g && g.tagName.toLowerCase() === 'g'; g = g.parentElement) ok = labelled(g);
    if (!ok) bad.push(el.outerHTML.slice(0, 100));
  }
  return bad;
}"""


def test_a_divergence_offers_its_fix_as_run_b_side_by_side_and_every_mark_has_a_legend(browser, lab, tmp_path):
    import torch

    routes, missing = _routes(tmp_path), []
    page, errors = _open(browser, lab, width=1200)
    _knobs(
        page,
        {
            "model.depth": "2",
            "model.width": "8",
            "data.n_train": "200",
            "optimizer.name": "sgd",
            "optimizer.lr": "50",
            "train.steps": "200",
        },
        "train.log_every=5",
    )
    page.click("#play")
    page.wait_for_function(
        "() => { const a = window.dlxLab.slots.A; return a && a.run && a.done && a.verdict && a.verdict.final; }",
        timeout=60_000,
    )
    kind = page.locator("#slot-A .verdict").get_attribute("data-kind")
    assert kind and kind != "healthy"
    assert page.locator("#slot-A .verdict .message").inner_text()
    fix = page.locator("#slot-A .fix button.tryfix")
    fix.wait_for(state="visible")
    if "/api/runs/{run}/fix" in routes:
        fix.click()
        page.wait_for_function("() => window.dlxLab.slots.B && window.dlxLab.slots.B.run", timeout=30_000)
        sets = page.evaluate("window.dlxLab.slots.A.fix.sets")
        body = page.evaluate("window.dlxLab.slots.B.body")
        assert sets and all(s in body["sets"] for s in sets)
        assert page.locator("#slot-A .fix").inner_text().count("cause") >= 1
        page.wait_for_function("() => window.dlxLab.slots.B.done", timeout=60_000)
        assert page.evaluate("window.dlxLab.slots.A.verdict.kind") == kind  # A stays as it was, beside B
    else:
        missing.append("POST /api/runs/{run}/fix")
        page.check("input[name=slot][value=B]")
        page.click("#play")
        page.wait_for_function("() => window.dlxLab.slots.B && window.dlxLab.slots.B.done", timeout=60_000)
    # Runs A and B side by side at 1200 px.
    a, b = page.locator("#slot-A").bounding_box(), page.locator("#slot-B").bounding_box()
    assert abs(a["y"] - b["y"]) < 1 and b["x"] >= a["x"] + a["width"] and b["x"] + b["width"] <= 1200
    # Every colour and glyph has a legend or hover text.
    page.click('#slot-B [data-unit="fc1:0"]')
    assert page.evaluate(LEGEND_WALK) == []
    # The weights of run B, as torch reads them.
    if "/api/runs/{run}/weights" in routes:
        with page.expect_download() as got:
            page.click("#slot-B button.weights")
        state = torch.load(got.value.path(), weights_only=True)
        assert state["fc1.weight"].shape == (8, 2)
    else:
        missing.append("GET /api/runs/{run}/weights")
    assert errors == []
    # `dlx lab RUN`: a scrubber through the run's snapshots, each drawn as a live event.
    if "/api/replay" in routes:
        from dlx.records.folders import list_runs

        folder = next(r for r in list_runs(tmp_path / "runs") if r["status"] == "completed")
        replay = Lab(tmp_path / "runs", str(tmp_path / "runs" / folder["run_id"]))
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(replay.page)
            page.wait_for_selector("#replay input#scrub", state="visible", timeout=30_000)
            page.wait_for_function(
                "() => /snapshot/.test(document.getElementById('replay-at').textContent)", timeout=30_000
            )
            page.eval_on_selector("#scrub", "e => { e.value = '0'; e.dispatchEvent(new Event('input')); }")
            page.wait_for_function(
                "() => /^snapshot 1 of/.test(document.getElementById('replay-at').textContent)", timeout=30_000
            )
            assert page.locator("#slot-A [data-unit]").count() == 16
            assert page.evaluate("window.dlxLab.slots.A.net") is not None
        finally:
            replay.close()
        assert errors == []
    else:
        missing.append("GET /api/replay")
    if missing:
        pytest.skip(f"the server lacks {', '.join(missing)}")

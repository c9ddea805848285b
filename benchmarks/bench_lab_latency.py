#!/usr/bin/env python3
"""dlx lab: from the trainer's log step to the page, in a real headless Chromium.

    python benchmarks/bench_lab_latency.py                    # 3 rounds, quickstart, 300 steps
    python benchmarks/bench_lab_latency.py --rounds 5 --out BENCH.json

Starts the lab's app on a loopback port (uvicorn, in this process, as `dlx lab` does),
opens its page in Debian's chromium through Playwright, plays the quickstart example
(300 steps, an event every 10 steps: the whole run is about as long as the page takes to
build its network view; then 3000 steps) and a 10-layer sigmoid net in run A, and reads the page's own record: each event carries the time the trainer made
it, and the page notes its arrival (one machine, one clock). Prints the median and the
largest delay per round. Run it on a quiet machine: a test asserts no wall clock, this
is where the lab's latency is measured (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import uvicorn  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from dlx.lab.server import create_app  # noqa: E402

CASES = {
    "quickstart": {"example": "quickstart", "sets": "train.epochs=null\ntrain.steps=300"},
    "quickstart-3000": {"example": "quickstart", "sets": "train.epochs=null\ntrain.steps=3000"},
    "sigmoid-depth10": {
        "example": "quickstart",
        "sets": "train.epochs=null\ntrain.steps=300\nmodel.depth=10\nactivation=sigmoid\noptimizer.name=sgd\noptimizer.lr=0.1",
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_round(browser, url: str, case: dict) -> list[float]:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.wait_for_function("() => window.dlxLab && window.dlxLab.session")
    page.select_option("#example", case["example"])
    page.wait_for_function(f"() => window.dlxLab.example && window.dlxLab.example.includes('{case['example']}')")
    page.fill("#sets", case["sets"])
    seen = page.evaluate("window.dlxLab.latency.length")
    page.click("#play")
    page.wait_for_function("() => window.dlxLab.slots.A && window.dlxLab.slots.A.done", timeout=180_000)
    latency = page.evaluate("window.dlxLab.latency")[seen:]
    page.close()
    return latency


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("no chromium on PATH (Debian: apt-get install chromium)")
    runs = Path(tempfile.mkdtemp(prefix="dlx-lab-bench-")) / "runs"
    app = create_app(runs, None, 4)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/?token={app.state.lab.token}"
    results: dict = {"machine": f"{platform.machine()}, {platform.processor() or '?'}", "rounds": {}}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            one_round(browser, url, CASES["quickstart"])  # warm-up: the page, torch's first steps
            for name, case in CASES.items():
                rows = []
                for r in range(args.rounds):
                    lat = one_round(browser, url, case)
                    row = {
                        "events": len(lat),
                        "median_ms": round(statistics.median(lat), 1),
                        "p90_ms": round(sorted(lat)[int(0.9 * len(lat))], 1),
                        "max_ms": round(max(lat), 1),
                    }
                    rows.append(row)
                    print(
                        f"{name:16s} round {r + 1}: {row['events']} events, median {row['median_ms']} ms, "
                        f"90% {row['p90_ms']} ms, max {row['max_ms']} ms"
                    )
                results["rounds"][name] = rows
            browser.close()
    finally:
        server.should_exit = True
        thread.join(30)
        shutil.rmtree(runs.parent, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

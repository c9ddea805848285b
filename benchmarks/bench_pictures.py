#!/usr/bin/env python3
"""What recording the pictures costs: a spirals run (configs/quickstart.yaml, 930 steps)
with its snapshots (recording.Snapshots: the model's weights at up to 30 log steps, saved
with the checkpoint) against the same run with them turned off, alternated in one process.

    python benchmarks/bench_pictures.py --repeats 9 --out benchmarks/results-pictures-cpu-2core.json

Two measures: the wall time of dlx.train (rounds of off, on after one dropped warm-up
round; median of each side), and the seconds spent inside Snapshots.take and .save in the
"on" runs, timed around the calls, as a share of that run's wall time. The first is what
a person waits for; the second is the same cost without the run-to-run noise.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import dlx  # noqa: E402
from dlx.records import recording  # noqa: E402

CONFIG = ROOT / "configs" / "quickstart.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    take, save = recording.Snapshots.take, recording.Snapshots.save
    spent = [0.0]

    def timed(fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[0] += time.perf_counter() - t

        return wrapper

    def run(on: bool, folder: Path) -> dict:
        recording.Snapshots.take = timed(take) if on else (lambda *a, **k: None)
        recording.Snapshots.save = timed(save) if on else (lambda *a, **k: None)
        spent[0] = 0.0
        t = time.perf_counter()
        r = dlx.train(CONFIG, runs_dir=folder, quiet=True)
        wall = time.perf_counter() - t
        snaps = len(recording.read_snapshots(r.path)["steps"]) if on else 0
        return {"wall": wall, "recording": spent[0], "snapshots": snaps, "test_acc": r.summary["final"]["test_acc"]}

    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats + 1):
            pair = {"off": run(False, Path(tmp) / f"off{k}"), "on": run(True, Path(tmp) / f"on{k}")}
            if k:  # the first round warms caches up and is dropped
                rounds.append(pair)
            print(
                f"round {k}{' (warm-up)' if not k else ''}: off {pair['off']['wall']:.3f} s, on {pair['on']['wall']:.3f} s "
                f"({pair['on']['recording'] * 1000:.1f} ms recording {pair['on']['snapshots']} snapshots)",
                flush=True,
            )
    off = statistics.median(r["off"]["wall"] for r in rounds)
    on = statistics.median(r["on"]["wall"] for r in rounds)
    share = statistics.median(r["on"]["recording"] / r["on"]["wall"] for r in rounds)
    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "config": str(CONFIG.relative_to(ROOT)),
        "rounds": rounds,
        "median_wall_off_s": off,
        "median_wall_on_s": on,
        "wall_overhead": on / off - 1,
        "median_recording_share": share,
    }
    print(
        f"median wall: off {off:.3f} s, on {on:.3f} s ({on / off - 1:+.1%}); "
        f"recording inside the on runs: {share:.2%} of their wall time"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

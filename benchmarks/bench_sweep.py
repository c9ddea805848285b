#!/usr/bin/env python3
"""A 4-trial sweep, one trial at a time vs two at once, alternated in one run.

    python benchmarks/bench_sweep.py                  # 3 repeats of each, 2-core default
    python benchmarks/bench_sweep.py --repeats 5 --trials 4 --parallel 2 --out BENCH.json

Both sides run the same `dlx sweep` (a grid of --trials points on a synthetic
MLP task) end to end from the command line: process start-up, torch import,
training, landing and the results table, i.e. what a person waits for. The
sequential side is `--max-parallel 1` (each trial then gets every core as torch
threads, dlx's default); the parallel side is `--max-parallel P` (cores / P
threads each). Runs alternate (seq, par, seq, par, ...) after one warm-up each so
machine drift hits both alike; the table shows median wall seconds and the speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def make_spec(folder: Path, trials: int, steps: int) -> Path:
    base = {
        "name": "bench",
        "seed": 0,
        "data": {"name": "spirals", "n_train": 4000, "n_test": 1000, "classes": 3},
        "model": {"name": "mlp", "depth": 3, "width": 128},
        "activation": "relu",
        "init": "kaiming_normal",
        "optimizer": {"name": "adam", "lr": 0.003},
        "train": {"steps": steps, "batch_size": 64, "log_every": 50},
    }
    (folder / "base.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    spec = {"base": "base.yaml", "metric": "test_acc", "strategy": "grid", "space": {"seed": list(range(trials))}}
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_once(spec: Path, parallel: int, runs: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        # --no-stack: this measures trials side by side; stacked trials are bench_many.py's.
        [
            sys.executable,
            "-m",
            "dlx.cli.app",
            "sweep",
            str(spec),
            "--runs-dir",
            str(runs),
            "--max-parallel",
            str(parallel),
            "--no-stack",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        cwd=spec.parent,
    )
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--steps", type=int, default=1500, help="training steps per trial")
    ap.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = ap.parse_args()
    times: dict[str, list[float]] = {"sequential": [], "parallel": []}
    with tempfile.TemporaryDirectory(prefix="dlx-bench-sweep-") as tmp:
        folder = Path(tmp)
        spec = make_spec(folder, args.trials, args.steps)
        for i in range(args.repeats + 1):  # the first round warms caches and is dropped
            for side, par in (("sequential", 1), ("parallel", args.parallel)):
                t = run_once(spec, par, folder / f"runs-{side}-{i}")
                if i:
                    times[side].append(t)
                print(f"{'warm-up' if not i else f'repeat {i}'}: {side:<10} {t:6.1f} s", file=sys.stderr)
    seq, par = statistics.median(times["sequential"]), statistics.median(times["parallel"])
    result = {
        "device": f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "trials": args.trials,
        "steps_per_trial": args.steps,
        "parallel": args.parallel,
        "repeats": args.repeats,
        "sequential_s": times["sequential"],
        "parallel_s": times["parallel"],
        "median_sequential_s": seq,
        "median_parallel_s": par,
        "speedup": seq / par,
    }
    print(
        f"{args.trials}-trial sweep on {os.cpu_count()} cores: one at a time {seq:.1f} s, "
        f"{args.parallel} at once {par:.1f} s -> {seq / par:.2f}x (median of {args.repeats})"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

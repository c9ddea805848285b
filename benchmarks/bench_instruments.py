#!/usr/bin/env python3
"""What each research instrument costs (dlx/instruments.py), at its default interval, on the
784-100-100-10 MNIST MLP and on an LSTM (the adding task), alternated in one process.

    python benchmarks/bench_instruments.py --repeats 3 --out benchmarks/results-instruments-cpu-2core.json

For each model: a plain run, then the same run with one instrument on (every: auto, the
default: about 20 measurements, stretched so they never cost more than the training
between them), each instrument alone and all four together; rounds of every side, one
warm-up round dropped, median wall time of dlx.train. Also the seconds of one measurement
of each instrument (from instruments.jsonl) and how many measurements the run made.
MNIST comes from ../shared/data/mnist (DLX_DATA_DIR).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DLX_DATA_DIR", str(ROOT.parent / "shared" / "data" / "mnist"))

import torch  # noqa: E402

import dlx  # noqa: E402

MODELS = {
    "mnist_mlp_784_100_100_10": {
        "seed": 0,
        "data": {"name": "mnist", "n_train": 10000},
        "model": {"name": "mlp", "widths": [100, 100]},
        "activation": "relu",
        "init": "kaiming_normal",
        "optimizer": {"name": "sgd", "lr": 0.05},
        "train": {"epochs": 2, "batch_size": 64, "log_every": 10, "eval_every": 156},
    },
    "lstm_adding_T50_h64": {
        "seed": 0,
        "data": {"name": "adding", "length": 50, "n_train": 4096, "n_test": 512},
        "model": {"name": "lstm", "hidden": 64},
        "activation": "tanh",
        "optimizer": {"name": "adam", "lr": 0.003},
        "train": {"steps": 300, "batch_size": 64, "loss": "mse", "log_every": 10, "eval_every": 100},
    },
}
SIDES = {
    "plain": {},
    "sharpness": {"sharpness": True},
    "trace": {"trace": True},
    "noise": {"noise": True},
    "spectra": {"spectra": True},
    "all": {"sharpness": True, "trace": True, "noise": True, "spectra": True},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model, base in MODELS.items():
            walls = {s: [] for s in SIDES}
            per = {s: {} for s in SIDES}
            counts = {}
            for k in range(args.repeats + 1):
                for side, inst in SIDES.items():
                    c = {**base, "instruments": inst}
                    t = time.perf_counter()
                    r = dlx.train(c, runs_dir=Path(tmp) / f"{model}-{side}-{k}", quiet=True)
                    wall = time.perf_counter() - t
                    if k == 0:
                        continue  # warm-up round
                    walls[side].append(wall)
                    counts[side] = len(r.instruments)
                    for rec in r.instruments:
                        for name, sec in rec["seconds"].items():
                            per[side].setdefault(name, []).append(sec)
                print(
                    f"{model} round {k}: " + ", ".join(f"{s} {walls[s][-1]:.2f}s" for s in SIDES if walls[s]),
                    flush=True,
                )
            plain = statistics.median(walls["plain"])
            results[model] = {
                side: {
                    "wall_median_s": statistics.median(w),
                    "walls": w,
                    "vs_plain": statistics.median(w) / plain,
                    "measurements": counts.get(side, 0),
                    "seconds_per_measurement": {n: statistics.median(v) for n, v in per[side].items()},
                }
                for side, w in walls.items()
            }
    out = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "models": results,
    }
    for model, sides in results.items():
        print(model)
        for side, r in sides.items():
            per = ", ".join(f"{n} {v * 1000:.0f} ms" for n, v in r["seconds_per_measurement"].items())
            print(
                f"  {side:10s} {r['wall_median_s']:6.2f} s  {r['vs_plain']:.2f}x  {r['measurements']} measurements  {per}"
            )
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

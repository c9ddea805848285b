#!/usr/bin/env python3
"""A 24-trial sweep over init x lr x activation, with and without --prune-on, alternated in one run.

    python benchmarks/bench_prune.py                      # 3 repeats of each side
    python benchmarks/bench_prune.py --repeats 1 --out benchmarks/results-prune-cpu-2core.json

Both sides run the same `dlx sweep` end to end from the command line (a grid of 4 inits x
2 learning rates x 3 activations on an 8-layer MLP, 600 steps per trial): the plain sweep,
and the sweep with --prune-on symmetry,dead_units,vanishing,not_learning (train.prune's
defaults: a warm-up of a tenth of the steps, 3 log intervals in a row). Measured per side:
the training steps of all trials together (summary.json "steps"), the wall seconds, the
best trial and its metric, and which trials were pruned on what. The question: the same
best trial, in at most 60% of the steps? And was any trial the plain sweep calls healthy
pruned? (It must not be.) Sides alternate (plain, pruned, plain, ...) after one warm-up
each so machine drift hits both alike. --no-stack also times both sides with every trial
training alone (a stack keeps stepping a pruned member's slot; alone, a pruned trial frees
its process for the next).
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

PRUNE_ON = "symmetry,dead_units,vanishing,not_learning"


def make_spec(folder: Path, steps: int) -> Path:
    base = {
        "name": "prune-bench",
        "seed": 0,
        "data": {"name": "spirals", "n_train": 2000, "n_test": 500},
        "model": {"name": "mlp", "depth": 8, "width": 64},
        "activation": "relu",
        "init": "kaiming_normal",
        "optimizer": {"name": "momentum", "lr": 0.03},
        "train": {"steps": steps, "batch_size": 64, "log_every": 10, "eval_every": 100},
    }
    (folder / "base.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    spec = {
        "base": "base.yaml",
        "metric": "test_acc",
        "strategy": "grid",
        "space": {
            "init": ["kaiming_normal", "xavier_uniform", {"name": "normal", "std": 1.0}, "zeros"],
            "optimizer.lr": [0.01, 0.1],
            "activation": ["relu", "tanh", "sigmoid"],
        },
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_once(spec: Path, runs: Path, prune: bool, stack: bool) -> dict:
    cmd = [sys.executable, "-m", "dlx.cli.app", "sweep", str(spec), "--runs-dir", str(runs)]
    cmd += ["--prune-on", PRUNE_ON] if prune else []
    cmd += [] if stack else ["--no-stack"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=spec.parent)
    wall = time.perf_counter() - t0
    folder = next(runs.glob("sweep-*"))
    rows = json.loads((folder / "results.json").read_text())["rows"]
    best = next(r for r in rows if r["value"] is not None)
    return {
        "wall_s": wall,
        "steps": sum(r.get("steps") or 0 for r in rows),
        "best_trial": best["trial"],
        "best_value": best["value"],
        "statuses": {s: sum(r["status"] == s for r in rows) for s in sorted({r["status"] for r in rows})},
        "rows": {r["trial"]: (r["status"], r.get("steps"), r["verdict"]) for r in rows},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=600, help="training steps per trial")
    ap.add_argument("--no-stack", action="store_true", help="also time both sides with every trial alone")
    ap.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = ap.parse_args()
    modes = [True, False] if args.no_stack else [True]
    found: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="dlx-bench-prune-") as tmp:
        folder = Path(tmp)
        spec = make_spec(folder, args.steps)
        for i in range(args.repeats + 1):  # the first round warms caches and is dropped
            for stack in modes:
                for prune in (False, True):
                    side = f"{'pruned' if prune else 'plain'}{'' if stack else ' (no stack)'}"
                    r = run_once(spec, folder / f"runs-{i}-{prune}-{stack}", prune, stack)
                    if i:
                        found.setdefault(side, []).append(r)
                    print(
                        f"{'warm-up' if not i else f'repeat {i}'}: {side:<20} {r['wall_s']:6.1f} s, "
                        f"{r['steps']} steps, best trial {r['best_trial']} ({r['best_value']:.3f})",
                        file=sys.stderr,
                    )
    plain, pruned = found["plain"][0], found["pruned"][0]
    # Healthy (by the plain sweep's verdict) trials the pruned sweep stopped: must be none.
    healthy_pruned = [
        t
        for t, (status, _, verdict) in pruned["rows"].items()
        if status == "pruned" and plain["rows"][t][2] == "healthy"
    ]
    result = {
        "device": f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "trials": len(plain["rows"]),
        "steps_per_trial": args.steps,
        "prune_on": PRUNE_ON,
        "repeats": args.repeats,
        "steps_plain": plain["steps"],
        "steps_pruned": pruned["steps"],
        "steps_fraction": pruned["steps"] / plain["steps"],
        "same_best_trial": all(r["best_trial"] == plain["best_trial"] for rs in found.values() for r in rs),
        "best_trial": plain["best_trial"],
        "best_value": plain["best_value"],
        "healthy_trials_pruned": healthy_pruned,
        "pruned_trials": {t: v for t, v in pruned["rows"].items() if v[0] == "pruned"},
        "statuses": {side: rs[0]["statuses"] for side, rs in found.items()},
        "median_wall_s": {side: statistics.median(r["wall_s"] for r in rs) for side, rs in found.items()},
    }
    walls = result["median_wall_s"]
    print(
        f"{result['trials']}-trial sweep: {plain['steps']} steps plain, {pruned['steps']} pruned "
        f"({result['steps_fraction']:.0%}); same best trial: {result['same_best_trial']} "
        f"(trial {plain['best_trial']}, {plain['best_value']:.3f}); healthy trials pruned: {healthy_pruned or 'none'}"
    )
    print("median wall: " + ", ".join(f"{side} {s:.1f} s" for side, s in walls.items()))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

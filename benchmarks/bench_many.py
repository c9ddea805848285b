#!/usr/bin/env python3
"""Many small runs: dlx against the hand-written loop, end to end, alternated in one run.

    python benchmarks/bench_many.py --repeats 3 --out benchmarks/results-many-cpu-2core.json
    python benchmarks/bench_many.py --only train --repeats 5

Three sections, each command timed from process start to exit (interpreter, imports,
data, training, files, table, figure: what a person waits for), in rounds that run
every side once (ref, dlx, ref, dlx, ...) after one warm-up round that is dropped:

compare  the 9 trainings of `dlx compare configs/quickstart.yaml --optimizers
         sgd,momentum,adam --seeds 3` against ../shared/bench/compare_by_hand.py (the
         same 9 trainings in one hand-written loop, 1 and 2 torch threads); dlx with a
         fresh process per trial and no stacking (dlx before warm workers), warm workers
         without stacking, stacked trials in warm workers (dlx.compare called as a library,
         which leaves its caller's process alone) and the default (the dlx command trains the
         one stack of 9 in its own process: no worker, one torch import).
sweep    a 32-point grid (8 learning rates x 4 seeds) of the quickstart net, 10 epochs,
         `dlx sweep` with fresh processes and no stacking against the default.
train    `dlx train configs/quickstart.yaml` against benchmarks/quickstart_by_hand.py,
         on a quiet machine and beside one busy process (a Python loop spinning on a core).
loop     the same compare's training throughput, start-up left out on both sides: the
         by-hand loop's own "seconds" line (its 9 trainings, data made inside, imports
         before) against the span dlx's trials take in their workers (from the first
         trial's job arriving to the last result written: building, training, evaluating,
         writing every run folder), read from dlx.compare's trial results.
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
SHARED = ROOT.parent / "shared" / "bench"
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
PY = sys.executable


def _dlx(*args: str) -> list[str]:
    return [PY, "-m", "dlx.cli.app", *args]


def sweep_spec(folder: Path) -> Path:
    spec = {
        "base": str(QUICKSTART),
        "set": ["train.epochs=10"],
        "metric": {"name": "test_acc", "goal": "max"},
        "strategy": "grid",
        "space": {"optimizer.lr": [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2], "seed": [0, 1, 2, 3]},
    }
    path = folder / "sweep_lr_seed.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def cases(section: str, tmp: Path) -> list[tuple[str, list[str]]]:
    runs = ["--runs-dir", str(tmp / "runs")]
    if section == "compare":
        cmp = ["compare", str(QUICKSTART), "--optimizers", "sgd,momentum,adam", "--seeds", "3", *runs]
        return [
            ("by hand, 2 threads", [PY, str(SHARED / "compare_by_hand.py"), "2"]),
            ("by hand, 1 thread", [PY, str(SHARED / "compare_by_hand.py"), "1"]),
            ("dlx, fresh processes", _dlx(*cmp, "--fresh-processes", "--no-stack")),
            ("dlx, warm workers", _dlx(*cmp, "--no-stack")),
            ("dlx, stacked in warm workers", [PY, "-c", WORKERS, str(QUICKSTART), str(tmp / "runs")]),
            ("dlx, stacked (default)", _dlx(*cmp)),
        ]
    if section == "sweep":
        spec = str(sweep_spec(tmp))
        return [
            ("dlx sweep, fresh processes", _dlx("sweep", spec, *runs, "--fresh-processes", "--no-stack")),
            ("dlx sweep, stacked (default)", _dlx("sweep", spec, *runs)),
        ]
    return [
        ("by hand", [PY, str(ROOT / "benchmarks" / "quickstart_by_hand.py")]),
        ("dlx train", _dlx("train", str(QUICKSTART), *runs)),
    ]


# dlx.compare as a library call: its stacks train in warm workers, as `dlx compare` did before
# the command trained one stack's worth of trials in its own process (the table printed alike).
WORKERS = """
import sys, dlx
print(dlx.compare(sys.argv[1], optimizers=["sgd", "momentum", "adam"], seeds=3, runs_dir=sys.argv[2]).table())
"""

SPAN = """
import json, sys, dlx
ends = []
dlx.compare(sys.argv[1], optimizers=["sgd", "momentum", "adam"], seeds=3, runs_dir=sys.argv[2],
            stack=sys.argv[3] == "stack", figure=False, quiet=True, on_result=ends.append)
print("span", max(r.ended for r in ends) - min(r.started for r in ends))
"""


def loop_seconds(side: str, tmp: Path) -> float:
    """The by-hand loop's own seconds, or the span of dlx's trials (see the docstring)."""
    if side == "by hand":
        argv = [PY, str(SHARED / "compare_by_hand.py"), "1"]
        key = "seconds"
    else:
        argv = [PY, "-c", SPAN, str(QUICKSTART), str(tmp / "runs"), "stack" if "stacked" in side else "alone"]
        key = "span"
    out = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=tmp).stdout
    return float(next(line.split()[1] for line in out.splitlines() if line.startswith(key)))


def measure_loop(repeats: int) -> dict[str, list[float]]:
    sides = ("by hand", "dlx, warm workers", "dlx, stacked (default)")
    times: dict[str, list[float]] = {s: [] for s in sides}
    with tempfile.TemporaryDirectory(prefix="dlx-bench-loop-") as tmp:
        for i in range(repeats + 1):
            for side in sides:
                t = loop_seconds(side, Path(tmp))
                if i:
                    times[side].append(t)
                print(f"loop {'warm-up' if not i else f'repeat {i}'}: {side:<30} {t:6.2f} s", file=sys.stderr)
    return times


def timed(argv: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
    return time.perf_counter() - t0


def measure(section: str, repeats: int, busy: bool = False) -> dict[str, list[float]]:
    spinner = None
    if busy:
        spinner = subprocess.Popen([PY, "-c", "while True: pass"])
    try:
        with tempfile.TemporaryDirectory(prefix=f"dlx-bench-{section}-") as tmp:
            folder = Path(tmp)
            sides = cases(section, folder)
            times: dict[str, list[float]] = {name: [] for name, _ in sides}
            for i in range(repeats + 1):  # the first round warms caches and is dropped
                for name, argv in sides:
                    t = timed(argv, folder)
                    if i:
                        times[name].append(t)
                    label = "warm-up" if not i else f"repeat {i}"
                    print(f"{section}{' (busy)' if busy else ''} {label}: {name:<30} {t:6.2f} s", file=sys.stderr)
            return times
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", choices=("compare", "sweep", "train", "loop"), action="append")
    ap.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = ap.parse_args()
    import torch

    result: dict = {
        "device": f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "repeats": args.repeats,
    }
    for section in args.only or ("compare", "sweep", "train", "loop"):
        runs = {"quiet": measure_loop(args.repeats) if section == "loop" else measure(section, args.repeats)}
        if section == "train":
            runs["busy"] = measure(section, args.repeats, busy=True)
        result[section] = {
            load: {name: {"runs_s": t, "median_s": statistics.median(t)} for name, t in times.items()}
            for load, times in runs.items()
        }
        for load, times in result[section].items():
            print(f"{section} ({load}):")
            for name, v in times.items():
                print(f"  {name:<30} {v['median_s']:6.2f} s  {', '.join(f'{x:.2f}' for x in v['runs_s'])}")
    if args.out:
        old = json.loads(args.out.read_text()) if args.out.is_file() and args.only else {}
        args.out.write_text(json.dumps({**old, **result}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Many seeds at scale: trainings per second through `dlx compare --seeds K`, beside the
yardsticks, alternated in one run.

    python benchmarks/bench_scale.py --ks 10,100 --repeats 2 --out benchmarks/results-scale-cpu-2core.json
    python benchmarks/bench_scale.py --ks 1000 --repeats 1 --no-warmup

Per round, each side once, every command timed from process start to exit:

dlx K       `dlx compare configs/quickstart.yaml --seeds K --optimizers adam` (K = 1: `dlx
            train`), end to end: K complete run folders, the table, the figure, the record.
            Also its peak memory (the largest process's max RSS, and the whole process tree's
            resident memory sampled every 0.2 s) and the runs folder's size.
by hand     ../shared/bench/seeds_by_hand.py 10 (the loop a person writes: 10 seeds one after
            another, one thread), scaled to K by its per-seed time.
stacked     ../shared/bench/stacked_reference.py 1 (plain torch, K nets as one stacked model,
            one thread: the CPU's limit for these tiny nets), its trainings/s at K = 1, 10, 100.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "bench"
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
PY = sys.executable


def timed(cmd: list[str], cwd: Path | None = None) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env={**os.environ, "COLUMNS": "200"})
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return dt, p.stdout + p.stderr


def tree_rss_bytes(root: int) -> int:
    """The resident memory of a process and all its descendants now (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, todo = set(), [root]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo += [c for c, pp in parents.items() if pp == p and c not in tree]
    total = 0
    for p in tree:
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration, ValueError):
            pass
    return total


def timed_with_memory(cmd: list[str]) -> tuple[float, str, int]:
    """timed(), and the peak of the whole process tree's resident memory, sampled every 0.2 s."""
    import threading

    peak, done = [0], threading.Event()
    t = time.perf_counter()
    p = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "COLUMNS": "200"}
    )

    def sample():
        while not done.wait(0.2):
            peak[0] = max(peak[0], tree_rss_bytes(p.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = p.communicate()
    dt = time.perf_counter() - t
    done.set()
    sampler.join()
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{out[-3000:]}")
    return dt, out, peak[0]


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def dlx_seeds(k: int, work: Path) -> dict:
    runs = work / f"runs-{k}"
    cmd = [PY, "-m", "dlx.cli.app"]
    if k == 1:
        cmd += ["train", str(QUICKSTART), "--runs-dir", str(runs), "-q"]
    else:
        cmd += ["compare", str(QUICKSTART), "--seeds", str(k), "--optimizers", "adam", "--runs-dir", str(runs)]
    # A wrapper process per command, so RUSAGE_CHILDREN is this command's: the largest peak
    # RSS among the driver and every worker it reaped.
    wrap = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]).returncode; "
        "print('PEAK_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r)"
    )
    dt, out, tree_peak = timed_with_memory([PY, "-c", wrap, *cmd])
    peak_kb = int(re.findall(r"PEAK_KB (\d+)", out)[-1])
    folders = [p for p in runs.iterdir() if p.is_dir()]
    size = folder_bytes(runs)
    shutil.rmtree(runs)
    return {
        "seconds": dt,
        "trainings_per_s": k / dt,
        "run_folders": len(folders),
        "disk_mb": size / 1e6,
        "peak_rss_mb": peak_kb / 1024,
        "peak_tree_rss_mb": tree_peak / 2**20,  # driver and workers together
        # The last such line counts every trial (the first is the first planning window's).
        "stacked_note": next(
            (line.strip() for line in reversed(out.splitlines()) if line.strip().startswith("stacked:")), None
        ),
    }


def by_hand(n: int = 10) -> dict:
    dt, _ = timed([PY, str(SHARED / "seeds_by_hand.py"), str(n), "1"])
    return {"seconds": dt, "per_seed_s": dt / n}


def stacked_reference() -> dict[int, float]:
    _, out = timed([PY, str(SHARED / "stacked_reference.py"), "1"])
    return {int(k): float(v) for k, v in re.findall(r"K=\s*(\d+):.*?->\s*([\d.]+) trainings/s", out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", default="1,10,100", help="comma-separated K (seeds per compare)")
    ap.add_argument("--repeats", type=int, default=2, help="rounds after one dropped warm-up")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--no-warmup", action="store_true", help="keep the first round (a long K runs once)")
    a = ap.parse_args()
    ks = [int(k) for k in a.ks.split(",")]
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="dlx-bench-scale-") as tmp:
        work = Path(tmp)
        first = 1 if a.no_warmup else 0
        for r in range(first, a.repeats + 1):  # round 0 warms the disk cache and is dropped
            row = {"by_hand": by_hand(), "stacked_reference": stacked_reference(), "dlx": {}}
            for k in ks:
                row["dlx"][k] = dlx_seeds(k, work)
            if r:
                rounds.append(row)
            print(f"round {r}{' (warm-up, dropped)' if not r else ''}: " + json.dumps(row, default=str), flush=True)
    hand = statistics.median(x["by_hand"]["per_seed_s"] for x in rounds)
    summary = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "by_hand_per_seed_s": hand,
        "stacked_reference_trainings_per_s": {
            k: statistics.median(x["stacked_reference"][k] for x in rounds) for k in rounds[0]["stacked_reference"]
        },
        "dlx": {},
    }
    for k in ks:
        secs = statistics.median(x["dlx"][k]["seconds"] for x in rounds)
        last = rounds[-1]["dlx"][k]
        summary["dlx"][k] = {
            "seconds": secs,
            "trainings_per_s": k / secs,
            "speedup_vs_by_hand": hand * k / secs,
            "run_folders": last["run_folders"],
            "disk_mb": last["disk_mb"],
            "peak_rss_mb": last["peak_rss_mb"],
            "peak_tree_rss_mb": last["peak_tree_rss_mb"],
            "stacked_note": last["stacked_note"],
        }
    print(json.dumps(summary, indent=2))
    if a.out:
        a.out.write_text(json.dumps({"summary": summary, "rounds": rounds}, indent=2, default=str))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""`dlx runs` over many run folders: with no index (cold) and with the index beside them (warm).

    python benchmarks/bench_runs_index.py                  # N = 10,000, 3 repeats
    python benchmarks/bench_runs_index.py --n 1000 --repeats 5 --out BENCH.json

Trains one tiny real run, then copies its small files (meta.json, summary.json,
config.yaml, metrics.jsonl, probes.jsonl: a few KB; not the snapshots or the checkpoint)
into N run folders with new ids, and times the command a person types, `dlx runs`
(process start-up included) and `dlx runs --json`, each: cold (the index deleted first,
so every folder is read and the index written) and warm (the index there). The files
are in the OS page cache either way: "cold" is dlx's index, not the disk's. It also
times dlx.records.reading.list_runs in-process, with the index and without
(index=False), to show the listing apart from Python's start-up.
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
sys.path.insert(0, str(ROOT))

from dlx.records.layout import CONFIG_FILE, META_FILE, METRICS_FILE, PROBES_FILE, RUNS_INDEX, SUMMARY_FILE  # noqa: E402

TINY = {
    "name": "bench",
    "seed": 0,
    "data": {"name": "spirals", "n_train": 256, "n_test": 128},
    "model": {"name": "mlp", "depth": 2, "width": 16},
    "activation": "relu",
    "init": "kaiming_normal",
    "optimizer": {"name": "adam", "lr": 0.01},
    "train": {"epochs": 2, "batch_size": 32, "log_every": 4},
}


def dlx(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dlx.cli.app", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160"},
    )


def build(work: Path, n: int) -> Path:
    """One tiny real run, copied into n run folders under work/runs (new ids, run_id in meta too)."""
    seed_runs = work / "seed-runs"
    (work / "tiny.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    dlx("train", str(work / "tiny.yaml"), "--runs-dir", str(seed_runs), "--quiet", cwd=work)
    (source,) = [d for d in seed_runs.iterdir() if (d / META_FILE).is_file()]
    files = {f: (source / f).read_bytes() for f in (CONFIG_FILE, META_FILE, METRICS_FILE, PROBES_FILE, SUMMARY_FILE)}
    meta_text = files[META_FILE].decode()
    runs = work / "runs"
    runs.mkdir()
    for i in range(n):
        rid = f"20260101-{i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}-bench-{i:06x}"
        d = runs / rid
        d.mkdir()
        for name, data in files.items():
            (d / name).write_bytes(meta_text.replace(source.name, rid).encode() if name == META_FILE else data)
    print(f"{n} run folders of {sum(map(len, files.values())) / 1e3:.1f} KB each, copied from one real run")
    return runs


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="run folders (default 10,000)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, help="write the medians here as JSON")
    args = ap.parse_args()

    from dlx.records.reading import list_runs

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runs = build(work, args.n)
        index = runs / RUNS_INDEX
        cases = {
            "dlx runs, cold (no index)": lambda: (index.unlink(missing_ok=True), dlx("runs", cwd=work)),
            "dlx runs, warm (index)": lambda: dlx("runs", cwd=work),
            "dlx runs --json, cold": lambda: (index.unlink(missing_ok=True), dlx("runs", "--json", cwd=work)),
            "dlx runs --json, warm": lambda: dlx("runs", "--json", cwd=work),
            "list_runs in-process, index=False": lambda: list_runs(runs, index=False),
            "list_runs in-process, cold (no index)": lambda: (index.unlink(missing_ok=True), list_runs(runs)),
            "list_runs in-process, warm (index)": lambda: list_runs(runs),
            "dlx runs on an empty folder (start-up)": lambda: dlx("runs", "--runs-dir", str(work / "none"), cwd=work),
        }
        dlx("runs", cwd=work)  # warm-up: the page cache and Python's bytecode
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.repeats):  # alternated, so machine drift hits every case alike
            for name, fn in cases.items():
                times[name].append(timed(fn))
        assert list_runs(runs) == list_runs(runs, index=False)
        size = index.stat().st_size
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(f"\nN = {args.n}, {args.repeats} repeats, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"index file: {size / 1e6:.2f} MB")
    print("| case | median s | min s | max s |\n|---|---:|---:|---:|")
    for k, v in times.items():
        print(f"| {k} | {medians[k]:.3f} | {min(v):.3f} | {max(v):.3f} |")
    if args.out:
        args.out.write_text(
            json.dumps({"n": args.n, "cpus": os.cpu_count(), "index_bytes": size, "seconds": times}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""dlx train vs the hand-written reference loop, alternated in one run.

    python benchmarks/bench_train.py                       # CPU, default cases
    python benchmarks/bench_train.py --repeats 5 --cases mlp1000 --out BENCH.json

Each case trains the same model on the same MNIST data with the same optimizer,
per-layer gradient norms on in both, for --epochs epochs: the reference
(../shared/bench/reference_mlp.py --grad-norms) and `dlx train` (its probes are
always on). Runs alternate (ref, dlx, ref, dlx, ...) after one warm-up each, so
machine drift hits both alike; the table shows the median samples/s and the
ratio dlx/reference. Samples/s is measured the same way on both sides: the
training loop only (the reference times its loop; dlx reports train_seconds,
which excludes data loading, model building and test evaluation but includes
its own probes, activation statistics and run-folder writes).
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
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared"

# name: (hidden widths, batch size, optimizer); all ReLU, like the reference.
CASES = {
    "mlp1000": ([1000, 1000], 128, "adam"),
    "deep_narrow": ([32] * 50, 128, "adam"),
    "mlp100": ([100, 100, 100], 60, "sgd"),
}


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {cpu} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()})"


def run_reference(ref: Path, data: Path, widths, batch, opt, epochs, device) -> float:
    depth, width = len(widths), widths[0]
    cmd = [
        sys.executable,
        str(ref),
        "--data",
        str(data),
        "--depth",
        str(depth),
        "--width",
        str(width),
        "--batch",
        str(batch),
        "--epochs",
        str(epochs),
        "--optimizer",
        opt,
        "--grad-norms",
        "--device",
        device,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["samples_per_s"]


def run_dlx(data: Path, widths, batch, opt, epochs, device, log_every, workdir: Path) -> float:
    # The reference's optimizers: Adam lr 1e-3, or SGD lr 0.05 momentum 0.9.
    optimizer = {"name": "adam", "lr": 0.001} if opt == "adam" else {"name": "momentum", "lr": 0.05, "momentum": 0.9}
    cfg = {
        "name": "bench",
        "seed": 0,
        "data": {"name": "mnist", "root": str(data)},
        "model": {"name": "mlp", "widths": widths},
        "activation": "relu",
        "init": "default",
        "optimizer": optimizer,
        "train": {"epochs": epochs, "batch_size": batch, "log_every": log_every, "device": device, "checkpoint": False},
    }
    path = workdir / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "dlx", "train", str(path), "--json", "--runs-dir", str(workdir / "runs")]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"dlx failed:\n{out.stderr}")
    return json.loads(out.stdout)["samples_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=SHARED / "data" / "mnist")
    p.add_argument("--reference", type=Path, default=SHARED / "bench" / "reference_mlp.py")
    p.add_argument("--cases", default="mlp1000", help=f"comma-separated, of: {', '.join(CASES)}")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--log-every", type=int, default=10, help="dlx train.log_every (its default is 10)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, help="also write the results as JSON here")
    a = p.parse_args()
    for need in (a.data / "train-images-idx3-ubyte.gz", a.reference):
        if not need.exists():
            raise SystemExit(f"missing {need}: pass --data / --reference")
    dev = device_name()
    print(f"device: {dev}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in a.cases.split(","):
            widths, batch, opt = CASES[case]
            args = (widths, batch, opt, a.epochs, a.device)
            run_reference(a.reference, a.data, *args)  # warm-up: page cache, CPU clocks
            run_dlx(a.data, *args, a.log_every, Path(tmp))
            ref, ours = [], []
            for i in range(a.repeats):
                ref.append(run_reference(a.reference, a.data, *args))
                ours.append(run_dlx(a.data, *args, a.log_every, Path(tmp)))
                print(f"  {case} repeat {i + 1}: reference {ref[-1]:.0f}/s, dlx {ours[-1]:.0f}/s", flush=True)
            r, d = statistics.median(ref), statistics.median(ours)
            # Each dlx run against the reference run just before it: drift cancels in the pair.
            paired = statistics.median(o / f for o, f in zip(ours, ref))
            results.append(
                {
                    "case": case,
                    "widths": widths,
                    "batch": batch,
                    "optimizer": opt,
                    "reference_samples_per_s": r,
                    "dlx_samples_per_s": d,
                    "ratio": d / r,
                    "paired_ratio": paired,
                    "reference_runs": ref,
                    "dlx_runs": ours,
                }
            )
    print(
        "\n| case | model | batch | opt | reference samples/s | dlx samples/s | ratio of medians | median paired ratio |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|")
    for res in results:
        w = res["widths"]
        model = f"784-{'-'.join(map(str, w))}-10" if len(w) <= 3 else f"784-{len(w)}x{w[0]}-10"
        print(
            f"| {res['case']} | {model} | {res['batch']} | {res['optimizer']} | "
            f"{res['reference_samples_per_s']:.0f} | {res['dlx_samples_per_s']:.0f} | {res['ratio']:.2f} | "
            f"{res['paired_ratio']:.2f} |"
        )
    print(f"\ndevice: {dev}; median of {a.repeats} alternating runs, {a.epochs} epoch(s) each, grad norms on")
    if a.out:
        a.out.write_text(json.dumps({"device": dev, "results": results}, indent=2))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""`dlx fix` on every pathological example: does a remedy remove the verdict and improve the metric?

    python benchmarks/fix_examples.py                        # all eight, 3 seeds each
    python benchmarks/fix_examples.py --out benchmarks/results-fix-cpu-2core.json
    python benchmarks/fix_examples.py zero_init exploding_rnn

Each example is trained as shipped (`dlx train CONFIG`), then `dlx fix` runs its remedies
over --seeds seeds (the defaults: 4 remedies, 2 rounds). Printed per example: the run's root
verdicts, the original's metric (mean +- sd over seeds; how many seeds diverged), the winner,
on how many seeds its verdict is gone, its metric, and the wall seconds of train + fix.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import dlx

ROOT = Path(__file__).resolve().parent.parent
# The eight classic failures, by their example configs.
EXAMPLES = {
    "vanishing_sigmoid": "deep sigmoid",
    "xavier_deep_relu": "Xavier + ReLU at depth 20",
    "zero_init": "zero init",
    "lr_too_high": "lr too high",
    "dead_relu_high_lr": "dead ReLUs",
    "tanh_normal_saturation": "saturation by N(0,1)",
    "exploding_rnn": "exploding RNN",
    "rnn_vs_lstm_adding": "vanishing through time",
}


def text(r: dict) -> str:
    if r["mean"] is None:
        return f"none ({r['runs']} diverged)"
    out = f"{r['mean']:.4g} ± {r['sd']:.2g}"
    missing = r["runs"] - len(r["values"])
    return out + (f" ({missing} diverged)" if missing else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="examples (default: all eight)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = ap.parse_args()
    names = args.names or list(EXAMPLES)
    found = {}
    with tempfile.TemporaryDirectory(prefix="dlx-fix-") as tmp:
        for name in names:
            t0 = time.perf_counter()
            run = dlx.train(str(ROOT / "configs" / f"{name}.yaml"), runs_dir=tmp, quiet=True)
            report = dlx.fix(run.path, seeds=args.seeds, runs_dir=tmp, quiet=True)
            secs = time.perf_counter() - t0
            orig, w = report.rows[0], report.winner
            found[name] = {
                "what": EXAMPLES.get(name, name),
                "verdicts": report.verdicts,
                "metric": report.metric,
                "original": text(orig),
                "winner": w["label"] if w else None,
                "gone": f"{w['gone']}/{w['runs']}" if w else None,
                "fixed": text(w) if w else None,
                "tried": [(r["label"], f"{r['gone']}/{r['runs']}", text(r)) for r in report.rows[1:]],
                "seconds": round(secs, 1),
            }
            f = found[name]
            print(
                f"{name} ({f['what']}): {', '.join(f['verdicts'])}; {f['metric']} {f['original']} -> "
                f"{f['winner']}: gone {f['gone']}, {f['fixed']}  [{secs:.0f} s]",
                flush=True,
            )
    if args.out:
        result = {
            "device": f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "seeds": args.seeds,
            "examples": found,
        }
        args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 0 if all(f["winner"] for f in found.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

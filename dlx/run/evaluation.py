"""Evaluation passes in eval mode (dropout off, batch norm's running statistics): the test
set at each scheduled evaluation, and the run's final numbers over their stated windows.
Trainer.evaluate, Trainer.test_predictions and Trainer._final_metrics call these; the
per-class table (run.history) reads the predictions of the final test pass, so the end of a
run makes one pass over the test set, not two (BENCHMARKS.md, "End-of-run cost").
"""

from __future__ import annotations

from typing import Any

import torch

EVAL_BATCH = 8192  # evaluation forward passes in chunks of this many samples (on an accelerator)
# On a CPU in chunks of this many: a chunk's activations stay in cache. cnn_mnist's 10,000
# test images in eval mode took 3.1 s of CPU in chunks of 4096 (a conv layer's output alone
# 200 MB, fresh pages every chunk), 1.7-2.7 s in chunks of 1024, 1.2-1.4 s in chunks of 256;
# the LSTM of rnn_vs_lstm_adding about the same from 128 to 1024.
EVAL_BATCH_CPU = 256
# What summary.json's "final" numbers are computed over (its "window" key says it).
FINAL_WINDOW = (
    "train_*: one pass over the whole training set in eval mode after the last step; test_*: the test set then"
)
# A larger training set's final train_* are over a seeded random sample of this many: the
# whole 20,000 images of cnn_mnist cost 38% of its training time again (4 s for 10 s);
# 10,000 (the size of MNIST's test set, so both final accuracies carry the same +-0.15%
# standard error near 98%) cost a fifth. The window says so (the report: "train_* over the ...").
FINAL_TRAIN_SAMPLES = 10_000
FINAL_WINDOW_SAMPLED = (
    "seeded random {n:,} of the {total:,} training samples (generator seed: the run's seed), in eval mode "
    "after the last step; test_*: the whole test set then"
)


@torch.no_grad()
def evaluate(model, data, loss_fn, device: torch.device, split: str = "test", rows: torch.Tensor | None = None):
    """({split}_loss, {split}_acc) over the test (or training) set, or those rows of it, in
    eval mode, and the class predictions of a classifier's whole test pass (else None).
    The model is left in train mode, as the loop needs it."""
    if split not in ("test", "train"):
        raise ValueError(f"evaluate: split is 'test' or 'train', not {split!r}")
    x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    if rows is not None:
        x, y = x.index_select(0, rows), y.index_select(0, rows)
    chunk = EVAL_BATCH_CPU if device.type == "cpu" else EVAL_BATCH
    classify = data.task == "classification"
    keep = classify and split == "test" and rows is None
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    preds = []
    model.eval()
    try:
        for i in range(0, len(x), chunk):
            out = model(data.as_float(x[i : i + chunk]))
            yb = y[i : i + chunk]
            total_loss += loss_fn(out, yb) * len(yb)
            if classify:
                pred = out.argmax(-1)
                correct += (pred == yb).float().mean() * len(yb)
                if keep:
                    preds.append(pred)
    finally:
        model.train()
    n = max(len(x), 1)
    res = {f"{split}_loss": float(total_loss) / n}  # the one host read of the evaluation
    if classify:
        res[f"{split}_acc"] = float(correct) / n
    return res, (torch.cat(preds) if preds else y[:0]) if keep else None


def weights_version(model, step: int) -> tuple[int, ...]:
    """Changes whenever a parameter or buffer (BN's running statistics) changes in place: an
    optimizer step, load_state_dict, a callback's edit. Tells whether kept test predictions
    still belong to the model as it is."""
    return (step, *(t._version for t in (*model.parameters(), *model.buffers())))


def final_train_window(n: int, seed: int, device: torch.device) -> tuple[torch.Tensor | None, str]:
    """The rows of the training set its final train_* are over (None: all of them) and the
    window's text: a seeded random FINAL_TRAIN_SAMPLES of a larger set, sorted."""
    if n <= FINAL_TRAIN_SAMPLES:
        return None, FINAL_WINDOW
    # A generator of its own: the run's random streams (a resumed run's included) stay untouched.
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randperm(n, generator=gen)[:FINAL_TRAIN_SAMPLES].sort().values.to(device)
    return rows, FINAL_WINDOW_SAMPLED.format(n=FINAL_TRAIN_SAMPLES, total=n)


def final_test(last: dict[str, Any]) -> dict[str, float] | None:
    """The final test_* when the last interval evaluated the test set (at the last step:
    the loop always evaluates there), else None (evaluate it now)."""
    if "test_loss" not in last:
        return None
    return {k: last[k] for k in ("test_loss", "test_acc") if last.get(k) is not None}

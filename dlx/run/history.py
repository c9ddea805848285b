"""A run's history in memory (History: the series its folder holds, and what the summary
and the diagnosis read), the records of one log interval, the summary with its diagnosis,
and the checkpoint's state: everything about recording a run that touches no file. The run
folder is written from these by dlx.records.recording.RunWriter; an unsaved run (dlx lab,
train.prune) uses them alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlx.config.loader import load_config
from dlx.core.jsonable import jsonable
from dlx.diagnosis.engine import Context as DiagnosisContext
from dlx.diagnosis.engine import diagnose, headline, schema_accepts
from dlx.diagnosis.engine import outcome as run_outcome

SCALAR_KEYS = ("step", "epoch", "first_step", "lr", "time", "train_loss", "train_acc", "test_loss", "test_acc")
PROBE_KEYS = (
    "weight_norm",
    "update_ratio",
    "unit_spread",
    "act_mean",
    "act_std",
    "act_saturated",
    "act_dead",
    "act_negative",
    "act_pct",
    "time_grad",
)


def metrics_record(record: dict[str, Any]) -> dict[str, Any]:
    """One metrics.jsonl line from a trainer interval record."""
    return {k: record[k] for k in SCALAR_KEYS if k in record}


def probes_record(record: dict[str, Any]) -> dict[str, Any]:
    """One probes.jsonl line from a trainer interval record (the writer makes it JSON). Its
    measurements are float32 (run.probes' buffers), made float32's shortest text where they
    are copied to the host (core.jsonable.float32_text), once for a whole stack."""
    probe = {
        "step": record["step"],
        "first_step": record["first_step"],
        "grad_norm": record["grad_norm"],
        "loss": record["loss_steps"],
    }
    probe.update({k: record[k] for k in PROBE_KEYS if k in record})
    if record.get("diverged"):
        probe["diverged"] = record["diverged"]
    return probe


class History:
    """Keeps the whole run's series in memory: the records the run folder holds (so an
    unsaved run can be plotted and tabled like a saved one), plus what the summary and
    the diagnosis read."""

    def __init__(self):
        self.metrics: list[dict[str, Any]] = []
        self.probes: list[dict[str, Any]] = []
        self.grad_rows: list[np.ndarray] = []
        self.last: dict[str, Any] = {}
        self.init_check: list[dict[str, Any]] | None = None
        self.instruments: list[dict[str, Any]] = []  # dlx.run.instruments records, one per measurement

    def on_start(self, trainer):
        from dlx.run.initcheck import init_check_for

        # Step 0, before any update: each layer's variance against its init scheme's theory
        # (a few ms; it leaves parameters and random streams exactly as they were).
        # A resumed run keeps the one its checkpoint holds (see restore).
        if trainer.step == 0:
            self.init_check = init_check_for(trainer)

    def restore(
        self,
        metrics: list[dict[str, Any]],
        probes: list[dict[str, Any]],
        init_check: list[dict[str, Any]] | None,
        instruments: list[dict[str, Any]] = (),
    ) -> None:
        """The series of a resumed run's earlier sessions, from its files (as on_interval kept them)."""
        self.instruments = list(instruments)
        self.metrics = [{k: m[k] for k in SCALAR_KEYS if k in m} for m in metrics]
        self.probes = list(probes)
        self.grad_rows = [_floats(p["grad_norm"]) for p in probes]
        self.last = {}
        for p in probes:
            self.last.update({k: _floats(p[k]) for k in PROBE_KEYS if k in p})
        self.init_check = init_check

    def on_interval(self, trainer, record):
        self.metrics.append(metrics_record(record))
        self.probes.append(probes_record(record))
        self.grad_rows.append(record["grad_norm"])
        # The latest value of each probe (unit spreads come only with evaluations).
        self.last.update({k: record[k] for k in PROBE_KEYS if k in record})

    def on_instruments(self, trainer, record):
        self.instruments.append(jsonable(record))

    @property
    def grad(self) -> np.ndarray:
        return np.concatenate(self.grad_rows) if self.grad_rows else np.zeros((0, 0))


def _floats(x: Any) -> np.ndarray:
    """A probes.jsonl series back to float64 (null, written for NaN, back to NaN): values
    round-trip exactly (float32's shortest text is parsed to the float64 the run held)."""
    return np.array(x, dtype=np.float64)


# A weight is "near zero" below this |value|: what L1's constant pull leaves of the weights
# it zeroes (its steps keep them within about lr of 0: l1_vs_l2 at lr 0.003, 82-98% of each
# layer's weights below 1e-3 with l1 0.001, against 1-33% with l2 0.003, at equal accuracy).
NEAR_ZERO = 1e-3


def _layer_summaries(trainer, hist: History) -> list[dict[str, Any]]:
    import torch

    from dlx.components.models.base import layer_weights

    grad, out = hist.grad, []
    sparse = {}
    with torch.no_grad():
        for name, m in trainer.model.init_targets():
            ws = layer_weights(m)
            if ws and ws[0].numel():
                sparse[name] = float((ws[0].abs() < NEAR_ZERO).float().mean())
    for j, (name, _) in enumerate(trainer.probes.layers):
        col = grad[:, j] if grad.size else np.zeros(0)
        fin = col[np.isfinite(col)]
        # "last" is the last finite value: after a divergence it shows where the norm was heading.
        entry = {
            "name": name,
            "shape": trainer.probes.shapes[j],
            "grad_norm": {
                "first": col[0] if len(col) else None,
                "median": float(np.median(fin)) if len(fin) else None,
                "last": fin[-1] if len(fin) else None,
            },
        }
        for key in ("weight_norm", "update_ratio", "unit_spread"):
            if key in hist.last:
                entry[key] = hist.last[key][j]
        if name in sparse:
            entry["near_zero"] = sparse[name]  # the share of weights with |w| < NEAR_ZERO at the end
        out.append(entry)
    return out


def _activation_summaries(trainer, hist: History) -> list[dict[str, Any]]:
    if "act_mean" not in hist.last:
        return []
    return [
        {
            "name": n,
            **{
                k: hist.last[f"act_{k}"][j] if f"act_{k}" in hist.last else None
                for k in ("mean", "std", "saturated", "dead", "negative")
            },
        }
        for j, n in enumerate(trainer.probes.act_names)
    ]


def _instruments_digest(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not records:
        return None
    from dlx.run.instruments import digest

    return digest(records)


# Per-class numbers (summary.json "classes") for classifiers with at most this many classes.
MAX_CLASS_TABLE = 20


def _per_class(trainer, outcome) -> dict[str, Any] | None:
    """Per class: training samples, test samples, test recall, and the test confusion matrix
    (rows: the true class, columns: the predicted), from the model at the end, eval mode:
    the predictions of the run's final test evaluation, the pass its final test_* come from
    (Trainer.test_predictions; a second pass cost cnn_mnist 8 s)."""
    import torch

    data = trainer.data
    if data.task != "classification" or data.sequence_target or outcome.status == "diverged" or not trainer.resumable:
        return None
    k = int(data.n_classes)
    if k > MAX_CLASS_TABLE or len(data.y_test) == 0:
        return None
    preds = trainer.test_predictions()
    y = data.y_test
    conf = torch.bincount(y * k + preds, minlength=k * k).reshape(k, k).cpu()
    test_counts = conf.sum(1)
    recall = [float(conf[i, i] / test_counts[i]) if test_counts[i] else None for i in range(k)]
    return {
        "train_counts": torch.bincount(data.y_train, minlength=k).cpu().tolist(),
        "test_counts": test_counts.tolist(),
        "recall": recall,
        "confusion": conf.tolist(),
    }


def diagnosis_context(trainer, hist: History, diverged=None, classes=None) -> DiagnosisContext:
    """What the diagnosis reads of a trainer and its history: at the end (summarize) or
    while it runs (dlx lab's verdict as it forms, train.prune at every log interval)."""
    cfg, data = trainer.cfg, trainer.data
    config = cfg.resolved()
    return DiagnosisContext(
        names=trainer.probes.names,
        grad=hist.grad,
        last=hist.last,
        act_names=trainer.probes.act_names,
        dead_check=cfg.activation.units_can_die,
        diverged=diverged,
        metrics=hist.metrics,
        config=config,
        accepts=schema_accepts(config, load_config),  # the remedies this config's schema takes
        task=data.task,
        time_grad=hist.last.get("time_grad"),
        init_check=hist.init_check,
        instruments=hist.instruments,
        classes=classes,
        chance_loss=trainer.chance_loss,
        chance_acc=trainer.chance_acc,
    )


def summarize(trainer, hist: History, outcome, run_id: str | None) -> dict[str, Any]:
    classes = _per_class(trainer, outcome)
    ctx = diagnosis_context(trainer, hist, outcome.diverged, classes)
    verdicts = diagnose(ctx)
    result = run_outcome(ctx)
    tests = [m for m in hist.metrics if m.get("test_loss") is not None]
    best = {}
    if tests:
        best["test_loss"] = min(m["test_loss"] for m in tests)
        if any("test_acc" in m for m in tests):
            best["test_acc"] = max(m.get("test_acc", 0.0) for m in tests)
    secs = max(outcome.train_seconds, 1e-9)
    # Plain JSON types in memory too, so a RunResult's summary equals summary.json.
    return jsonable(
        {
            "run_id": run_id,
            "status": outcome.status,
            "reason": outcome.reason,
            "signal": outcome.signal,  # the stop signal of an interrupted run (dlx train exits 128+its number)
            "steps": outcome.step,
            "total_steps": trainer.total_steps,
            "epochs": round(outcome.epoch, 4),
            "samples": outcome.samples,
            "train_seconds": round(outcome.train_seconds, 4),
            "samples_per_s": round(outcome.samples / secs, 1),
            "final": outcome.final,
            "best": best,
            "verdict": headline(verdicts),
            "verdicts": verdicts,
            # How far it got (converged, still improving, slow, ...), apart from how its gradients flowed.
            "outcome": {k: v for k, v in result.items() if k != "where"},
            "diverged": outcome.diverged,
            # train.prune stopped it: which verdict, from which step (dlx.run.pruning).
            "pruned": trainer.pruner.record if getattr(trainer, "pruner", None) is not None else None,
            "layers": _layer_summaries(trainer, hist),
            "activations": _activation_summaries(trainer, hist),
            # ||dL/dh_t|| at the last log step, [recurrent layer, t] (recurrent models only).
            "time_grad": hist.last.get("time_grad"),
            "init_check": hist.init_check,
            # What the research instruments said (dlx.run.instruments.digest), when they were on.
            "instruments": _instruments_digest(hist.instruments),
            # Per class (classifiers): training and test samples, test recall, confusion matrix.
            "classes": classes,
        }
    )


def checkpoint_state(trainer, init_check: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """checkpoint.pt: the trainer's whole state (model, optimizer, schedule, RNGs, data order,
    the unfinished interval), plus the config it belongs to and the step-0 init check."""
    return {**trainer.state_dict(), "config": trainer.cfg.resolved(), "init_check": jsonable(init_check)}

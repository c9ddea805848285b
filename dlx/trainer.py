"""The training loop: builds the pieces from a Config, steps, and emits events.

It knows nothing of files or terminals. Callbacks (the run writer, the progress
bar, early stopping, the divergence guard) receive:
  on_start(trainer)              everything built, before the first step
  on_interval(trainer, record)   once per log interval: host copies of the probes
  on_end(trainer, outcome)       after the last step, whatever the status
and may call trainer.stop(status, reason).
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .config import Config
from .data import Dataset
from .errors import ConfigError, SpecError
from .models.base import layer_weights
from .probes import ACT_FIELDS, Probes

EVAL_BATCH = 8192  # test-set forward passes in chunks of this many samples


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(("train", "device"), f"{name} asked for, but this torch sees no CUDA device; use device: cpu or auto")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise SpecError(("train", "device"), "mps asked for, but it is not available here; use device: cpu or auto")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Outcome:
    status: str  # completed | diverged | interrupted | failed
    reason: str | None
    step: int
    epoch: float
    train_seconds: float
    samples: int
    final: dict[str, Any] = field(default_factory=dict)
    diverged: dict[str, Any] | None = None


class EarlyStopping:
    """Stops the run when the watched metric has not improved for `patience` evaluations."""

    def __init__(self, metric: str, patience: int, min_delta: float):
        self.metric, self.patience, self.min_delta = metric, patience, min_delta
        self.sign = 1.0 if metric.endswith("loss") else -1.0  # minimise losses, maximise accuracies
        self.best: float | None = None
        self.best_step = 0
        self.bad = 0

    def on_interval(self, trainer, record):
        if "test_loss" not in record or record.get(self.metric) is None:
            return  # only evaluation points count, for train_* metrics too
        value = self.sign * record[self.metric]
        if self.best is None or value < self.best - self.min_delta:
            self.best, self.best_step, self.bad = value, record["step"], 0
            return
        self.bad += 1
        if self.bad >= self.patience:
            trainer.stop("completed", f"early stopping: {self.metric} has not improved for "
                                      f"{self.patience} evaluations (best {self.sign * self.best:.4g} "
                                      f"at step {self.best_step})")


class Trainer:
    def __init__(self, cfg: Config, data: Dataset | None = None, callbacks=()):
        try:
            self._build(cfg, data, callbacks)
        except SpecError as e:
            # Found only once built (a weights file that does not fit, an .npz without
            # y_test): still a config problem, reported with its YAML line.
            located = cfg.problem(e.path, e.message)
            raise ConfigError([located], located.source if located.line else None) from None

    def _build(self, cfg: Config, data: Dataset | None, callbacks) -> None:
        self.cfg = cfg
        t = cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        self.device = resolve_device(t.device)
        seed_everything(cfg.seed)
        data = data if data is not None else cfg.data.load(cfg.seed)
        self._check_data(data)
        self.data = data.to(self.device)
        self.model = cfg.model.build(self.data, cfg)
        cfg.init.init_model(self.model)
        self.model.to(self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = cfg.optimizer.build(self.params)
        n = len(self.data.x_train)
        self.batch_size = n if t.batch_size == "full" else int(t.batch_size)
        if self.batch_size > n:
            raise SpecError(("train", "batch_size"), f"{self.batch_size} is larger than the {n} training samples; "
                           f"use batch_size: full for full-batch gradient descent")
        # The last partial batch of an epoch is dropped: every step sees the same batch size.
        self.steps_per_epoch = n // self.batch_size
        self.total_steps = t.steps or t.epochs * self.steps_per_epoch
        sched = cfg.optimizer.schedule
        self.scheduler = None
        if sched.name != "constant":
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lambda s: sched.factor(s, self.total_steps))
        self.eval_every = self.steps_per_epoch if t.eval_every == "epoch" else int(t.eval_every)
        self.probes = Probes(self.model, cfg.activation, t.log_every, self.device)
        self.loss_fn = self._loss_fn()
        self.penalty_weights = [w for _, m in self.model.init_targets() for w in layer_weights(m)]
        self.callbacks = list(callbacks)
        es = cfg.regularization.early_stopping
        if es is not None:
            self.callbacks.insert(0, EarlyStopping(es.metric, es.patience, es.min_delta))
        self.step = 0
        self._stop: tuple[str, str | None] | None = None
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(cfg.seed)

    # ------------------------------------------------------------------ setup
    def _check_data(self, data: Dataset) -> None:
        if data.task == "regression" and self.cfg.train.loss == "cross_entropy":
            raise SpecError(("train", "loss"), f"data '{data.name}' is a regression task; use loss: mse")

    def _loss_fn(self):
        loss, data = self.cfg.train.loss, self.data
        sigmoid_out = getattr(self.cfg.model, "output_activation", "none") == "sigmoid"
        if data.task == "regression":
            return F.mse_loss
        k = data.n_classes
        # Outputs are (N, k), or (N, T, k) for a many-to-many sequence task with y (N, T).
        if loss == "mse":
            return lambda out, y: F.mse_loss(out, F.one_hot(y, k).to(out.dtype))
        if sigmoid_out:
            # Sigmoid outputs are per-class probabilities: cross-entropy is binary, per class.
            return lambda out, y: F.binary_cross_entropy(out, F.one_hot(y, k).to(out.dtype))
        if data.y_train.dim() > 1:
            return lambda out, y: F.cross_entropy(out.reshape(-1, k), y.reshape(-1))
        return F.cross_entropy

    def _accuracy(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.data.task != "classification":
            return self.probes._zero
        return (out.argmax(-1) == y).float().mean()

    def _penalty(self) -> torch.Tensor | None:
        reg = self.cfg.regularization
        terms = []
        if reg.l1:
            terms.append(reg.l1 * sum(w.abs().sum() for w in self.penalty_weights))
        if reg.l2:
            terms.append(0.5 * reg.l2 * sum(w.pow(2).sum() for w in self.penalty_weights))
        return sum(terms) if terms else None

    def stop(self, status: str, reason: str | None = None) -> None:
        """Ask the loop to end after the current interval (first request wins)."""
        if self._stop is None:
            self._stop = (status, reason)

    def _emit(self, event: str, *args) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, event, None)
            if fn is not None:
                fn(self, *args)

    # ------------------------------------------------------------------ the step
    def _train_step(self, row: int, xb: torch.Tensor, yb: torch.Tensor) -> None:
        reg = self.cfg.regularization
        out = self.model(self.data.as_float(xb))
        loss = self.loss_fn(out, yb)
        penalty = self._penalty()
        total = loss if penalty is None else loss + penalty
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.probes.record(row, loss, self._accuracy(out.detach(), yb))
        if reg.clip_norm:
            torch.nn.utils.clip_grad_norm_(self.params, reg.clip_norm, foreach=True)
        if reg.clip_value:
            torch.nn.utils.clip_grad_value_(self.params, reg.clip_value, foreach=True)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Loss and accuracy on the test set, in eval mode (dropout off, BN running stats)."""
        self.model.eval()
        x, y = self.data.x_test, self.data.y_test
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        for i in range(0, len(x), EVAL_BATCH):
            out = self.model(self.data.as_float(x[i:i + EVAL_BATCH]))
            yb = y[i:i + EVAL_BATCH]
            total_loss += self.loss_fn(out, yb) * len(yb)
            if self.data.task == "classification":
                correct += (out.argmax(-1) == yb).float().mean() * len(yb)
        self.model.train()
        n = max(len(x), 1)
        res = {"test_loss": float(total_loss) / n}
        if self.data.task == "classification":
            res["test_acc"] = float(correct) / n
        return res

    # ------------------------------------------------------------------ the loop
    def run(self) -> Outcome:
        t = self.cfg.train
        n, bs = len(self.data.x_train), self.batch_size
        x, y = self.data.x_train, self.data.y_train
        full_batch = bs == n
        self.model.train()
        self._emit("on_start")
        row, interval_start = 0, 0
        perm = None
        self._t0, self._eval_seconds = time.perf_counter(), 0.0
        last: dict[str, Any] = {}
        diverged = None
        status, reason = "completed", None
        try:
            while self.step < self.total_steps:
                pos = self.step % self.steps_per_epoch
                if full_batch:
                    xb, yb = x, y
                else:
                    if pos == 0:
                        perm = torch.randperm(n, device=self.device, generator=self.generator)
                    idx = perm[pos * bs:(pos + 1) * bs]
                    xb, yb = x.index_select(0, idx), y.index_select(0, idx)
                self.step += 1
                eval_now = self.step % self.eval_every == 0 or self.step == self.total_steps
                flush = row + 1 == t.log_every or eval_now
                if flush:
                    self.probes.watch_activations()
                self._train_step(row, xb, yb)
                row += 1
                if not flush:
                    continue
                last = self._interval(interval_start, row, eval_now)
                row, interval_start = 0, self.step
                if last.get("diverged"):
                    diverged = last["diverged"]
                    status, reason = "diverged", diverged["message"]
                elif eval_now:
                    t_eval = time.perf_counter()
                    last.update(self.evaluate())
                    self._eval_seconds += time.perf_counter() - t_eval
                self._emit("on_interval", last)
                if diverged:
                    break
                if self._stop is not None:
                    status, reason = self._stop
                    break
        except KeyboardInterrupt:
            status, reason = "interrupted", "stopped by Ctrl-C"
            self.probes.unhook()
            if row:  # keep the steps of the unfinished interval
                last = self._interval(interval_start, row)
                self._emit("on_interval", last)
        train_seconds = time.perf_counter() - self._t0 - self._eval_seconds
        final = {k: last[k] for k in ("train_loss", "train_acc", "test_loss", "test_acc")
                 if last.get(k) is not None}
        outcome = Outcome(status=status, reason=reason, step=self.step,
                          epoch=self.step / self.steps_per_epoch, train_seconds=train_seconds,
                          samples=self.step * bs, final=final, diverged=diverged)
        self._emit("on_end", outcome)
        return outcome

    def _interval(self, first: int, rows: int, evaluating: bool = False) -> dict[str, Any]:
        """Copy the interval's probe rows to the host (the one sync) and summarise them."""
        buf = self.probes.buf[:rows].cpu().numpy().astype(np.float64)
        record: dict[str, Any] = {
            "step": self.step,
            "epoch": round(self.step / self.steps_per_epoch, 4),
            "first_step": first + 1,
            "lr": self.optimizer.param_groups[0]["lr"],
            "time": round(time.perf_counter() - self._t0, 4),
        }
        grad, loss, acc = buf[:, : self.probes.n], buf[:, -2], buf[:, -1]
        record["grad_norm"] = grad
        record["loss_steps"] = loss
        record["train_loss"] = float(loss.mean())
        record["train_acc"] = float(acc.mean()) if self.data.task == "classification" else None
        bad = ~np.isfinite(grad).all(axis=1) | ~np.isfinite(loss)
        if bad.any():
            i = int(np.argmax(bad))
            step = first + 1 + i
            layers = [self.probes.names[j] for j in np.flatnonzero(~np.isfinite(grad[i]))]
            what = "loss" if not np.isfinite(loss[i]) else "gradient"
            first_layer = layers[0] if layers else None
            if not layers:
                where = ""
            elif len(layers) == self.probes.n:
                where = f"; gradients non-finite in every layer ({self.probes.n})"
            else:
                where = f"; gradients non-finite in {', '.join(layers)} (first: {first_layer})"
            msg = f"non-finite {what} ({float(loss[i]):.3g}) at step {step}{where}"
            record["diverged"] = {"step": step, "layer": first_layer, "layers": layers,
                                  "loss": float(loss[i]), "message": msg}
            self.probes.unhook()
            return record
        # Unit spreads (symmetry) move slowly: measured at evaluation points only.
        stats = self.probes.interval_stats(spread=evaluating).cpu().numpy().astype(np.float64)
        record["weight_norm"], record["update_ratio"] = stats[0], stats[1]
        if evaluating:
            record["unit_spread"] = stats[2]
        if self.probes.time_buf is not None:
            record["time_grad"] = self.probes.time_buf.cpu().numpy().astype(np.float64)
        if self.probes.acts:
            act = self.probes.act_stats.cpu().numpy().astype(np.float64)
            for j, key in enumerate(ACT_FIELDS):
                record[f"act_{key}"] = act[:, j]
            record["act_pct"] = self.probes.act_pct.cpu().numpy().astype(np.float64)
        return record

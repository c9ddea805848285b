"""The training loop: builds the pieces from a Config, steps, and emits events.

It knows nothing of files or terminals. Callbacks (the run writer, the progress
bar, early stopping, the divergence guard) receive:
  on_start(trainer)              everything built, before the first step
  on_interval(trainer, record)   once per log interval: host copies of the probes
  on_checkpoint(trainer)         after on_interval, every train.checkpoint_every steps
  on_end(trainer, outcome)       after the last step, whatever the status
and may call trainer.stop(status, reason).

Ctrl-C (SIGINT) never cuts a step in half: while the loop runs, the first one sets
a flag that is read between steps, so the run ends at a clean state that
state_dict() can checkpoint; a second Ctrl-C stops at once (no clean state, so no
checkpoint). load_state_dict() restores everything the loop depends on (weights,
optimizer, schedule, every RNG, the epoch's sample order and position in it, the
unfinished log interval's probe rows), so a resumed run on CPU produces exactly
the numbers of one that was never stopped.
"""

from __future__ import annotations

import functools
import hashlib
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dlx.components.data import Dataset
from dlx.components.init import drawn_from
from dlx.components.models.base import layer_weights, param_groups
from dlx.components.optim import skip_dynamo_wrappers
from dlx.components.optim import step as optimizer_step
from dlx.config.loader import Config
from dlx.core import jsonable, version
from dlx.core.errors import ConfigError, DlxError, SpecError
from dlx.core.signals import STOP_SIGNALS, end_after_the_step, stop_reason  # noqa: F401  (STOP_SIGNALS: tests)
from dlx.run import evaluation
from dlx.run.changes import Changes
from dlx.run.evaluation import EVAL_BATCH, FINAL_WINDOW  # noqa: F401  (EVAL_BATCH: many.stacking)
from dlx.run.masks import WeightMask
from dlx.run.probes import Probes, attach_stats
from dlx.run.stopping import EarlyStopping


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(
            ("train", "device"), f"{name} asked for, but this torch sees no CUDA device; use device: cpu or auto"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise SpecError(("train", "device"), "mps asked for, but it is not available here; use device: cpu or auto")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Outcome:
    status: str  # completed | diverged | interrupted | failed | pruned (train.prune stopped it)
    reason: str | None
    step: int
    epoch: float
    train_seconds: float
    samples: int
    final: dict[str, Any] = field(default_factory=dict)
    diverged: dict[str, Any] | None = None
    signal: str | None = None  # the stop signal's name (SIGINT, SIGTERM, ...) when one stopped it


# Work per training step (forward + backward FLOPs) that pays for one more CPU thread.
# Measured on the 2-core machine of BENCHMARKS.md (an MLP step, 1 vs 2 threads): at 45
# MFLOP a second thread is 8% slower (threads spin and wait), at 257 MFLOP 15% faster, at
# 715 MFLOP 1.8x. Small nets (the quickstart's: 3 MFLOP) get one thread, which also keeps
# them fast on a busy machine, where spinning threads fight for the cores.
THREAD_FLOPS = 1.5e8
# The threads this process may use, as torch had them when dlx first trained here (all the
# cores, or an executor's share set before): a small run that set one thread must not cap
# the next, bigger run in the same process (a notebook).
_THREAD_BUDGET: int | None = None


def step_flops(model: torch.nn.Module, data: Dataset, batch: int) -> float:
    """Forward + backward FLOPs of one training step, estimated from one forward pass (eval
    mode, no grad: no state changes) over the matmuls and convolutions (2 FLOPs per
    multiply-add; the backward pass about twice the forward)."""
    macs = 0

    def count(module, inputs, out):
        nonlocal macs
        if isinstance(module, torch.nn.Linear):
            macs += out.numel() * module.in_features
        else:  # a convolution: each output value sums over its kernel window of the input channels
            macs += out.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)

    kinds = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, kinds)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(data.as_float(data.x_train[: min(batch, 256)]))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return 6.0 * macs * batch / min(batch, 256)


def default_threads(model: torch.nn.Module, data: Dataset, batch: int) -> int:
    """train.threads left unset: one thread per THREAD_FLOPS of work per step, at least one,
    at most what this process may use now (the cores, or an executor's share of them)."""
    global _THREAD_BUDGET
    if _THREAD_BUDGET is None:
        _THREAD_BUDGET = torch.get_num_threads()
    return max(1, min(_THREAD_BUDGET, int(step_flops(model, data, batch) // THREAD_FLOPS)))


def _data_source(cfg: Config) -> str:
    path = getattr(cfg.data, "path", None) or getattr(cfg.data, "root", None)
    return f"data.path {path}" if path else f"data {cfg.data.name}"


class Trainer:
    def __init__(self, cfg: Config, data: Dataset | None = None, callbacks=(), resuming: bool = False):
        """resuming: load_state_dict follows, so the init is not applied (its weights, and the
        random draws it makes, come from the checkpoint; an init weights file may be gone)."""
        self._resuming = resuming
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
        data = self._class_balance(data)
        self._check_data(data)
        self.data = data.to(self.device)
        with drawn_from(cfg.init.seed):  # init.seed: the weights' own stream (a ticket's re-init)
            self.model = cfg.model.build(self.data, cfg)
            if not self._resuming:
                cfg.init.init_model(self.model)
        self.model.to(self.device)
        self.pretrained: list[dict[str, Any]] | None = None
        if cfg.pretrain is not None and not self._resuming:
            from dlx.run.pretrain import pretrain

            self.pretrained = pretrain(self)  # the reconstruction loss of each layer, before and after
        self.mask = WeightMask(self.model, t.mask) if t.mask is not None else None  # 0 from step 0 on
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if version.OWNS_PROCESS:
            skip_dynamo_wrappers()
        self.optimizer = cfg.optimizer.build(param_groups(self.model, self.params, cfg.optimizer.lr))
        n = len(self.data.x_train)
        self.batch_size = n if t.batch_size == "full" else int(t.batch_size)
        if not t.threads and self.device.type == "cpu":
            torch.set_num_threads(default_threads(self.model, self.data, min(self.batch_size, n)))
        if self.batch_size > n:
            raise SpecError(
                ("train", "batch_size"),
                f"{self.batch_size} is larger than the {n} training samples; "
                f"use batch_size: full for full-batch gradient descent",
            )
        # The last partial batch of an epoch is dropped: every step sees the same batch size.
        self.steps_per_epoch = n // self.batch_size
        self.total_steps = t.steps or t.epochs * self.steps_per_epoch
        sched = cfg.optimizer.schedule
        self.scheduler = None
        if sched.name != "constant":
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lambda s: sched.factor(s, self.total_steps)
            )
        self.eval_every = self.steps_per_epoch if t.eval_every == "epoch" else int(t.eval_every)
        self.probes = Probes(self.model, cfg.activation, t.log_every, self.device)
        self.loss_fn = self._loss_fn()
        self.penalty_weights = [w for _, m in self.model.init_targets() for w in layer_weights(m)]
        self.callbacks = list(callbacks)
        es = cfg.regularization.early_stopping
        self.early_stopping = EarlyStopping(es.metric, es.patience, es.min_delta) if es is not None else None
        if self.early_stopping is not None:
            self.callbacks.insert(0, self.early_stopping)
        self.instruments = None
        if cfg.instruments.active:
            from dlx.run.instruments import Instruments

            self.instruments = Instruments(cfg.instruments)
            self.instruments.check(self)
            self.callbacks.append(self.instruments)
        self.pruner = None
        if t.prune is not None:
            from dlx.run.pruning import Pruner

            # Last: it reads the History the interval's record has just been added to.
            self.pruner = Pruner(t.prune)
            self.callbacks.append(self.pruner)
        self.changes = Changes(self)  # train.changes and the lab's knobs, applied between steps
        self.step = 0  # steps completed (between steps); the step's own number during one
        self._stop: tuple[str, str | None] | None = None
        # The data order: one permutation per epoch, drawn from this generator.
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(cfg.seed)
        self.augment = None
        if self.data.augment is not None:  # random shifts and rotations of training batches
            from dlx.run.augment import Augment

            self.augment = Augment(*self.data.augment, self.data.feature_shape, cfg.seed, self.device)
        self._perm: torch.Tensor | None = None
        # The unfinished log interval: its rows of probes.buf, and the step before its first.
        # logged_step is the last step whose interval the callbacks have seen.
        self._row = 0
        self.logged_step = 0
        self._checkpointed = 0  # step of the last periodic checkpoint
        self.checkpoint_every = t.checkpoint_every if t.checkpoint else None
        self._elapsed = 0.0  # seconds of earlier sessions (a resumed run continues its clock)
        self._t0: float | None = None  # perf_counter at (this session's start - _elapsed)
        self._eval_seconds = 0.0
        # (weights_version, predictions) of the last whole test pass: the per-class table reuses them.
        self._test_predictions: tuple | None = None
        self._interrupted = False  # set by the first stop signal (or interrupt()), read between steps
        self._signal: str | None = None  # that signal's name (SIGINT, SIGTERM, ...)
        self._busy = False  # inside a step or its interval read-out: no clean state to checkpoint

    # ------------------------------------------------------------------ setup
    def _class_balance(self, data: Dataset) -> Dataset:
        """data.imbalance (the last class made rare), then train.balance's resampling."""
        from dlx.components.data.base import make_imbalanced, rebalance

        ratio = getattr(self.cfg.data, "imbalance", None)
        balance = self.cfg.train.balance
        one_label = data.task == "classification" and not data.sequence_target
        if ratio:
            if not one_label:
                raise SpecError(("data", "imbalance"), "only for classification data with one label per sample")
            data = make_imbalanced(data, ratio)
        if balance != "none" and not one_label:
            raise SpecError(("train", "balance"), "only for classification data with one label per sample")
        if balance == "weighted" and self.cfg.train.loss != "cross_entropy":
            raise SpecError(("train", "balance"), "weighted weighs the cross-entropy: use train.loss: cross_entropy")
        if balance in ("oversample", "undersample"):
            data = rebalance(data, balance)
        return data

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
        classes = torch.arange(k, device=self.device)

        def one_hot(y, dtype):
            # By comparison, not F.one_hot: that one reads y's values on the host, which
            # torch.func.vmap (per-sample gradients) and a capturable step cannot.
            return (y.unsqueeze(-1) == classes).to(dtype)

        if loss == "mse":
            return lambda out, y: F.mse_loss(out, one_hot(y, out.dtype))
        if sigmoid_out:
            # Sigmoid outputs are per-class probabilities: cross-entropy is binary, per class.
            return lambda out, y: F.binary_cross_entropy(out, one_hot(y, out.dtype))
        if data.y_train.dim() > 1:
            return lambda out, y: F.cross_entropy(out.reshape(-1, k), y.reshape(-1))
        if self.cfg.train.balance == "weighted":
            # Each class weighs N / (K n_k): every class counts as much as the others in all.
            counts = torch.bincount(data.y_train, minlength=k).clamp_min(1).to(torch.float32)
            weight = (len(data.y_train) / (k * counts)).to(self.device)
            return lambda out, y: F.cross_entropy(out, y, weight=weight)
        return F.cross_entropy

    def _accuracy(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.data.task != "classification":
            return self.probes._zero
        return (out.argmax(-1) == y).float().mean()

    def _penalty(self) -> torch.Tensor | None:
        reg = self.changes.regularization  # the config's, or what a change set since
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
        optimizer_step(self.optimizer)
        if self.mask is not None:
            self.mask.apply()
        if self.scheduler is not None:
            self.scheduler.step()

    def evaluate(self, split: str = "test", rows: torch.Tensor | None = None) -> dict[str, float]:
        """`{split}_loss`, `{split}_acc` on the test (or training) set, or those rows of it, in
        eval mode (evaluation.evaluate); a classifier's test pass keeps its predictions."""
        res, preds = evaluation.evaluate(self.model, self.data, self.loss_fn, self.device, split, rows)
        if preds is not None:
            self._test_predictions = (evaluation.weights_version(self.model, self.step), preds)
        return res

    def test_predictions(self) -> torch.Tensor:
        """The class predictions on the test set of the model as it is now: the last test
        pass's when the weights have not changed since (at the end: the final test_* and the
        per-class table come from one pass), else a fresh evaluate("test")'s."""
        if self.data.task != "classification":
            raise ValueError("test_predictions: only a classifier predicts classes")
        kept = self._test_predictions
        if kept is None or kept[0] != evaluation.weights_version(self.model, self.step):
            self.evaluate("test")
            kept = self._test_predictions
        return kept[1]

    # ------------------------------------------------------------------ the loop
    def run(self) -> Outcome:
        """Train to the end (or a stop) and return the Outcome; callbacks see every event.

        A stop signal anywhere in here, from on_start to on_end, ends the run cleanly."""
        with self._stop_signals_end_after_the_step():
            return self._run()

    def _run(self) -> Outcome:
        t = self.cfg.train
        n, bs = len(self.data.x_train), self.batch_size
        x, y = self.data.x_train, self.data.y_train
        self.model.train()
        self._emit("on_start")
        self._t0 = time.perf_counter() - self._elapsed
        last: dict[str, Any] = {}
        diverged = None
        status, reason = "completed", None
        try:
            while self.step < self.total_steps:
                if self._interrupted:
                    status, reason = "interrupted", self.stop_reason
                    break
                self.changes.at_boundary(self)
                self._busy = True
                pos = self.step % self.steps_per_epoch
                if (bs := self.batch_size) == n:  # a change may set it between steps
                    xb, yb = x, y
                else:
                    if pos == 0 or self._perm is None:
                        self._perm = torch.randperm(n, device=self.device, generator=self.generator)
                    idx = self._perm[pos * bs : (pos + 1) * bs]
                    xb, yb = x.index_select(0, idx), y.index_select(0, idx)
                if self.augment is not None:
                    xb = self.augment(xb)
                self.step += 1  # during the step, trainer.step is its own (1-based) number
                # Every interval holds log_every steps (only the run's last may hold fewer):
                # an evaluation never cuts one short (a 1-step interval is one batch's noise).
                # It runs at the end of the interval that reaches each multiple of eval_every.
                flush = self._row + 1 == t.log_every or self.step == self.total_steps or self.changes.flush_now
                eval_now = flush and (
                    self.step // self.eval_every > self.logged_step // self.eval_every or self.step == self.total_steps
                )
                if flush:
                    self.probes.watch_activations()
                self._train_step(self._row, xb, yb)
                self._row += 1
                if not flush:
                    self._busy = False
                    continue
                last = self._interval(self.logged_step, self._row, eval_now)
                if last.get("diverged"):
                    diverged = last["diverged"]
                    status, reason = "diverged", diverged["message"]
                elif eval_now:
                    t_eval = time.perf_counter()
                    last.update(self.evaluate())
                    self._eval_seconds += time.perf_counter() - t_eval
                self._row, self.logged_step = 0, self.step
                self._emit("on_interval", last)
                if not diverged and self._checkpoint_turn():
                    self._emit("on_checkpoint")
                self._busy = False
                if diverged:
                    break
                if self._stop is not None:
                    status, reason = self._stop
                    break
        except KeyboardInterrupt:  # a second stop signal, or one raised by a callback
            status, reason = "interrupted", self.stop_reason
            self.probes.unhook()
            self.step = self.logged_step + self._row  # the steps that finished
        if status == "interrupted" and self._row:
            # Keep the steps of the unfinished interval in the files. The checkpoint keeps
            # them as probe rows (logged_step is unchanged), and --resume replaces this
            # line with the whole interval's.
            last = self._interval(self.logged_step, self._row)
            if last.get("diverged"):
                diverged = last["diverged"]
                status, reason = "diverged", diverged["message"]
            self._emit("on_interval", last)
        train_seconds = time.perf_counter() - self._t0 - self._eval_seconds
        final = self._final_metrics(status, last)
        outcome = Outcome(
            status=status,
            reason=reason,
            step=self.step,
            epoch=self.step / self.steps_per_epoch,
            train_seconds=train_seconds,
            samples=self.step * bs,
            final=final,
            diverged=diverged,
            signal=self._signal if status == "interrupted" else None,
        )
        self._emit("on_end", outcome)
        return outcome

    def _final_metrics(self, status: str, last: dict[str, Any]) -> dict[str, Any]:
        """The run's final numbers over stated windows (evaluation.FINAL_WINDOW): train_* from
        one pass over the training set in eval mode after the last step (a seeded sample of a
        large one: evaluation.final_train_window), test_* from the test set then (the last
        interval's pass, whose predictions also make the per-class table). The last interval's
        mean (a few noisy batches, with dropout on) is not used: it put train accuracy 0.45
        next to test accuracy 0.73. A diverged run, or one stopped mid-step by a second
        Ctrl-C, keeps the last interval's numbers (labelled so)."""
        if status == "diverged" or not self.resumable:
            out = {k: last[k] for k in ("train_loss", "train_acc") if last.get(k) is not None}
            return {**out, "window": "last log interval"} if out else {}
        t_eval = time.perf_counter()
        rows, window = evaluation.final_train_window(len(self.data.x_train), self.cfg.seed, self.device)
        out = self.evaluate("train", rows)
        out.update(evaluation.final_test(last) or self.evaluate("test"))
        self._eval_seconds += time.perf_counter() - t_eval
        return {**out, "window": window}

    def _stop_signals_end_after_the_step(self):
        """While the run runs, a first stop signal (STOP_SIGNALS: Ctrl-C, kill, a closed
        terminal, Ctrl-backslash) sets a flag read between steps; a second raises
        KeyboardInterrupt at once (signals.end_after_the_step)."""
        return end_after_the_step(self)

    @property
    def stop_reason(self) -> str:
        """Why an interrupted run stopped: the signal that stopped it (Ctrl-C for SIGINT)."""
        return stop_reason(self._signal)

    def interrupt(self) -> None:
        """End the run after the current step, as a first Ctrl-C does."""
        self._interrupted = True

    def _checkpoint_turn(self) -> bool:
        """True at the first log step at or past each multiple of checkpoint_every (the
        last step is left to on_end, which checkpoints every finished run)."""
        every = self.checkpoint_every
        if not every or self.step >= self.total_steps or self.step // every == self._checkpointed // every:
            return False
        self._checkpointed = self.step
        return True

    @property
    def resumable(self) -> bool:
        """Whether state_dict() now describes a state between two steps."""
        return not self._busy

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything the loop needs to continue exactly (torch.load(weights_only=True) reads it)."""
        rng = {
            "torch": torch.get_rng_state(),
            "numpy": _numpy_rng_state(),
            "python": random.getstate(),
            "generator": self.generator.get_state(),
        }
        if self.augment is not None:
            rng["augment"] = self.augment.generator.get_state()
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "step": self.step,
            "rng": rng,
            "loop": {
                "device": self.device.type,  # the generator's state only fits a generator of this kind
                "logged_step": self.logged_step,
                "perm": self._perm.cpu() if self._perm is not None else None,
                # The unfinished interval's probe rows [row, layers + 2].
                "probe_rows": self.probes.buf[: self._row].cpu().clone(),
                "checkpointed": self._checkpointed,
                "time": time.perf_counter() - self._t0 if self._t0 is not None else self._elapsed,
                "eval_seconds": self._eval_seconds,
            },
            "early_stopping": self.early_stopping.state_dict() if self.early_stopping is not None else None,
            "instruments": self.instruments.state_dict() if self.instruments is not None else None,
            "pruner": self.pruner.state_dict() if self.pruner is not None else None,
            "data": self.data_fingerprint,
        }

    @functools.cached_property
    def chance_loss(self) -> float | None:
        """The training loss of the best constant prediction on this run's training labels
        (diagnose.chance_loss): computed once, not at every diagnosis of the run so far."""
        from dlx.diagnosis.engine import chance_loss

        d = self.data
        sigmoid_out = getattr(self.cfg.model, "output_activation", "none") == "sigmoid"
        return chance_loss(d.y_train.cpu().numpy(), d.task, self.cfg.train.loss, d.n_classes, sigmoid_out)

    @functools.cached_property
    def chance_acc(self) -> float | None:
        """The accuracy of always answering the most common class, on the test labels (the
        accuracy a verdict quotes is the test set's), else on the training labels."""
        from dlx.diagnosis.context import chance_accuracy

        d = self.data
        y = d.y_test if d.y_test is not None and len(d.y_test) else d.y_train
        return chance_accuracy(y.cpu().numpy(), d.task, d.n_classes)

    @functools.cached_property
    def data_fingerprint(self) -> str:
        """A hash of the training and test arrays: a resume refuses data changed since the
        run stopped (a file swapped or cut short, a download replaced), which would otherwise
        continue silently on other data."""
        h = hashlib.blake2b(digest_size=16)
        d = self.data
        for t in (d.x_train, d.y_train, d.x_test, d.y_test):
            t = t.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from state_dict(): call on a Trainer freshly built from the same config."""
        saved = state["loop"].get("device", "cpu")
        if saved != self.device.type:
            raise DlxError(
                f"this checkpoint was written on {saved} and this machine would continue on "
                f"{self.device.type}: its random streams (data order, dropout) cannot move between "
                f"devices, so the run could not continue exactly; resume it where a {saved} device is"
            )
        if state.get("data") is not None and state["data"] != self.data_fingerprint:
            raise DlxError(
                f"the data of this run changed since it stopped ({_data_source(self.cfg)} now holds other "
                f"samples than the run trained on); resuming would continue on other data. Put the data "
                f"back as it was, or start a new run on the new data"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        loop = state["loop"]
        self.logged_step = int(loop["logged_step"])
        self._perm = loop["perm"].to(self.device) if loop["perm"] is not None else None
        rows = loop["probe_rows"]
        self._row = len(rows)
        self.probes.buf[: self._row] = rows.to(self.device)
        self._checkpointed = int(loop["checkpointed"])
        self._elapsed, self._eval_seconds = float(loop["time"]), float(loop["eval_seconds"])
        if self.early_stopping is not None and state.get("early_stopping") is not None:
            self.early_stopping.load_state_dict(state["early_stopping"])
        if self.instruments is not None and state.get("instruments") is not None:
            self.instruments.load_state_dict(state["instruments"])
        if self.pruner is not None and state.get("pruner") is not None:
            self.pruner.load_state_dict(state["pruner"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and rng.get("cuda") is not None:
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        n = rng["numpy"]
        np.random.set_state(
            (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
        )
        random.setstate(_tuples(rng["python"]))
        self.generator.set_state(rng["generator"])
        if self.augment is not None and rng.get("augment") is not None:
            self.augment.generator.set_state(rng["augment"])

    def interval_record(self, first: int, buf: np.ndarray, lr: float, elapsed: float) -> dict[str, Any]:
        """An interval's record from its probe rows on the host (buf [rows, layers + 2]):
        the scalars, the per-step series and, at the first non-finite value, "diverged".
        Also what a stacked run (dlx.many.stacking) builds each of its trials' records with."""
        record: dict[str, Any] = {
            "step": self.step,
            "epoch": round(self.step / self.steps_per_epoch, 4),
            "first_step": first + 1,
            "lr": lr,
            "time": round(elapsed, 4),
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
            record["diverged"] = {
                "step": step,
                "layer": first_layer,
                "layers": layers,
                "loss": float(loss[i]),
                "message": msg,
            }
        return record

    def _interval(self, first: int, rows: int, evaluating: bool = False) -> dict[str, Any]:
        """Copy the interval's probe rows to the host (the one sync) and summarise them."""
        buf = jsonable.float32_text(self.probes.buf[:rows].cpu().numpy())  # written as float32's own text
        record = self.interval_record(first, buf, self.optimizer.param_groups[0]["lr"], time.perf_counter() - self._t0)
        if record.get("diverged"):
            self.probes.unhook()
            return record
        # Unit spreads (symmetry) move slowly: measured at evaluation points only.
        stats = jsonable.float32_text(self.probes.interval_stats(spread=evaluating).cpu().numpy())
        if self.probes.time_buf is not None:
            record["time_grad"] = jsonable.float32_text(self.probes.time_buf.cpu().numpy())
        act = pct = None
        if self.probes.acts:
            act = jsonable.float32_text(self.probes.act_stats.cpu().numpy())
            pct = jsonable.float32_text(self.probes.act_pct.cpu().numpy())
        return attach_stats(record, stats, evaluating, act, pct)


def _numpy_rng_state() -> dict[str, Any]:
    """numpy's global RNG state as tensors and ints, so torch.load(weights_only=True) reads it."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def _tuples(x: Any) -> Any:
    """random.setstate wants tuples all the way down; a saved state may come back with lists."""
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x

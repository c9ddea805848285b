"""Trials trained together: K runs of one architecture on data of one shape, stepped as
one stacked model in one process.

A compare or sweep of small nets spends its time in per-step overhead (a few small
matrix products launched one by one), not arithmetic. Stacking the K trials' weights
([K, out, in]) turns each layer into one batched matmul for all of them: one launch for
K models on a GPU, and on a CPU K small products at the cost of a few.

Each trial is still a run of its own, built exactly as `dlx train` builds it (its
Trainer: seeds, data, init, data order, probes, callbacks and run folder), so its
numbers are the separate run's within float tolerance (tests/test_stacking.py checks
every optimizer). What differs per trial is carried as tensors: the learning rate and
its schedule, momentum, betas, eps, weight decay, l1/l2, clipping, the seed's data and
data order. A trial that diverges or stops early ends alone; its folder, summary and
checkpoint are those of a separate run (meta.json adds "stacked": the number of trials
trained with it), and `dlx train --resume` continues it as a separate run.

What stacks (why_not says why a config does not): the mlp without dropout, dropconnect
or batch norm (their random masks and running statistics are per-run state a stack would
draw or keep differently), with activations without parameters, and the optimizers sgd,
momentum, nesterov, adam and adamw (amsgrad off). Trials stack when stack_key is equal:
same data spec, model, activation and train section; sgd-family and adam-family trials
share a stack, each stepped by its own formula (stacked_model.StackedOptimizer).
"""

from __future__ import annotations

import math
import random
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from dlx.core.jsonable import float32_text
from dlx.many.stack_plan import (  # noqa: F401  (the plan's names, also read from here)
    ADAM_FAMILY,
    MAX_STACK,
    MAX_STACK_INPUTS,
    MAX_STACK_PARAMS,
    SGD_FAMILY,
    optimizer_family,
    plan_stacks,
    stack_key,
    why_not,
)
from dlx.many.stacked_model import StackedMLP, StackedOptimizer, torch_cat  # noqa: F401


class _Trial:
    """One trial of a stack: its Trainer (built as dlx train builds it), folder and state."""

    def __init__(self, index, cfg, folder, hist, writer, trainer, rng):
        self.index, self.cfg, self.folder, self.hist, self.writer = index, cfg, folder, hist, writer
        self.trainer, self.rng = trainer, rng
        self.active = True
        self.result: dict[str, Any] | None = None
        self.last: dict[str, Any] = {}


class StackedTrainer:
    """Steps K trials' Trainers as one stacked model; each trial's callbacks (History,
    RunWriter, early stopping) see its own Trainer and records, as in a separate run."""

    def __init__(self, trials: list[_Trial]):
        import torch

        self.trials = trials
        self.tr = [t.trainer for t in trials]
        t0 = self.tr[0]
        self.K = len(trials)
        self.device = t0.device
        self.total_steps, self.bs = t0.total_steps, t0.batch_size
        self.steps_per_epoch, self.eval_every = t0.steps_per_epoch, t0.eval_every
        self.log_every = t0.cfg.train.log_every
        self.task, self.n_classes = t0.data.task, t0.data.n_classes
        self.loss, self.sigmoid_out = t0.cfg.train.loss, getattr(t0.cfg.model, "output_activation", "none") == "sigmoid"
        # One copy of data every trial shares (one dataset spec and seed-free data, e.g.
        # MNIST), or the trials' data stacked [K, N, ...].
        d0 = t0.data
        shared = all(
            tr.data is d0 or all(torch.equal(a, b) for a, b in zip(_arrays(tr.data), _arrays(d0))) for tr in self.tr
        )
        if shared:
            for tr in self.tr:
                tr.data = d0
        self.shared = shared
        self.x = d0.x_train if shared else torch.stack([tr.data.x_train for tr in self.tr])
        self.y = d0.y_train if shared else torch.stack([tr.data.y_train for tr in self.tr])
        self.x_test = d0.x_test if shared else torch.stack([tr.data.x_test for tr in self.tr])
        self.y_test = d0.y_test if shared else torch.stack([tr.data.y_test for tr in self.tr])
        self.as_float = d0.as_float
        # The stacked parameters: leaves [K, ...] in each model's parameter order.
        names = [n for n, _ in self.tr[0].model.named_parameters()]
        self.params = [
            torch.stack([dict(tr.model.named_parameters())[n].detach() for tr in self.tr]).requires_grad_()
            for n in names
        ]
        self.model = StackedMLP([tr.model for tr in self.tr], self.params)
        families = [optimizer_family(t.cfg.optimizer.name) for t in trials]
        self.lr_table = torch.tensor(
            [[_lr_at(tr, s) for tr in self.tr] for s in range(self.total_steps)], dtype=torch.float64
        )
        self.optimizer = StackedOptimizer(
            families, [tr.optimizer for tr in self.tr], self.params, self.lr_table.float().to(self.device)
        )

        def col(fn):
            return torch.tensor([float(fn(t.cfg)) for t in trials], device=self.device)

        reg = [t.cfg.regularization for t in trials]
        self.l1 = col(lambda c: c.regularization.l1)
        self.l2 = col(lambda c: c.regularization.l2)
        self.penalised = any(r.l1 or r.l2 for r in reg)
        self.clip_norm = col(lambda c: c.regularization.clip_norm or math.inf)
        self.clipping_norm = any(r.clip_norm for r in reg)
        self.clip_value = col(lambda c: c.regularization.clip_value or math.inf)
        self.clipping_value = any(r.clip_value for r in reg)
        p0 = self.tr[0].probes
        self.n_layers = p0.n
        self.buf = torch.zeros(self.log_every, self.K, p0.n + 2, device=self.device)
        self.act_names = p0.act_names
        self.act_stats = torch.zeros(self.K, len(p0.act_names), 5, device=self.device)
        self.act_pct = torch.zeros(self.K, len(p0.act_names), len(p0._pct_q), device=self.device)
        self.last_ratio = torch.full((self.K, p0.n), math.nan, device=self.device)
        self._prev = None
        self.generators = [tr.generator for tr in self.tr]
        self.perms = None
        self.step = self.logged_step = self.row = 0
        self._interrupted = False
        self._signal: str | None = None
        self.eval_seconds = 0.0
        self.t0 = None

    # -------------------------------------------------------------- pieces of a step
    def _loss_acc(self, out, y):
        """Per-trial loss and accuracy [K] of outputs [K, B, ...] against y [K, B, ...]."""
        import torch
        import torch.nn.functional as F

        K = self.K
        if self.task == "regression":
            loss = F.mse_loss(out, y, reduction="none").reshape(K, -1).mean(1)
            return loss, torch.zeros(K, device=out.device)
        k = self.n_classes
        if self.loss == "mse":
            loss = F.mse_loss(out, F.one_hot(y, k).to(out.dtype), reduction="none").reshape(K, -1).mean(1)
        elif self.sigmoid_out:
            loss = F.binary_cross_entropy(out, F.one_hot(y, k).to(out.dtype), reduction="none").reshape(K, -1).mean(1)
        else:
            loss = F.cross_entropy(out.reshape(-1, k), y.reshape(-1), reduction="none").view(K, -1).mean(1)
        acc = (out.detach().argmax(-1) == y).float().reshape(K, -1).mean(1)
        return loss, acc

    def _batch(self, idx):
        """Trial k's batch from its sample indices idx [K, B]."""
        if self.shared:
            flat = idx.reshape(-1)
            xb = self.x.index_select(0, flat).view(*idx.shape, *self.x.shape[1:])
            yb = self.y.index_select(0, flat).view(*idx.shape, *self.y.shape[1:])
            return xb, yb
        xb = self.x.gather(1, idx.view(*idx.shape, *[1] * (self.x.dim() - 2)).expand(-1, -1, *self.x.shape[2:]))
        yb = self.y.gather(1, idx.view(*idx.shape, *[1] * (self.y.dim() - 2)).expand(-1, -1, *self.y.shape[2:]))
        return xb, yb

    def _train_step(self, row, xb, yb):
        import torch

        out = self.model(self.as_float(xb))
        loss, acc = self._loss_acc(out, yb)
        total = loss
        if self.penalised:
            w = self.model.weights
            total = (
                loss
                + self.l1 * sum(x.abs().sum((1, 2)) for x in w)
                + 0.5 * self.l2 * sum(x.pow(2).sum((1, 2)) for x in w)
            )
        for p in self.params:
            p.grad = None
        total.sum().backward()  # trials are independent: each one's gradient is its own
        norms = [torch.linalg.vector_norm(w.grad, dim=(1, 2)) for w in self.model.weights]
        torch.stack([*norms, loss.detach(), acc], dim=1, out=self.buf[row])
        if self.clipping_norm:
            total_norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(p.grad.flatten(1), dim=1) for p in self.params]), dim=0
            )
            coef = (self.clip_norm / (total_norm + 1e-6)).clamp(max=1.0)
            coef = torch.where(torch.isinf(self.clip_norm), torch.ones_like(coef), coef)
            for p in self.params:
                p.grad.mul_(coef.view(-1, *[1] * (p.dim() - 1)))
        if self.clipping_value:
            for p in self.params:
                v = self.clip_value.view(-1, *[1] * (p.dim() - 1))
                p.grad.copy_(torch.maximum(torch.minimum(p.grad, v), -v))
        self.optimizer.step()

    def _watch(self):
        import torch

        self.model.watching = True
        with torch.no_grad():
            self._prev = [w.detach().clone() for w in self.model.weights]

    def _stats(self, evaluating: bool):
        """Host arrays [K, L]: weight norm, update ratio (and unit spread); activation stats."""
        import torch

        from dlx.run.probes import PERCENTILES, activation_stats, spread_of_rows

        p0 = self.tr[0].probes
        self.model.watching = False
        with torch.no_grad():
            w = self.model.weights
            wn = torch.stack([torch.linalg.vector_norm(x, dim=(1, 2)) for x in w], dim=1)
            if self._prev is not None:
                un = torch.stack([torch.linalg.vector_norm(a - b, dim=(1, 2)) for a, b in zip(w, self._prev)], dim=1)
                self.last_ratio = un / wn.clamp_min(1e-12)
            self._prev = None
            rows = [wn, self.last_ratio]
            if evaluating:
                spread = torch.full((self.K, self.n_layers), math.nan, device=self.device)
                for j, (x, b) in enumerate(zip(w, self.model.biases)):
                    if x.shape[1] > 1:
                        spread[:, j] = spread_of_rows(torch.cat([x.detach(), b.detach()[..., None]], dim=2))
                rows.append(spread)
            if self.model.outs:
                q = torch.tensor(PERCENTILES, device=self.device)
                for j, name in enumerate(self.act_names):
                    o = self.model.outs.get(name)
                    if o is not None:
                        s, pct = activation_stats(o, p0.bounds, p0.off_below, p0.off_field, q)
                        self.act_stats[:, j], self.act_pct[:, j] = s, pct
                self.model.outs = {}
            host = float32_text(torch.stack(rows, dim=1).cpu().numpy())  # [K, 2|3, L]
            acts = float32_text(self.act_stats.cpu().numpy())
            pct = float32_text(self.act_pct.cpu().numpy())
        return host, acts, pct

    def _evaluate(self, split: str = "test"):
        """Per-trial loss and accuracy over the test set (eval mode is train mode here: the
        stack has no dropout or batch norm), in chunks like Trainer.evaluate."""
        import torch

        from dlx.run.trainer import EVAL_BATCH

        x, y = (self.x_test, self.y_test) if split == "test" else (self.x, self.y)
        n_axis = 0 if self.shared else 1
        n = x.shape[n_axis]
        total = torch.zeros(self.K, device=self.device)
        correct = torch.zeros(self.K, device=self.device)
        with torch.no_grad():
            # EVAL_BATCH samples per forward pass in all, as K trials see them at once.
            chunk = max(1, EVAL_BATCH // self.K)
            for i in range(0, n, chunk):
                if self.shared:
                    xb = x[i : i + chunk].expand(self.K, *x[i : i + chunk].shape)
                    yb = y[i : i + chunk].expand(self.K, *y[i : i + chunk].shape)
                else:
                    xb, yb = x[:, i : i + chunk], y[:, i : i + chunk]
                out = self.model(self.as_float(xb))
                loss, acc = self._loss_acc(out, yb)
                m = xb.shape[1]
                total += loss * m
                correct += acc * m
        vals = torch.stack([total, correct]).cpu().numpy() / max(n, 1)
        res = []
        for k in range(self.K):
            r = {f"{split}_loss": float(vals[0, k])}
            if self.task == "classification":
                r[f"{split}_acc"] = float(vals[1, k])
            res.append(r)
        return res

    # -------------------------------------------------------------- per trial
    def _sync_weights(self, k: int) -> None:
        """Trial k's model given the stack's weights for it (all a snapshot reads)."""
        import torch

        with torch.no_grad():
            for p, s in zip(self.tr[k].model.parameters(), self.params):
                p.copy_(s[k])

    def _sync(self, k: int, rows: int = 0) -> None:
        """Trial k's Trainer made to hold the stack's state for it, so its state_dict(),
        evaluate() and summary are a separate run's."""
        import torch

        tr = self.tr[k]
        self._sync_weights(k)
        tr.optimizer.state.clear()
        tr.optimizer.state.update(self.optimizer.trial_state(k, list(tr.model.parameters())))
        if tr.scheduler is not None:
            sched = tr.scheduler
            sched.last_epoch, sched._step_count = self.step, self.step + 1
            lrs = [_lr_at(tr, self.step)]
            sched._last_lr = lrs
            tr.optimizer.param_groups[0]["lr"] = lrs[0]
        tr.step, tr.logged_step, tr._row = self.step, self.logged_step, rows
        if rows:
            tr.probes.buf[:rows] = self.buf[:rows, k]
        tr._perm = self.perms[k].clone() if self.perms is not None else None
        tr._t0, tr._eval_seconds = self.t0, self.eval_seconds
        # The global random streams as this trial's separate run has them (nothing in a
        # stacked step draws from them): its checkpoint resumes exactly.
        rng = self.trials[k].rng
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])

    def _end(self, k: int, status: str, reason: str | None, diverged=None, rows: int = 0, resumable: bool = True):
        from dlx.run.trainer import Outcome

        t = self.trials[k]
        tr = self.tr[k]
        self._sync(k, rows)
        tr._busy = not resumable
        final = tr._final_metrics(status, t.last)
        train_seconds = time.perf_counter() - self.t0 - self.eval_seconds
        outcome = Outcome(
            status=status,
            reason=reason,
            step=tr.step,
            epoch=tr.step / tr.steps_per_epoch,
            train_seconds=train_seconds,
            samples=tr.step * self.bs,
            final=final,
            diverged=diverged,
            signal=self._signal if status == "interrupted" else None,
        )
        tr._emit("on_end", outcome)
        t.active = False
        t.result = {"status": status}

    def _attach(self, rec, k: int, stats, acts, pct, evaluating: bool) -> None:
        """Trial k's slice of the stack's host statistics into its record, as Trainer's."""
        from dlx.run.probes import attach_stats

        attach_stats(rec, stats[k], evaluating, acts[k] if self.act_names else None, pct[k])

    def _records(self, rows: int, evaluating: bool) -> None:
        """The interval that just ended, for every active trial: records, callbacks, ends."""
        buf = float32_text(self.buf[:rows].cpu().numpy())  # the interval's one sync, as float32's own text
        elapsed = time.perf_counter() - self.t0
        recs = {}
        for k, t in enumerate(self.trials):
            if t.active:
                self.tr[k].step = self.step
                recs[k] = self.tr[k].interval_record(
                    self.logged_step, buf[:, k], _lr_at(self.tr[k], self.step), elapsed
                )
        stats, acts, pct = self._stats(evaluating)
        evals = None
        if evaluating and any(not r.get("diverged") for r in recs.values()):
            t_eval = time.perf_counter()
            evals = self._evaluate()
            self.eval_seconds += time.perf_counter() - t_eval

        for k, rec in recs.items():
            t, tr = self.trials[k], self.tr[k]
            if not rec.get("diverged"):
                self._attach(rec, k, stats, acts, pct, evaluating)
                if evals is not None:
                    rec.update(evals[k])
            t.last = rec
            tr.step, tr.logged_step, tr._row = self.step, self.step, 0
            if not rec.get("diverged") and t.writer.snapshots.due(self.step):
                self._sync_weights(k)  # the snapshot is of the trial's model: give it the stack's weights
            tr._emit("on_interval", rec)
            if rec.get("diverged"):
                self._end(k, "diverged", rec["diverged"]["message"], diverged=rec["diverged"])
                continue
            if tr._checkpoint_turn():
                self._sync(k)
                tr._emit("on_checkpoint")
            if tr._stop is not None:
                self._end(k, *tr._stop)
        if not all(t.active for t in self.trials):
            self._shrink()

    def _shrink(self) -> None:
        """Drop the trials that ended (diverged, stopped early, pruned) from the stack: the
        others step on without computing theirs. Every [K, ...] tensor keeps the rows of the
        trials still active, in their order; their numbers are unchanged."""
        import torch

        keep = [k for k, t in enumerate(self.trials) if t.active]
        if not keep or len(keep) == self.K:
            return
        idx = torch.tensor(keep, device=self.device)
        with torch.no_grad():
            self.params = [p.detach().index_select(0, idx).requires_grad_() for p in self.params]
        self.model.use(self.params)
        self.optimizer.keep(idx, self.params)
        self.lr_table = self.lr_table.index_select(1, idx.cpu())
        for name in ("l1", "l2", "clip_norm", "clip_value", "act_stats", "act_pct", "last_ratio"):
            setattr(self, name, getattr(self, name).index_select(0, idx))
        self.buf = self.buf.index_select(1, idx)
        if self._prev is not None:
            self._prev = [w.index_select(0, idx) for w in self._prev]
        if not self.shared:
            self.x, self.y = self.x.index_select(0, idx), self.y.index_select(0, idx)
            self.x_test, self.y_test = self.x_test.index_select(0, idx), self.y_test.index_select(0, idx)
        if self.perms is not None:
            self.perms = self.perms.index_select(0, idx)
        self.generators = [self.generators[k] for k in keep]
        self.trials = [self.trials[k] for k in keep]
        self.tr = [self.tr[k] for k in keep]
        self.K = len(keep)

    def run(self) -> None:
        with self._stop_signals_end_after_the_step():
            self._run()

    def _run(self) -> None:
        import torch

        n = len(self.x) if self.shared else self.x.shape[1]
        bs, full_batch = self.bs, self.bs == (len(self.x) if self.shared else self.x.shape[1])
        for tr in self.tr:
            tr.model.train()
            tr._emit("on_start")
        for t in self.trials:
            if self.K > 1:
                t.folder.update_meta(stacked=self.K)
        self.t0 = time.perf_counter()
        try:
            while self.step < self.total_steps and any(t.active for t in self.trials):
                if self._interrupted:
                    break
                pos = self.step % self.steps_per_epoch
                if full_batch:  # every sample in its order, as a separate run's full batch
                    xb, yb = (
                        (self.x.expand(self.K, *self.x.shape), self.y.expand(self.K, *self.y.shape))
                        if self.shared
                        else (self.x, self.y)
                    )
                else:
                    if pos == 0 or self.perms is None:
                        self.perms = torch.stack(
                            [torch.randperm(n, device=self.device, generator=g) for g in self.generators]
                        )
                    xb, yb = self._batch(self.perms[:, pos * bs : (pos + 1) * bs])
                self.step += 1
                flush = self.row + 1 == self.log_every or self.step == self.total_steps
                eval_now = flush and (
                    self.step // self.eval_every > self.logged_step // self.eval_every or self.step == self.total_steps
                )
                if flush:
                    self._watch()
                self._train_step(self.row, xb, yb)
                self.row += 1
                if not flush:
                    continue
                self._records(self.row, eval_now)
                self.row, self.logged_step = 0, self.step
        except KeyboardInterrupt:  # a second stop signal: no clean state to checkpoint
            self.step = self.logged_step + self.row
            for k, t in enumerate(self.trials):
                if t.active:
                    self._end(k, "interrupted", self._stop_reason, rows=self.row, resumable=False)
            return
        for k, t in enumerate(self.trials):
            if not t.active:
                continue
            if self.step < self.total_steps:  # stopped by a signal between steps
                if self.row:
                    self._interrupted_interval(k)
                self._end(k, "interrupted", self._stop_reason, rows=self.row)
            else:
                self._end(k, "completed", None)

    def _interrupted_interval(self, k: int) -> None:
        """The unfinished interval of an interrupted trial, logged as a separate run logs it."""
        buf = float32_text(self.buf[: self.row, k].cpu().numpy())
        tr = self.tr[k]
        tr.step = self.step
        rec = tr.interval_record(self.logged_step, buf, _lr_at(tr, self.step), time.perf_counter() - self.t0)
        if not rec.get("diverged"):
            self._attach(rec, k, *self._stats(False), evaluating=False)
        self.trials[k].last = rec
        tr._emit("on_interval", rec)

    @property
    def _stop_reason(self) -> str:
        from dlx.core.signals import stop_reason

        return stop_reason(self._signal)

    def _stop_signals_end_after_the_step(self):
        """As Trainer's: a first stop signal ends every trial after the step, a second at once."""
        from dlx.core.signals import end_after_the_step

        return end_after_the_step(self)


def _arrays(d):
    return (d.x_train, d.y_train, d.x_test, d.y_test)


def _lr_at(trainer, step: int) -> float:
    """The lr a trial's torch optimizer holds after `step` steps (LambdaLR: base * factor)."""
    opt = trainer.cfg.optimizer
    if trainer.scheduler is None:
        return opt.lr
    return opt.lr * opt.schedule.factor(step, trainer.total_steps)


# ---------------------------------------------------------------------- a job of trials


def run_stacked(
    configs: list[dict], runs_dirs: list[str | Path], started: float | None = None, loops: list | None = None
) -> list[dict]:
    """Train these trial configs, stacked where they can be, in this process: one result
    per trial in dlx.many.worker's format. Trials that cannot join a stack run alone.
    loops: each StackedTrainer is appended as it starts (a driver training a stack in a
    thread stops it through them: no signal reaches a thread)."""
    import torch

    from dlx.config.loader import load_config
    from dlx.core.errors import DlxError
    from dlx.many.jobs import empty_result, run_job
    from dlx.records.folders import RunFolder
    from dlx.records.recording import History, RunWriter
    from dlx.run.trainer import Trainer

    started = time.time() if started is None else started
    base = empty_result(started)
    results: list[dict | None] = [None] * len(configs)
    groups: dict[str, list[int]] = {}
    cfgs = {}
    for i, c in enumerate(configs):
        try:
            cfg = load_config(c)
        except DlxError:
            continue  # run_job below reports it
        if why_not(cfg) is None:
            cfgs[i] = cfg
            groups.setdefault(stack_key(cfg), []).append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        trials: list[_Trial] = []
        for i in members:
            cfg = cfgs[i]
            folder = RunFolder(Path(runs_dirs[i]), cfg.name)
            hist = History()
            writer = RunWriter(folder, hist)
            try:
                trainer = Trainer(cfg, callbacks=[hist, writer])
            except DlxError:
                continue  # run_job below reports it
            rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
            trials.append(_Trial(i, cfg, folder, hist, writer, trainer, rng))
        if len(trials) < 2:
            continue
        # Parameters (with their gradients and optimizer state) and batches are held K times:
        # a stack of big nets or big batches is cut into stacks within the budgets, run one by one.
        tr0 = trials[0].trainer
        per_trial = sum(p.numel() for p in tr0.model.parameters())
        inputs = tr0.batch_size * math.prod(tr0.data.feature_shape)
        size = max(1, min(len(trials), MAX_STACK_PARAMS // max(per_trial, 1), MAX_STACK_INPUTS // max(inputs, 1)))
        for chunk in [trials[k : k + size] for k in range(0, len(trials), size)]:
            if any(r is not None and r["status"] == "interrupted" for r in results):
                break  # stopped: the trials not started are reported below
            _run_chunk(chunk, results, base, loops)

    for i, c in enumerate(configs):
        if results[i] is None:
            if any(r is not None and r["status"] == "interrupted" for r in results):
                results[i] = {
                    **base,
                    "status": "interrupted",
                    "error": "stopped before it started",
                    "ended": time.time(),
                }
                continue
            results[i], _ = run_job(c, runs_dirs[i], started=started)
    return results


def _run_chunk(trials: list[_Trial], results: list, base: dict, loops: list | None = None) -> None:
    """Train these built trials as one stack; their results into results."""
    import torch

    from dlx.api import out_of_memory_message
    from dlx.records.folders import now
    from dlx.run.trainer import THREAD_FLOPS, default_threads, step_flops

    if not trials[0].cfg.train.threads and trials[0].trainer.device.type == "cpu":
        # The stack's work per step is K runs' work: threads for that, not for one run.
        tr0 = trials[0].trainer
        batch = min(tr0.batch_size, len(tr0.data.x_train))
        one = default_threads(tr0.model, tr0.data, batch)
        from dlx.run import trainer as trainer_mod

        budget = trainer_mod._THREAD_BUDGET or torch.get_num_threads()
        flops = step_flops(tr0.model, tr0.data, batch)
        torch.set_num_threads(max(one, min(budget, int(len(trials) * flops // THREAD_FLOPS))))
    stack = StackedTrainer(trials)
    if loops is not None:
        loops.append(stack)
    try:
        stack.run()
    except Exception as e:
        tb = traceback.format_exc()
        for t in trials:
            if t.folder.meta.get("status") == "running":
                oom = out_of_memory_message(e, t.trainer, t.folder)
                try:
                    t.folder.update_meta(
                        status="failed", ended=now(), reason=oom or f"{type(e).__name__}: {e}", error=tb
                    )
                except OSError:
                    pass  # a full disk (what failed the stack, often): its folder says `running`, read as stopped
                t.folder.close()
            results[t.index] = {
                **base,
                "status": "failed",
                "run_path": str(t.folder.path) if t.folder.meta else None,
                "error": f"{type(e).__name__}: {e}\n{tb}",
                "ended": time.time(),
            }
        return
    for t in trials:
        results[t.index] = {
            **base,
            "status": t.writer.summary.get("status", t.result["status"]),
            "run_path": str(t.folder.path),
            "summary": t.writer.summary,
            "metrics": t.hist.metrics,
            "ended": time.time(),
        }

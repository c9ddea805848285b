"""Research instruments: the curvature, gradient noise and weight spectra of a run, measured
every few log steps on a fixed probe batch, outside the training step (config
`instruments:`), through torch.func (no BackPACK: recurrent, attention, CNN and norm
layers all work).

- sharpness: the top eigenvalue of the Hessian of the training loss, by Lanczos on
  Hessian-vector products (full reorthogonalisation; its residual says how converged it
  is), against the step size's stability threshold: 2/lr for gradient descent, (2+2b)/lr
  with heavy-ball momentum b, (2+2b)/(lr(1+2b)) with Nesterov (Cohen et al. 2021); for
  Adam the preconditioned sharpness, the top eigenvalue of P^-1/2 H P^-1/2 with P its
  sqrt(v_hat)+eps, against (2+2b1)/((1-b1) lr) (38/lr at b1 = 0.9; Cohen et al. 2022).
  Other optimizers: no threshold (said so).
- trace: the Hessian's trace, by Hutchinson's estimator with Rademacher vectors (its
  standard error beside it), exact (one Hessian-vector product per parameter) when the
  model has no more parameters than the estimator would use vectors.
- noise: per-sample gradients (vmap over grad) of the probe batch: per layer the gradient
  signal-to-noise ratio of a minibatch of the run's batch size, |G|^2 / (tr(Sigma)/B), and
  the simple gradient noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018),
  with |G|^2 estimated without bias (|mean g|^2 - tr(Sigma)/n).
- spectra: each layer's singular values, stable rank (|W|_F^2 / s_max^2), effective rank
  (exp of the entropy of s/sum s; Roy & Vetterli 2007), distance from init
  (|W - W0|_F / |W0|_F) and the largest singular value the init scheme's random matrix
  would have (Marchenko-Pastur edge s(sqrt(out) + sqrt(in))).

The model is evaluated in eval mode (dropout off; batch norm with its running statistics:
per-sample gradients of train-mode batch norm are not defined) and on the data loss alone
(regularization terms left out). Each instrument's seconds are in its record.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import torch
from torch.func import functional_call, grad, jvp, vjp, vmap

# Layers' singular values kept per record (the largest ones).
MAX_SINGULAR = 64
# Per-sample gradients are computed this many samples at a time (memory: chunk x parameters).
PER_SAMPLE_CHUNK = 64


# ------------------------------------------------------------------ the loss as a function


class LossFunction:
    """The model's data loss on the probe batch as a function of its parameters (a dict),
    evaluated with torch.func.functional_call in eval mode; buffers held fixed."""

    def __init__(self, model: torch.nn.Module, loss_fn: Callable, x: torch.Tensor, y: torch.Tensor):
        self.model, self.loss_fn, self.x, self.y = model, loss_fn, x, y
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.buffers = {n: b for n, b in model.named_buffers()}

    def params(self) -> dict[str, torch.Tensor]:
        named = dict(self.model.named_parameters())
        return {n: named[n].detach() for n in self.names}

    def __call__(self, params: dict[str, torch.Tensor], x=None, y=None) -> torch.Tensor:
        x = self.x if x is None else x
        y = self.y if y is None else y
        out = functional_call(self.model, (params, self.buffers), (x,))
        return self.loss_fn(out, y)

    forward_mode = True  # jvp of grad works for this model (until it fails once)

    def hvp(self, params: dict[str, torch.Tensor], v: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """H v, forward-over-reverse (jvp of grad); reverse-over-reverse where an op has no
        forward-mode derivative (the recurrent layers' fused kernels), remembered after the
        first failure so later products do not pay for it again."""
        if self.forward_mode:
            try:
                return jvp(grad(self), (params,), (v,))[1]
            except (NotImplementedError, RuntimeError):
                self.forward_mode = False
        _, back = vjp(grad(self), params)
        return back(v)[0]


def _flat(d: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    return torch.cat([d[n].reshape(-1) for n in names])


def _unflat(v: torch.Tensor, like: dict[str, torch.Tensor], names: list[str]) -> dict[str, torch.Tensor]:
    out, i = {}, 0
    for n in names:
        k = like[n].numel()
        out[n] = v[i : i + k].view_as(like[n])
        i += k
    return out


# ------------------------------------------------------------------ curvature


def lanczos(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    dim: int,
    iters: int,
    generator: torch.Generator,
    device=None,
    dtype=torch.float32,
) -> dict[str, Any]:
    """The top eigenvalue of the symmetric operator `matvec` (dim x dim) by `iters` Lanczos
    steps with full reorthogonalisation. Returns {"top", "residual" (the Ritz residual
    |beta_k s_k| / |top|: how far from converged), "iters", "ritz" (all Ritz values, largest
    first)}. Exact (to rounding) once iters reaches dim."""
    k = min(iters, dim)
    q = torch.randn(dim, generator=generator, device=generator.device, dtype=dtype).to(device)
    q = q / q.norm()
    Q = torch.zeros(k, dim, device=device, dtype=dtype)
    alpha, beta = [], []
    b = 0.0
    for j in range(k):
        Q[j] = q
        w = matvec(q)
        a = float(torch.dot(w, q))
        alpha.append(a)
        w = w - a * q - (b * Q[j - 1] if j else 0.0)
        w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)  # full reorthogonalisation (twice is enough)
        w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)
        b = float(w.norm())
        if j + 1 < k:
            beta.append(b)
        if b < 1e-10 * max(1.0, abs(a)):  # an invariant subspace: the Ritz values are exact
            break
        q = w / b
    m = len(alpha)
    T = torch.diag(torch.tensor(alpha, dtype=torch.float64))
    if m > 1:
        off = torch.tensor(beta[: m - 1], dtype=torch.float64)
        T += torch.diag(off, 1) + torch.diag(off, -1)
    vals, vecs = torch.linalg.eigh(T)
    top = float(vals[-1])
    residual = abs(b * float(vecs[-1, -1])) / max(abs(top), 1e-30)
    return {"top": top, "residual": residual, "iters": m, "ritz": vals.flip(0).tolist()}


def hutchinson(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    dim: int,
    samples: int,
    generator: torch.Generator,
    device=None,
    dtype=torch.float32,
) -> dict[str, Any]:
    """tr(A) by Hutchinson's estimator, mean of v.Av over `samples` Rademacher vectors, with
    its standard error; exact (sum of e_i.A e_i) when dim <= samples."""
    if dim <= samples:
        eye = torch.eye(dim, device=device, dtype=dtype)
        total = sum(float(matvec(eye[i])[i]) for i in range(dim))
        return {"value": total, "stderr": 0.0, "samples": dim, "exact": True}
    vals = []
    for _ in range(samples):
        v = torch.randint(0, 2, (dim,), generator=generator, device=generator.device).to(device=device, dtype=dtype)
        v = 2 * v - 1
        vals.append(float(torch.dot(v, matvec(v))))
    arr = np.array(vals)
    return {
        "value": float(arr.mean()),
        "stderr": float(arr.std(ddof=1) / math.sqrt(len(arr))),
        "samples": samples,
        "exact": False,
    }


def threshold(optimizer_cfg, lr: float) -> tuple[float | None, str, bool]:
    """(the sharpness the step size tolerates, its rule as text, whether the sharpness is
    the preconditioned one) for an optimizer config at learning rate lr."""
    name = optimizer_cfg.name
    if lr <= 0:
        return None, "lr 0: no threshold", False
    if name in ("adam", "adamw"):
        b1 = float(optimizer_cfg.betas[0])
        return (2 + 2 * b1) / ((1 - b1) * lr), f"(2+2b1)/((1-b1) lr), b1={b1:g}: preconditioned", True
    if name == "rmsprop" and float(getattr(optimizer_cfg, "momentum", 0.0)) == 0:
        return 2 / lr, "2/lr: preconditioned", True
    if name in ("sgd", "momentum", "nesterov"):
        b = float(getattr(optimizer_cfg, "momentum", 0.0))
        nesterov = name == "nesterov" or bool(getattr(optimizer_cfg, "nesterov", False))
        if b == 0:
            return 2 / lr, "2/lr", False
        if nesterov:
            return (2 + 2 * b) / (lr * (1 + 2 * b)), f"(2+2b)/(lr(1+2b)), Nesterov b={b:g}", False
        return (2 + 2 * b) / lr, f"(2+2b)/lr, momentum b={b:g}", False
    return None, f"{name}: no stability threshold known; sharpness shown alone", False


def _preconditioner(
    optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], optimizer_cfg
) -> torch.Tensor | None:
    """P^-1/2 as a flat vector for Adam (sqrt(v_hat)+eps) and RMSprop (sqrt(v)+eps); None before
    the optimizer has state."""
    parts = []
    for p in params:
        st = optimizer.state.get(p) or {}
        if "exp_avg_sq" in st:
            step = float(st["step"])
            b2 = float(optimizer_cfg.betas[1])
            d = (st["exp_avg_sq"] / (1 - b2**step)).sqrt() + float(optimizer_cfg.eps)
        elif "square_avg" in st:
            d = st["square_avg"].sqrt() + float(optimizer_cfg.eps)
        else:
            return None
        parts.append(d.reshape(-1))
    return torch.cat(parts).rsqrt() if parts else None


# The exact Hessian is built from one Hessian-vector product per parameter: tiny nets only.
EXACT_HESSIAN_MAX = 1000


def hessian_spectrum(f: "LossFunction", params: dict[str, torch.Tensor], dim: int) -> dict[str, Any]:
    """Every eigenvalue of the Hessian (float64, eigvalsh of the symmetrised matrix of its
    Hessian-vector products on the unit vectors): at a saddle some are negative, at a
    minimum none (up to rounding)."""
    from dlx.core.errors import DlxError

    if dim > EXACT_HESSIAN_MAX:
        raise DlxError(
            f"instruments.hessian: the exact Hessian of {dim:,} parameters is too big (at most "
            f"{EXACT_HESSIAN_MAX:,}); use instruments.sharpness for its top eigenvalue"
        )
    names = f.names
    eye = torch.eye(dim, dtype=next(iter(params.values())).dtype, device=next(iter(params.values())).device)
    cols = [_flat(f.hvp(params, _unflat(eye[i], params, names)), names).detach() for i in range(dim)]
    h = torch.stack(cols).double()
    ev = torch.linalg.eigvalsh((h + h.T) / 2)
    scale = float(ev.abs().max()) if len(ev) else 0.0
    neg = ev[ev < -1e-6 * max(scale, 1e-30)]
    return {
        "min": float(ev[0]),
        "max": float(ev[-1]),
        "negative": int(len(neg)),
        "eigenvalues": ev.tolist(),
    }


# ------------------------------------------------------------------ gradient noise


def per_sample_grads(f: LossFunction, params: dict[str, torch.Tensor], chunk: int = PER_SAMPLE_CHUNK):
    """Yields the per-sample gradients of the probe batch, `chunk` samples at a time:
    dict name -> [chunk, *shape] (vmap over grad of the one-sample loss)."""

    def one(p, x, y):
        return f(p, x.unsqueeze(0), y.unsqueeze(0))

    g = vmap(grad(one), in_dims=(None, 0, 0))
    for i in range(0, len(f.x), chunk):
        yield g(params, f.x[i : i + chunk], f.y[i : i + chunk])


def gradient_noise(
    f: LossFunction, params: dict[str, torch.Tensor], layers: dict[str, list[str]], batch: int
) -> dict[str, Any]:
    """Per layer and in all: |G|^2 (unbiased), tr(Sigma) (the per-sample gradients' summed
    variance), the SNR of a minibatch of `batch`, |G|^2 / (tr(Sigma)/batch), and B_simple."""
    n = len(f.x)
    s1 = {k: torch.zeros_like(v) for k, v in params.items()}
    s2 = {k: torch.zeros_like(v) for k, v in params.items()}
    for g in per_sample_grads(f, params):
        for k in params:
            s1[k] += g[k].sum(0)
            s2[k] += (g[k] ** 2).sum(0)
    out: dict[str, Any] = {"batch": batch, "samples": n, "layers": {}}
    tot_g2 = tot_tr = 0.0
    for layer, names in layers.items():
        mean_sq = sum(float(((s1[k] / n) ** 2).sum()) for k in names)
        tr = sum(float(((s2[k] - s1[k] ** 2 / n) / (n - 1)).sum()) for k in names)  # unbiased variance
        g2 = mean_sq - tr / n
        tot_g2, tot_tr = tot_g2 + g2, tot_tr + tr
        out["layers"][layer] = {"grad_sq": g2, "tr_sigma": tr, "snr": g2 / (tr / batch) if tr > 0 else None}
    out["grad_sq"], out["tr_sigma"] = tot_g2, tot_tr
    # |G|^2 estimated at or below 0: the noise swamps the mean gradient (B_simple is huge).
    out["b_simple"] = tot_tr / tot_g2 if tot_g2 > 0 else None
    return out


# ------------------------------------------------------------------ spectra


def spectrum(w: torch.Tensor, w0: torch.Tensor | None, init_var: float | None) -> dict[str, Any]:
    """A weight's singular values (as a matrix [out, everything else]) and what they say."""
    m = w.detach().reshape(w.shape[0], -1).double()
    s = torch.linalg.svdvals(m)
    top = float(s[0]) if len(s) else 0.0
    fro2 = float((s**2).sum())
    p = s / s.sum() if float(s.sum()) > 0 else s
    nz = p[p > 0]
    out = {
        "singular": s[:MAX_SINGULAR].tolist(),
        "count": len(s),
        "stable_rank": fro2 / top**2 if top > 0 else 0.0,
        "effective_rank": float(torch.exp(-(nz * nz.log()).sum())) if len(nz) else 0.0,
        "shape": list(m.shape),
    }
    if w0 is not None:
        d0 = float(w0.reshape(m.shape).double().norm())
        out["from_init"] = float((m - w0.reshape(m.shape).double()).norm()) / d0 if d0 > 0 else None
    if init_var is not None and init_var > 0:
        out["mp_edge"] = math.sqrt(init_var) * (math.sqrt(m.shape[0]) + math.sqrt(m.shape[1]))
    return out


def weight_matrices(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Each probed layer's (first) weight: the matrices whose spectra are measured."""
    from dlx.components.models.base import layer_weights

    return {name: ws[0] for name, m in model.init_targets() if (ws := layer_weights(m))}


# ------------------------------------------------------------------ the callback


class Instruments:
    """A trainer callback: at log steps `every` apart (step 0 included), the configured
    instruments on the probe batch; each record goes to the callbacks as on_instruments
    (History keeps it, RunWriter writes instruments.jsonl). With every: auto the interval
    is about a twentieth of the run, and a measurement waits until the training has taken
    at least as long as the instruments so far and the next one together: after the
    step-0 measurement a run stays within 2x its plain time."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.next_step = 0
        self.init_weights: dict[str, torch.Tensor] | None = None
        self.forward_mode = True  # see LossFunction.hvp
        self._spent = 0.0  # seconds the instruments took (this session)
        self._last_cost = 0.0
        self._t0: float | None = None

    # -- the trainer's events
    def on_start(self, trainer):
        if trainer.step == 0 or self.init_weights is None:
            self.init_weights = {n: w.detach().clone() for n, w in weight_matrices(trainer.model).items()}
        self._t0 = time.perf_counter()
        if trainer.step == 0:
            self._measure(trainer)

    def on_interval(self, trainer, record):
        if record.get("diverged") or trainer.step < self.next_step:
            return
        if self.cfg.every == "auto":
            # The budget: the instruments never take more time than the training did (a run
            # stays within 2x its plain time, the step-0 measurement aside).
            trained = time.perf_counter() - self._t0 - self._spent
            if self._spent + self._last_cost > trained:
                return
        self._measure(trainer)

    # -- checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {"next_step": self.next_step, "init_weights": self.init_weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.next_step = int(state["next_step"])
        self.init_weights = state["init_weights"]

    # -- measuring

    def interval(self, trainer) -> int:
        c = self.cfg
        if c.every != "auto":
            return int(c.every)
        return max(trainer.cfg.train.log_every, trainer.total_steps // 20)

    def _measure(self, trainer) -> None:
        t = time.perf_counter()
        rec = measure(trainer, self.cfg, self.init_weights, self)
        self._last_cost = time.perf_counter() - t
        self._spent += self._last_cost
        self.next_step = trainer.step + self.interval(trainer)
        trainer._emit("on_instruments", rec)


def _layers(f: LossFunction, trainer) -> dict[str, list[str]]:
    """Parameter names grouped by the probed layer they belong to (others: "other")."""
    groups: dict[str, list[str]] = {}
    targets = [name for name, _ in trainer.model.init_targets()]
    for n in f.names:
        owner = next((t for t in targets if n == t or n.startswith(t + ".")), "other")
        groups.setdefault(owner, []).append(n)
    return groups


def measure(trainer, cfg, init_weights: dict[str, torch.Tensor] | None, memo=None) -> dict[str, Any]:
    """One record of the instruments `cfg` turns on, for the trainer's model now (memo:
    an Instruments, which remembers whether forward-mode Hessian products work)."""
    from dlx.run.initcheck import weight_moments

    model = trainer.model
    was_training = model.training
    model.eval()
    data = trainer.data
    n = min(cfg.batch, len(data.x_train))
    x, y = data.as_float(data.x_train[:n]), data.y_train[:n]
    f = LossFunction(model, trainer.loss_fn, x, y)
    if memo is not None:
        f.forward_mode = memo.forward_mode
    params = f.params()
    dim = sum(p.numel() for p in params.values())
    dev = x.device
    gen = torch.Generator(device="cpu")
    gen.manual_seed(trainer.cfg.seed * 1_000_003 + trainer.step)  # its own stream: training's untouched
    lr = float(trainer.optimizer.param_groups[0]["lr"])
    rec: dict[str, Any] = {
        "step": trainer.step,
        "lr": lr,
        "probe_batch": n,  # the first n training samples
        "mode": "eval (dropout off, batch norm with its running statistics), data loss only",
        "parameters": dim,
        "seconds": {},
    }
    try:
        if cfg.sharpness or cfg.trace:
            thr, rule, pre = threshold(trainer.cfg.optimizer, lr)
            scale = None
            if pre:
                named = dict(model.named_parameters())
                scale = _preconditioner(trainer.optimizer, [named[k] for k in f.names], trainer.cfg.optimizer)

            def hv(v: torch.Tensor, scale=None) -> torch.Tensor:
                if scale is not None:
                    v = v * scale
                out = _flat(f.hvp(params, _unflat(v, params, f.names)), f.names).detach()
                return out * scale if scale is not None else out

            if cfg.sharpness:
                t = time.perf_counter()
                top = lanczos(hv, dim, cfg.lanczos, gen, dev)
                top.pop("ritz")
                sharp = {**top, "threshold": thr, "rule": rule, "preconditioned": False}
                if scale is not None:  # the preconditioned sharpness is the one the threshold is for
                    pre_top = lanczos(lambda v: hv(v, scale), dim, cfg.lanczos, gen, dev)
                    sharp.update(
                        preconditioned=True,
                        preconditioned_top=pre_top["top"],
                        preconditioned_residual=pre_top["residual"],
                    )
                elif pre:
                    sharp.update(threshold=None, rule=rule + " (no optimizer state yet)")
                rec["sharpness"] = sharp
                rec["seconds"]["sharpness"] = time.perf_counter() - t
            if cfg.trace:
                t = time.perf_counter()
                rec["trace"] = hutchinson(hv, dim, cfg.hutchinson, gen, dev)
                rec["seconds"]["trace"] = time.perf_counter() - t
        if getattr(cfg, "hessian", False):
            t = time.perf_counter()
            rec["hessian"] = hessian_spectrum(f, params, dim)
            rec["seconds"]["hessian"] = time.perf_counter() - t
        if cfg.noise:
            t = time.perf_counter()
            bs = trainer.batch_size
            rec["noise"] = gradient_noise(f, params, _layers(f, trainer), bs)
            rec["seconds"]["noise"] = time.perf_counter() - t
        if cfg.spectra:
            t = time.perf_counter()
            spectra = {}
            for name, w in weight_matrices(model).items():
                try:
                    _, var, _ = weight_moments(trainer.cfg.init, w)
                except Exception:  # noqa: BLE001  (a scheme without a variance: no expected edge)
                    var = None
                w0 = init_weights.get(name) if init_weights else None
                spectra[name] = spectrum(w, w0, var)
            rec["spectra"] = spectra
            rec["seconds"]["spectra"] = time.perf_counter() - t
    finally:
        model.train(was_training)
        if memo is not None:
            memo.forward_mode = f.forward_mode
    return rec


# ------------------------------------------------------------------ what they say


def digest(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The instruments of a run in a few sentences (summary.json "instruments"): the
    sharpness's course against its threshold, the noise scale against the batch size, the
    layers' ranks, and what the instruments cost."""
    from dlx.core.fmt import num

    if not records:
        return None
    notes: list[str] = []
    sharp = [(r["step"], r["sharpness"]) for r in records if r.get("sharpness")]
    if sharp:
        key = "preconditioned_top" if any(s.get("preconditioned") for _, s in sharp) else "top"
        vals = [(st, s.get(key)) for st, s in sharp if isinstance(s.get(key), (int, float))]
        thr = next((s.get("threshold") for _, s in reversed(sharp) if s.get("threshold")), None)
        rule = sharp[-1][1].get("rule", "")
        if vals:
            (s0, v0), (s1, v1) = vals[0], vals[-1]
            peak_step, peak = max(vals, key=lambda t: t[1])
            what = "preconditioned sharpness" if key != "top" else "sharpness"
            text = f"{what}: {num(v0)} at step {s0}, peak {num(peak)} at step {peak_step}, {num(v1)} at step {s1}"
            if thr:
                text += f"; threshold {num(thr)} ({rule})"
                late = [v for _, v in vals[len(vals) // 2 :]]
                if peak > thr:
                    text += ": the sharpness went past it (each step left the local quadratic's stable range)"
                if late and min(late) > 0.8 * thr and max(late) < 1.25 * thr and peak > 0.9 * thr:
                    text += (
                        "; it hovered at the threshold over the second half: the edge of stability (Cohen et al. 2021)"
                    )
            else:
                text += f" ({rule})"
            notes.append(text)
    noise = [r["noise"] for r in records if r.get("noise")]
    if noise:
        last = noise[-1]
        b, batch = last.get("b_simple"), last.get("batch")
        if b is None:
            notes.append(
                f"gradient noise: at the end the mean gradient is lost in the per-sample noise (B_simple beyond "
                f"measure) at batch size {batch}"
            )
        elif batch:
            if b > 4 * batch:
                rel = f"{b / batch:.0f}x the batch size {batch}: a bigger batch would still make nearly proportionally more progress per step"
            elif b < batch / 4:
                rel = f"{batch / b:.0f}x below the batch size {batch}: a smaller batch would make about as much progress per sample, at less cost"
            else:
                rel = f"near the batch size {batch}: the batch is about the noise scale"
            notes.append(f"gradient noise scale B_simple = {num(b)} at the end (McCandlish et al. 2018), {rel}")
    spectra = [r["spectra"] for r in records if r.get("spectra")]
    if spectra:
        last = spectra[-1]
        low = [n for n, s in last.items() if s.get("count", 0) > 1 and s.get("stable_rank", 2) < 1.05]
        ranks = ", ".join(f"{n} {num(s.get('stable_rank'), 2)}" for n, s in last.items())
        notes.append(f"stable rank at the end: {ranks}")
        if low:
            notes.append(
                f"{', '.join(low)} rank ~1: every unit of the layer does the same (the symmetry of a constant init)"
            )
        moved = {n: s.get("from_init") for n, s in last.items() if isinstance(s.get("from_init"), (int, float))}
        if moved:
            notes.append("distance from init |W-W0|/|W0|: " + ", ".join(f"{n} {num(v, 2)}" for n, v in moved.items()))
    hess = [(r["step"], r["hessian"]) for r in records if r.get("hessian")]
    if hess:

        def said(step, h):
            top = max(abs(h["max"]), 1e-30)
            return f"step {step}: {h['negative']} negative, the lowest {num(h['min'])} ({h['min'] / top:+.1%} of the largest)"

        worst = min(hess, key=lambda t: t[1]["min"] / max(abs(t[1]["max"]), 1e-30))
        notes.append(
            "Hessian eigenvalues (exact): "
            + said(*hess[0])
            + "; most negative at "
            + said(*worst)
            + "; at the end, "
            + said(*hess[-1])
            + " (negative ones: a saddle, which descent leaves along them; none: a minimum)"
        )
    seconds: dict[str, float] = {}
    for r in records:
        for k, v in (r.get("seconds") or {}).items():
            seconds[k] = seconds.get(k, 0.0) + float(v)
    return {"measurements": len(records), "notes": notes, "seconds": {k: round(v, 4) for k, v in seconds.items()}}

"""Research instruments: the curvature, gradient noise and weight spectra of a run, measured
every few log steps on a fixed probe batch, outside the training step (config
`instruments:`), through torch.func (no BackPACK: recurrent, attention, CNN and norm
layers all work).

- sharpness: the top eigenvalue of the Hessian of the training loss, by Lanczos on
  Hessian-vector products (full reorthogonalisation; its residual says how converged it
  is), against the step size's stability threshold: 2/lr for gradient descent, (2+2b)/lr
  with heavy-ball momentum b, (2+2b)/(lr(1-d)) with dampening d, (2+2b)/(lr(1+2b)) with
  Nesterov (Cohen et al. 2021); weight decay and l2 shift every eigenvalue up by wd, so
  lambda_max + wd meets the rule (the threshold recorded is the rule minus wd); for Adam
  the preconditioned sharpness, the top eigenvalue of P^-1/2 (H + wd) P^-1/2 with P its
  sqrt(v_hat)+eps, against (2+2b1)/((1-b1) lr) (38/lr at b1 = 0.9; Cohen et al. 2022).
  Other optimizers: no threshold (said so). The rules are for full-batch steps: with
  minibatches the record's rule says it is only an indication.
- trace: the Hessian's trace, by Hutchinson's estimator with Rademacher vectors (its
  standard error beside it), exact (one Hessian-vector product per parameter) when the
  model has no more parameters than the estimator would use vectors.
- noise: per-sample gradients of the trained loss (class weights included; vmap over
  grad) of the probe batch: per layer the gradient signal-to-noise ratio of a minibatch
  of the run's batch size, |G|^2 / (tr(Sigma)/B (N-B)/(N-1)), and the simple gradient
  noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018), with Sigma the
  training set's (N samples) population covariance and |G|^2 estimated without bias for
  a probe drawn from it, exact when the probe is the whole set (gradient_noise).
- spectra: each layer's singular values, stable rank (|W|_F^2 / s_max^2), effective rank
  (exp of the entropy of s/sum s; Roy & Vetterli 2007), distance from init
  (|W - W0|_F / |W0|_F) and the largest singular value the init scheme's random matrix
  would have (Marchenko-Pastur edge s(sqrt(out) + sqrt(in))).
- modes: for a deep linear net (an mlp with the linear activation, no norm layers) trained
  on a linear teacher y = U diag(s) V^T x, the strength of each of the teacher's modes in
  the net's map, u_i^T (W_L ... W_1) v_i (Saxe, McClelland & Ganguli 2013: from a small
  balanced init each rises on a sigmoid, the strongest first, to s_i). The product leaves
  the biases out (a linear net's map is that product plus a constant): their largest norm
  is recorded beside it, near 0 on the teacher's zero-mean inputs.

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

from dlx.run.modes import MODES_PATH, mode_strengths, modes_problem

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


def hessian_shift(optimizer_cfg, l2: float = 0.0) -> float:
    """What the optimizer adds to every eigenvalue of the data loss's Hessian: coupled weight
    decay (wd*w added to the gradient, every torch optimizer here but AdamW) and the config's
    l2 penalty (l2*w on the weights; biases and norm layers left out, so l2 is an upper
    bound on how far it moves the top eigenvalue). AdamW's decay is decoupled: no shift."""
    wd = 0.0 if optimizer_cfg.name == "adamw" else float(getattr(optimizer_cfg, "weight_decay", 0.0) or 0.0)
    return wd + float(l2 or 0.0)


def threshold(optimizer_cfg, lr: float, l2: float = 0.0) -> tuple[float | None, str, bool]:
    """(the sharpness the step size tolerates, its rule as text, whether the sharpness is
    the preconditioned one) for an optimizer config at learning rate lr, with the config's
    l2 penalty.

    The rules are for full-batch steps on the local quadratic. Heavy ball in PyTorch's form
    (v = b v + (1-d) g, w -= lr v) is stable while lr (1-d) lambda < 2+2b, so the threshold
    is (2+2b)/(lr(1-d)). Weight decay wd and l2 add to every Hessian eigenvalue (the
    optimizer descends loss + wd/2 |w|^2), so lambda_max + wd is what meets the rule: for
    the plain sharpness the threshold returned is the rule minus that shift (the bound on
    the data loss's lambda_max); for a preconditioned one the shift goes into the
    preconditioned operator instead (measure), as P^-1/2 wd P^-1/2 is no uniform shift."""
    name = optimizer_cfg.name
    if lr <= 0:
        return None, "lr 0: no threshold", False
    shift = hessian_shift(optimizer_cfg, l2)
    if name in ("adam", "adamw"):
        b1 = float(optimizer_cfg.betas[0])
        rule = f"(2+2b1)/((1-b1) lr), b1={b1:g}: preconditioned"
        if shift:
            rule += f", the Hessian shifted by weight decay/l2 {shift:g}"
        if name == "adamw" and float(optimizer_cfg.weight_decay):
            rule += "; AdamW's decoupled decay left out"
        return (2 + 2 * b1) / ((1 - b1) * lr), rule, True
    if name == "rmsprop" and float(getattr(optimizer_cfg, "momentum", 0.0)) == 0:
        return (
            2 / lr,
            "2/lr: preconditioned" + (f", the Hessian shifted by weight decay/l2 {shift:g}" if shift else ""),
            True,
        )
    if name in ("sgd", "momentum", "nesterov"):
        b = float(getattr(optimizer_cfg, "momentum", 0.0))
        d = float(getattr(optimizer_cfg, "dampening", 0.0)) if b else 0.0  # torch ignores d without momentum
        nesterov = name == "nesterov" or bool(getattr(optimizer_cfg, "nesterov", False))
        if b == 0:
            thr, rule = 2 / lr, "2/lr"
        elif nesterov:
            thr, rule = (2 + 2 * b) / (lr * (1 + 2 * b)), f"(2+2b)/(lr(1+2b)), Nesterov b={b:g}"
        elif d >= 1:
            # (1-d) = 0: after its first step the gradient never enters the velocity again.
            return None, f"momentum b={b:g} with dampening 1: no stability threshold", False
        elif d:
            thr, rule = (2 + 2 * b) / (lr * (1 - d)), f"(2+2b)/(lr(1-d)), momentum b={b:g}, dampening d={d:g}"
        else:
            thr, rule = (2 + 2 * b) / lr, f"(2+2b)/lr, momentum b={b:g}"
        if shift:
            thr -= shift
            rule = f"{rule}, minus weight decay/l2 {shift:g}: lambda_max + {shift:g} against the rule"
        return thr, rule, False
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


def _shift_vector(trainer, f: "LossFunction", params: dict[str, torch.Tensor], l2: float) -> torch.Tensor | None:
    """The diagonal the optimizer adds to the data loss's Hessian, flat: coupled weight decay
    on every parameter (none for AdamW's decoupled one), l2 on the penalised weights only;
    None when it is zero."""
    wd = hessian_shift(trainer.cfg.optimizer, 0.0)
    if not wd and not l2:
        return None
    penalised = {id(w) for w in getattr(trainer, "penalty_weights", [])}
    named = dict(trainer.model.named_parameters())
    return torch.cat(
        [
            torch.full((params[k].numel(),), wd + (l2 if id(named[k]) in penalised else 0.0), device=params[k].device)
            for k in f.names
        ]
    ).to(next(iter(params.values())).dtype)


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
    dict name -> [chunk, *shape], scaled so that their mean is the gradient of the trained
    loss on the whole probe batch.

    Each sample's gradient is J_i^T (n dL/dout_i): the model's vector-Jacobian product at
    that sample with n times the batch loss's gradient with respect to that sample's output
    (vmap over grad). For a plain mean-reduced loss this is the one-sample loss's gradient;
    for a class-weighted cross entropy (which divides by the sum of the batch's weights,
    so the weights would cancel in a one-sample loss) it is n w_i / sum(w) times it: the
    trained loss, class weights included. In eval mode a sample's output depends on its
    input alone, so the mean is the batch gradient exactly."""
    n = len(f.x)
    with torch.no_grad():
        out = functional_call(f.model, (params, f.buffers), (f.x,))
    dout = torch.func.grad(lambda o: f.loss_fn(o, f.y))(out.detach()) * n

    def one(p, x, d):
        return (functional_call(f.model, (p, f.buffers), (x.unsqueeze(0),)) * d.unsqueeze(0)).sum()

    g = vmap(grad(one), in_dims=(None, 0, 0))
    for i in range(0, n, chunk):
        yield g(params, f.x[i : i + chunk], dout[i : i + chunk])


def _moments(f: LossFunction, params: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """The per-sample gradients' mean and summed squared deviations (M2) per parameter, in
    float64, chunks merged by Chan et al.'s pairwise update: no |sum g|^2/n - sum g^2
    cancellation when the spread is small next to the mean."""
    mean = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in params.items()}
    m2 = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in params.items()}
    seen = 0
    for g in per_sample_grads(f, params):
        c = len(next(iter(g.values())))
        for k in params:
            gk = g[k].double()
            cm = gk.mean(0)
            delta = cm - mean[k]
            m2[k] += ((gk - cm) ** 2).sum(0) + delta**2 * (seen * c / (seen + c))
            mean[k] += delta * (c / (seen + c))
        seen += c
    return mean, m2


def gradient_noise(
    f: LossFunction,
    params: dict[str, torch.Tensor],
    layers: dict[str, list[str]],
    batch: int,
    population: int | None = None,
) -> dict[str, Any]:
    """Per layer and in all: |G|^2 and tr(Sigma) of the training set (`population` samples;
    the probe's n when None) estimated from the probe's n per-sample gradients, the SNR of
    a minibatch of `batch`, and B_simple = tr(Sigma)/|G|^2 (McCandlish et al. 2018).

    Sigma is the population covariance of the N per-sample gradients (divided by N), and a
    minibatch of B drawn without replacement has E|g_B|^2 = |G|^2 + tr(Sigma)/B (N-B)/(N-1).
    From the probe, drawn the same way: tr(Sigma) = (N-1)/N s^2 with s^2 the probe's
    unbiased (n-1) variance, and |G|^2 = |mean g|^2 - s^2 (1/n - 1/N), both unbiased and
    both exact when the probe is the whole training set (the correction is then 0: a
    full-batch run's |G|^2 is measured, not estimated). The SNR of a minibatch is |G|^2
    over its noise tr(Sigma)/B (N-B)/(N-1): None where the batch is the whole set (no noise)
    or |G|^2 is not above 0 (the mean gradient lost in the noise)."""
    n = len(f.x)
    pop = int(population or n)
    if pop < n:
        raise ValueError(f"gradient_noise: the probe has {n} samples, more than the population {pop}")
    mean, m2 = _moments(f, params)
    s2_scale = 1.0 / (n - 1) if n > 1 else 0.0
    fpc = (pop - batch) / (pop - 1) if pop > 1 and batch < pop else 0.0  # a minibatch's finite-population term
    out: dict[str, Any] = {"batch": batch, "samples": n, "population": pop, "full_batch": batch >= pop, "layers": {}}
    tot_g2 = tot_tr = 0.0
    for layer, names in layers.items():
        s2 = sum(float(m2[k].sum()) for k in names) * s2_scale
        tr = s2 * (pop - 1) / pop
        g2 = sum(float((mean[k] ** 2).sum()) for k in names) - s2 * (1 / n - 1 / pop)
        tot_g2, tot_tr = tot_g2 + g2, tot_tr + tr
        noise = tr / batch * fpc
        out["layers"][layer] = {
            "grad_sq": g2,
            "tr_sigma": tr,
            "snr": g2 / noise if noise > 0 and g2 > 0 else None,
        }
    out["grad_sq"], out["tr_sigma"] = tot_g2, tot_tr
    # |G|^2 estimated at or below 0: the noise swamps the mean gradient (B_simple is huge).
    out["b_simple"] = tot_tr / tot_g2 if tot_g2 > 0 else None
    return out


# ------------------------------------------------------------------ spectra


def spectrum(
    w: torch.Tensor, w0: torch.Tensor | None, init_var: float | None, edge: float | None = None
) -> dict[str, Any]:
    """A weight's singular values (as a matrix [out, everything else]) and what they say;
    mp_edge: `edge`, or else the random-matrix edge of iid entries of variance init_var."""
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
    if edge is None and init_var is not None and init_var > 0:
        edge = math.sqrt(init_var) * (math.sqrt(m.shape[0]) + math.sqrt(m.shape[1]))
    if edge:
        out["mp_edge"] = edge
    return out


def _named_matrices(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module, torch.Tensor]]:
    """(name, layer, matrix) for every weight matrix of the init targets: a one-matrix layer's
    under the layer's name (fc1), a recurrent cell's W_ih and W_hh (whole, the gates stacked:
    the matrices the init schemes draw) under their parameter names (lstm.l0.W_hh)."""
    from dlx.components.models.base import layer_weights

    out = []
    for name, layer in model.init_targets():
        ws = layer_weights(layer)
        if len(ws) == 1:
            out.append((name, layer, ws[0]))
            continue
        own = {id(p): n for n, p in layer.named_parameters(recurse=False)}
        out += [(f"{name}.{own.get(id(w), i)}", layer, w) for i, w in enumerate(ws)]
    return out


def weight_matrices(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every weight matrix of the probed layers, the recurrent one included (its W_hh decides
    vanishing and exploding through time): the matrices whose spectra are measured."""
    return {name: w for name, _, w in _named_matrices(model)}


def weight_spectra(
    model: torch.nn.Module, init, init_weights: dict[str, torch.Tensor] | None
) -> dict[str, dict[str, Any]]:
    """spectrum() of every weight matrix, against the largest singular value the init scheme
    `init` would draw for it: s (sqrt(m) + sqrt(n)) for iid entries of the variance the scheme
    gives that matrix of that layer (a recurrent cell's default is its own U(+-1/sqrt(hidden)),
    not Linear's 1/(3 fan_in)); exactly the gain for orthogonal, whose singular values all are."""
    from dlx.run.initcheck import weight_moments

    scheme = getattr(type(init), "registry_name", getattr(init, "name", None))
    spectra = {}
    for name, layer, w in _named_matrices(model):
        w0 = init_weights.get(name) if init_weights else None
        try:
            # from_file's variance is the loaded weights' own: those at init, where they are kept.
            _, var, _ = weight_moments(init, w0 if w0 is not None else w, layer)
        except Exception:  # noqa: BLE001  (a scheme without a variance: no expected edge)
            var = None
        edge = float(init.gain) if scheme == "orthogonal" else None
        spectra[name] = spectrum(w, w0, var, edge)
    return spectra


# ------------------------------------------------------------------ the callback


class Instruments:
    """A trainer callback: at log steps `every` apart (step 0 included), the configured
    instruments on the probe batch; each record goes to the callbacks as on_instruments
    (History keeps it, RunWriter writes instruments.jsonl). With every: auto the interval
    is about a twentieth of the run, step 0 and the run's last step are always measured,
    and one in between waits until the training has taken at least as long as the
    instruments so far, the next one and the last one (reserved) together: the
    instruments take no longer than the training, unless the step-0 and last measurements
    alone do (a measurement dearer than the whole run: then those two are all)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.next_step = 0
        self.init_weights: dict[str, torch.Tensor] | None = None
        self.forward_mode = True  # see LossFunction.hvp
        self._spent = 0.0  # seconds the instruments took (this session)
        self._last_cost = 0.0
        self._t0: float | None = None

    # -- the trainer's events
    def check(self, trainer) -> None:
        """A SpecError where this run cannot be measured as configured: called as the trainer
        is built, so `dlx validate` says it too, with the key's YAML line, before any step."""
        if getattr(self.cfg, "modes", False):
            why = modes_problem(trainer)
            if why is not None:
                from dlx.core.errors import SpecError

                raise SpecError(MODES_PATH, why)

    def on_start(self, trainer):
        if trainer.step == 0 or self.init_weights is None:
            self.init_weights = {n: w.detach().clone() for n, w in weight_matrices(trainer.model).items()}
        self._t0 = time.perf_counter()
        if trainer.step == 0:
            self._measure(trainer)

    def on_interval(self, trainer, record):
        if record.get("diverged"):
            return
        if self.cfg.every == "auto":
            if trainer.step >= trainer.total_steps:
                self._measure(trainer)  # the end: what the digest reports "at the end"
                return
            if trainer.step < self.next_step:
                return
            # The budget: the instruments so far, this one and the last one (reserved) take
            # no longer than the training did.
            trained = time.perf_counter() - self._t0 - self._spent
            if self._spent + 2 * self._last_cost > trained:
                return
        elif trainer.step < self.next_step:
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
        "total_steps": trainer.total_steps,  # the digest tells the end from the last measurement
        "lr": lr,
        "probe_batch": n,  # the first n training samples
        "train_samples": len(data.x_train),
        "mode": "eval (dropout off, batch norm with its running statistics), data loss only",
        "parameters": dim,
        "seconds": {},
    }
    try:
        if cfg.sharpness or cfg.trace:
            l2 = float(trainer.cfg.regularization.l2 or 0.0)
            thr, rule, pre = threshold(trainer.cfg.optimizer, lr, l2)
            full = trainer.batch_size >= len(data.x_train)
            if not full:
                rule += "; a full-batch rule: with minibatch steps only an indication"
            scale = shift = None
            if pre:
                named = dict(model.named_parameters())
                scale = _preconditioner(trainer.optimizer, [named[k] for k in f.names], trainer.cfg.optimizer)
                shift = _shift_vector(trainer, f, params, l2)

            def hv(v: torch.Tensor, scale=None, shift=None) -> torch.Tensor:
                if scale is not None:
                    v = v * scale
                out = _flat(f.hvp(params, _unflat(v, params, f.names)), f.names).detach()
                if shift is not None:  # weight decay / l2: the optimizer descends H + diag(shift)
                    out = out + shift * v
                return out * scale if scale is not None else out

            if cfg.sharpness:
                t = time.perf_counter()
                top = lanczos(hv, dim, cfg.lanczos, gen, dev)
                top.pop("ritz")
                sharp = {
                    **top,
                    "threshold": thr,
                    "rule": rule,
                    "preconditioned": False,
                    "shift": hessian_shift(trainer.cfg.optimizer, l2),
                    "full_batch": full,
                }
                if scale is not None:  # the preconditioned sharpness is the one the threshold is for
                    pre_top = lanczos(lambda v: hv(v, scale, shift), dim, cfg.lanczos, gen, dev)
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
            rec["noise"] = gradient_noise(f, params, _layers(f, trainer), bs, len(data.x_train))
            rec["seconds"]["noise"] = time.perf_counter() - t
        if getattr(cfg, "modes", False):
            t = time.perf_counter()
            rec["modes"] = mode_strengths(model, trainer.data.teacher)
            rec["seconds"]["modes"] = time.perf_counter() - t
        if cfg.spectra:
            t = time.perf_counter()
            rec["spectra"] = weight_spectra(model, trainer.cfg.init, init_weights)
            rec["seconds"]["spectra"] = time.perf_counter() - t
    finally:
        model.train(was_training)
        if memo is not None:
            memo.forward_mode = f.forward_mode
    return rec


# What they say: dlx.run.instrument_notes (torch-free); digest kept importable from here.
from dlx.run.instrument_notes import digest  # noqa: E402, F401

"""The init-theory check: at step 0, each layer's pre-activation variance against the theory.

Theory. A linear layer y = W x + b whose weights W_ij are drawn iid with
variance s^2 (and b = 0) gives every unit i

    Var(y_i) = sum_j Var(W_ij) x_j^2 = fan_in * s^2 * E[x^2]

over the draw of W, where E[x^2] is the mean square of the layer's input (its
second moment, not its variance: a ReLU's output has a positive mean, and that
mean is part of the signal). A conv layer is the same sum over one patch:
fan_in = in_channels/groups * kh * kw (zero padding counts as zeros). The init
scheme fixes s^2:

    xavier_uniform / xavier_normal   gain^2 * 2/(fan_in + fan_out)
    kaiming_* / he_* (fan_in mode)   gain^2/fan_in, gain^2 = 2 for relu, 2/(1+a^2) leaky_relu
    lecun_normal                     1/fan_in
    normal(mean, std)                std^2             (the mean moves every unit alike)
    uniform(low, high)               (high - low)^2/12
    default (PyTorch's own)          1/(3 * fan_in)    (kaiming_uniform with a = sqrt(5))
      a recurrent cell's W_ih, W_hh  1/(3 * hidden)    (U(+-1/sqrt(hidden)), PyTorch's RNN/LSTM/GRU)
    orthogonal                       gain^2/max(fan_in, fan_out)  (unit-norm rows or columns)
    zeros / constant                 0: all units of a layer are identical
    from_file                        the loaded weights' own variance

Measured: the variance of W x across a layer's units (across channels for a
conv), within each sample and position, averaged over the batch. That is the
spread the theory is about, and it is exactly 0 when all units are identical.
The bias is a known constant per unit, so it is taken out (y - b) rather than
predicted: PyTorch's default bias is random, the other schemes set one value.
The prediction uses the *measured* E[x^2] of the layer's own input, so an error
in one layer does not compound into the next: each row tests one layer. The
measurement is one draw of W, so the agreement allowed is OK_FACTOR, or the
draw's own noise where that is larger (few units, or an input of low effective
rank: see NOISE_Z).

Propagation. Through the activation f, the next layer's input has
E[x_l^2] = E[f(z)^2] with z ~ N(mean of the biases, Var(y_{l-1}) + the biases'
spread) (the mean-field view: a wide layer's pre-activations are nearly
Gaussian across its units), so the variance ratio ("gain") is

    Var(y_l) / Var(y_{l-1}) = fan_in * s^2 * E[f(z)^2] / Var(y_{l-1})

E[f(z)^2] / Var(z) = 1/2 for relu (half the units are off) at any scale, 1 for
identity, and for tanh close to 1 near 0 but falling as z grows (0.9 at Var
0.06, 0.39 at Var 1: tanh compresses). E[f(z)^2] is integrated numerically for
the configured activation (mean_square), sample by sample at each one's own
measured Var(y_{l-1}), and averaged. It is the second moment, not Var(f(z)),
that the next layer's spread needs (see Theory): a sigmoid's 1/4 from its
mean is most of it. So Xavier
(fan_in * s^2 = 1 for equal widths) keeps the gain ~1 for tanh near 0 but
halves the variance per layer under ReLU; He (s^2 = 2/fan_in) keeps it 1 for
ReLU; N(0, 1) multiplies it by fan_in * c (until tanh saturates). The gain is
given only where a layer's input is the previous checked layer's output,
directly or through the activation alone: a norm, pool, dropout or skip
connection in between changes it, and those rows show none.

Models: Linear and Conv2d layers are checked (MLP, CNN, ResNet, and the linear
maps inside attention). A recurrent layer carries a state through time with
two matrices; this per-layer formula does not describe it, and its row says
"not applicable" rather than giving a made-up number. Its row still says what
the scheme drew (rule; s^2 where W_ih and W_hh share one, both in the note): the
schemes set each whole matrix (the gates stacked) with its own fans, and
`default` keeps the cell's U(+-1/sqrt(hidden)), not Linear's 1/(3 fan_in).
"""

from __future__ import annotations

import contextlib
import copy
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Beyond this pre-activation std a saturating activation's derivative is under ~10% of its
# peak: a fact of each activation (its spec's saturating_std), read here by name.
from dlx.components.activations import SATURATING_STD

# The check runs on this many training samples: Var(y) for a fixed W is an average
# over the batch, and 256 samples pin the batch part of it to a few percent.
INIT_BATCH = 256
# A measured variance within this factor of the prediction agrees with the theory;
# a scheme off by 2x (xavier where He is meant) still shows ...
OK_FACTOR = 1.5
# ... unless the measurement's own noise allows more. The measurement is one draw
# of W: a unit's mean square w_i^T M w_i (M = E[x x^T] of its input) varies like a
# chi-square with r degrees of freedom, r = tr(M)^2 / tr(M^2) the input's effective
# rank, so measured/predicted is about chi-square(k)/k with k = (units - 1) * r.
# Its quantiles at NOISE_Z standard normal deviations (Wilson-Hilferty) bound the
# noise: k = 8 (a 3-class output fed by a rank-4 representation) allows
# 0.06x-3.8x, k = 86 (32 units, rank 2.8) 0.55x-1.6x, and 64 units fed by a rich
# input stay within OK_FACTOR. 3.5 sigma: one row in ~4000 of a healthy net is
# flagged by chance.
NOISE_Z = 3.5
# Below this many degrees of freedom k one draw says too little to test the theory:
# the noise alone spans more than 60x (k = 8: 0.06x-3.8x), and a 2-class output fed
# by a nearly rank-1 representation has k ~ 1.
MIN_DOF = 8.0
# The effective rank is estimated from at most this many input rows (a conv: the
# patches of at most RANK_IMAGES samples).
RANK_ROWS, RANK_IMAGES = 512, 16
# A gain within this factor of 1 keeps the signal's scale; beyond it the variance
# grows or shrinks geometrically with depth (1.5^10 = 58 over ten layers).
KEEP_FACTOR = 1.5
# Below this fraction of W x's mean square, a spread across units is rounding
# error: the units are identical.
IDENTICAL_REL = 1e-10
# E[f(z)^2] for z ~ N(m, v) is integrated in t = (z - m)/sqrt(v) over [-TAIL_SD, TAIL_SD]
# (the normal mass beyond 12 sd is ~4e-33) by composite Gauss-Legendre in float64,
# GL_NODES per panel. Panels: EVEN_PANELS equal ones for the normal's own scale, and
# GRADED_PANELS a side graded geometrically (from GRADED_MIN) away from z = 0, where every
# registered activation has its kink (relu, elu, softsign's |z|) or its transition (tanh,
# sigmoid: width 1 in z, 1/sqrt(v) in t). 64-node Gauss-Hermite, used before, cannot resolve
# a transition much narrower than its node spacing: tanh's c came out 6.1% high at v = 100,
# softsign's 2.7%, sigmoid's 1.1% (against a 2e5-point trapezoid). These panels agree with
# that trapezoid to < 1e-8 for every registered activation, v = 1e-3..1e4 (test_initcheck).
TAIL_SD, GL_NODES, EVEN_PANELS, GRADED_PANELS, GRADED_MIN = 12.0, 8, 48, 40, 1e-6
_GL_T, _GL_W = np.polynomial.legendre.leggauss(GL_NODES)
# The gain's E[x^2] averages E[f(z)^2] over the previous layer's rows (samples; a conv's
# positions), each with its own variance across units: a sample's variance follows its
# input's norm (chi-square spread), and f(z)^2 is not linear in it (tanh saturates), so
# one pooled variance misses by a few percent. E[f(z)^2] is integrated at GAIN_GRID
# variances spanning the rows' and interpolated in log-log (exact for relu's v/2, and
# smooth elsewhere). Where W x has a mean of its own across units (a scheme with a weight
# mean), each row's (mean, variance) is integrated, for at most GAIN_ROWS rows drawn by a
# fixed seed (a stride would alias with a conv's positions: every 100th row of a 10x10
# map is its padded corner).
GAIN_GRID, GAIN_ROWS = 64, 1024

VERDICTS = (
    "ok",
    "kept",
    "grows",
    "shrinks",
    "higher than theory",
    "lower than theory",
    "identical units",
    "no input signal",
    "too few units",
    "overflow",
    "not applicable",
)


def _name(spec) -> str:
    """A spec's registry name (an alias given in the YAML maps to it)."""
    return getattr(type(spec), "registry_name", spec.name)


@torch.no_grad()
def mean_square(activation: nn.Module, mean, var) -> np.ndarray:
    """E[f(z)^2] for z ~ N(mean, var), elementwise over arrays of means and variances (float64)."""
    mean, var = np.broadcast_arrays(np.atleast_1d(np.asarray(mean, float)), np.atleast_1d(np.asarray(var, float)))
    sd = np.sqrt(np.maximum(var, 1e-300))[:, None]
    kink = np.clip(-mean[:, None] / sd, -TAIL_SD, TAIL_SD)  # z = 0 in t
    steps = np.geomspace(GRADED_MIN, 2 * TAIL_SD, GRADED_PANELS)
    edges = np.concatenate(
        [
            np.broadcast_to(np.linspace(-TAIL_SD, TAIL_SD, EVEN_PANELS + 1), (len(mean), EVEN_PANELS + 1)),
            kink,
            np.clip(kink - steps, -TAIL_SD, TAIL_SD),
            np.clip(kink + steps, -TAIL_SD, TAIL_SD),
        ],
        axis=1,
    )
    edges.sort(axis=1)  # [R, P + 1]; panels of zero width (clipped edges) weigh nothing
    half = np.diff(edges, axis=1)[..., None] / 2  # [R, P, 1]
    t = (edges[:, :-1, None] + edges[:, 1:, None]) / 2 + half * _GL_T  # [R, P, GL_NODES]
    w = half * _GL_W * np.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    f = copy.deepcopy(activation).double()  # float64 all through (prelu's slope too)
    fz = f(torch.from_numpy(mean[:, None, None] + sd[..., None] * t).reshape(-1, 1)).reshape(t.shape).numpy()
    return (w * fz * fz).sum(axis=(1, 2))


def chi2_ratio_bounds(k: float, z: float) -> tuple[float, float]:
    """chi-square(k)/k at -z and +z standard deviations (Wilson-Hilferty's cube-root normal)."""
    a = 2.0 / (9.0 * k)
    return max(0.0, 1 - a - z * math.sqrt(a)) ** 3, (1 - a + z * math.sqrt(a)) ** 3


def _fans(w: torch.Tensor) -> tuple[int, int]:
    """PyTorch's fans: fan_in = w[0].numel(), fan_out = out * receptive field."""
    receptive = w[0][0].numel() if w.dim() > 2 else 1
    return w[0].numel(), w.shape[0] * receptive


def _recurrent_hidden(layer: nn.Module | None) -> int | None:
    """The state size of a recurrent cell (whose own init is U(+-1/sqrt(hidden))), else None."""
    from dlx.components.models.recurrent import RecurrentLayer

    return layer.hidden if isinstance(layer, RecurrentLayer) else None


OWN_VARIANCE = "the weights' own variance"


def weight_moments(spec, w: torch.Tensor, layer: nn.Module | None = None) -> tuple[float, float, str]:
    """(mean, variance s^2, rule) of the weights the init scheme `spec` draws for matrix w
    of `layer`, its scale alpha included (mean x alpha, variance x alpha^2). The layer
    matters only to `default`, which keeps the layer's own init: a recurrent cell's is
    U(+-1/sqrt(hidden)) for W_ih and W_hh alike, whatever their fans."""
    mean, var, rule = _scheme_moments(spec, w, layer)
    a = float(getattr(spec, "scale", 1.0))
    if a == 1.0 or rule == OWN_VARIANCE:  # the weights' own statistics: alpha already in them
        return mean, var, rule
    return mean * a, var * a * a, f"{a:g}^2 * {rule}"


def _scheme_moments(spec, w: torch.Tensor, layer: nn.Module | None) -> tuple[float, float, str]:
    name = _name(spec)
    fan_in, fan_out = _fans(w)
    if name == "zeros":
        return 0.0, 0.0, "0 (all units identical)"
    if name == "constant":
        return float(spec.value), 0.0, f"0 (every weight {spec.value:g}: units identical)"
    if name == "normal":
        return float(spec.mean), spec.std**2, f"std^2 = {spec.std:g}^2"
    if name == "uniform":
        return (spec.low + spec.high) / 2, (spec.high - spec.low) ** 2 / 12, "(high-low)^2/12"
    if name in ("xavier_uniform", "xavier_normal"):
        g = "" if spec.gain == 1 else f"{spec.gain:g}^2 * "
        return 0.0, spec.gain**2 * 2.0 / (fan_in + fan_out), g + "2/(fan_in+fan_out)"
    if name in ("kaiming_uniform", "kaiming_normal"):
        gain2 = torch.nn.init.calculate_gain(spec.nonlinearity, spec.a) ** 2
        fan = fan_in if spec.mode == "fan_in" else fan_out
        return 0.0, gain2 / fan, f"{gain2:.3g}/{spec.mode} ({spec.nonlinearity})"
    if name == "lecun_normal":
        return 0.0, 1.0 / fan_in, "1/fan_in"
    if name == "orthogonal":
        g = "1" if spec.gain == 1 else f"{spec.gain:g}^2"
        return 0.0, spec.gain**2 / max(w.shape[0], fan_in), g + "/max(fan_in, fan_out)"
    if name == "default":
        hidden = _recurrent_hidden(layer)
        if hidden:
            return 0.0, 1.0 / (3 * hidden), "1/(3 hidden) (PyTorch's recurrent default)"
        return 0.0, 1.0 / (3 * fan_in), "1/(3 fan_in) (PyTorch default)"
    # from_file, or a scheme added later: the theory with the weights' own statistics.
    wd = w.detach().double()
    return float(wd.mean()), float(wd.var(unbiased=False)), OWN_VARIANCE


class _Layer:
    """What the forward hooks collect for one checked layer (summed over its calls)."""

    def __init__(self, index: int):
        self.index = index
        self.calls = 0
        self.patch_sq = 0.0  # sum over one unit's fan_in inputs of x^2, summed over rows
        self.unit_var = 0.0  # variance of W x across units, summed over rows
        self.mean_sq = 0.0  # mean square of W x, summed over rows
        self.rows = 0  # samples (x positions, for a conv or a sequence)
        self.measured = 0.0  # Var(W x) across units, averaged over rows
        self.link: str | None = None  # "direct" | "activation": fed by the previous layer
        self.rank = 0.0  # effective rank of the input (first call)
        self.feeds_activation = False
        # W x across units, per row of the first call: its mean and variance, for the next
        # layer's predicted gain; and the layer's weight mean, bias mean and bias spread (set by _rows).
        self.u_mean: np.ndarray | None = None
        self.u_var: np.ndarray | None = None
        self.w_mean = self.b_mean = self.b_var = 0.0


def _patch_square_sum(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """sum over one unit's fan_in inputs of x^2, per output row (sample, position)."""
    x = x.detach().double()  # float64: a too-large init's squares overflow float32 long before its values do
    if isinstance(layer, nn.Conv2d):
        # Each output channel sums x^2 over its group's channels in one window.
        sq = x.square().sum(1, keepdim=True)
        ones = torch.ones(1, 1, *layer.kernel_size, device=x.device, dtype=x.dtype)
        return (F.conv2d(sq, ones, None, layer.stride, layer.padding, layer.dilation) / layer.groups).flatten()
    return x.square().sum(-1).flatten()


def _effective_rank(layer: nn.Module, x: torch.Tensor) -> float:
    """tr(M)^2 / tr(M^2) for M = E[x x^T] over one unit's fan_in inputs (a conv: one patch)."""
    x = x.detach().double()
    if isinstance(layer, nn.Conv2d):
        xs = x[:RANK_IMAGES, : x.shape[1] // layer.groups]
        pad = layer.padding if isinstance(layer.padding, tuple) else 0  # 'same'/'valid': near enough
        rows = F.unfold(xs, layer.kernel_size, layer.dilation, pad, layer.stride).transpose(1, 2)
        rows = rows.reshape(-1, rows.shape[-1])
    else:
        rows = x.reshape(-1, x.shape[-1])
    rows = rows[:: max(1, len(rows) // RANK_ROWS)][:RANK_ROWS]
    gram = rows @ rows.T  # tr(M^2) from the n x n Gram matrix: n <= RANK_ROWS however wide x is
    sq = float(gram.square().sum())
    return float(gram.diagonal().sum()) ** 2 / sq if 0 < sq < math.inf else 0.0


def _units(layer: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """Outputs as [rows, units]: a conv's channels at each (sample, position)."""
    y = y.detach().double()
    if isinstance(layer, nn.Conv2d):
        return y.flatten(2).transpose(1, 2).reshape(-1, y.shape[1])
    return y.reshape(-1, y.shape[-1])


def _checkable(module: nn.Module) -> bool:
    from dlx.components.models.base import layer_weights

    return isinstance(module, (nn.Linear, nn.Conv2d)) and len(layer_weights(module)) == 1


@torch.no_grad()
def init_check(model: nn.Module, x_batch: torch.Tensor, cfg) -> list[dict[str, Any]]:
    """One row per init target layer, input first (plain JSON values, for summary.json):

    layer, fan_in, fan_out, scheme, rule (s^2's formula), weight_var (s^2), input_sq (E[x^2]
    of its input), predicted_var, measured_var (of W x across units), ratio (measured /
    predicted), allowed ([low, high]: the ratios this layer's noise allows), input_rank,
    predicted_gain and measured_gain (Var(y) / the previous layer's), verdict (one of
    VERDICTS) and note (why, or None). Numbers a row cannot have are None.

    Runs one forward pass of x_batch in training mode (what step 0 sees: batch norm
    uses the batch's statistics). The model's parameters, buffers (batch-norm running
    statistics), mode and the random streams (dropout masks) are left as they were,
    so a run with the check trains exactly as one without.
    """
    targets = model.init_targets()
    checked = {id(m): _Layer(i) for i, (_, m) in enumerate(targets) if _checkable(m)}
    by_index = {st.index: st for st in checked.values()}
    # Tensors are tagged with the index of the layer that made them, so a layer can
    # tell whether its input came straight from the previous one (or through its activation).
    tag_out, tag_act = "_dlx_initcheck_layer", "_dlx_initcheck_act"

    def layer_hook(module, inp, out):
        st = checked[id(module)]
        x = inp[0]
        if st.calls == 0:
            prev = st.index - 1
            if getattr(x, tag_out, None) == prev:
                st.link = "direct"
            elif getattr(x, tag_act, None) == prev:
                st.link = "activation"
            st.rank = _effective_rank(module, x)
        st.calls += 1
        u = _units(module, out)
        if module.bias is not None:
            u = u - module.bias.detach().double()  # W x: the bias is known, not predicted
        if st.calls == 1 and u.shape[1] > 1:
            st.u_mean, st.u_var = u.mean(1).cpu().numpy(), u.var(1, unbiased=True).cpu().numpy()
        st.patch_sq += float(_patch_square_sum(module, x).sum())
        st.mean_sq += float(u.square().mean(1).sum())
        if u.shape[1] > 1:
            st.unit_var += float(u.var(1, unbiased=True).sum())
        st.rows += u.shape[0]
        setattr(out, tag_out, st.index)

    def act_hook(module, inp, out):
        src = getattr(inp[0], tag_out, None) if inp else None
        if src is not None:
            by_index[src].feeds_activation = True
            if out is not inp[0]:  # an identity activation passes the layer's own tensor on
                setattr(out, tag_act, src)

    hooks = [m.register_forward_hook(layer_hook) for _, m in targets if id(m) in checked]
    hooks += [m.register_forward_hook(act_hook) for _, m in model.activation_modules()]
    with _left_as_it_was(model, x_batch.device, hooks):
        model(x_batch)
    return _rows(targets, checked, cfg)


@contextlib.contextmanager
def _left_as_it_was(model: nn.Module, device: torch.device, hooks: list):
    """A pass at step 0 in training mode (what the first step sees: batch norm uses the batch's
    statistics) that leaves the run as it was: the hooks removed, the buffers (batch norm's
    running statistics), the mode and every parameter's .grad restored, and the random streams
    untouched (dropout draws from a forked one, so the run's masks stay its own)."""
    params = list(model.parameters())
    grads = [p.grad for p in params]
    buffers = [b.clone() for b in model.buffers()]
    was_training = model.training
    try:
        model.train()
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            yield
    finally:
        for h in hooks:
            h.remove()
        for p, g in zip(params, grads):
            p.grad = g
        with torch.no_grad():
            for b, saved in zip(model.buffers(), buffers):
                b.copy_(saved)
        model.train(was_training)


def _rows(targets, checked: dict[int, _Layer], cfg) -> list[dict[str, Any]]:
    from dlx.components.models.base import layer_biases, layer_weights
    from dlx.components.models.mlp import DropConnectLinear

    activation = cfg.activation.build(1)
    act_name = _name(cfg.activation)
    scheme = _name(cfg.init)
    rows: list[dict[str, Any]] = []
    prev: _Layer | None = None  # the previous checked layer, where its Var(W x) > 0
    for name, module in targets:
        ws = layer_weights(module)
        row: dict[str, Any] = {
            "layer": name,
            "fan_in": None,
            "fan_out": None,
            "scheme": scheme,
            "rule": None,
            "weight_var": None,
            "input_sq": None,
            "predicted_var": None,
            "measured_var": None,
            "ratio": None,
            "allowed": None,
            "input_rank": None,
            "predicted_gain": None,
            "measured_gain": None,
            "verdict": "not applicable",
            "note": None,
        }
        rows.append(row)
        last, prev = prev, None
        st = checked.get(id(module))
        if st is None:
            row["note"] = (
                f"{type(module).__name__} with {len(ws)} weight matrices carries a state through "
                f"time: not one linear map of its input"
                if len(ws) > 1
                else f"{type(module).__name__} is not a Linear or Conv2d layer"
            )
            if len(ws) > 1:
                # No prediction, but what was drawn is a fact the table's title and note show.
                rule, s2, drawn = _matrices_law(cfg.init, module, ws)
                row.update(rule=rule, weight_var=s2)
                row["note"] += f"; drawn with s^2 = {drawn}"
            continue
        w = ws[0]
        fan_in, fan_out = _fans(w)
        mean, s2, rule = weight_moments(cfg.init, w)
        if isinstance(module, DropConnectLinear) and module.p:
            # Training drops weights and scales the rest by 1/(1-p): E[w'^2] = E[w^2]/(1-p).
            s2 = (s2 + mean * mean) / (1 - module.p) - mean * mean
            rule += f", dropconnect: /(1-{module.p:g})"
        row.update(fan_in=fan_in, fan_out=fan_out, rule=rule, weight_var=s2)
        if st.calls == 0:
            row["note"] = "not called as a module in the forward pass"
            continue
        b = (layer_biases(module) or [None])[0]
        b_var = float(b.detach().double().var(unbiased=True)) if b is not None and b.numel() > 1 else 0.0
        st.measured = st.unit_var / st.rows
        st.w_mean, st.b_var = mean, b_var
        st.b_mean = float(b.detach().double().mean()) if b is not None else 0.0
        input_sq = st.patch_sq / st.rows / fan_in
        predicted = fan_in * s2 * input_sq
        row.update(input_sq=input_sq, predicted_var=predicted, input_rank=st.rank)
        measured = st.measured
        if not (math.isfinite(predicted) and math.isfinite(measured)):
            row["verdict"] = "overflow"
            row["note"] = "the forward pass overflows (inf/NaN) by here: the init is far too large"
            continue
        if w.shape[0] < 2:
            row["note"] = "one unit: no spread across units to measure"
            continue
        row["measured_var"] = measured
        row["ratio"] = measured / predicted if predicted > 0 else None
        dof = (w.shape[0] - 1) * st.rank
        if dof > 0:
            lo, hi = chi2_ratio_bounds(dof, NOISE_Z)
            row["allowed"] = [min(1 / OK_FACTOR, lo), max(OK_FACTOR, hi)]
        if st.calls == 1 and st.link and last is not None and last.u_var is not None:
            # This layer's input is f(z), z = W x + b of the layer before. Across that layer's
            # units z is nearly Gaussian (a wide layer: the mean-field view), per row with
            # variance Var(W x) (measured there, row by row: see GAIN_ROWS) plus the biases'
            # spread, and mean the biases' mean (a bias of 0.5 moves tanh's E[f(z)^2] far more
            # than Var(z) does; it was left out before, and a wide tanh layer's gain came out
            # 4.4 predicted against 15.6 measured). W x's own mean across units is the weight
            # mean times the input's sum: 0 in theory for zero-mean schemes (what one draw
            # shows is its noise), measured otherwise. So E[x^2] = mean over rows of E[f(z)^2]
            # (computed, not assumed: a sigmoid's E[x^2] is mostly its mean, 1/4), and
            # Var(y) = fan_in * s^2 * E[x^2].
            v = last.measured
            f = None if st.link == "direct" else activation
            row["predicted_gain"] = fan_in * s2 * _input_square(f, last) / v
            row["measured_gain"] = measured / v
        row["verdict"], row["note"] = _verdict(row, s2, b_var, st.mean_sq / st.rows, w.shape[0], dof)
        notes = [row["note"]] if row["note"] else []
        sat = SATURATING_STD.get(act_name)
        if sat and st.feeds_activation and measured > sat * sat:
            notes.append(f"pre-activation std {math.sqrt(measured):.2g}: {act_name} saturates beyond ~{sat:g}")
        if st.calls > 1:
            notes.append(f"called {st.calls} times per forward pass: statistics over all calls")
        row["note"] = "; ".join(notes) or None
        prev = st if measured > 0 else None
    # Plain JSON, as summary.json will hold it: an overflow's inf/NaN become None.
    return [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.items()} for r in rows]


def _matrices_law(spec, module: nn.Module, ws: list[torch.Tensor]) -> tuple[str, float | None, str]:
    """A layer with several weight matrices (a recurrent cell's W_ih, W_hh): (the rules, the
    s^2 they share or None where they differ, each matrix's s^2 by its parameter name)."""
    names = {id(p): n for n, p in module.named_parameters(recurse=False)}
    laws = [(names.get(id(w), f"weight {i}"), *weight_moments(spec, w, module)) for i, w in enumerate(ws)]
    rule = "; ".join(dict.fromkeys(r for *_, r in laws))
    s2s = [s2 for _, _, s2, _ in laws]
    shared = s2s[0] if all(math.isclose(s, s2s[0], rel_tol=1e-12) for s in s2s) else None
    return rule, shared, ", ".join(f"{n} {s2:.3g}" for n, _, s2, _ in laws)


def _input_square(activation: nn.Module | None, st: _Layer) -> float:
    """E[f(z)^2] averaged over the rows of layer st's pre-activations z (f None: the identity)."""
    z_var = st.u_var + st.b_var
    if st.w_mean:
        z_mean = st.b_mean + st.u_mean
        if activation is None:
            return float(np.mean(z_mean**2 + z_var))
        pick = np.random.default_rng(0).permutation(len(z_var))[:GAIN_ROWS]
        return float(np.mean(mean_square(activation, z_mean[pick], z_var[pick])))
    if activation is None:
        return st.b_mean**2 + float(np.mean(z_var))
    hi = float(z_var.max())
    lo = max(float(z_var.min()), hi * 1e-12)
    grid = np.geomspace(lo, hi, GAIN_GRID) if hi > lo else np.array([hi])
    sq = mean_square(activation, st.b_mean, grid)
    if len(grid) == 1:
        return float(sq[0])
    # log-log where E[f(z)^2] > 0 (relu with a large negative bias can reach 0: linear then).
    if (sq > 0).all():
        return float(np.mean(np.exp(np.interp(np.log(np.maximum(z_var, lo)), np.log(grid), np.log(sq)))))
    return float(np.mean(np.interp(z_var, grid, sq)))


def _verdict(row: dict, s2: float, b_var: float, mean_sq: float, units: int, dof: float) -> tuple[str, str | None]:
    measured, predicted, ratio, allowed = row["measured_var"], row["predicted_var"], row["ratio"], row["allowed"]
    if s2 == 0:
        if measured <= IDENTICAL_REL * mean_sq:
            return "identical units", (
                "every unit computes the same value"
                if b_var == 0
                else "every unit has the same weights; only the biases differ"
            )
        return "higher than theory", "the scheme makes the units' weights identical, yet they differ"
    if predicted == 0 or allowed is None:
        return "no input signal", "the layer's input is all zeros"
    if dof < MIN_DOF:
        return "too few units", (
            f"{units} units fed by an input of effective rank {row['input_rank']:.2g}: one draw of W says too little"
        )
    lo, hi = allowed
    if not lo <= ratio <= hi:
        return (
            "lower" if ratio < 1 else "higher"
        ) + " than theory", f"measured {ratio:.2g}x the prediction (allowed: {lo:.2g}x to {hi:.2g}x)"
    noisy = None
    if not 1 / OK_FACTOR <= ratio <= OK_FACTOR:
        noisy = f"{ratio:.2g}x is within this layer's noise ({lo:.2g}x to {hi:.2g}x: few units or a low-rank input)"
    gain = row["predicted_gain"]
    if gain is None:
        return "ok", noisy
    # The theory's gain, not the measured one: the measurement agrees with the theory
    # (above), and one draw's noisy gain would call a healthy He + ReLU layer "grows".
    if gain > KEEP_FACTOR:
        return "grows", noisy
    if gain < 1 / KEEP_FACTOR:
        return "shrinks", noisy
    return "kept", noisy


def gradient_variances(model: nn.Module, x_batch: torch.Tensor, y_batch: torch.Tensor, loss_fn) -> list[float | None]:
    """Per init target (input first): Var(dL/dy) across the units of the layer's output y = W x + b
    at step 0, averaged over rows (samples, positions), from one backward pass of the data loss;
    None for a layer that is not checked (init_check's) or has one unit.

    Glorot & Bengio's backward half: through a layer the back-propagated gradient's variance is
    multiplied by fan_out Var(W) E[f'(z)^2] (1/3 a layer for U(+-1/sqrt(n)) near tanh's middle).
    Parameters' .grad, buffers, mode and the random streams are left as they were."""
    targets = model.init_targets()
    seen: dict[int, float] = {}

    def watch(j: int, layer: nn.Module):
        def hook(module, inp, out):
            if out.requires_grad:

                def keep(grad):
                    u = _units(layer, grad)
                    if u.shape[1] > 1:  # a layer called twice keeps its first call's (the loss's last)
                        seen.setdefault(j, float(u.var(1, unbiased=True).mean()))

                out.register_hook(keep)

        return hook

    hooks = [m.register_forward_hook(watch(j, m)) for j, (_, m) in enumerate(targets) if _checkable(m)]
    with _left_as_it_was(model, x_batch.device, hooks), torch.enable_grad():
        for p in model.parameters():
            p.grad = None  # restored after: the pass's gradients are not the run's
        loss_fn(model(x_batch), y_batch).backward()
    return [seen.get(j) if math.isfinite(seen.get(j, math.nan)) else None for j in range(len(targets))]


def add_gradient_gains(rows: list[dict[str, Any]], variances: list[float | None]) -> list[dict[str, Any]]:
    """Each row gets grad_var (Var(dL/dy) at its output) and, where the forward gain links it to
    the row before (measured_gain), grad_gain: the row before's grad_var over its own, what the
    backward pass through this layer's weights keeps of the gradient's variance."""
    for i, (row, var) in enumerate(zip(rows, variances)):
        row["grad_var"] = var
        below = variances[i - 1] if i else None
        linked = row.get("measured_gain") is not None
        row["grad_gain"] = below / var if linked and below is not None and var else None
    return rows


def init_check_for(trainer) -> list[dict[str, Any]]:
    """init_check on a built Trainer before its first step (its first INIT_BATCH training samples),
    with each layer's back-propagated gradient variance and gain (gradient_variances)."""
    data = trainer.data
    x = data.as_float(data.x_train[:INIT_BATCH])
    rows = init_check(trainer.model, x, trainer.cfg)
    return add_gradient_gains(rows, gradient_variances(trainer.model, x, data.y_train[:INIT_BATCH], trainer.loss_fn))

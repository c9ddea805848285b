"""Per-layer statistics kept on the training device; the host reads them once per interval.

Every step writes one row of `buf` (shape [log_every, L + 2]): the L2 norm of
each probed weight's gradient (input layer first), then the batch loss and the
batch accuracy, all in one `torch.stack(..., out=row)`. Nothing here calls
`.item()` or branches on a tensor value, so a step stays free of host syncs
(and capturable in a CUDA graph). At the last step of an interval the trainer
also asks for activation statistics (forward hooks, that step only) and the
weight norms, update/weight ratios and unit spreads.
"""

from __future__ import annotations

import math
from typing import Any

import torch

# A saturating unit counts as saturated within this fraction of its output range
# from a bound: there sigmoid' < 0.02 (8% of its 0.25 peak) and tanh' < 0.08.
SATURATION_MARGIN = 0.02
# Percentiles of each activation's outputs, for the distribution-over-time view.
PERCENTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
# dead: the fraction of units off (output <= the spec's off_below) for every sample of
# the probe batch, for activations whose units can die (relu: no gradient there).
# negative: the same count for leaky units (leaky_relu, prelu), which still pass a
# gradient scaled by their slope (0.01 by default): such a unit learns ~1/slope times
# slower but can come back, so it is not called dead. Counted per unit, like dead,
# because the fraction of negative outputs is ~50% in any healthy layer (the
# percentiles show it). A field that does not apply to the activation is NaN (null).
ACT_FIELDS = ("mean", "std", "saturated", "dead", "negative")
# Percentiles are read from about this many of each layer's outputs.
PCT_SAMPLE = 1024
# Activation statistics use at most this many samples of the probe step's batch.
ACT_SAMPLE = 1024
# Layers of one shape are stacked for their statistics, at most this many elements at once.
MAX_STACK = 1 << 23


class Probes:
    def __init__(self, model, activation_spec, log_every: int, device: torch.device):
        from dlx.components.models.base import layer_biases, layer_weights

        self.layers = model.probe_layers()
        self.names = [n for n, _ in self.layers]
        self.n = len(self.layers)
        # A layer may own several weight matrices (a recurrent layer: input and
        # recurrent); its gradient norm is the L2 norm over all of them.
        per_layer = [layer_weights(m) for _, m in self.layers]
        self.weights = [w for ws in per_layer for w in ws]
        self._single = all(len(ws) == 1 for ws in per_layer)
        self._owner = torch.tensor([j for j, ws in enumerate(per_layer) for _ in ws], device=device)
        self.shapes = [list(ws[0].shape) if len(ws) == 1 else [list(w.shape) for w in ws] for ws in per_layer]
        # Unit spreads need one matrix of several units (and its bias): Linear and Conv
        # layers. A one-unit layer is trivially "symmetric", so it gets none (NaN).
        self._unit_layers = [
            (j, ws[0], (layer_biases(m) or [None])[0])
            for j, ((_, m), ws) in enumerate(zip(self.layers, per_layer))
            if len(ws) == 1 and ws[0].shape[0] > 1
        ]
        self.buf = torch.zeros(log_every, self.n + 2, device=device)
        self.acts = model.activation_modules()
        self.act_names = [n for n, _ in self.acts]
        self.act_stats = torch.zeros(len(self.acts), len(ACT_FIELDS), device=device)
        self.act_pct = torch.zeros(len(self.acts), len(PERCENTILES), device=device)
        self._pct_q = torch.tensor(PERCENTILES, device=device)
        self.bounds = activation_spec.bounds
        # Which ACT_FIELDS column the off-unit count goes to (None: the activation has no off side).
        self.off_below = activation_spec.off_below
        self.off_field = None if self.off_below is None else "dead" if activation_spec.units_can_die else "negative"
        self._hooks: list = []
        self._outs: list[torch.Tensor | None] = []
        self._prev: list[torch.Tensor] | None = None
        self._last_ratio: torch.Tensor | None = None  # |update|/|weight| of the last watched step
        # Layers grouped by (weight shape, has bias), for batched unit spreads.
        groups: dict[tuple, list[tuple]] = {}
        for j, w, b in self._unit_layers:
            groups.setdefault((tuple(w.shape), b is not None), []).append((j, w, b))
        self._same_shape = list(groups.values())
        self._zero = torch.zeros((), device=device)
        # ||dL/dh_t|| per time step for recurrent models, written during the probe step.
        self.model = model
        shape = model.time_probe_shape()
        self.time_buf = torch.zeros(shape, device=device) if shape else None

    def _per_layer(self, norms: list[torch.Tensor]) -> list[torch.Tensor] | torch.Tensor:
        """Per-matrix norms -> per-layer norms (sqrt of the sum of squares), on the device."""
        if self._single:
            return norms
        sq = torch.stack(norms).square()
        return torch.zeros(self.n, device=sq.device).index_add_(0, self._owner, sq).sqrt()

    # ---- every step
    def record(self, row: int, loss: torch.Tensor, acc: torch.Tensor) -> None:
        """Gradient norms (before clipping), loss and accuracy into row `row`."""
        grads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in self.weights]
        norms = self._per_layer(torch._foreach_norm(grads))
        if self._single:
            torch.stack([*norms, loss.detach(), acc], out=self.buf[row])
        else:
            torch.cat([norms, loss.detach()[None], acc[None]], out=self.buf[row])

    # ---- the last step of an interval
    def watch_activations(self) -> None:
        """Keep the activations' outputs of the next forward pass, and the weights before its step."""
        if self.time_buf is not None:
            self.time_buf.zero_()
            self.model.watch_time(self.time_buf)
        self._outs = [None] * len(self.acts)
        for j, (_, module) in enumerate(self.acts):
            self._hooks.append(module.register_forward_hook(self._keeper(j)))
        with torch.no_grad():
            self._prev = torch._foreach_mul(self.weights, 1.0)  # one copy op for all layers

    def _keeper(self, j: int):
        def hook(_module, _inp, out):
            # At most ACT_SAMPLE samples: statistics of a full-batch step stay cheap.
            self._outs[j] = out.detach()[:ACT_SAMPLE]

        return hook

    def unhook(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    @torch.no_grad()
    def _activation_stats(self) -> None:
        """act_stats [A, len(ACT_FIELDS)] and act_pct [A, P] from the kept outputs, layers of one shape at once."""
        groups: dict[tuple, list[int]] = {}
        for j, o in enumerate(self._outs):
            if o is not None:
                groups.setdefault(tuple(o.shape), []).append(j)
        for shape, members in groups.items():
            chunk = max(1, MAX_STACK // math.prod(shape))
            for k in range(0, len(members), chunk):
                idx = members[k : k + chunk]
                o = torch.stack([self._outs[j] for j in idx])
                stats, pct = activation_stats(o, self.bounds, self.off_below, self.off_field, self._pct_q)
                rows = torch.tensor(idx, device=o.device)
                self.act_stats.index_copy_(0, rows, stats)
                self.act_pct.index_copy_(0, rows, pct)
        self._outs = []

    @torch.no_grad()
    def interval_stats(self, spread: bool = True) -> torch.Tensor:
        """[3, L]: weight norm, |update|/|weight| of the last step, unit spread
        ([2, L] without the spread, which only changes slowly and is the costliest).

        Also fills act_stats/act_pct from the outputs kept by watch_activations."""
        self.unhook()
        if self._outs:
            self._activation_stats()
        wn = torch.stack(list(self._per_layer(torch._foreach_norm(self.weights))))
        if self._prev is not None:
            diff = torch._foreach_sub(self.weights, self._prev)
            un = torch.stack(list(self._per_layer(torch._foreach_norm(diff))))
            self._last_ratio = un / wn.clamp_min(1e-12)
        elif self._last_ratio is None:
            self._last_ratio = torch.full_like(wn, float("nan"))  # no step measured yet
        # An interval cut short (Ctrl-C) had no step watched: it keeps the last measured
        # ratios rather than reporting 0 for every layer.
        self._prev = None
        rows = [wn, self._last_ratio] + ([self._unit_spreads()] if spread else [])
        return torch.stack(rows)

    def _unit_spreads(self) -> torch.Tensor:
        """Per layer; NaN for layers without a single matrix of units (recurrent)."""
        out = torch.full((self.n,), float("nan"), device=self.buf.device)
        for members in self._same_shape:
            rows = torch.stack([unit_rows(w, b) for _, w, b in members])
            idx = torch.tensor([j for j, _, _ in members], device=out.device)
            out.index_copy_(0, idx, spread_of_rows(rows))
        return out


@torch.no_grad()
def activation_stats(o, bounds, off_below, off_field, pct_q) -> tuple[torch.Tensor, torch.Tensor]:
    """ACT_FIELDS [G, F] and PERCENTILES [G, P] of G activation outputs o [G, N, units...]
    (G layers of one shape, or one layer of G stacked trials)."""
    o = o.flatten(2).float()  # [G, N, units]
    flat = o.flatten(1)  # [G, N * units]
    zero = torch.zeros(o.shape[0], device=o.device)
    if bounds is not None:
        lo, hi = bounds
        m = SATURATION_MARGIN * (hi - lo)
        sat = ((flat <= lo + m) | (flat >= hi - m)).float().mean(1)
    else:
        sat = zero
    # A unit is off for this batch if it is off for every sample: dead or negative
    # (see ACT_FIELDS), the other column NaN.
    off = {"dead": torch.full_like(zero, math.nan), "negative": torch.full_like(zero, math.nan)}
    if off_field is not None:
        off[off_field] = (o.amax(1) <= off_below).float().mean(1)
    # Std by hand (centred first, so saturated layers keep their tiny spread):
    # Tensor.std along a dim is ~5x slower on CPU.
    mean = flat.mean(1, keepdim=True)
    std = ((flat - mean).square().sum(1) / max(flat.shape[1] - 1, 1)).sqrt()
    stats = torch.stack([mean[:, 0], std, sat, off["dead"], off["negative"]], dim=1)  # ACT_FIELDS
    # Percentiles (nearest rank) from an evenly strided sample: sorting every
    # output costs more than the step itself on a CPU; ~1k values pin them well.
    sample = flat[:, :: max(1, flat.shape[1] // PCT_SAMPLE)]
    ranks = (pct_q * (sample.shape[1] - 1)).round().long()
    return stats, sample.sort(dim=1).values[:, ranks]


def unit_rows(w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """A layer's units as rows [units, fan_in (+1 for the bias)]."""
    rows = w.detach().flatten(1)
    return rows if b is None else torch.cat([rows, b.detach()[:, None]], dim=1)


def spread_of_rows(rows: torch.Tensor) -> torch.Tensor:
    """unit_spread for rows [units, d], or for a stack of layers [G, units, d] at once."""
    dev = (rows - rows.mean(-2, keepdim=True)).norm(dim=-1).amax(-1)
    typical = rows.flatten(-2).norm(dim=-1) / rows.shape[-2] ** 0.5
    return dev / (typical + 1e-12)


def unit_spread(w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """How different a layer's units are: the largest distance of a unit's (weights, bias)
    from the mean unit, relative to a typical unit's size. 0 means every unit is
    identical (the zero/constant-init symmetry that gradient descent can never break)."""
    return spread_of_rows(unit_rows(w, b))


def attach_stats(record: dict[str, Any], stats, evaluating: bool, act=None, pct=None) -> dict[str, Any]:
    """An interval record with its log step's host statistics: stats [2|3, layers] (weight
    norm, update ratio, and at evaluations the unit spread), act [activations, ACT_FIELDS]
    and pct [activations, PERCENTILES] (None: the model has no activation modules)."""
    record["weight_norm"], record["update_ratio"] = stats[0], stats[1]
    if evaluating:
        record["unit_spread"] = stats[2]
    if act is not None:
        for j, key in enumerate(ACT_FIELDS):
            record[f"act_{key}"] = act[:, j]
        record["act_pct"] = pct
    return record

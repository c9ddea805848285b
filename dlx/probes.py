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

import torch
from torch import nn

# A saturating unit counts as saturated within this fraction of its output range
# from a bound: there sigmoid' < 0.02 (8% of its 0.25 peak) and tanh' < 0.08.
SATURATION_MARGIN = 0.02
# Percentiles of each activation's outputs, for the distribution-over-time view.
PERCENTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
ACT_FIELDS = ("mean", "std", "saturated", "dead")


class Probes:
    def __init__(self, model, activation_spec, log_every: int, device: torch.device):
        self.layers = model.probe_layers()
        self.names = [n for n, _ in self.layers]
        self.weights = [m.weight for _, m in self.layers]
        self.biases = [m.bias for _, m in self.layers]
        self.n = len(self.weights)
        self.buf = torch.zeros(log_every, self.n + 2, device=device)
        self.acts = model.activation_modules()
        self.act_names = [n for n, _ in self.acts]
        self.act_stats = torch.zeros(len(self.acts), len(ACT_FIELDS), device=device)
        self.act_pct = torch.zeros(len(self.acts), len(PERCENTILES), device=device)
        self._pct_q = torch.tensor(PERCENTILES, device=device)
        self.bounds = activation_spec.bounds
        self.dead_below = activation_spec.dead_below
        self._hooks: list = []
        self._prev: list[torch.Tensor] | None = None
        self._zero = torch.zeros((), device=device)

    # ---- every step
    def record(self, row: int, loss: torch.Tensor, acc: torch.Tensor) -> None:
        """Gradient norms (before clipping), loss and accuracy into row `row`."""
        grads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in self.weights]
        norms = torch._foreach_norm(grads)
        torch.stack([*norms, loss.detach(), acc], out=self.buf[row])

    # ---- the last step of an interval
    def watch_activations(self) -> None:
        """Hook the activations for the next forward pass only."""
        for j, (_, module) in enumerate(self.acts):
            self._hooks.append(module.register_forward_hook(self._hook(j)))
        self._prev = [w.detach().clone() for w in self.weights]

    def _hook(self, j: int):
        def hook(_module, _inp, out):
            with torch.no_grad():
                o = out.detach().flatten(1).float()
                if self.bounds is not None:
                    lo, hi = self.bounds
                    m = SATURATION_MARGIN * (hi - lo)
                    sat = ((o <= lo + m) | (o >= hi - m)).float().mean()
                else:
                    sat = self._zero
                if self.dead_below is not None:
                    # A unit is dead for this batch if it is off for every sample.
                    dead = (o.amax(0) <= self.dead_below).float().mean()
                else:
                    dead = self._zero
                std = o.std() if o.numel() > 1 else self._zero
                torch.stack([o.mean(), std, sat, dead], out=self.act_stats[j])
                flat = o.flatten()
                if flat.numel() > 100_000:  # quantile sorts: a strided sample is plenty
                    flat = flat[:: flat.numel() // 100_000 + 1]
                torch.quantile(flat, self._pct_q, out=self.act_pct[j])
        return hook

    def unhook(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    @torch.no_grad()
    def interval_stats(self) -> torch.Tensor:
        """[3, L]: weight norm, |update|/|weight| of the last step, unit spread."""
        self.unhook()
        wn = torch.stack(torch._foreach_norm(self.weights))
        if self._prev is not None:
            un = torch.stack(torch._foreach_norm(torch._foreach_sub(self.weights, self._prev)))
        else:
            un = torch.zeros_like(wn)
        self._prev = None
        spread = torch.stack([unit_spread(w, b) for w, b in zip(self.weights, self.biases)])
        return torch.stack([wn, un / wn.clamp_min(1e-12), spread])


def unit_spread(w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """How different a layer's units are: max distance of a unit's (weights, bias) from
    the mean unit, relative to a typical unit's size. 0 means every unit is identical
    (the zero/constant-init symmetry that gradient descent can never break)."""
    rows = w.detach().flatten(1)
    if b is not None:
        rows = torch.cat([rows, b.detach()[:, None]], dim=1)
    dev = (rows - rows.mean(0, keepdim=True)).norm(dim=1).amax()
    typical = rows.norm() / rows.shape[0] ** 0.5
    return dev / (typical + 1e-12)

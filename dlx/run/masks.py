"""Training under a weight mask (train.mask) and magnitude pruning (Frankle & Carbin 2019).

A masks file is a torch.save'd dict {parameter name: tensor of the parameter's shape}, 1
(or True) where the weight trains and 0 where it is held at exactly 0. The names are the
model's own (`dlx train` prints them; model.named_parameters()). A parameter the file does
not name trains as usual. dlx ticket writes such files (layout.MASKS_FILE, PRUNED_FILE).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dlx.core.errors import DamagedFile, SpecError
from dlx.core.tensorfile import read_tensors

KEY = ("train", "mask")  # where a masks file's problems are reported
FIX = "make it with dlx ticket, or torch.save({name: 0/1 tensor of the parameter's shape}, path)"


def read_masks(path: Path) -> dict[str, torch.Tensor]:
    """The boolean masks of a masks file; SpecError at train.mask when it is not one."""
    try:
        obj = read_tensors(path)
    except DamagedFile as e:
        raise SpecError(KEY, f"{e}; {FIX}") from None
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SpecError(KEY, f"{path} holds no masks (a mapping of parameter names to tensors); {FIX}")
    masks = {}
    for name, m in obj.items():
        if m.dtype != torch.bool and not bool(((m == 0) | (m == 1)).all()):
            raise SpecError(KEY, f"{path}: the mask of {name} holds values other than 0 and 1; {FIX}")
        masks[str(name)] = m.to(torch.bool)
    return masks


def fitted(model: nn.Module, masks: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """masks checked against the model's parameters (names and shapes), on their devices."""
    params = dict(model.named_parameters())
    unknown = [n for n in masks if n not in params]
    wrong = [
        f"{n}: file {tuple(m.shape)} vs model {tuple(params[n].shape)}"
        for n, m in masks.items()
        if n in params and m.shape != params[n].shape
    ]
    if unknown or wrong:
        lines = [f"{path} does not fit the model"]
        if unknown:
            lines.append("  not in the model: " + ", ".join(unknown))
        lines += [f"  shape {w}" for w in wrong]
        lines.append("  the model's parameters: " + ", ".join(f"{n} {tuple(p.shape)}" for n, p in params.items()))
        lines.append(f"  {FIX}")
        raise SpecError(KEY, "\n".join(lines))
    return {n: m.to(params[n].device) for n, m in masks.items()}


class WeightMask:
    """train.mask on a model: the masked weights are set to 0 at once, their gradients are
    zeroed as they are computed (so momentum and Adam moments of a masked weight stay 0, and
    a penalty's or clipping's share never reaches it), and apply() after each optimizer step
    sets them to 0 again, whatever the optimizer's rule does with a zero gradient."""

    def __init__(self, model: nn.Module, path: Path):
        self.path = Path(path)
        self.masks = fitted(model, read_masks(self.path), self.path)
        params = dict(model.named_parameters())
        self.params = [params[n] for n in self.masks]
        self.values = [m.to(params[n].dtype) for n, m in self.masks.items()]
        for p, m in zip(self.params, self.masks.values()):
            # where, not a multiply: a non-finite gradient (a diverging run) leaves the
            # masked weights at 0 instead of making them NaN.
            p.register_hook(lambda g, m=m: torch.where(m, g, torch.zeros((), dtype=g.dtype, device=g.device)))
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        torch._foreach_mul_(self.params, self.values)


def kept_fraction(masks: dict[str, torch.Tensor]) -> float:
    """The fraction of the masked parameters' weights that train."""
    return sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())


def prunable(model: nn.Module) -> list[str]:
    """The names of the weight matrices magnitude pruning prunes, input first: every layer's
    weights (layer_weights of init_targets), biases never (they are few, and the paper keeps them)."""
    from dlx.components.models.base import layer_weights

    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(w)] for _, layer in model.init_targets() for w in layer_weights(layer) if id(w) in names]


def prune_by_magnitude(
    weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor] | None, rates: dict[str, float]
) -> dict[str, torch.Tensor]:
    """Layer-wise magnitude pruning: in each named layer, of the weights its mask keeps (all,
    without a mask), the round(rate x kept) smallest in |w| are pruned; the new masks."""
    out = {}
    for name, rate in rates.items():
        w = weights[name].detach().float().cpu()
        keep = masks[name].cpu() if masks and name in masks else torch.ones(w.shape, dtype=torch.bool)
        n = round(rate * int(keep.sum()))
        # Pruned weights score +inf: never chosen again, so each round removes kept ones only.
        scores = torch.where(keep, w.abs(), torch.full_like(w, float("inf"))).flatten()
        new = keep.flatten().clone()
        if n > 0:
            new[torch.topk(scores, n, largest=False).indices] = False
        out[name] = new.view(w.shape)
    return out

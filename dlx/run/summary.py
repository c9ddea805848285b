"""The model summary: each layer's output shape and parameter count, totals at the end.

Shapes come from one real forward pass of two samples through the built model
(hooks on every layer), so they are what training will see; parameter counts
are the modules' own. The samples are the data spec's stand_in(): for MNIST two
blank images of its shape, so a summary never reads or downloads a file. A model
may add columns (a CNN: receptive field, stride).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf modules, and probed layers as whole units (a recurrent layer is one row)."""
    whole = {id(m) for _, m in model.probe_layers()} if hasattr(model, "probe_layers") else set()
    out, inside = [], set()
    for name, module in model.named_modules():
        if not name or any(name.startswith(p + ".") for p in inside):
            continue
        if id(module) in whole or not list(module.children()):
            out.append((name, module))
            inside.add(name)
    return out


def _shape(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return list(out.shape)
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return list(out[0].shape)
    return None


@torch.no_grad()
def model_summary(cfg) -> dict[str, Any]:
    """Rows (name, type, output shape, params, extras) and totals for a config's model."""
    from dlx.run.trainer import seed_everything

    seed_everything(cfg.seed)
    data = cfg.data.stand_in(cfg.seed)
    model = cfg.model.build(data, cfg)
    model.eval()
    units = _units(model)
    shapes: dict[str, Any] = {}

    def keep(name):
        def hook(_module, _inp, out):
            shapes.setdefault(name, _shape(out))  # first call only (a layer reused over time)

        return hook

    hooks = [m.register_forward_hook(keep(n)) for n, m in units]
    x = data.as_float(data.x_train[:2])
    try:
        out = model(x)
    finally:
        for h in hooks:
            h.remove()
    extra = model.summary_extra() if hasattr(model, "summary_extra") else {}
    rows = []
    for name, module in units:
        n_params = sum(p.numel() for p in module.parameters())
        rows.append(
            {
                "name": name,
                "type": type(module).__name__,
                "output": shapes.get(name),
                "params": n_params,
                **extra.get(name, {}),
            }
        )
    total = sum(p.numel() for p in model.parameters())
    return {
        "input": [2, *data.feature_shape],
        "output": _shape(out),
        "layers": rows,
        "total_params": total,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "extra_columns": sorted({k for e in extra.values() for k in e}),
    }

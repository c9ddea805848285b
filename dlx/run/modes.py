"""The modes instrument (Saxe, McClelland & Ganguli 2013): a deep linear net's map W_L...W_1
read along each singular direction of its teacher (data: linear_teacher), u_i^T (prod W) v_i,
the strength of mode i that the net has learned so far."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

MODES_PATH = ("instruments", "modes")


def linear_product(model: torch.nn.Module) -> torch.Tensor:
    """W_L ... W_1 (float64, [out, in]) of a linear mlp's layers, input first; biases left out."""
    from dlx.components.models.base import layer_weights

    prod = None
    for _, layer in model.init_targets():
        w = layer_weights(layer)[0].detach().double()
        prod = w if prod is None else w @ prod
    return prod


def mode_strengths(model: torch.nn.Module, teacher) -> dict[str, Any]:
    """u_i^T (W_L ... W_1) v_i for each mode i of the teacher (U [out, r], s [r], Vt [r, in]),
    the teacher's s_i beside them, and the largest bias norm (left out of the product)."""
    from dlx.components.models.base import layer_biases

    u, s, vt = (torch.as_tensor(np.asarray(a), dtype=torch.float64) for a in teacher)
    prod = linear_product(model).cpu()
    strengths = torch.einsum("oi,or,ri->r", prod, u, vt)  # u_r^T P v_r for every r at once
    biases = [float(b.detach().norm()) for _, m in model.init_targets() for b in layer_biases(m)]
    return {
        "strength": strengths.tolist(),
        "teacher": s.tolist(),
        "bias_norm": max(biases, default=0.0),
    }


def modes_problem(trainer) -> str | None:
    """Why instruments.modes cannot measure this run (None: it can). It needs a dataset that
    carries its teacher map (data: linear_teacher) and a net whose map is the product of its
    weight matrices: an mlp with the linear activation, no norm layers, no output sigmoid.
    Biases are allowed (the product ignores them; their norm is recorded); dropout and
    dropconnect too (the measurement is in eval mode, where both are off)."""
    from dlx.components.models.mlp import MLP

    teacher = getattr(trainer.data, "teacher", None)
    if teacher is None:
        return (
            f"needs data: linear_teacher (a dataset that carries its teacher map U, s, V^T); "
            f"data {trainer.cfg.data.name} has none"
        )
    cfg = trainer.cfg
    act = getattr(type(cfg.activation), "registry_name", cfg.activation.name)
    why = []
    if not isinstance(trainer.model, MLP):
        why.append(f"model {cfg.model.name} is not an mlp")
    if act not in ("identity", "linear"):
        why.append(f"activation {act} is not linear")
    if cfg.regularization.norm not in (None, "none"):
        why.append(f"regularization.norm {cfg.regularization.norm} is on")
    if getattr(cfg.model, "output_activation", "none") != "none":
        why.append(f"model.output_activation {cfg.model.output_activation} is on")
    if why:
        return "needs a deep linear net (model: mlp, activation: linear, no norm): " + "; ".join(why)
    u, _, vt = teacher
    prod = linear_product(trainer.model)
    if prod.shape != (np.shape(u)[0], np.shape(vt)[1]):
        return (
            f"the net maps {prod.shape[1]} inputs to {prod.shape[0]} outputs, the teacher "
            f"{np.shape(vt)[1]} to {np.shape(u)[0]}"
        )
    return None

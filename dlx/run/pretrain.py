"""Greedy layer-wise pretraining (config `pretrain:`): each hidden layer of an mlp, input
first, is trained as an autoencoder on the output of the layers below it (already
pretrained): encode h = f(W a + b), decode a' = V h + c (V, c thrown away after), minimise
mean((a' - a)^2) with Adam. Then the whole net trains as usual (fine-tuning). Before step 0,
with its own seeded random stream (the run's streams are untouched); a resumed run does not
pretrain again (its weights are in the checkpoint).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F


def pretrain(trainer) -> list[dict[str, Any]]:
    """Pretrain trainer.model's hidden layers; per layer its reconstruction loss before and after."""
    from dlx.core.errors import SpecError

    cfg, p = trainer.cfg, trainer.cfg.pretrain
    model = trainer.model
    if cfg.model.name != "mlp":
        raise SpecError(("pretrain",), f"layer-wise pretraining is for the mlp; this model is {cfg.model.name}")
    reg = cfg.regularization
    if reg.norm != "none" or reg.dropout or reg.dropconnect:
        raise SpecError(("pretrain",), "layer-wise pretraining needs a plain mlp: no norm layers, no dropout")
    layers = [m for _, m in model.init_targets()][:-1]  # the hidden ones; the output layer trains after
    acts = [m for _, m in model.activation_modules()]
    if not layers or len(acts) != len(layers):
        raise SpecError(("pretrain",), "layer-wise pretraining needs hidden layers")
    gen = torch.Generator(device=trainer.device)
    gen.manual_seed(cfg.seed + 104729)
    data = trainer.data
    with torch.no_grad():
        a = data.as_float(data.x_train).reshape(len(data.x_train), -1)
    out = []
    for layer, act in zip(layers, acts):
        dec = nn.Linear(layer.out_features, layer.in_features).to(trainer.device)
        with torch.no_grad():
            dec.weight.copy_(
                torch.randn(dec.weight.shape, generator=gen, device=trainer.device) / layer.out_features**0.5
            )
            dec.bias.zero_()
        opt = torch.optim.Adam([*layer.parameters(), *dec.parameters()], lr=p.lr)

        def loss_on(x, layer=layer, act=act, dec=dec):
            return F.mse_loss(dec(act(layer(x))), x)

        with torch.no_grad():
            before = float(loss_on(a[:2048]))
        n = len(a)
        for _ in range(p.steps):
            idx = torch.randint(0, n, (min(p.batch_size, n),), generator=gen, device=trainer.device)
            loss = loss_on(a.index_select(0, idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            after = float(loss_on(a[:2048]))
            a = act(layer(a))
        out.append(
            {"layer": next(nm for nm, m in model.init_targets() if m is layer), "before": before, "after": after}
        )
    return out

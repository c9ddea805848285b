"""What the lab shows of a network while it trains, beyond the curves: the network view's
live data (net: a small dense net's weights, per-unit gradients and activation
histograms, one input followed through it; net_summary: per layer, for a bigger or
non-dense net), the knobs turned while a run plays (change_request: checked here,
applied in the training thread by dlx.run.changes) and step mode (PhaseWatch: one
update followed phase by phase, for one unit, with torch hooks for that step only)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# A dense net is drawn unit by unit (its weights sent) when each Linear layer has at most
# SMALL_UNITS outputs and SMALL_WEIGHTS weights, and all of them SMALL_TOTAL (the quickstart's
# 3x64: 8.5k); a bigger or non-dense one as a summary per layer. A 10x64 net's 37k weights
# and 640 unit maps were 1.6 MB an event: its page fell a second behind the run.
SMALL_UNITS = 64
SMALL_WEIGHTS = 4096
SMALL_TOTAL = 16_384
# Inputs the activation histograms and dead/saturated counts are read over, bins per unit.
NET_INPUTS = 256
UNIT_BINS = 12
# A saturating unit is saturated within this fraction of its output range from a bound
# (run.probes' margin).
SATURATION_MARGIN = 0.02
# Of a unit's inputs and incoming weights, step mode shows the first this many.
PHASE_FIRST = 8
# The lab's knobs and the keys they change (dlx.config.changes.CHANGEABLE).
KNOBS = {
    "lr": "optimizer.lr",
    "l2": "regularization.l2",
    "l1": "regularization.l1",
    "batch_size": "train.batch_size",
    "dropout": "regularization.dropout",
}


def _rounded(a: np.ndarray) -> np.ndarray:
    """An array's values to 4 significant digits (the page's numbers), in numpy passes (a
    10x64 net's 37k weights took 20 ms one by one); jsonable makes it a list in one call."""
    from dlx.core.jsonable import significant

    return significant(a, 4)


def rounded_rows(a: np.ndarray, decimals: int) -> list:
    """A 2-D array as plain lists of its values rounded to `decimals`, NaN and Inf as None
    (JSON has neither): one numpy call, not a walk over its values (64 unit maps of 3
    layers: 50k values)."""
    r = np.round(np.asarray(a, dtype=np.float64), decimals)
    ok = np.isfinite(r)
    return r.tolist() if ok.all() else np.where(ok, r, None).tolist()


def unit_histograms(p: np.ndarray, bins: int = UNIT_BINS) -> list[dict[str, Any]]:
    """Per unit (column of p [samples, units]): the histogram of its finite values over
    [min, max] in `bins` equal bins, the last closed (np.histogram's), all units at once. A
    unit of one value gets np.histogram's range, that value +- 0.5; where even that has no
    width (a constant past 1e16, a diverged net's), all its values count in the first bin."""
    finite = np.isfinite(p)
    lo = np.where(finite, p, np.inf).min(0)
    hi = np.where(finite, p, -np.inf).max(0)
    empty = ~np.isfinite(lo)
    lo, hi = np.where(empty, 0.0, lo), np.where(empty, 0.0, hi)
    same = hi <= lo
    lo, hi = np.where(same, lo - 0.5, lo), np.where(same, hi + 0.5, hi)
    width = hi - lo
    ok = np.isfinite(width) & (width > 0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        scaled = (np.where(finite, p, lo) - lo) / np.where(ok, width, 1.0) * bins
    k = np.where(ok & np.isfinite(scaled), np.floor(np.nan_to_num(scaled)), 0).astype(np.int64).clip(0, bins - 1)
    units = p.shape[1]
    flat = (k + np.arange(units) * bins)[finite]
    counts = np.bincount(flat, minlength=units * bins).reshape(units, bins)
    return [{"counts": c, "lo": float(a), "hi": float(b)} for c, a, b in zip(counts.tolist(), lo, hi)]


def dense_layers(model) -> list[tuple[str, Any]] | None:
    """The Linear layers of a small dense net (an mlp within SMALL_UNITS and SMALL_WEIGHTS per
    layer, SMALL_TOTAL in all), input first; None for any other net."""
    import torch

    layers = model.probe_layers()
    if type(model).__name__ != "MLP" or not layers:
        return None
    for _, m in layers:
        if not isinstance(m, torch.nn.Linear) or m.out_features > SMALL_UNITS or m.weight.numel() > SMALL_WEIGHTS:
            return None
    if sum(m.weight.numel() for _, m in layers) > SMALL_TOTAL:
        return None
    return layers


def following_activation(trainer, layer: str) -> tuple[Any, str]:
    """The module whose output is a layer's units' output (its activation, after any norm)
    and the activation's name: the first activation module after the layer and before the
    next weight layer; (None, "none") for a layer with none (an output layer)."""
    import torch

    model = trainer.model
    acts = {id(m) for _, m in model.activation_modules()}
    probed = {n for n, _ in model.probe_layers()}
    seen = False
    for name, m in model.named_modules():
        if name == layer:
            seen = True
            continue
        if not seen or not name:
            continue
        if name in probed:
            break
        if id(m) in acts:
            return m, trainer.cfg.activation.name
        if isinstance(m, torch.nn.Sigmoid):
            return m, "sigmoid"
    return None, "none"


def _outputs(trainer, modules: list, x) -> list:
    """Each module's output on inputs x (None where a module is None), in eval mode, no gradients."""
    import torch

    kept: dict[int, Any] = {}
    hooks = []
    for i, m in enumerate(modules):
        if m is not None:
            hooks.append(m.register_forward_hook(lambda _m, _i, o, i=i: kept.setdefault(i, o.detach())))
    try:
        with torch.no_grad():
            trainer.model(x)
    finally:
        for h in hooks:
            h.remove()
    return [kept.get(i) for i in range(len(modules))]


def network_view(trainer) -> dict[str, Any]:
    """{"net": ...} for a small dense net, else {"net_summary": [...]} (see the module's
    docstring); the model is in eval mode (the caller's), read between steps."""
    data = trainer.data
    x = data.as_float(data.x_train[:NET_INPUTS])
    layers = dense_layers(trainer.model)
    if layers is None:
        return {"net_summary": net_summary(trainer, x)}
    follow = [following_activation(trainer, n) for n, _ in layers]
    outs = _outputs(trainer, [m for _, m in layers] + [a for a, _ in follow], x)
    pres, posts = outs[: len(layers)], outs[len(layers) :]
    net_layers, probe_pre, probe_post = [], [], []
    for (name, m), (_, act), pre, post in zip(layers, follow, pres, posts):
        post = pre if post is None else post
        w, b = m.weight.detach().cpu().numpy(), m.bias.detach().cpu().numpy() if m.bias is not None else None
        g = m.weight.grad
        hist = unit_histograms(post.flatten(1).double().cpu().numpy())
        net_layers.append(
            {
                "name": name,
                "activation": act,
                "W": _rounded(w),
                "b": _rounded(b) if b is not None else None,
                "unit_grad": g.detach().norm(dim=1).double().cpu().tolist() if g is not None else None,
                "unit_hist": hist,
            }
        )
        probe_pre.append(pre[0].flatten().double().cpu().tolist())
        probe_post.append(post[0].flatten().double().cpu().tolist())
    return {
        "net": {
            "layers": net_layers,
            "probe": {"x": x[0].flatten().double().cpu().tolist(), "pre": probe_pre, "post": probe_post},
        }
    }


def net_summary(trainer, x) -> list[dict[str, Any]]:
    """Per weight layer: units, log10 of the median unit gradient norm (incoming weights, the
    last step's), units dead (never above the activation's off level: relu-likes) and units
    saturated (within SATURATION_MARGIN of a bound on every input: tanh, sigmoid) on x."""
    from dlx.components.models.base import layer_weights

    spec = trainer.cfg.activation
    layers = trainer.model.probe_layers()
    follow = [following_activation(trainer, n)[0] for n, _ in layers]
    outs = _outputs(trainer, follow, x)
    out = []
    for (name, m), o in zip(layers, outs):
        w = layer_weights(m)[0]
        grad = None
        if w.grad is not None:
            med = float(w.grad.detach().flatten(1).norm(dim=1).median())
            grad = math.log10(med) if med > 0 and math.isfinite(med) else None
        dead = saturated = None
        if o is not None and o.dim() >= 2:
            per_unit = o.transpose(0, 1).flatten(1).double()  # [units, samples x positions]
            if spec.off_below is not None:
                dead = int((per_unit.amax(1) <= spec.off_below).sum())
            if spec.bounds is not None:
                lo, hi = spec.bounds
                m_ = SATURATION_MARGIN * (hi - lo)
                saturated = int(((per_unit <= lo + m_) | (per_unit >= hi - m_)).all(1).sum())
        out.append({"name": name, "units": int(w.shape[0]), "grad": grad, "dead": dead, "saturated": saturated})
    return out


# ---------------------------------------------------------------- knobs while it plays


def change_request(trainer, body: dict) -> dict[str, Any]:
    """The change a lab request asks for ({"lr"?, "l2"?, "l1"?, "batch_size"?, "dropout"?}) as
    config keys and values, checked as train.changes checks them and against this run;
    ValueError with a sentence otherwise."""
    from dlx.config.changes import change_value

    unknown = [k for k in body if k not in KNOBS and k != "session"]
    if unknown:
        raise ValueError(f"unknown knob {unknown[0][:40]!r}: the knobs are {', '.join(KNOBS)}")
    values = {}
    for knob, key in KNOBS.items():
        if knob in body:
            try:
                values[key] = change_value(key, body[knob])
            except ValueError as e:
                raise ValueError(f"{knob}: {e}") from None
            why = trainer.changes.refusal(trainer, key, values[key])
            if why:
                raise ValueError(f"{knob}: {why}")
    if not values:
        raise ValueError(f"give at least one knob to change: {', '.join(KNOBS)}")
    return values


# ---------------------------------------------------------------- step mode


def parse_unit(trainer, unit: Any) -> tuple[str, int]:
    """LAYER:INDEX (a dense layer's name as lab_network lists it, an output unit of it);
    ValueError with a sentence otherwise."""
    import torch

    if not isinstance(unit, str) or ":" not in unit or len(unit) > 200:
        raise ValueError("unit must be LAYER:INDEX, e.g. fc1:0 (a layer's name as the network lists it)")
    layer, _, index = unit.rpartition(":")
    dense = [n for n, m in trainer.model.named_modules() if n and isinstance(m, torch.nn.Linear)]
    if layer not in dense:
        raise ValueError(f"no dense layer {layer[:40]!r}: step mode follows a unit of {', '.join(dense) or 'none'}")
    m = trainer.model.get_submodule(layer)
    if not index.isdigit() or int(index) >= m.out_features:
        raise ValueError(f"{layer} has units 0 to {m.out_features - 1}, not {index[:20]!r}")
    return layer, int(index)


class PhaseWatch:
    """One training step followed for one unit: installed in the training thread at the
    step boundary (hooks on the unit's layer and activation, the loss function wrapped),
    read after the step's log interval (result), when the hooks come off."""

    def __init__(self, layer: str, index: int):
        self.layer, self.index = layer, index
        self.unit = f"{layer}:{index}"
        self.installed = self.done = False
        self._hooks: list = []
        self.forward: dict[str, Any] | None = None
        self.post: float | None = None
        self.dl_dpre: float | None = None
        self.grad = None
        self.loss: float | None = None

    def install(self, trainer) -> None:
        m = trainer.model.get_submodule(self.layer)
        act_module, self.activation = following_activation(trainer, self.layer)
        k, j = PHASE_FIRST, self.index
        self.step = trainer.step
        self.lr = float(trainer.optimizer.param_groups[0]["lr"])
        self.w_before = [float(v) for v in m.weight.detach()[j, :k].cpu()]

        def on_forward(_m, inp, out):
            if self.forward is not None:
                return  # only the step's own forward pass (not the evaluation's)
            x = inp[0].detach().flatten(1)
            self.forward = {
                "inputs": [float(v) for v in x[0, :k].cpu()],
                "weights": [float(v) for v in m.weight.detach()[j, :k].cpu()],
                "bias": float(m.bias.detach()[j]) if m.bias is not None else 0.0,
                "pre": float(out.detach()[0, j]),
            }
            if out.requires_grad:
                out.register_hook(self._keep_dl_dpre)

        def on_activation(_m, _inp, out):
            if self.post is None:
                self.post = float(out.detach().flatten(1)[0, j])

        def on_weight_grad(g):
            if self.grad is None:
                self.grad = g.detach().clone()

        self._hooks.append(m.register_forward_hook(on_forward))
        if act_module is not None:
            self._hooks.append(act_module.register_forward_hook(on_activation))
        self._hooks.append(m.weight.register_hook(on_weight_grad))
        loss_fn = self._loss_fn = trainer.loss_fn

        def keeping(out, y):
            value = loss_fn(out, y)
            if self.loss is None:  # float32's shortest decimal, as the run's files write it
                self.loss = float(str(np.float32(value.detach().cpu())))
            return value

        trainer.loss_fn = keeping
        self.installed = True

    def _keep_dl_dpre(self, g):
        if self.dl_dpre is None:
            self.dl_dpre = float(g.detach()[0, self.index])

    def remove(self, trainer) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        if getattr(self, "_loss_fn", None) is not None:
            trainer.loss_fn = self._loss_fn
            self._loss_fn = None

    def result(self, trainer, record: dict[str, Any]) -> dict[str, Any]:
        """The phases of the step, with what the run's files recorded for it beside them."""
        self.remove(trainer)
        self.done = True
        m = trainer.model.get_submodule(self.layer)
        fwd = dict(self.forward or {})
        fwd["post"] = self.post if self.post is not None else fwd.get("pre")
        fwd["activation"] = self.activation
        grads = np.asarray(record.get("grad_norm"), dtype=float)
        names = list(trainer.probes.names)
        recorded_layer = None
        if self.layer in names and grads.ndim == 2 and len(grads):
            recorded_layer = float(grads[-1, names.index(self.layer)])
        g = self.grad
        return {
            "unit": self.unit,
            "forward": fwd,
            "loss": {"value": self.loss, "recorded": record.get("train_loss")},
            "backward": {
                "dL_dpre": self.dl_dpre,
                "weight_grad_norm": float(g[self.index].norm()) if g is not None else None,
                "layer_grad_norm": float(g.norm()) if g is not None else None,
                "recorded_layer_grad_norm": recorded_layer,
            },
            "update": {
                "lr": self.lr,
                "w_before": self.w_before,
                "w_after": [float(v) for v in m.weight.detach()[self.index, :PHASE_FIRST].cpu()],
                "grad": [float(v) for v in g[self.index, :PHASE_FIRST].cpu()] if g is not None else None,
            },
        }

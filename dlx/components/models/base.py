"""What every model offers the trainer, the init schemes, the probes and the summary."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from dlx.core.registry import Registry, Spec

MODELS = Registry("model")

# A model's check() refuses more weights than this (4 GiB as float32, before the
# optimizer's state): a model that big is a slip, and building it fails in torch's allocator.
MAX_PARAMETERS = 2**30

# Keys outside `model:` whose effect depends on the model. Each model declares the ones it
# applies (ModelSpec.honours, less unhonoured()), and config.py refuses the rest when set:
# a key a model does not implement is an error, never silently nothing. Keys the trainer
# applies to every model (l1, l2, clip_norm, clip_value, loss, batch_size, ...) are not here.
MODEL_DEPENDENT_KEYS = ("regularization.dropout", "regularization.dropconnect", "regularization.norm", "train.tbptt")


def layer_weights(module: nn.Module) -> list[torch.Tensor]:
    """The weight matrices of a probed/initialised layer: `.weight`, or the layer's own
    list (a recurrent layer has an input and a recurrent matrix)."""
    if hasattr(module, "probe_weights"):
        return list(module.probe_weights())
    return [module.weight]


def layer_biases(module: nn.Module) -> list[torch.Tensor]:
    if hasattr(module, "probe_biases"):
        return list(module.probe_biases())
    b = getattr(module, "bias", None)
    return [b] if isinstance(b, torch.Tensor) else []


class Model(nn.Module):
    """A network whose weight layers are listed input -> output for init and probes."""

    def init_targets(self) -> list[tuple[str, nn.Module]]:
        """Layers whose weights (layer_weights) and biases an init scheme sets."""
        raise NotImplementedError

    def probe_layers(self) -> list[tuple[str, nn.Module]]:
        """Layers whose weight gradient is probed every step, input first."""
        return self.init_targets()

    def activation_modules(self) -> list[tuple[str, nn.Module]]:
        """Hidden activation modules, input first; their outputs are probed."""
        return []

    # ---- recurrent models: the gradient reaching each time step's hidden state
    def time_probe_shape(self) -> tuple[int, int] | None:
        """(rows, time steps) of the ||dL/dh_t|| probe, or None for a model without time."""
        return None

    def watch_time(self, buf: torch.Tensor) -> None:
        """During the next forward/backward, write ||dL/dh_t|| into buf [rows, T] on the device."""

    def summary_extra(self) -> dict[str, dict[str, Any]]:
        """Extra summary columns per layer name (a CNN's receptive field and stride)."""
        return {}

    # ---- parametrizations (mlp's μP): what the init and the optimizer do per layer
    def lr_scales(self) -> dict[str, float]:
        """Multipliers on optimizer.lr by parameter name (absent: 1). Default: none."""
        return {}

    def after_init(self) -> None:
        """Called by the init scheme once it has set every target layer (μP rescales the
        output layer there). Default: nothing."""


def param_groups(model: Model, params: list[torch.nn.Parameter], lr: float) -> list:
    """What the optimizer is built on: `params` itself where the model scales no lr (the
    optimizer is then the one every run had before parametrizations), else one group per
    multiplier, in the order of first appearance, so group 0 holds the first layer and its
    lr is optimizer.lr (metrics.jsonl's lr). Each group keeps its `lr_scale` for a change
    of lr while training (run.changes) to apply."""
    scales = model.lr_scales()
    if not scales:
        return params
    names = {id(p): n for n, p in model.named_parameters()}
    groups: dict[float, list[torch.nn.Parameter]] = {}
    for p in params:
        groups.setdefault(scales.get(names[id(p)], 1.0), []).append(p)
    return [{"params": ps, "lr": lr * f, "lr_scale": f} for f, ps in groups.items()]


class ModelSpec(Spec):
    accepts: ClassVar[str] = "any"  # "flat" vectors, "image" (C, H, W), "sequence" (T, F), or "any"
    # The MODEL_DEPENDENT_KEYS this model applies; tests/test_model_key_contract.py trains
    # every model under every key to hold each declaration to what the model does.
    honours: ClassVar[frozenset[str]] = frozenset()
    # For a key it does not honour: what to do instead, ending the refusal (default "remove it").
    instead: ClassVar[dict[str, str]] = {}

    def unhonoured(self) -> dict[str, str]:
        """Keys of `honours` that this model, as configured, still ignores, each with why
        (with no hidden layer an mlp has nowhere to put dropout). Default: none."""
        return {}

    def honoured(self) -> frozenset[str]:
        """The model-dependent keys that change what this model computes."""
        return self.honours - set(self.unhonoured())

    def build(self, data, cfg) -> Model:
        """The network for `data` (a Dataset) under the full config `cfg`."""
        raise NotImplementedError

    def conflicts(self, cfg) -> list[tuple[tuple, str]]:
        """Problems (key path, message) between this model's keys and keys outside `model:`
        (mlp's parametrization: mup and the optimizer), found without the data. Default: none."""
        return []

    def check(self, feature_shape: tuple[int, ...], cfg) -> list[tuple[tuple, str]]:
        """Problems (key path, message) that would make the model fail on inputs of this
        shape, found before anything is built. Default: none."""
        return []

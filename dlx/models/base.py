"""What every model offers the trainer and the probes."""
from __future__ import annotations

from typing import ClassVar

from torch import nn

from ..registry import Registry, Spec

MODELS = Registry("model")


class Model(nn.Module):
    """A network whose weight layers are listed input -> output for init and probes."""

    def init_targets(self) -> list[tuple[str, nn.Module]]:
        """Layers with a `.weight` (and maybe `.bias`) that an init scheme sets."""
        raise NotImplementedError

    def probe_layers(self) -> list[tuple[str, nn.Module]]:
        """Layers whose weight gradient is probed every step, input first."""
        return self.init_targets()

    def activation_modules(self) -> list[tuple[str, nn.Module]]:
        """Hidden activation modules, input first; their outputs are probed."""
        return []


class ModelSpec(Spec):
    accepts: ClassVar[str] = "flat"  # the input layout it needs: "flat" vectors

    def build(self, data, cfg) -> Model:
        """The network for `data` (a Dataset) under the full config `cfg`."""
        raise NotImplementedError

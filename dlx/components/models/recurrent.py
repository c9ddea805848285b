"""Recurrent networks (rnn, lstm, gru) over (T, F) sequences, with cells written out.

The cells are the textbook ones with ONE bias vector per gate (PyTorch's own
modules keep two, b_ih and b_hh), so parameter counts are the textbook's:
(in + hidden + 1) * hidden per gate, per layer and direction. Each (layer,
direction) is one module, e.g. `lstm.l0`, `gru.l1_reverse`, holding W_ih
[gates*hidden, in], W_hh [gates*hidden, hidden] and b [gates*hidden]; init
schemes set both matrices and the probes take one gradient norm over both.
Gates are stacked in PyTorch's order (LSTM i, f, g, o; GRU r, z, n).

The LSTM forget-gate bias is whatever the init scheme sets (0 for most schemes,
PyTorch's uniform U(+-1/sqrt(hidden)) for `default`): no +1 is added behind the
user's back, so an RNN/LSTM comparison under one init compares the cells alone.
A scheme's `bias:` (e.g. `init: {name: default, bias: 1.0}`) sets every gate's
bias, the forget gate's included.

The time probe: on a probe step every h_t (the state passed on in time) gets a
tensor hook that writes ||dL/dh_t|| (over batch and hidden units) into the
probe buffer on the device. That is the TOTAL gradient reaching h_t, through
the head and through later steps; with a many-to-one head the loss touches
only h_T, so its decay toward t = 1 is backpropagation through time itself.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import nn

from dlx.components.models.base import MODELS, Model, ModelSpec
from dlx.core.errors import SpecError

RNN_ACTIVATIONS = ("tanh", "relu")


class RecurrentLayer(nn.Module):
    """One layer, one direction: the input projection for all steps at once, then the time loop."""

    gates: ClassVar[int] = 1
    cell: ClassVar[str] = ""

    def __init__(self, in_dim: int, hidden: int, reverse: bool = False):
        super().__init__()
        self.hidden, self.reverse = hidden, reverse
        self.W_ih = nn.Parameter(torch.empty(self.gates * hidden, in_dim))
        self.W_hh = nn.Parameter(torch.empty(self.gates * hidden, hidden))
        self.b = nn.Parameter(torch.empty(self.gates * hidden))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's recurrent default: everything U(+-1/sqrt(hidden))."""
        bound = 1.0 / math.sqrt(self.hidden)
        for p in (self.W_ih, self.W_hh, self.b):
            nn.init.uniform_(p, -bound, bound)

    def probe_weights(self) -> list[torch.Tensor]:
        return [self.W_ih, self.W_hh]

    def probe_biases(self) -> list[torch.Tensor]:
        return [self.b]

    def extra_repr(self) -> str:
        return f"in={self.W_ih.shape[1]}, hidden={self.hidden}" + (", reverse" if self.reverse else "")

    def forward(self, x: torch.Tensor, tbptt: int | None = None, watch=None, keep_seq: bool = True):
        """x (N, T, in) -> (all states (N, T, hidden), final state (N, hidden)); without
        keep_seq the first item is the final state too (a many-to-one head needs no more).

        tbptt: detach the state so that gradients cross at most this many steps (chunks
        aligned to the sequence's end: a loss at the last step reaches exactly its last k
        states). watch: (buf, row) to record ||dL/dh_t|| into buf[row, t]."""
        n, t_len, _ = x.shape
        # One matmul for every step's input projection (and the bias), time-major so
        # each step's slice is contiguous; the loop does only the recurrent matmul.
        xs = F.linear(x.transpose(0, 1), self.W_ih, self.b).unbind(0)
        w_hh = self.W_hh.t()
        h = c = None
        order = range(t_len - 1, -1, -1) if self.reverse else range(t_len)
        states: list[torch.Tensor | None] = [None] * t_len
        for s, t in enumerate(order):
            if tbptt and s and (t_len - s) % tbptt == 0:
                h = h.detach()
                c = c.detach() if c is not None else None
            h, c = self.step(xs[t], h, c, w_hh)
            if watch is not None and h.requires_grad:
                buf, row = watch
                h.register_hook(_norm_writer(buf, row, t))
            states[t] = h
        return (torch.stack(states, dim=1) if keep_seq else h), h

    def step(self, xp: torch.Tensor, h, c, w_hh):
        """One time step from the input projection xp (N, gates*hidden) -> (h, c or None);
        h and c are None at the first step (a zero state)."""
        raise NotImplementedError


class RNNLayer(RecurrentLayer):
    """h' = act(W_ih x + W_hh h + b), act tanh or relu."""

    cell = "rnn"

    def __init__(self, in_dim: int, hidden: int, reverse: bool = False, nonlinearity: str = "tanh"):
        super().__init__(in_dim, hidden, reverse)
        self.nonlinearity = nonlinearity
        self.act = torch.tanh if nonlinearity == "tanh" else torch.relu

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self.nonlinearity}"

    def step(self, xp, h, c, w_hh):
        return self.act(xp if h is None else torch.addmm(xp, h, w_hh)), None


class LSTMLayer(RecurrentLayer):
    """Gates i, f, g, o; c' = f*c + i*g, h' = o*tanh(c')."""

    gates, cell = 4, "lstm"

    def step(self, xp, h, c, w_hh):
        gates = xp if h is None else torch.addmm(xp, h, w_hh)
        i, f, g, o = gates.chunk(4, dim=1)
        i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
        g = torch.tanh(g)
        c = i * g if c is None else f * c + i * g
        return o * torch.tanh(c), c


class GRULayer(RecurrentLayer):
    """Gates r, z; n = tanh(W_in x + b_n + r*(W_hn h)), h' = (1-z)*n + z*h."""

    gates, cell = 3, "gru"

    def step(self, xp, h, c, w_hh):
        xr, xz, xn = xp.chunk(3, dim=1)
        if h is None:  # h = 0: the reset gate has nothing to reset
            return (1 - torch.sigmoid(xz)) * torch.tanh(xn), None
        hr, hz, hn = (h @ w_hh).chunk(3, dim=1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h, None


LAYERS: dict[str, type[RecurrentLayer]] = {"rnn": RNNLayer, "lstm": LSTMLayer, "gru": GRULayer}


def _norm_writer(buf: torch.Tensor, row: int, t: int):
    def hook(grad: torch.Tensor) -> None:
        buf[row, t].copy_(grad.norm())  # a device op: no host sync inside the step

    return hook


class RecurrentNet(Model):
    """Stacked (bi)directional recurrent layers and a Linear head `out`."""

    def __init__(
        self,
        cell: str,
        in_dim: int,
        out_dim: int,
        hidden: int,
        layers: int,
        bidirectional: bool,
        head: str,
        nonlinearity: str,
        dropout: float,
        tbptt: int | None,
        steps: int,
    ):
        super().__init__()
        self.cell, self.head, self.dropout, self.tbptt = cell, head, dropout, tbptt
        self.directions = 2 if bidirectional else 1
        stack = nn.ModuleDict()
        d = in_dim
        make = LAYERS[cell]
        kw = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        for layer in range(layers):
            stack[f"l{layer}"] = make(d, hidden, False, **kw)
            if bidirectional:
                stack[f"l{layer}_reverse"] = make(d, hidden, True, **kw)
            d = hidden * self.directions
        # Registered as `rnn`/`lstm`/`gru`, so layers read lstm.l0, lstm.l0_reverse, ...
        self.add_module(cell, stack)
        self.out = nn.Linear(d, out_dim)
        self.n_layers = layers
        self.steps = steps  # T of the data it is built for: the time probe's width
        self._watch: torch.Tensor | None = None

    @property
    def stack(self) -> nn.ModuleDict:
        return getattr(self, self.cell)

    def forward(self, x):
        buf, self._watch = self._watch, None  # armed for this forward only
        tbptt = self.tbptt if self.training else None
        layers = list(self.stack.values())
        finals: list[torch.Tensor] = []
        for i in range(self.n_layers):
            if self.dropout:
                # Only on each layer's inputs, never on the state carried through time.
                x = F.dropout(x, self.dropout, self.training)
            last = i == self.n_layers - 1
            keep = not (last and self.head == "many_to_one")
            seqs, finals = [], []
            for j in range(self.directions):
                row = i * self.directions + j
                seq, h = layers[row](x, tbptt, (buf, row) if buf is not None else None, keep)
                seqs.append(seq)
                finals.append(h)
            if keep:
                x = seqs[0] if self.directions == 1 else torch.cat(seqs, dim=-1)
        if self.head == "many_to_many":
            return self.out(x)
        # The forward direction ends at t = T, the reverse one at t = 1.
        return self.out(finals[0] if self.directions == 1 else torch.cat(finals, dim=-1))

    def init_targets(self):
        return [(f"{self.cell}.{name}", m) for name, m in self.stack.items()] + [("out", self.out)]

    def activation_modules(self):
        # None: the hidden states are not a module's output here (a layer returns the
        # whole sequence), and the gradient reaching them is the time probe's job.
        return []

    def time_probe_shape(self):
        return (self.n_layers * self.directions, self.steps)

    def watch_time(self, buf: torch.Tensor) -> None:
        self._watch = buf


class _RecurrentSpec(ModelSpec):
    accepts: ClassVar[str] = "sequence"
    cell: ClassVar[str] = "rnn"
    # Dropout on each layer's inputs; tbptt cuts the state's gradient. No norm inside the cells.
    honours: ClassVar[frozenset[str]] = frozenset({"regularization.dropout", "train.tbptt"})
    instead: ClassVar[dict[str, str]] = {
        "regularization.dropconnect": "use regularization.dropout instead (it drops each layer's inputs)"
    }

    hidden: PositiveInt = Field(64, le=100_000, description="units in each layer's state")
    layers: int = Field(1, ge=1, le=100, description="stacked recurrent layers")
    bidirectional: bool = Field(False, description="a second layer reading the sequence backwards")
    head: Literal["many_to_one", "many_to_many"] = Field(
        "many_to_one", description="output from the last step only, or at every step (copy)"
    )

    def check(self, feature_shape, cfg):
        problems = []
        name = self.registry_name  # type: ignore[attr-defined]
        if len(feature_shape) != 2:
            data = cfg.data.name
            hint = "; for MNIST use data: seq_mnist (28 steps of 28 pixels)" if data == "mnist" else ""
            problems.append(
                (
                    ("model",),
                    f"{name} needs (T, F) sequence inputs such as adding, copy, parity "
                    f"or seq_mnist, but data '{data}' gives samples of shape "
                    f"{tuple(feature_shape)}{hint}",
                )
            )
        seq_target = getattr(type(cfg.data), "sequence_target", None)
        if seq_target is True and self.head == "many_to_one":
            problems.append(
                (("model", "head"), f"data '{cfg.data.name}' has a target at every step; use head: many_to_many")
            )
        elif seq_target is False and self.head == "many_to_many":
            problems.append(
                (("model", "head"), f"data '{cfg.data.name}' has one target per sequence; use head: many_to_one")
            )
        k = cfg.train.tbptt
        if k and len(feature_shape) == 2 and k >= feature_shape[0]:
            # Chunks of k steps counted back from the last: with k >= T there is only one.
            problems.append(
                (
                    ("train", "tbptt"),
                    f"{k} is not shorter than the {feature_shape[0]} time steps "
                    f"of data '{cfg.data.name}', so it truncates nothing; use "
                    f"a value below {feature_shape[0]} or remove it",
                )
            )
        return problems

    def build(self, data, cfg):
        if len(data.feature_shape) != 2:
            raise SpecError(
                ("model",),
                f"{self.registry_name} needs (T, F) sequence inputs, but the "  # type: ignore[attr-defined]
                f"data's samples have shape {tuple(data.feature_shape)}",
            )
        if data.sequence_target != (self.head == "many_to_many"):
            want = "many_to_many" if data.sequence_target else "many_to_one"
            raise SpecError(("model", "head"), f"data '{data.name}' needs head: {want}")
        return RecurrentNet(
            self.cell,
            data.feature_shape[1],
            data.out_dim,
            self.hidden,
            self.layers,
            self.bidirectional,
            self.head,
            cfg.activation.name,
            cfg.regularization.dropout,
            cfg.train.tbptt,
            data.feature_shape[0],
        )


@MODELS.register("rnn")
class RNNSpec(_RecurrentSpec):
    """Plain (Elman) RNN: h' = act(W_ih x + W_hh h + b), act = the config's activation (tanh or relu)."""

    cell = "rnn"

    def check(self, feature_shape, cfg):
        problems = super().check(feature_shape, cfg)
        if cfg.activation.name not in RNN_ACTIVATIONS:
            problems.append(
                (
                    ("activation",),
                    f"rnn takes activation tanh or relu, not "
                    f"'{cfg.activation.name}' (lstm and gru fix their own gates)",
                )
            )
        return problems


@MODELS.register("lstm")
class LSTMSpec(_RecurrentSpec):
    """LSTM: gated cell state c' = f*c + i*g, h' = o*tanh(c'); gates sigmoid/tanh whatever `activation` says."""

    cell = "lstm"


@MODELS.register("gru")
class GRUSpec(_RecurrentSpec):
    """GRU: update z and reset r gates, h' = (1-z)*n + z*h; gates sigmoid/tanh whatever `activation` says."""

    cell = "gru"

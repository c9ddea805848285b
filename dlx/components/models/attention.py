"""Attention over sequences (N, T, F): embed, optional self-attention encoder blocks, then
attention pooling with a learned query (many_to_one) or a per-position output (many_to_many).

Every weight matrix lives in an nn.Linear, the scoring functions' own matrices
included, so init schemes, probes and the summary see each of them as a layer.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt, field_validator
from torch import nn

from dlx.components.models.base import MODELS, Model, ModelSpec
from dlx.core.errors import SpecError

# ---------------------------------------------------------------- scoring functions
# Each maps queries (..., Tq, d) and keys (..., Tk, d) to scores (..., Tq, Tk);
# a softmax over the last axis turns them into attention weights.


class DotScore(nn.Module):
    """q . k (Luong): no parameters; scores grow with sqrt(d) for unit-variance inputs."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, q, k):
        return q @ k.transpose(-1, -2)


class ScaledDotScore(DotScore):
    """q . k / sqrt(d) (Vaswani): dot scores kept at unit scale, so the softmax does not saturate."""

    def forward(self, q, k):
        return super().forward(q, k) / math.sqrt(self.dim)


class BilinearScore(nn.Module):
    """q^T W k (Luong 'general'): a learned d x d matrix, W k computed by the Linear `w`."""

    def __init__(self, dim: int):
        super().__init__()
        self.w = nn.Linear(dim, dim, bias=False)

    def forward(self, q, k):
        return q @ self.w(k).transpose(-1, -2)


class AdditiveScore(nn.Module):
    """v^T tanh(W_q q + W_k k) (Bahdanau): a one-hidden-layer net of width d per (query, key) pair."""

    def __init__(self, dim: int):
        super().__init__()
        # Hidden width = d: parameters 2*d*d (W_q, W_k) + d (v), no biases (as in Bahdanau 2015).
        self.w_q = nn.Linear(dim, dim, bias=False)
        self.w_k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, 1, bias=False)

    def forward(self, q, k):
        hidden = torch.tanh(self.w_q(q).unsqueeze(-2) + self.w_k(k).unsqueeze(-3))  # (..., Tq, Tk, d)
        return self.v(hidden).squeeze(-1)


SCORINGS: dict[str, type[nn.Module]] = {
    "additive": AdditiveScore,
    "dot": DotScore,
    "scaled_dot": ScaledDotScore,
    "bilinear": BilinearScore,
}


def scoring_params(scoring: str, dim: int) -> int:
    """The parameters one scoring function of width `dim` adds (for docs and tests)."""
    return {"additive": 2 * dim * dim + dim, "dot": 0, "scaled_dot": 0, "bilinear": dim * dim}[scoring]


# ---------------------------------------------------------------- layers


class SelfAttention(nn.Module):
    """Multi-head self-attention: per-head scoring of q/k projections, weights applied to v, then o."""

    def __init__(self, d_model: int, heads: int, scoring: str):
        super().__init__()
        self.heads, self.d_head = heads, d_model // heads
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        # One scoring function of width d_head, shared by the heads (their q/k projections differ).
        self.score = SCORINGS[scoring](self.d_head)
        self.o = nn.Linear(d_model, d_model)
        # The last forward's weights (N, heads, T, T), detached: Attention.attention_maps reads them.
        self.last_weights: torch.Tensor | None = None

    def _split(self, x):
        n, t, _ = x.shape
        return x.view(n, t, self.heads, self.d_head).transpose(1, 2)  # (N, H, T, d_head)

    def forward(self, h):
        n, t, d = h.shape
        q, k, v = self._split(self.q(h)), self._split(self.k(h)), self._split(self.v(h))
        w = torch.softmax(self.score(q, k), dim=-1)  # (N, H, T, T)
        self.last_weights = w.detach()
        ctx = (w @ v).transpose(1, 2).reshape(n, t, d)
        return self.o(ctx)


class EncoderBlock(nn.Module):
    """Post-norm transformer block: h = LN(h + attn(h)); h = LN(h + ff2(act(ff1(h))))."""

    def __init__(self, d_model: int, heads: int, scoring: str, ff: int, activation, dropout: float):
        super().__init__()
        self.attn = SelfAttention(d_model, heads, scoring)
        self.dropout = dropout  # functional, so a run without dropout has no empty summary rows
        self.ln1 = nn.LayerNorm(d_model)
        self.ff1 = nn.Linear(d_model, ff)
        self.act = activation.build(ff)
        self.ff2 = nn.Linear(ff, d_model)
        self.ln2 = nn.LayerNorm(d_model)

    def forward(self, h):
        n, t, d = h.shape
        h = self.ln1(h + self._drop(self.attn(h)))
        # Position-wise: positions become rows, so the activation sees (rows, units) like an
        # MLP's (a per-unit PReLU's channel axis, the probes' dead-unit statistics).
        f = self.ff2(self.act(self.ff1(h.reshape(n * t, d)))).view(n, t, d)
        return self.ln2(h + self._drop(f))

    def _drop(self, x):
        return F.dropout(x, self.dropout, self.training) if self.dropout else x


class AttentionPool(nn.Module):
    """softmax(score(query, h_t)) weighted sum of the positions, with one learned query."""

    def __init__(self, d_model: int, scoring: str):
        super().__init__()
        # The query is a Linear from the constant 1 (its weight is the query vector), so init
        # schemes, probes and penalties treat it like every other weight matrix.
        self.query = nn.Linear(1, d_model, bias=False)
        self.score = SCORINGS[scoring](d_model)
        self.last_weights: torch.Tensor | None = None

    def forward(self, h):
        q = self.query(h.new_ones(h.shape[0], 1, 1))  # (N, 1, d)
        w = torch.softmax(self.score(q, h), dim=-1)  # (N, 1, T)
        self.last_weights = w.detach()[:, 0]
        return (w @ h)[:, 0]  # (N, d)


def sinusoidal(t: int, d: int) -> torch.Tensor:
    """The fixed (T, d) position code of Vaswani et al.: sin/cos at geometric wavelengths."""
    pos = torch.arange(t, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(t, d)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
    return pe


class Attention(Model):
    """embed (+ positions) -> blockI ... -> pool -> out, or -> out at every step (many_to_many)."""

    def __init__(
        self,
        seq_len: int,
        in_features: int,
        out_dim: int,
        d_model: int,
        heads: int,
        blocks: int,
        ff: int,
        scoring: str,
        positional: str,
        head: str,
        activation,
        dropout: float,
    ):
        super().__init__()
        self.embed = nn.Linear(in_features, d_model)
        self.positional = positional
        if positional == "learned":
            self.pos = nn.Embedding(seq_len, d_model)
            nn.init.normal_(self.pos.weight, 0.0, 0.1)  # small next to the embedded inputs
        elif positional == "sinusoidal":
            self.register_buffer("pos_code", sinusoidal(seq_len, d_model), persistent=False)
        self.n_blocks = blocks
        for i in range(1, blocks + 1):
            self.add_module(f"block{i}", EncoderBlock(d_model, heads, scoring, ff, activation, dropout))
        self.head = head
        if head == "many_to_one":
            self.pool = AttentionPool(d_model, scoring)
        self.out = nn.Linear(d_model, out_dim)

    @property
    def last_pool_weights(self) -> torch.Tensor | None:
        """The pooling's attention weights (N, T) from the last forward, detached (many_to_one)."""
        return self.pool.last_weights if self.head == "many_to_one" else None

    def attention_maps(self, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """Every attention's weights for inputs x (N, T, F), in eval mode without gradients:
        (name, weights (N, heads, queries, keys)) per layer, each row a softmax (sums to 1).
        blockI.attn: every step queries every step; pool: its one learned query (1 head, 1 row).

        Computed only when asked (a forward pass of its own): training keeps no more than the
        last forward's weights, a reference to the tensor its backward holds anyway."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                self(x)
        finally:
            self.train(was_training)
        maps = [(f"block{i}.attn", getattr(self, f"block{i}").attn.last_weights) for i in range(1, self.n_blocks + 1)]
        if self.head == "many_to_one":
            maps.append(("pool", self.pool.last_weights[:, None, None, :]))  # (N, 1 head, 1 query, T)
        return maps

    def forward(self, x):
        h = self.embed(x)
        t = x.shape[1]
        if self.positional == "learned":
            h = h + self.pos(torch.arange(t, device=x.device))
        elif self.positional == "sinusoidal":
            h = h + self.pos_code[:t]
        for i in range(1, self.n_blocks + 1):
            h = getattr(self, f"block{i}")(h)
        if self.head == "many_to_one":
            h = self.pool(h)
        return self.out(h)  # (N, out) or (N, T, out)

    def init_targets(self):
        # Registration order is computation order: embed, blockI.attn.{q,k,v,score.*,o},
        # blockI.ff1/ff2, pool.query, pool.score.*, out.
        return [(n, m) for n, m in self.named_modules() if isinstance(m, nn.Linear)]

    def activation_modules(self):
        return [(f"block{i}.act", self.get_submodule(f"block{i}.act")) for i in range(1, self.n_blocks + 1)]


@MODELS.register("attention")
class AttentionSpec(ModelSpec):
    """Attention over (T, F) sequences: `blocks` transformer encoder blocks, then attention pooling."""

    accepts = "sequence"
    # Dropout inside the encoder blocks. Their LayerNorm is part of the block, not
    # regularization.norm, so that key (batch or layer) changes nothing here.
    honours: ClassVar[frozenset[str]] = frozenset({"regularization.dropout"})
    instead: ClassVar[dict[str, str]] = {
        "regularization.dropconnect": "for attention use regularization.dropout",
        "regularization.norm": "attention's encoder blocks always apply their own LayerNorm; remove it",
    }
    d_model: PositiveInt = Field(32, le=4096)
    scoring: Literal["additive", "dot", "scaled_dot", "bilinear"] = "scaled_dot"
    heads: PositiveInt = Field(1, le=256)
    blocks: int = Field(0, ge=0, le=64, description="self-attention encoder blocks before the head")
    ff: PositiveInt | None = Field(None, le=65536, description="feed-forward width (default 2*d_model)")
    positional: Literal["learned", "sinusoidal", "none"] = "sinusoidal"
    head: Literal["many_to_one", "many_to_many"] = "many_to_one"

    @field_validator("heads")
    @classmethod
    def _heads_divide(cls, heads, info):
        d = info.data.get("d_model")
        if d is not None and d % heads:
            raise ValueError(
                f"d_model ({d}) must be divisible by heads ({heads}): each head gets d_model/heads dimensions"
            )
        return heads

    def check(self, feature_shape, cfg):
        problems = []
        if len(feature_shape) != 2:
            problems.append(
                (
                    ("model",),
                    f"attention is a sequence model and needs (T, F) inputs "
                    f"(time steps, features per step); data '{cfg.data.name}' "
                    f"gives samples of shape {tuple(feature_shape)}"
                    + ("; data: seq_mnist reads MNIST as 28 rows of 28 pixels" if cfg.data.name == "mnist" else ""),
                )
            )
        per_step = getattr(type(cfg.data), "sequence_target", None)  # None: known only once loaded
        if per_step is not None and per_step != (self.head == "many_to_many"):
            problems.append(self._head_problem(cfg.data.name, per_step))
        return problems

    def unhonoured(self):
        if self.blocks:
            return {}
        return {
            "regularization.dropout": "dropout acts inside the encoder blocks and blocks is 0; "
            "use blocks >= 1 or remove it"
        }

    def _head_problem(self, data_name: str, per_step: bool) -> tuple[tuple, str]:
        want = "many_to_many" if per_step else "many_to_one"
        has = "one target per time step" if per_step else "one target per sequence"
        return ("model", "head"), f"data '{data_name}' has {has}; use head: {want}"

    def build(self, data, cfg):
        # Data whose shape is only known once loaded (arrays) is checked here.
        problems = self.check(data.feature_shape, cfg)
        if data.sequence_target != (self.head == "many_to_many"):
            problems.append(self._head_problem(data.name, data.sequence_target))
        if problems:
            raise SpecError(*problems[0])
        t, f = data.feature_shape
        return Attention(
            t,
            f,
            data.out_dim,
            self.d_model,
            self.heads,
            self.blocks,
            self.ff or 2 * self.d_model,
            self.scoring,
            self.positional,
            self.head,
            cfg.activation,
            cfg.regularization.dropout,
        )

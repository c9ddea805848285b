"""The Config model and its sections: what keys a config takes, their types, bounds and defaults.

Component sections (data, model, activation, init, optimizer) come from their registries;
the sections here are dlx's own (regularization, train, instruments, pretrain).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveInt,
    PrivateAttr,
    field_validator,
    model_validator,
)

from dlx.components.activations import ACTIVATIONS
from dlx.components.data import DATASETS
from dlx.components.init import INITS
from dlx.components.models import MODELS
from dlx.components.optim import OPTIMIZERS, SGD
from dlx.config.changes import change_set, changeable_keys
from dlx.core.errors import Problem
from dlx.core.paths import ExistingFile
from dlx.core.registry import Section, closest
from dlx.diagnosis.engine import PRUNE_WARMUP


def _positive_int_or(word: str):
    """A validator for keys that take a positive integer or one special word."""

    def check(v: Any) -> Any:
        if v == word:
            return v
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"must be a positive integer or '{word}', got {v!r}")
        return v

    return BeforeValidator(check)


class EarlyStopping(Section):
    metric: Literal["test_loss", "test_acc", "train_loss", "train_acc"] = Field(
        "test_loss", description="the metric watched at each evaluation (losses must fall, accuracies rise)"
    )
    patience: PositiveInt = Field(5, description="evaluations without improvement before stopping")
    min_delta: NonNegativeFloat = Field(0.0, description="an evaluation improves only by more than this")


class Regularization(Section):
    l1: NonNegativeFloat = Field(0.0, description="adds l1 * sum|w| over weights (not biases)")
    l2: NonNegativeFloat = Field(0.0, description="adds l2/2 * sum w^2 over weights: gradient l2*w")
    dropout: float = Field(
        0.0, ge=0, lt=1, description="the probability of zeroing each hidden unit in training (inverted dropout)"
    )
    dropconnect: float = Field(
        0.0, ge=0, lt=1, description="the probability of zeroing each weight in training (mlp only)"
    )
    norm: Literal["none", "batch", "layer"] = Field(
        "none", description="a normalization layer before each hidden activation"
    )
    clip_norm: float | None = Field(None, gt=0, description="clip the global gradient L2 norm")
    clip_value: float | None = Field(None, gt=0, description="clip each gradient entry to +-value")
    early_stopping: EarlyStopping | None = Field(
        None, description="stop when a metric stops improving (null: train to the end)"
    )


class Prune(Section):
    on: list[str] = Field(
        min_length=1,
        description="verdict kinds that stop the run while it trains (status pruned): "
        "symmetry, dead_units, vanishing, vanishing_through_time, not_learning",
    )
    warmup: float = Field(
        PRUNE_WARMUP, ge=0, lt=1, description="the fraction of the steps trained before any verdict may stop the run"
    )
    patience: PositiveInt = Field(3, le=1000, description="log intervals in a row the verdict must hold")

    @field_validator("on")
    @classmethod
    def _kinds(cls, v: list[str]) -> list[str]:
        from dlx.diagnosis.engine import NOT_PRUNABLE, PRUNABLE

        for kind in v:
            if kind in NOT_PRUNABLE:
                raise ValueError(
                    f"{kind!r} is not safe to stop a run on: {NOT_PRUNABLE[kind]}; "
                    f"the kinds that are: {', '.join(PRUNABLE)}"
                )
            if kind not in PRUNABLE:
                hint = closest(kind, list(PRUNABLE))
                raise ValueError(
                    f"unknown verdict kind {kind!r}"
                    + (f" (did you mean {hint!r}?)" if hint else "")
                    + f"; one of {', '.join(PRUNABLE)}"
                )
        return list(dict.fromkeys(v))


class Change(Section):
    """One change of train.changes: the keys it sets (dlx.config.changes.CHANGEABLE) from a step on."""

    step: int = Field(ge=0, description="the step after which it takes effect (applied between steps)")
    set: dict[str, Union[int, float]] = Field(description="keys and their new values: " + changeable_keys())

    @field_validator("set", mode="before")
    @classmethod
    def _set(cls, v: Any) -> dict[str, Union[int, float]]:
        return change_set(v)


class Train(Section):
    epochs: PositiveInt | None = Field(None, description="passes over the training set (5 unless steps is given)")
    steps: PositiveInt | None = Field(None, description="optimizer steps in all, instead of epochs")
    batch_size: Annotated[Union[PositiveInt, Literal["full"]], _positive_int_or("full")] = Field(
        64,
        description="samples per step; full: the whole training set (batch gradient descent); "
        "the last partial batch of an epoch is dropped",
    )
    balance: Literal["none", "oversample", "undersample", "weighted"] = Field(
        "none",
        description="for imbalanced classes: repeat the rarer classes' samples, cut the commoner ones, "
        "or weight the cross-entropy by 1/class frequency",
    )
    loss: Literal["cross_entropy", "mse"] = Field(
        "cross_entropy", description="the training loss (sigmoid outputs with cross_entropy: binary, per class)"
    )
    device: str = Field("auto", description="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    # Bounded: the probes preallocate a [log_every, layers] buffer, so log_every: 1e12 failed
    # in torch's allocator instead of here.
    log_every: PositiveInt = Field(10, le=10_000, description="steps between host reads of the probes")
    eval_every: Annotated[Union[PositiveInt, Literal["epoch"]], _positive_int_or("epoch")] = Field(
        "epoch",
        description="steps between test-set evaluations, at the end of the log interval "
        "reaching each multiple (epoch: once per epoch)",
    )
    # Bounded: torch.set_num_threads overflows past 2^31 and crashed the process at 10^6.
    threads: PositiveInt | None = Field(
        None,
        le=1024,
        description="torch CPU threads (default: one per 150 MFLOP of work per step, at most the cores: "
        "1 for small nets, which extra threads only slow down)",
    )
    tbptt: PositiveInt | None = Field(
        None, description="recurrent models: backpropagate through at most this many steps"
    )
    prune: Prune | None = Field(
        None,
        description="stop the run once a verdict in prune.on has held for prune.patience log intervals "
        "after the warm-up (compare and sweep: --prune-on)",
    )
    # Needed on --resume too (the hooks that hold the masked weights at 0 are the run's, not
    # the checkpoint's): an ExistingFile, not a StartFile. A masked run keeps a copy (masks.pt).
    mask: ExistingFile | None = Field(
        None,
        description="a .pt file of weight masks {parameter name: 0/1 tensor of its shape}: the weights at 0 "
        "start at 0 and stay exactly 0 (lottery tickets: dlx ticket writes them); null: every weight trains",
    )
    checkpoint: bool = Field(
        True,
        description="write checkpoint.pt (at the end, on Ctrl-C or another stop "
        "signal, and every checkpoint_every steps) so the run can be "
        "resumed",
    )
    # Pictures along the way (dlx plot --step, dlx animate, the histograms between init
    # and end) are drawn from these; a resume needs none of them (checkpoint.pt). 0: none
    # (the init is drawn again from the seed, the end is checkpoint.pt's); 1 is refused.
    snapshots: int = Field(
        30,
        ge=0,
        le=1000,
        description="the model's weights kept along the way for pictures: init, the end and "
        "evenly between (at most 4 MiB of them); 0: none (pictures at the init draw it again "
        "from the seed, at the end from checkpoint.pt; no --step, no animation); 1 is refused. "
        "A compare over many seeds keeps none for each variant's seeds past the first 3",
    )
    # None: checkpoints only at the end and on Ctrl-C (a killed run then cannot resume).
    # N: also at the end of the log interval that reaches each multiple of N, so the
    # checkpoint and metrics.jsonl always agree on the last logged step.
    checkpoint_every: PositiveInt | None = Field(
        None,
        description="steps between checkpoints during the "
        "run (written at the next log step); null: only at the end "
        "and on a stop signal",
    )

    changes: list[Change] = Field(
        default_factory=list,
        max_length=1000,
        description="changes while it trains, [{step: 500, set: {optimizer.lr: 0.001}}, ...]: each applied "
        "between steps, after its step (train.batch_size at the first epoch start at or after it), listed "
        "in events.jsonl; keys: " + changeable_keys(),
    )

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        # At most 3 digits: torch.device raises RuntimeError on an index past int64 and
        # wraps one past 2^16 around to another device.
        if re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,3})?", v):
            return v
        choices = ["auto", "cpu", "cuda", "cuda:0", "mps"]
        hint = "cuda" if v.lower() in ("gpu", "nvidia") else closest(v, choices)
        raise ValueError(
            f"'{v}' is not a valid device"
            + (f"; did you mean '{hint}'?" if hint else "")
            + " (valid: auto, cpu, cuda, cuda:N, mps)"
        )

    @field_validator("mask")
    @classmethod
    def _mask_suffix(cls, v):
        if v is not None and v.suffix not in (".pt", ".pth"):
            raise ValueError(f"{v} is not a .pt file; save the masks with torch.save({{name: 0/1 tensor}}, path)")
        return v

    @field_validator("snapshots")
    @classmethod
    def _snapshots(cls, v: int) -> int:
        if v == 1:
            raise ValueError(
                "1 would keep the init alone, which the seed draws again; "
                "give 0 (none) or 2 and more (init, end and between)"
            )
        return v

    @model_validator(mode="after")
    def _epochs_or_steps(self):
        if self.epochs is not None and self.steps is not None:
            raise ValueError("give train.epochs or train.steps, not both")
        if self.epochs is None and self.steps is None:
            object.__setattr__(self, "epochs", 5)
        return self

    @model_validator(mode="after")
    def _checkpoints_on(self):
        if self.checkpoint_every is not None and not self.checkpoint:
            raise ValueError("checkpoint_every needs checkpoint: true (checkpoint: false writes no checkpoints)")
        return self


class InstrumentsSection(Section):
    """Research instruments (dlx.run.instruments), each off unless turned on, measured at log
    steps `every` apart on the first `batch` training samples, outside the training step."""

    sharpness: bool = Field(False, description="top Hessian eigenvalue (Lanczos) against the lr's stability threshold")
    trace: bool = Field(False, description="Hessian trace (Hutchinson)")
    noise: bool = Field(False, description="per-sample gradient SNR per layer and the gradient noise scale B_simple")
    spectra: bool = Field(False, description="singular values, stable and effective rank, distance from init per layer")
    hessian: bool = Field(
        False, description="the whole Hessian's eigenvalues, exactly (tiny nets: at most 1,000 parameters)"
    )
    modes: bool = Field(
        False,
        description="the strength u_i^T (W_L...W_1) v_i of each mode of the teacher map (Saxe et al. 2013): "
        "data: linear_teacher and an mlp with activation: linear (no norm); biases are left out of the product",
    )
    every: Annotated[Union[PositiveInt, Literal["auto"]], _positive_int_or("auto")] = Field(
        "auto",
        description="steps between measurements (auto: at most about 20 over the run, never costing more than "
        "the training so far)",
    )
    batch: PositiveInt = Field(256, le=65536, description="the probe batch: the first N training samples")
    lanczos: PositiveInt = Field(12, le=200, description="Lanczos iterations for the top eigenvalue")
    hutchinson: PositiveInt = Field(16, le=10_000, description="Rademacher vectors for the trace")

    @property
    def active(self) -> bool:
        return self.sharpness or self.trace or self.noise or self.spectra or self.hessian or self.modes


class Pretrain(Section):
    """Greedy layer-wise pretraining (Hinton & Salakhutdinov 2006, Bengio et al. 2007): before
    the first step, each hidden layer in turn is trained as an autoencoder on the output of
    the layers below it (already pretrained), then the whole net trains as usual."""

    kind: Literal["autoencoder"] = Field("autoencoder", description="what each layer learns: to reconstruct its input")
    steps: PositiveInt = Field(300, le=100_000, description="autoencoder steps per layer")
    lr: float = Field(0.01, gt=0, le=10, description="the autoencoders' Adam learning rate")
    batch_size: PositiveInt = Field(64, le=65536)


class Config(Section):
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    data: DATASETS.field_type()  # type: ignore[valid-type]
    model: MODELS.field_type()  # type: ignore[valid-type]
    activation: ACTIVATIONS.field_type() = "relu"  # type: ignore[valid-type]
    init: INITS.field_type() = "default"  # type: ignore[valid-type]
    optimizer: OPTIMIZERS.field_type() = Field(default_factory=lambda: SGD(name="sgd"))  # type: ignore[valid-type]
    regularization: Regularization = Field(default_factory=Regularization)
    train: Train = Field(default_factory=Train)
    instruments: InstrumentsSection = Field(default_factory=InstrumentsSection)
    pretrain: Pretrain | None = Field(None, description="greedy layer-wise autoencoder pretraining (mlp)")

    model_config = ConfigDict(validate_default=True)
    _located: Any = PrivateAttr(None)  # where each key came from, for problems found later

    def __eq__(self, other: object) -> bool:
        # Equal configs are equal wherever they came from (ignore _located).
        return isinstance(other, Config) and self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]

    def problem(self, path: tuple, message: str) -> Problem:
        """A Problem at `path` with its YAML line or --set, when known."""
        if self._located is not None:
            return self._located.problem(tuple(path), message)
        return Problem(".".join(map(str, path)), message)

    def resolved(self) -> dict:
        """Plain data with every default filled in (what config.yaml in a run holds)."""
        return _plain(self.model_dump(mode="json"))


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj

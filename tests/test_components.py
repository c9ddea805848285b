"""Behaviour of the building blocks: activations, inits, the MLP, optimizers,
schedules and unit_spread. Each test checks numbers against a formula worked
out independently of dlx, not against dlx's own output."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from dlx.components.activations import ACTIVATIONS
from dlx.components.init import INITS
from dlx.components.models.mlp import MLP, DropConnectLinear
from dlx.components.optim import OPTIMIZERS, SCHEDULES
from dlx.config.loader import load_config
from dlx.core.errors import DlxError
from dlx.run.probes import unit_spread

XS = [-3.0, -1.0, -0.25, 0.0, 0.25, 1.0, 3.0]


def _x():
    return torch.tensor(XS, dtype=torch.float64)


def mlp(
    in_dim=4,
    out_dim=3,
    widths=(8, 8),
    activation="relu",
    norm="none",
    dropout=0.0,
    dropconnect=0.0,
    output_activation="none",
):
    act = ACTIVATIONS.parse(activation)
    return MLP(in_dim, out_dim, list(widths), act, norm, dropout, dropconnect, output_activation)


def cfg_model(seed=0, **over):
    """A model built the way the trainer builds it: config -> data -> model."""
    raw = {
        "seed": seed,
        "data": {"name": "blobs", "dim": 5, "classes": 4, "n_train": 64, "n_test": 16},
        "model": {"name": "mlp", "depth": 2, "width": 16},
        "activation": "relu",
    }
    raw.update(over)
    cfg = load_config(raw)
    return cfg, cfg.model.build(cfg.data.load(cfg.seed), cfg)


# ============================================================== activations


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

TEXTBOOK = {
    "identity": ({"name": "identity"}, lambda x: x),
    "linear (alias)": ({"name": "linear"}, lambda x: x),
    "sigmoid": ({"name": "sigmoid"}, _sigmoid),
    "tanh": ({"name": "tanh"}, math.tanh),
    "relu": ({"name": "relu"}, lambda x: max(0.0, x)),
    "leaky_relu default": ({"name": "leaky_relu"}, lambda x: x if x > 0 else 0.01 * x),
    "leaky_relu slope 0.2": ({"name": "leaky_relu", "negative_slope": 0.2}, lambda x: x if x > 0 else 0.2 * x),
    "prelu init 0.1": ({"name": "prelu", "init": 0.1}, lambda x: x if x > 0 else 0.1 * x),
    "elu default": ({"name": "elu"}, lambda x: x if x > 0 else math.exp(x) - 1.0),
    "elu alpha 2": ({"name": "elu", "alpha": 2.0}, lambda x: x if x > 0 else 2.0 * (math.exp(x) - 1.0)),
    "selu": ({"name": "selu"}, lambda x: SELU_SCALE * (x if x > 0 else SELU_ALPHA * (math.exp(x) - 1.0))),
    "gelu": ({"name": "gelu"}, lambda x: 0.5 * x * (1.0 + math.erf(x / math.sqrt(2.0)))),
    "gelu tanh": (
        {"name": "gelu", "approximate": "tanh"},
        lambda x: 0.5 * x * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))),
    ),
    "silu": ({"name": "silu"}, lambda x: x * _sigmoid(x)),
    "swish (alias)": ({"name": "swish"}, lambda x: x * _sigmoid(x)),
    "softplus default": ({"name": "softplus"}, lambda x: math.log1p(math.exp(x))),
    "softplus beta 2": ({"name": "softplus", "beta": 2.0}, lambda x: math.log1p(math.exp(2.0 * x)) / 2.0),
    "softsign": ({"name": "softsign"}, lambda x: x / (1.0 + abs(x))),
}


@pytest.mark.parametrize("label", list(TEXTBOOK))
def test_activation_output_matches_textbook_formula(label):
    raw, formula = TEXTBOOK[label]
    module = ACTIVATIONS.parse(raw).build(len(XS)).double()
    with torch.no_grad():
        got = module(_x()).tolist()
    want = [formula(x) for x in XS]
    assert got == pytest.approx(want, rel=1e-6, abs=1e-9)


def test_every_registered_activation_is_covered_by_a_formula():
    covered = {raw["name"] for raw, _ in TEXTBOOK.values()}
    assert set(ACTIVATIONS.names()) <= covered


def test_activation_shorthand_string_equals_mapping():
    assert ACTIVATIONS.parse("elu") == ACTIVATIONS.parse({"name": "elu"})


def test_activation_rejects_unknown_parameter_and_bad_range():
    with pytest.raises(ValidationError):
        ACTIVATIONS.parse({"name": "relu", "slope": 0.1})
    with pytest.raises(ValidationError):
        ACTIVATIONS.parse({"name": "leaky_relu", "negative_slope": 1.5})
    with pytest.raises(ValidationError):
        ACTIVATIONS.parse({"name": "gelu", "approximate": "erf"})


def test_prelu_per_unit_has_one_slope_per_unit_and_shared_has_one():
    per_unit = ACTIVATIONS.parse({"name": "prelu", "per_unit": True, "init": 0.3}).build(7)
    shared = ACTIVATIONS.parse({"name": "prelu"}).build(7)
    assert sum(p.numel() for p in per_unit.parameters()) == 7
    assert torch.allclose(per_unit.weight, torch.full((7,), 0.3))
    assert sum(p.numel() for p in shared.parameters()) == 1
    assert shared.weight.item() == pytest.approx(0.25)


def test_prelu_per_unit_in_mlp_gives_width_slopes_per_layer():
    m = mlp(widths=(5, 9), activation={"name": "prelu", "per_unit": True})
    assert tuple(m.act1.weight.shape) == (5,)
    assert tuple(m.act2.weight.shape) == (9,)


@pytest.mark.parametrize("name,bounds", [("sigmoid", (0.0, 1.0)), ("tanh", (-1.0, 1.0)), ("softsign", (-1.0, 1.0))])
def test_saturating_activations_declare_their_bounds(name, bounds):
    spec = ACTIVATIONS.parse(name)
    assert spec.bounds == bounds
    assert spec.off_below is None
    # the declared bounds really are the range of the function
    out = spec.build(1)(torch.linspace(-50, 50, 1001))
    assert out.min() >= bounds[0] and out.max() <= bounds[1]
    assert out.min() < bounds[0] + 0.05 and out.max() > bounds[1] - 0.05


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "prelu"])
def test_relu_family_declares_its_off_side_below_zero(name):
    spec = ACTIVATIONS.parse(name)
    assert spec.off_below == 0.0
    assert spec.bounds is None


@pytest.mark.parametrize("name", ["identity", "elu", "selu", "gelu", "silu", "softplus"])
def test_unbounded_activations_declare_no_bounds_or_off_side(name):
    spec = ACTIVATIONS.parse(name)
    assert spec.bounds is None
    assert spec.off_below is None
    assert not spec.units_can_die


@pytest.mark.parametrize(
    "raw", [*ACTIVATIONS.names(), {"name": "leaky_relu", "negative_slope": 0.0}, {"name": "prelu", "init": 0.0}]
)
def test_units_can_die_exactly_where_torch_gives_the_off_side_no_gradient(raw):
    # The oracle: torch's derivative, with respect to the input and to the activation's
    # own parameters (prelu's slope), at inputs whose output is at or below off_below.
    spec = ACTIVATIONS.parse(raw)
    if spec.off_below is None:
        assert not spec.units_can_die
        return
    module = spec.build(1).double()
    x = torch.linspace(-5.0, -0.1, 50, dtype=torch.float64, requires_grad=True)[:, None]
    out = module(x)
    assert (out <= spec.off_below).all()
    grads = torch.autograd.grad(out.sum(), [x, *module.parameters()])
    assert spec.units_can_die == all(bool((g == 0).all()) for g in grads)


# ============================================================== inits


def wide(in_dim=256, width=512, out_dim=128):
    """fc1 is (width, in_dim): big and non-square, so fan_in and fan_out differ."""
    return mlp(in_dim=in_dim, out_dim=out_dim, widths=(width,))


def init(raw, model):
    INITS.parse(raw).init_model(model)
    return model


def test_zeros_init_sets_every_weight_and_bias_to_zero():
    _, m = cfg_model()
    init("zeros", m)
    for _, layer in m.init_targets():
        assert torch.count_nonzero(layer.weight) == 0
        assert torch.count_nonzero(layer.bias) == 0


def test_constant_init_sets_weights_to_value_and_biases_to_bias():
    _, m = cfg_model()
    init({"name": "constant", "value": 0.37, "bias": -0.5}, m)
    for _, layer in m.init_targets():
        assert torch.all(layer.weight == 0.37)
        assert torch.all(layer.bias == -0.5)


def test_init_through_config_section_applies_to_built_model():
    cfg, m = cfg_model(init={"name": "constant", "value": 0.25})
    cfg.init.init_model(m)
    assert all(torch.all(layer.weight == 0.25) for _, layer in m.init_targets())


@pytest.mark.parametrize("std,mean", [(0.01, 0.0), (1.0, 0.0), (0.2, 0.5)])
def test_normal_init_std_and_mean_within_10_percent(std, mean):
    torch.manual_seed(0)
    m = mlp(in_dim=512, out_dim=10, widths=(512,))
    init({"name": "normal", "std": std, "mean": mean}, m)
    w = m.fc1.weight
    assert tuple(w.shape) == (512, 512)
    assert w.std().item() == pytest.approx(std, rel=0.1)
    assert w.mean().item() == pytest.approx(mean, abs=0.1 * std)
    assert torch.all(m.fc1.bias == 0)


def test_uniform_init_stays_within_low_high():
    torch.manual_seed(0)
    m = wide()
    init({"name": "uniform", "low": -0.3, "high": 0.1}, m)
    w = m.fc1.weight
    assert w.min() >= -0.3 and w.max() <= 0.1
    assert w.min() < -0.29 and w.max() > 0.09
    with pytest.raises(ValidationError):
        INITS.parse({"name": "uniform", "low": 0.1, "high": 0.1})


def _var(w):
    return w.double().pow(2).mean().item()  # zero-mean schemes: E[w^2]


@pytest.mark.parametrize("name", ["xavier_uniform", "xavier_normal", "glorot_uniform", "glorot_normal"])
def test_xavier_variance_is_2_over_fan_in_plus_fan_out(name):
    torch.manual_seed(0)
    m = wide(in_dim=256, width=512)
    init(name, m)
    assert _var(m.fc1.weight) == pytest.approx(2.0 / (256 + 512), rel=0.05)
    init({"name": name, "gain": 2.0}, m)
    assert _var(m.fc1.weight) == pytest.approx(4.0 * 2.0 / (256 + 512), rel=0.05)


@pytest.mark.parametrize("name", ["kaiming_normal", "he_normal", "kaiming_uniform", "he_uniform"])
def test_kaiming_variance_is_2_over_fan_in(name):
    torch.manual_seed(0)
    m = wide(in_dim=256, width=512)
    init(name, m)
    assert _var(m.fc1.weight) == pytest.approx(2.0 / 256, rel=0.05)
    # mode fan_out uses the other dimension
    init({"name": name, "mode": "fan_out"}, m)
    assert _var(m.fc1.weight) == pytest.approx(2.0 / 512, rel=0.05)
    # linear nonlinearity: gain 1
    init({"name": name, "nonlinearity": "linear"}, m)
    assert _var(m.fc1.weight) == pytest.approx(1.0 / 256, rel=0.05)


def test_kaiming_uniform_bound_is_sqrt_6_over_fan_in():
    torch.manual_seed(0)
    m = wide(in_dim=256, width=512)
    init("kaiming_uniform", m)
    w = m.fc1.weight
    bound = math.sqrt(6.0 / 256)
    assert w.abs().max().item() <= bound + 1e-7
    assert w.abs().max().item() > 0.99 * bound
    # and it is uniform, not normal: a flat histogram over [-bound, bound]
    hist = torch.histc(w, bins=10, min=-bound, max=bound)
    assert hist.min() / hist.max() > 0.9


def test_lecun_normal_variance_is_1_over_fan_in():
    torch.manual_seed(0)
    m = wide(in_dim=256, width=512)
    init("lecun_normal", m)
    assert _var(m.fc1.weight) == pytest.approx(1.0 / 256, rel=0.05)
    assert _var(m.out.weight) == pytest.approx(1.0 / 512, rel=0.05)


@pytest.mark.parametrize("gain", [1.0, 1.5])
def test_orthogonal_square_layer_gives_w_wt_equal_gain_squared_identity(gain):
    torch.manual_seed(0)
    m = mlp(in_dim=64, out_dim=10, widths=(64,))
    init({"name": "orthogonal", "gain": gain}, m)
    w = m.fc1.weight.double()
    assert torch.allclose(w @ w.T, gain**2 * torch.eye(64, dtype=torch.float64), atol=1e-4)
    # non-square (10 x 64): rows orthonormal (times gain)
    w = m.out.weight.double()
    assert torch.allclose(w @ w.T, gain**2 * torch.eye(10, dtype=torch.float64), atol=1e-4)


def test_default_init_keeps_pytorch_weights_and_nonzero_biases():
    torch.manual_seed(3)
    fresh = mlp()
    torch.manual_seed(3)
    m = mlp()
    init("default", m)
    for (_, a), (_, b) in zip(fresh.init_targets(), m.init_targets()):
        assert torch.equal(a.weight, b.weight)
        assert torch.equal(a.bias, b.bias)
        assert torch.count_nonzero(b.bias) == b.bias.numel()
        bound = 1.0 / math.sqrt(b.weight.shape[1])
        assert b.bias.abs().max() <= bound


def test_default_init_with_bias_sets_biases_only():
    torch.manual_seed(3)
    fresh = mlp()
    torch.manual_seed(3)
    m = mlp()
    init({"name": "default", "bias": 0.1}, m)
    for (_, a), (_, b) in zip(fresh.init_targets(), m.init_targets()):
        assert torch.equal(a.weight, b.weight)
        assert torch.allclose(b.bias, torch.full_like(b.bias, 0.1))


def test_bias_parameter_sets_biases_for_a_scheme():
    torch.manual_seed(0)
    m = mlp()
    init({"name": "kaiming_normal", "bias": 0.05}, m)
    for _, layer in m.init_targets():
        assert torch.allclose(layer.bias, torch.full_like(layer.bias, 0.05))
    init({"name": "xavier_normal"}, m)  # the default bias for a scheme is 0
    for _, layer in m.init_targets():
        assert torch.count_nonzero(layer.bias) == 0


def test_init_leaves_norm_layers_alone():
    torch.manual_seed(0)
    m = mlp(norm="batch")
    init("zeros", m)
    assert torch.all(m.bn1.weight == 1) and torch.all(m.bn1.bias == 0)


# -------------------------------------------------------------- from_file


def _params(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _assert_same(a: nn.Module, b: nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.fixture
def source_and_target():
    torch.manual_seed(1)
    src = mlp(widths=(8, 6))
    torch.manual_seed(2)
    dst = mlp(widths=(8, 6))
    assert not torch.equal(src.fc1.weight, dst.fc1.weight)
    return src, dst


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_from_file_pt_state_dict_reproduces_parameters(tmp_path, source_and_target, suffix):
    src, dst = source_and_target
    path = tmp_path / f"w{suffix}"
    torch.save(src.state_dict(), path)
    init({"name": "from_file", "path": str(path)}, dst)
    _assert_same(src, dst)


def test_from_file_npz_with_same_keys_reproduces_parameters(tmp_path, source_and_target):
    src, dst = source_and_target
    path = tmp_path / "w.npz"
    np.savez(path, **{k: v.numpy() for k, v in src.state_dict().items()})
    init({"name": "from_file", "path": str(path)}, dst)
    _assert_same(src, dst)


def test_from_file_npz_float64_arrays_are_cast_to_model_dtype(tmp_path, source_and_target):
    src, dst = source_and_target
    path = tmp_path / "w.npz"
    np.savez(path, **{k: v.double().numpy() for k, v in src.state_dict().items()})
    init({"name": "from_file", "path": str(path)}, dst)
    assert dst.fc1.weight.dtype == torch.float32
    _assert_same(src, dst)


def test_from_file_accepts_dlx_checkpoint_dict(tmp_path, source_and_target):
    src, dst = source_and_target
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": src.state_dict(), "step": 12, "epoch": 3, "config": {"seed": 0}}, path)
    init({"name": "from_file", "path": str(path)}, dst)
    _assert_same(src, dst)


def test_from_file_with_batchnorm_buffers_round_trips(tmp_path):
    torch.manual_seed(1)
    src = mlp(norm="batch")
    src.train()
    src(torch.randn(32, 4))  # move the running statistics away from their defaults
    torch.manual_seed(2)
    dst = mlp(norm="batch")
    path = tmp_path / "bn.pt"
    torch.save(src.state_dict(), path)
    init({"name": "from_file", "path": str(path)}, dst)
    _assert_same(src, dst)


def test_from_file_wrong_shape_raises_naming_the_key(tmp_path, source_and_target):
    src, dst = source_and_target
    state = src.state_dict()
    state["fc2.weight"] = torch.zeros(7, 8)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    before = _params(dst)
    with pytest.raises(DlxError, match=r"fc2\.weight") as e:
        init({"name": "from_file", "path": str(path)}, dst)
    assert "(7, 8)" in str(e.value) and "(6, 8)" in str(e.value)
    # nothing was half-loaded
    for k, v in dst.state_dict().items():
        assert torch.equal(v, before[k]), k
    # a wrong shape is an error even when not strict
    with pytest.raises(DlxError, match=r"fc2\.weight"):
        init({"name": "from_file", "path": str(path), "strict": False}, dst)


def test_from_file_missing_key_raises_naming_the_key(tmp_path, source_and_target):
    src, dst = source_and_target
    state = src.state_dict()
    del state["out.bias"]
    path = tmp_path / "missing.npz"
    np.savez(path, **{k: v.numpy() for k, v in state.items()})
    with pytest.raises(DlxError, match=r"out\.bias") as e:
        init({"name": "from_file", "path": str(path)}, dst)
    assert "strict" in str(e.value)  # tells the user the way out


def test_from_file_unexpected_key_raises_when_strict(tmp_path, source_and_target):
    src, dst = source_and_target
    state = src.state_dict()
    state["fc9.weight"] = torch.zeros(2, 2)
    path = tmp_path / "extra.pt"
    torch.save(state, path)
    with pytest.raises(DlxError, match=r"fc9\.weight"):
        init({"name": "from_file", "path": str(path)}, dst)


def test_from_file_not_strict_loads_matching_and_keeps_the_rest(tmp_path, source_and_target):
    src, dst = source_and_target
    state = src.state_dict()
    del state["out.weight"], state["out.bias"]
    state["extra.weight"] = torch.ones(3)
    path = tmp_path / "part.pt"
    torch.save(state, path)
    keep_w, keep_b = dst.out.weight.detach().clone(), dst.out.bias.detach().clone()
    init({"name": "from_file", "path": str(path), "strict": False}, dst)
    for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"):
        assert torch.equal(dst.state_dict()[k], src.state_dict()[k]), k
    assert torch.equal(dst.out.weight, keep_w) and torch.equal(dst.out.bias, keep_b)


def test_from_file_corrupt_file_raises_dlx_error(tmp_path, source_and_target):
    _, dst = source_and_target
    path = tmp_path / "junk.pt"
    path.write_bytes(b"this is not a torch file")
    with pytest.raises(DlxError, match="junk.pt"):
        init({"name": "from_file", "path": str(path)}, dst)


def test_from_file_rejects_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(ValidationError, match="not found"):
        INITS.parse({"name": "from_file", "path": str(tmp_path / "nope.pt")})
    txt = tmp_path / "w.txt"
    txt.write_text("x")
    with pytest.raises(ValidationError, match=r"\.npz"):
        INITS.parse({"name": "from_file", "path": str(txt)})


# ============================================================== MLP


def test_mlp_parameter_names_are_fc_then_out():
    m = mlp(widths=(8, 8, 8))
    assert [n for n, _ in m.named_parameters()] == [
        "fc1.weight",
        "fc1.bias",
        "fc2.weight",
        "fc2.bias",
        "fc3.weight",
        "fc3.bias",
        "out.weight",
        "out.bias",
    ]


def test_mlp_from_config_depth_and_width_give_layer_shapes():
    _, m = cfg_model(model={"name": "mlp", "depth": 3, "width": 16})
    shapes = [tuple(layer.weight.shape) for _, layer in m.init_targets()]
    # blobs: 5 input features, 4 classes
    assert shapes == [(16, 5), (16, 16), (16, 16), (4, 16)]
    assert m(torch.randn(7, 5)).shape == (7, 4)


def test_mlp_from_config_explicit_widths_give_layer_shapes():
    _, m = cfg_model(model={"name": "mlp", "widths": [10, 20, 3]})
    shapes = [tuple(layer.weight.shape) for _, layer in m.init_targets()]
    assert shapes == [(10, 5), (20, 10), (3, 20), (4, 3)]


def test_mlp_depth_zero_is_a_linear_model():
    _, m = cfg_model(model={"name": "mlp", "depth": 0})
    assert [n for n, _ in m.init_targets()] == ["out"]
    assert m.activation_modules() == []
    x = torch.randn(3, 5)
    assert torch.allclose(m(x), F.linear(x, m.out.weight, m.out.bias))


def test_mlp_default_shape_is_two_hidden_layers_of_64():
    _, m = cfg_model(model={"name": "mlp"})
    assert [tuple(layer.weight.shape) for _, layer in m.init_targets()] == [(64, 5), (64, 64), (4, 64)]


def test_mlp_spec_rejects_widths_with_depth():
    with pytest.raises(DlxError):
        cfg_model(model={"name": "mlp", "widths": [4], "depth": 2})


def test_mlp_flattens_image_shaped_input():
    m = mlp(in_dim=12, widths=(4,))
    assert m(torch.randn(2, 3, 4)).shape == (2, 3)


@pytest.mark.parametrize("norm,cls,prefix", [("batch", nn.BatchNorm1d, "bn"), ("layer", nn.LayerNorm, "ln")])
def test_norm_inserts_norm_layer_after_each_hidden_linear(norm, cls, prefix):
    _, m = cfg_model(regularization={"norm": norm})
    names = [n for n, _ in m.named_children()]
    assert names == ["fc1", f"{prefix}1", "act1", "fc2", f"{prefix}2", "act2", "out"]
    assert isinstance(getattr(m, f"{prefix}1"), cls)
    assert sum(isinstance(c, cls) for c in m.children()) == 2
    # norm layers are not init targets
    assert [n for n, _ in m.init_targets()] == ["fc1", "fc2", "out"]


def test_no_norm_and_no_dropout_means_only_linear_and_activations():
    _, m = cfg_model()
    assert [n for n, _ in m.named_children()] == ["fc1", "act1", "fc2", "act2", "out"]


def test_batch_norm_output_of_hidden_layer_is_standardised_in_train_mode():
    torch.manual_seed(0)
    m = mlp(norm="batch", widths=(8,), activation="identity")
    m.train()
    captured = {}
    m.bn1.register_forward_hook(lambda mod, i, o: captured.setdefault("o", o))
    m(torch.randn(256, 4) * 5 + 3)
    o = captured["o"]
    assert torch.allclose(o.mean(0), torch.zeros(8), atol=1e-5)
    assert torch.allclose(o.std(0, unbiased=False), torch.ones(8), atol=1e-3)


def test_dropout_changes_outputs_in_train_mode_only():
    torch.manual_seed(0)
    _, m = cfg_model(regularization={"dropout": 0.5})
    assert sum(isinstance(c, nn.Dropout) for c in m.children()) == 2
    assert [n for n, _ in m.named_children()] == ["fc1", "act1", "drop1", "fc2", "act2", "drop2", "out"]
    x = torch.randn(16, 5)
    m.train()
    assert not torch.equal(m(x), m(x))
    m.eval()
    a, b = m(x), m(x)
    assert torch.equal(a, b)
    # eval output is the network without dropout at all
    h = x
    for name in ("fc1", "act1", "fc2", "act2", "out"):
        h = getattr(m, name)(h)
    assert torch.allclose(a, h)


def test_dropconnect_uses_dropconnect_linear_for_hidden_layers_only():
    _, m = cfg_model(regularization={"dropconnect": 0.3})
    assert isinstance(m.fc1, DropConnectLinear) and m.fc1.p == 0.3
    assert isinstance(m.fc2, DropConnectLinear)
    assert type(m.out) is nn.Linear
    assert [n for n, _ in m.named_parameters()][:2] == ["fc1.weight", "fc1.bias"]


def test_dropconnect_varies_in_train_and_equals_plain_linear_in_eval():
    torch.manual_seed(0)
    layer = DropConnectLinear(20, 10, 0.5)
    x = torch.randn(4, 20)
    w0 = layer.weight.detach().clone()
    layer.train()
    a, b = layer(x), layer(x)
    assert not torch.equal(a, b)
    assert torch.equal(layer.weight, w0)  # the mask never touches the stored weights
    layer.eval()
    c, d = layer(x), layer(x)
    assert torch.equal(c, d)
    assert torch.allclose(c, F.linear(x, layer.weight, layer.bias))


def test_dropconnect_train_output_is_unbiased_on_average():
    torch.manual_seed(0)
    layer = DropConnectLinear(8, 3, 0.5)
    x = torch.randn(1, 8)
    layer.train()
    with torch.no_grad():
        mean = torch.stack([layer(x) for _ in range(4000)]).mean(0)
    plain = F.linear(x, layer.weight, layer.bias)
    assert torch.allclose(mean, plain, atol=0.05 * plain.abs().max().item() + 0.02)


def test_dropconnect_gradient_flows_only_through_kept_weights():
    torch.manual_seed(0)
    layer = DropConnectLinear(6, 4, 0.5)
    layer.train()
    layer(torch.ones(1, 6)).sum().backward()
    g = layer.weight.grad
    # kept weights get grad 1/(1-p) = 2, dropped ones 0
    assert set(g.unique().tolist()) <= {0.0, 2.0}
    assert (g == 0).any() and (g == 2).any()


def test_output_activation_sigmoid_gives_outputs_in_unit_interval():
    torch.manual_seed(0)
    _, m = cfg_model(model={"name": "mlp", "depth": 1, "width": 8, "output_activation": "sigmoid"})
    assert isinstance(list(m.children())[-1], nn.Sigmoid)
    with torch.no_grad():
        out = m(torch.randn(200, 5) * 10)
    assert torch.all(out > 0) and torch.all(out < 1)
    # and without it the outputs are unbounded logits
    _, plain = cfg_model(model={"name": "mlp", "depth": 1, "width": 8})
    init({"name": "normal", "std": 1.0}, plain)
    with torch.no_grad():
        assert (plain(torch.randn(200, 5) * 10).abs() > 1).any()


def test_init_targets_and_probe_layers_list_input_to_output():
    m = mlp(widths=(8, 6, 4), norm="layer", dropout=0.1)
    names = [n for n, _ in m.init_targets()]
    assert names == ["fc1", "fc2", "fc3", "out"]
    assert [n for n, _ in m.probe_layers()] == names
    assert all(isinstance(layer, nn.Linear) for _, layer in m.init_targets())
    assert [layer.weight.shape[1] for _, layer in m.init_targets()] == [4, 8, 6, 4]


@pytest.mark.parametrize("widths", [(5,), (5, 6, 7), (3, 3, 3, 3, 3)])
def test_activation_modules_one_per_hidden_layer_in_order(widths):
    m = mlp(widths=widths, activation="tanh", dropout=0.2, norm="batch")
    acts = m.activation_modules()
    assert [n for n, _ in acts] == [f"act{i}" for i in range(1, len(widths) + 1)]
    assert all(isinstance(a, nn.Tanh) for _, a in acts)


def test_activation_modules_are_the_ones_the_forward_pass_uses():
    torch.manual_seed(0)
    m = mlp(widths=(5, 6), activation="relu")
    seen = []
    for name, module in m.activation_modules():
        module.register_forward_hook(lambda mod, i, o, name=name: seen.append((name, o.shape[1])))
    m(torch.randn(2, 4))
    assert seen == [("act1", 5), ("act2", 6)]


# ============================================================== optimizers


def _quadratic():
    torch.manual_seed(0)
    w = nn.Parameter(torch.zeros(5))
    target = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0])
    return w, lambda: ((w - target) ** 2).sum()


OPTIM_CASES = [
    ({"name": "sgd", "lr": 0.05}, torch.optim.SGD, {"lr": 0.05, "momentum": 0.0, "nesterov": False}),
    (
        {"name": "sgd", "lr": 0.05, "momentum": 0.5, "weight_decay": 0.001},
        torch.optim.SGD,
        {"momentum": 0.5, "weight_decay": 0.001},
    ),
    ({"name": "momentum", "lr": 0.02}, torch.optim.SGD, {"lr": 0.02, "momentum": 0.9, "nesterov": False}),
    ({"name": "momentum", "lr": 0.02, "momentum": 0.8}, torch.optim.SGD, {"momentum": 0.8}),
    ({"name": "nesterov", "lr": 0.02}, torch.optim.SGD, {"momentum": 0.9, "nesterov": True, "dampening": 0}),
    ({"name": "adagrad", "lr": 0.5}, torch.optim.Adagrad, {"lr": 0.5, "eps": 1e-10, "lr_decay": 0.0}),
    ({"name": "adadelta"}, torch.optim.Adadelta, {"lr": 1.0, "rho": 0.9, "eps": 1e-6}),
    ({"name": "rmsprop", "lr": 0.05, "alpha": 0.9}, torch.optim.RMSprop, {"lr": 0.05, "alpha": 0.9, "centered": False}),
    ({"name": "rmsprop"}, torch.optim.RMSprop, {"lr": 0.001, "alpha": 0.99, "eps": 1e-8}),
    (
        {"name": "adam", "lr": 0.1, "betas": [0.8, 0.99]},
        torch.optim.Adam,
        {"lr": 0.1, "betas": (0.8, 0.99), "weight_decay": 0.0, "amsgrad": False},
    ),
    ({"name": "adam"}, torch.optim.Adam, {"lr": 0.001, "betas": (0.9, 0.999), "eps": 1e-8}),
    ({"name": "adamw", "lr": 0.1}, torch.optim.AdamW, {"lr": 0.1, "weight_decay": 0.01}),
    (
        {"name": "adamw", "lr": 0.1, "weight_decay": 0.2, "amsgrad": True},
        torch.optim.AdamW,
        {"weight_decay": 0.2, "amsgrad": True},
    ),
]


@pytest.mark.parametrize(
    "raw,cls,hyper", OPTIM_CASES, ids=lambda v: v["name"] if isinstance(v, dict) and "name" in v else ""
)
def test_optimizer_builds_torch_class_with_hyperparameters(raw, cls, hyper):
    w, _ = _quadratic()
    opt = OPTIMIZERS.parse(raw).build([w])
    assert type(opt) is cls
    group = opt.param_groups[0]
    for k, v in hyper.items():
        assert group[k] == pytest.approx(v) if isinstance(v, float) else group[k] == v, k


@pytest.mark.parametrize("raw", [c[0] for c in OPTIM_CASES], ids=lambda v: v["name"])
def test_optimizer_reduces_a_quadratic_over_50_steps(raw):
    w, loss_fn = _quadratic()
    opt = OPTIMIZERS.parse(raw).build([w])
    start = loss_fn().item()
    for _ in range(50):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
    end = loss_fn().item()
    assert end < start
    if raw["name"] not in ("adadelta", "rmsprop", "adam") or raw.get("lr", 0) >= 0.05:
        assert end < 0.5 * start  # the ones with a usable lr make real progress


def test_every_registered_optimizer_is_covered():
    assert set(OPTIMIZERS.names()) <= {c[0]["name"] for c in OPTIM_CASES}


def test_momentum_three_steps_match_hand_computation():
    # loss = 0.5 * a * w^2, so g = a * w; heavy ball: v = mu*v + g; w -= lr*v
    a, lr, mu, w0 = 3.0, 0.1, 0.9, 2.0
    w = nn.Parameter(torch.tensor([w0], dtype=torch.float64))
    opt = OPTIMIZERS.parse({"name": "momentum", "lr": lr, "momentum": mu}).build([w])
    hand_w, v = w0, 0.0
    for _ in range(3):
        opt.zero_grad()
        (0.5 * a * w**2).sum().backward()
        opt.step()
        g = a * hand_w
        v = mu * v + g
        hand_w -= lr * v
        assert w.item() == pytest.approx(hand_w, rel=1e-12)
    # worked out on paper: g 6, 4.2, 1.32; v 6, 9.6, 9.96; w 2 -> 1.4 -> 0.44 -> -0.556
    assert w.item() == pytest.approx(-0.556, rel=1e-12)


def test_nesterov_step_matches_hand_computation():
    # torch's Nesterov: v = mu*v + g; w -= lr*(g + mu*v)
    a, lr, mu, w0 = 3.0, 0.1, 0.9, 2.0
    w = nn.Parameter(torch.tensor([w0], dtype=torch.float64))
    opt = OPTIMIZERS.parse({"name": "nesterov", "lr": lr, "momentum": mu}).build([w])
    hand_w, v = w0, 0.0
    for _ in range(3):
        opt.zero_grad()
        (0.5 * a * w**2).sum().backward()
        opt.step()
        g = a * hand_w
        v = mu * v + g
        hand_w -= lr * (g + mu * v)
        assert w.item() == pytest.approx(hand_w, rel=1e-12)


def test_adamw_decays_weights_with_zero_gradient():
    w = nn.Parameter(torch.ones(3))
    opt = OPTIMIZERS.parse({"name": "adamw", "lr": 0.1, "weight_decay": 0.5}).build([w])
    w.grad = torch.zeros(3)
    opt.step()
    # decoupled decay: w *= 1 - lr*wd, independent of the (zero) gradient
    assert torch.allclose(w, torch.full((3,), 0.95))


def test_optimizer_rejects_bad_hyperparameters():
    for bad in (
        {"name": "adam", "betas": [0.9, 1.0]},
        {"name": "sgd", "lr": 0},
        {"name": "momentum", "momentum": 1.0},
        {"name": "adamw", "weight_decay": -1},
        {"name": "sgd", "betas": [0.9, 0.9]},
    ):
        with pytest.raises(ValidationError):
            OPTIMIZERS.parse(bad)


def test_sgd_nesterov_without_momentum_is_rejected_at_validation():
    with pytest.raises(ValidationError):
        OPTIMIZERS.parse({"name": "sgd", "nesterov": True})


# ============================================================== schedules


def sched(raw):
    return SCHEDULES.parse(raw)


def test_constant_schedule_is_one_everywhere():
    s = sched("constant")
    assert [s.factor(i, 100) for i in (0, 1, 50, 99, 100)] == [1.0] * 5


def test_step_schedule_multiplies_by_gamma_every_step_size():
    s = sched({"name": "step", "step_size": 10, "gamma": 0.5})
    assert [s.factor(i, 100) for i in (0, 9, 10, 19, 20, 35)] == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.125])


def test_exponential_schedule_is_gamma_to_the_step():
    s = sched({"name": "exponential", "gamma": 0.9})
    assert s.factor(0, 100) == 1.0
    assert s.factor(1, 100) == pytest.approx(0.9)
    assert s.factor(10, 100) == pytest.approx(0.9**10)


def test_cosine_schedule_from_one_to_min_factor():
    s = sched("cosine")
    assert s.factor(0, 200) == pytest.approx(1.0)
    assert s.factor(100, 200) == pytest.approx(0.5)
    assert s.factor(50, 200) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert s.factor(200, 200) == pytest.approx(0.0, abs=1e-12)
    assert s.factor(500, 200) == pytest.approx(0.0, abs=1e-12)  # past the end: stays at the floor
    vals = [s.factor(i, 200) for i in range(201)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))
    m = sched({"name": "cosine", "min_factor": 0.1})
    assert m.factor(0, 200) == pytest.approx(1.0)
    assert m.factor(100, 200) == pytest.approx(0.55)
    assert m.factor(200, 200) == pytest.approx(0.1)


def test_warmup_ramps_linearly_then_stays_constant():
    s = sched({"name": "warmup", "steps": 4})
    assert [s.factor(i, 100) for i in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    assert s.factor(99, 100) == 1.0


def test_warmup_then_cosine_decays_over_the_remaining_steps():
    s = sched({"name": "warmup", "steps": 10, "then": "cosine", "min_factor": 0.2})
    assert s.factor(0, 110) == pytest.approx(0.1)
    assert s.factor(9, 110) == pytest.approx(1.0)
    assert s.factor(10, 110) == pytest.approx(1.0)
    assert s.factor(60, 110) == pytest.approx(0.6)  # halfway through the cosine part
    assert s.factor(110, 110) == pytest.approx(0.2)


def test_schedule_parsed_inside_optimizer_section():
    spec = OPTIMIZERS.parse({"name": "sgd", "schedule": {"name": "step", "step_size": 5, "gamma": 0.1}})
    assert spec.schedule.factor(5, 10) == pytest.approx(0.1)
    assert OPTIMIZERS.parse("adam").schedule.factor(123, 200) == 1.0
    with pytest.raises(ValidationError):
        OPTIMIZERS.parse({"name": "sgd", "schedule": {"name": "warmup", "then": "linear"}})


# ============================================================== unit_spread


@pytest.mark.parametrize(
    "raw", ["zeros", {"name": "constant", "value": 0.3}, {"name": "constant", "value": -0.1, "bias": 0.2}]
)
def test_unit_spread_zero_for_symmetric_init(raw):
    torch.manual_seed(0)
    m = mlp(widths=(16, 16))
    init(raw, m)
    for _, layer in m.init_targets():
        assert unit_spread(layer.weight, layer.bias).item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("raw", ["default", "kaiming_normal", "xavier_uniform", {"name": "normal", "std": 0.01}])
def test_unit_spread_large_for_random_init(raw):
    torch.manual_seed(0)
    m = mlp(widths=(16, 16))
    init(raw, m)
    for _, layer in m.init_targets():
        assert unit_spread(layer.weight, layer.bias).item() > 0.1


def test_unit_spread_detects_one_unit_differing_and_ignores_scale():
    w = torch.ones(8, 5)
    assert unit_spread(w, None).item() == pytest.approx(0.0, abs=1e-6)
    w2 = w.clone()
    w2[3, 0] = 2.0
    s = unit_spread(w2, None).item()
    assert s > 0.1
    assert unit_spread(10 * w2, None).item() == pytest.approx(s, rel=1e-5)
    # a bias that differs per unit breaks the symmetry too
    assert unit_spread(w, torch.arange(8.0)).item() > 0.1

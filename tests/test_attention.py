"""The attention model: each scoring trains, probes see every Linear, attention finds the marked step."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dlx
from dlx.components.data import Dataset
from dlx.components.models.attention import SCORINGS, AttentionSpec, scoring_params
from dlx.config.loader import load_config
from dlx.core.errors import ConfigError
from dlx.run.summary import model_summary
from dlx.run.trainer import Trainer

T = 10
SCORING_NAMES = ["additive", "dot", "scaled_dot", "bilinear"]
# Extra Linear layers each scoring adds, in order (dot products have none).
SCORE_LAYERS = {"additive": ["score.w_q", "score.w_k", "score.v"], "dot": [], "scaled_dot": [], "bilinear": ["score.w"]}


def marked_task(rng, n):
    """x (n, T, 2): noise values and a one-hot marker; the class is the sign of the marked value."""
    x = np.zeros((n, T, 2), np.float32)
    x[:, :, 0] = rng.normal(size=(n, T))
    pos = rng.integers(0, T, n)
    x[np.arange(n), pos, 1] = 1.0
    y = (x[np.arange(n), pos, 0] > 0).astype(np.int64)
    return x, y, pos


@pytest.fixture
def marked(tmp_path):
    """(path of an .npz with the marked-position task, test inputs, test marker positions)."""
    rng = np.random.default_rng(0)
    x_tr, y_tr, _ = marked_task(rng, 512)
    x_te, y_te, pos = marked_task(rng, 256)
    path = tmp_path / "marked.npz"
    np.savez(path, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    return path, x_te, pos


def config(path, epochs=1, **model):
    return {
        "seed": 0,
        "data": {"name": "arrays", "path": str(path)},
        "model": {"name": "attention", "d_model": 16, **model},
        "activation": "relu",
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"epochs": epochs, "batch_size": 32, "log_every": 4, "threads": 1},
    }


def expected_layers(scoring, blocks):
    names = ["embed"]
    for i in range(1, blocks + 1):
        attn = f"block{i}.attn."
        names += [attn + n for n in ["q", "k", "v", *SCORE_LAYERS[scoring], "o"]]
        names += [f"block{i}.ff1", f"block{i}.ff2"]
    return names + ["pool.query", *("pool." + n for n in SCORE_LAYERS[scoring]), "out"]


@pytest.mark.parametrize("scoring", SCORING_NAMES)
def test_each_scoring_trains_a_block_and_probes_every_linear_input_to_output(marked, scoring):
    r = dlx.train(config(marked[0], scoring=scoring, blocks=1, heads=2), ["train.steps=8"], save=False)
    assert r.status == "completed"
    assert [l["name"] for l in r.summary["layers"]] == expected_layers(scoring, blocks=1)
    assert all(l["grad_norm"]["median"] > 0 for l in r.summary["layers"])  # every weight learns
    assert [a["name"] for a in r.summary["activations"]] == ["block1.act"]


def test_forward_and_backward_shapes_for_both_heads(marked):
    n, k = 5, 3
    x = torch.randn(n, T, 2)
    one = Dataset(
        "seq", x, torch.zeros(n, dtype=torch.int64), x, torch.zeros(n, dtype=torch.int64), "classification", n_classes=k
    )
    many = Dataset(
        "seq",
        x,
        torch.zeros(n, T, dtype=torch.int64),
        x,
        torch.zeros(n, T, dtype=torch.int64),
        "classification",
        n_classes=k,
        sequence_target=True,
    )
    cfg = load_config(config(marked[0], blocks=2, heads=4))
    for head, data, shape in (("many_to_one", one, (n, k)), ("many_to_many", many, (n, T, k))):
        spec = AttentionSpec(name="attention", d_model=16, heads=4, blocks=2, head=head)
        model = spec.build(data, cfg)
        out = model(x)
        assert out.shape == shape
        out.square().sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    # Only the pooling head has pooling weights: one distribution over the T steps per sample.
    model = AttentionSpec(name="attention", d_model=16).build(one, cfg)
    model(x)
    w = model.last_pool_weights
    assert w.shape == (n, T) and not w.requires_grad
    assert torch.allclose(w.sum(1), torch.ones(n))


def test_many_to_many_trains_on_per_step_targets(marked):
    # Target at step t: whether input t-1 was positive, so the block's attention must look back.
    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.normal(size=(1280, T, 1)), dtype=torch.float32)
    y = torch.zeros(1280, T, dtype=torch.int64)
    y[:, 1:] = (x[:, :-1, 0] > 0).long()
    data = Dataset("shift", x[:1024], y[:1024], x[1024:], y[1024:], "classification", n_classes=2, sequence_target=True)
    cfg = load_config(config(marked[0], epochs=10, blocks=1, head="many_to_many", positional="learned"))
    outcome = Trainer(cfg, data=data).run()
    assert outcome.final["test_acc"] > 0.9  # chance is 0.5 (about 0.55 counting the fixed step 0)


@pytest.mark.parametrize("scoring", SCORING_NAMES)
def test_scoring_parameter_counts_match_their_formulas(marked, scoring):
    blocks, heads, d = 2, 4, 16
    summaries = {
        s: model_summary(load_config(config(marked[0], scoring=s, blocks=blocks, heads=heads)))
        for s in ("dot", scoring)
    }
    s = summaries[scoring]
    # One scoring per block (width d/heads, shared by the heads) and one in the pooling (width d).
    formula = {
        "additive": lambda w: 2 * w * w + w,
        "dot": lambda w: 0,
        "scaled_dot": lambda w: 0,
        "bilinear": lambda w: w * w,
    }[scoring]
    extra = blocks * formula(d // heads) + formula(d)
    assert s["total_params"] - summaries["dot"]["total_params"] == extra
    assert extra == blocks * scoring_params(scoring, d // heads) + scoring_params(scoring, d)
    pool_rows = sum(r["params"] for r in s["layers"] if r["name"].startswith("pool.score"))
    assert pool_rows == formula(d)
    model = load_config(config(marked[0], scoring=scoring, blocks=blocks, heads=heads))
    built = model.model.build(model.data.load(0), model)
    assert s["total_params"] == sum(p.numel() for p in built.parameters())
    assert sum(r["params"] for r in s["layers"]) == s["total_params"]  # no row missed or counted twice


def test_scaled_dot_is_dot_divided_by_sqrt_d():
    torch.manual_seed(0)
    q, k = torch.randn(3, 2, 4, 8), torch.randn(3, 2, 6, 8)
    dot, scaled = SCORINGS["dot"](8), SCORINGS["scaled_dot"](8)
    assert dot(q, k).shape == (3, 2, 4, 6)
    assert torch.allclose(scaled(q, k), dot(q, k) / math.sqrt(8))
    assert torch.allclose(dot(q, k)[1, 0, 2, 3], q[1, 0, 2] @ k[1, 0, 3])


@pytest.mark.parametrize("scoring", SCORING_NAMES)
def test_pooling_attention_finds_the_marked_step(marked, scoring):
    path, x_te, pos = marked
    trainer = Trainer(load_config(config(path, epochs=10, scoring=scoring)))
    outcome = trainer.run()
    assert outcome.final["test_acc"] > 0.85  # chance is 0.5
    model = trainer.model.eval()
    with torch.no_grad():
        model(torch.as_tensor(x_te))
    on_mark = model.last_pool_weights[torch.arange(len(pos)), torch.as_tensor(pos)]
    assert on_mark.mean() > 0.5  # a uniform pooling would give 1/T = 0.1


def problems(excinfo):
    return {p.path: p.message for p in excinfo.value.problems}


def test_heads_that_do_not_divide_d_model_are_a_config_error(marked):
    with pytest.raises(ConfigError) as e:
        load_config(config(marked[0], d_model=16, heads=3))
    assert "divisible by heads" in problems(e)["model.heads"]


def test_attention_on_flat_data_is_a_config_error_at_model(tiny, tmp_path):
    tiny["model"] = {"name": "attention"}
    with pytest.raises(ConfigError) as e:
        load_config(tiny)  # spirals: samples of shape (2,)
    assert "(T, F)" in problems(e)["model"] and "(2,)" in problems(e)["model"]
    # Arrays' shape is known only once loaded: building reports it the same way.
    path = tmp_path / "flat.npz"
    np.savez(path, x_train=np.zeros((8, 3)), y_train=np.zeros(8, int), x_test=np.zeros((4, 3)), y_test=np.zeros(4, int))
    with pytest.raises(ConfigError) as e:
        dlx.train(config(path), save=False)
    assert "(3,)" in problems(e)["model"]


def test_a_head_that_does_not_fit_the_targets_is_a_config_error(marked):
    with pytest.raises(ConfigError) as e:
        dlx.train(config(marked[0], head="many_to_many"), save=False)
    assert "use head: many_to_one" in problems(e)["model.head"]


def test_attention_maps_are_softmax_of_scaled_queries_and_keys_and_dlx_plot_draws_them(marked, tmp_path):
    from typer.testing import CliRunner

    from dlx.cli.app import app
    from dlx.views.pictures import attention

    path, x_te, _ = marked
    cfg = config(path, blocks=1, heads=2, positional="none")
    run = dlx.train(cfg, ["train.steps=8"], runs_dir=tmp_path / "runs", quiet=True)
    pic = attention(run.path)
    assert pic.layers == ["block1.attn", "pool"]
    block, pool = pic.maps
    assert block.shape == (2, T, T) and pool.shape == (1, 1, T)
    for m in pic.maps:
        np.testing.assert_allclose(m.sum(-1), 1.0, atol=1e-6)  # each query's row is a distribution
    # The oracle: softmax(Q K^T / sqrt(d_head)) by hand from the saved weights, test sequence 0.
    w = torch.load(run.path / "checkpoint.pt", weights_only=True)["model"]
    h = torch.as_tensor(x_te[:1]) @ w["embed.weight"].T + w["embed.bias"]  # positional: none
    q = (h @ w["block1.attn.q.weight"].T + w["block1.attn.q.bias"]).view(T, 2, 8).transpose(0, 1)
    k = (h @ w["block1.attn.k.weight"].T + w["block1.attn.k.bias"]).view(T, 2, 8).transpose(0, 1)
    want = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), dim=-1)
    np.testing.assert_allclose(block, want.double().numpy(), rtol=1e-5, atol=1e-6)
    out = tmp_path / "attention.png"
    r = CliRunner().invoke(app, ["plot", str(run.path), "--panels", "attention", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The run's page shows it too, with what it is in words.
    from dlx.views.html_report import write_report
    from dlx.views.html_run import PICTURE_CAPTIONS

    page = write_report(run.path, out=tmp_path / "run.html").read_text()
    pictures = page.split('id="pictures"')[1].split("</section>")[0]
    assert PICTURE_CAPTIONS["attention"] in pictures and pictures.count("data:image/png;base64,") >= 2


def test_an_attention_picture_of_a_model_without_attention_is_refused(tiny, tmp_path):
    from dlx.core.errors import UsageError
    from dlx.views.pictures import attention

    run = dlx.train(tiny, runs_dir=tmp_path / "runs", quiet=True)
    with pytest.raises(UsageError, match="needs model: attention; this run's model is mlp"):
        attention(run.path)


def test_attention_maps_leave_the_training_mode_as_it_was(marked):
    cfg = load_config(config(marked[0], blocks=1, heads=2))
    model = cfg.model.build(cfg.data.load(0), cfg)
    model.train()
    maps = model.attention_maps(torch.as_tensor(marked[1][:3]))
    assert model.training and [n for n, _ in maps] == ["block1.attn", "pool"]
    assert maps[0][1].shape == (3, 2, T, T) and not maps[0][1].requires_grad

"""The verdict engine: synthetic probe series in, verdicts (kind, layers, evidence,
cause, remedy) out; then a few real tiny runs end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest

import dlx
from dlx.diagnosis.engine import KINDS, TIME_VANISHING_RATIO, VANISHING_RATIO, Context, chance_loss, diagnose, headline
from dlx.views.report import verdict_text

LN3 = math.log(3)
NAMES = ["fc1", "fc2", "fc3", "out"]
ACTS = ["act1", "act2", "act3"]


def config(activation="relu", init="kaiming_normal", optimizer="adam", lr=0.01, model=None, **reg):
    return {
        "data": {"name": "spirals", "n_train": 2000},
        "model": model or {"name": "mlp", "depth": 3, "width": 64},
        "activation": {"name": activation},
        "init": {"name": init},
        "optimizer": {"name": optimizer, "lr": lr, "schedule": {"name": "constant"}},
        "regularization": {"l2": 0.0, "dropout": 0.0, "norm": "none", "clip_norm": None, **reg},
        "train": {"loss": "cross_entropy", "tbptt": None},
    }


def healthy_grad(steps=200, layers=4, seed=0):
    """Every layer's gradient norm around 1, with multiplicative noise."""
    rng = np.random.default_rng(seed)
    return np.exp(rng.normal(0, 0.3, (steps, layers)))


def metrics(train, test=None, every=10, eval_every=5):
    """metrics.jsonl records: one per log interval, test_loss every eval_every-th."""
    out = []
    tests = iter(test) if test is not None else None
    for i, loss in enumerate(train):
        m = {"step": (i + 1) * every, "train_loss": float(loss)}
        if tests is not None and (i + 1) % eval_every == 0:
            m["test_loss"] = float(next(tests))
        out.append(m)
    return out


def falling(n=40, start=LN3, end=0.05):
    return start * (end / start) ** (np.arange(n) / (n - 1))


def ctx(**kw) -> Context:
    base = dict(
        names=NAMES,
        grad=healthy_grad(),
        act_names=ACTS,
        dead_check=True,
        last={"act_dead": [0.05, 0.1, 0.1], "act_saturated": [0.0, 0.0, 0.0], "unit_spread": [1.2, 1.1, 1.0, 0.9]},
        metrics=metrics(falling()),
        config=config(),
        task="classification",
        chance_loss=LN3,
    )
    base.update(kw)
    return Context(**base)


def kinds(verdicts):
    return [v["kind"] for v in verdicts]


def only(verdicts, kind):
    found = [v for v in verdicts if v["kind"] == kind]
    assert len(found) == 1, kinds(verdicts)
    return found[0]


# ---------------------------------------------------------------- healthy
def test_a_healthy_run_gets_healthy_and_nothing_else():
    vs = diagnose(ctx())
    assert kinds(vs) == ["healthy"]
    v = vs[0]
    assert v["cause"] is None and v["remedy"] is None
    assert 0.1 < v["evidence"]["ratio_first_to_last"] < 10
    assert v["evidence"]["final_loss"] < 0.1


def test_every_verdict_carries_the_seven_keys_and_a_one_line_message():
    vs = diagnose(ctx(grad=healthy_grad() * np.array([1e-7, 1e-5, 1e-3, 1]), metrics=metrics(np.full(40, LN3))))
    assert kinds(vs) == ["vanishing", "not_learning"]
    for v in vs:
        assert set(v) - {"symptom_of"} == {"kind", "layers", "evidence", "message", "cause", "remedy", "fixes"}
        assert "\n" not in v["message"] and v["message"]
        assert v["cause"] and v["remedy"]
    # The plateau is the vanishing gradients' symptom, and says so.
    assert "symptom_of" not in vs[0] and vs[1]["symptom_of"] == "vanishing"
    assert "vanishing gradients above" in vs[1]["cause"]


# ---------------------------------------------------------------- across layers
def test_clearly_vanishing_gradients_name_the_input_and_output_layers_with_the_ratio():
    grad = healthy_grad(layers=11) * np.logspace(-7, 0, 11)
    names = [f"fc{i}" for i in range(1, 11)] + ["out"]
    c = ctx(
        names=names,
        grad=grad,
        act_names=[f"act{i}" for i in range(1, 11)],
        last={},
        config=config("sigmoid", "xavier_uniform", "sgd", 0.1),
        dead_check=False,
    )
    v = diagnose(c)[0]
    assert v["kind"] == "vanishing" and v["layers"] == ["fc1", "out"]
    assert 1e-8 < v["evidence"]["ratio_first_to_last"] < 1e-6
    assert v["evidence"]["median_grad_norm"]["out"] == pytest.approx(1.0, rel=0.1)
    assert v["message"].startswith("vanishing gradients: fc1's gradient norm is")
    assert "sustained over the last 80% of steps" in v["message"]
    # The cause is read from the config: the activation, the depth, the init.
    for part in ("sigmoid", "0.25", "10 layers", "xavier_uniform", "no normalization"):
        assert part in v["cause"], part
    for part in ("relu", "kaiming_normal", "norm: batch", "resnet"):
        assert part in v["remedy"], part


def test_a_plain_resnet_is_told_to_turn_its_skips_back_on():
    grad = healthy_grad() * np.array([1e-10, 1e-6, 1e-3, 1])
    model = {"name": "resnet", "kind": "mlp", "blocks": 20, "residual": False}
    v = diagnose(ctx(grad=grad, config=config("tanh", "default", model=model), dead_check=False))[0]
    assert v["kind"] == "vanishing"
    assert "no skip connections" in v["cause"] and "tanh" in v["cause"]
    assert "model.residual: true" in v["remedy"]


def test_a_short_transient_at_the_start_is_not_vanishing():
    grad = healthy_grad()
    grad[:20, 0] *= 1e-6  # the first 10% of steps: an init transient
    assert kinds(diagnose(ctx(grad=grad))) == ["healthy"]


def test_clearly_exploding_gradients_by_ratio_and_by_size():
    by_ratio = diagnose(ctx(grad=healthy_grad() * np.array([1e5, 1e3, 10, 1]), config=config("relu", "normal")))
    v = only(by_ratio, "exploding")
    assert v["layers"] == ["fc1", "out"] and v["evidence"]["ratio_first_to_last"] > VANISHING_RATIO**-1
    assert "normal init" in v["cause"] and "no gradient clipping" in v["cause"]
    assert "kaiming_normal" in v["remedy"] and "clip_norm" in v["remedy"]
    by_size = diagnose(ctx(grad=healthy_grad() * np.array([1e6, 1e6, 2e6, 1e6])))
    v = only(by_size, "exploding")
    assert v["layers"] == ["fc3"] and v["evidence"]["median_grad_norm"]["fc3"] > 1e6


def test_gradients_that_grow_from_an_ordinary_start_blame_the_learning_rate():
    grad = healthy_grad()
    grad[5:] *= 1e6  # ordinary at step 1, huge from step 6 on
    v = only(diagnose(ctx(grad=grad, config=config("relu", "kaiming_normal", "sgd", 1.0))), "exploding")
    assert "grew from" in v["cause"] and "sgd with lr=1.0" in v["cause"]
    assert v["remedy"].startswith("optimizer.lr: 0.1")


# ---------------------------------------------------------------- diverged
def test_nan_at_step_k_is_diverged_with_that_step_and_layer_even_without_a_trainer_record():
    grad = healthy_grad(steps=50)
    grad[36, 1:] = np.nan  # step 37: fc2 onwards
    grad = grad[:37]
    c = ctx(grad=grad, metrics=metrics([1.0, 0.9, 0.8, float("nan")]), config=config(optimizer="sgd", lr=5.0))
    vs = diagnose(c)
    # Modest gradients at step 1 (a sane start): the learning rate is the root cause...
    assert kinds(vs) == ["lr_too_high", "diverged"]
    assert "sgd with lr=5.0" in vs[0]["cause"] and "optimizer.lr: 0.5" in vs[0]["remedy"]
    assert "step 37" in vs[0]["message"]
    # ...and the divergence its symptom, with its step and layer.
    v = vs[1]
    assert v["symptom_of"] == "lr_too_high"
    assert v["evidence"]["step"] == 37 and v["evidence"]["layer"] == "fc2"
    assert v["layers"] == ["fc2", "fc3", "out"]
    assert "step 37" in v["message"]
    # A truncated loss curve says nothing more: no loss-curve verdicts after it.
    assert "not_learning" not in kinds(vs)


def test_diverged_after_huge_first_step_gradients_blames_the_init():
    grad = np.array([[1e7, 1e8, 1e9, 1e8], [np.inf] * 4])
    record = {
        "step": 2,
        "layer": "fc1",
        "layers": NAMES,
        "loss": float("nan"),
        "message": "non-finite loss (nan) at step 2",
    }
    c = ctx(grad=grad, diverged=record, metrics=[], config=config("relu", "normal"))
    vs = diagnose(c)
    # Huge from step 1: the init is blamed (by the gradients alone: this context has no init check).
    assert kinds(vs) == ["exploding", "diverged"]
    assert "normal init" in vs[0]["cause"] and "init: kaiming_normal" in vs[0]["remedy"]
    v = vs[1]
    assert v["symptom_of"] == "exploding"
    assert v["evidence"]["step"] == 2 and v["evidence"]["layer"] == "fc1"
    assert v["evidence"]["first_step_grad_norm"] == 1e9


# ---------------------------------------------------------------- units
def test_dead_units_name_the_relu_layers_past_the_threshold():
    c = ctx(last={"act_dead": [0.9, 0.75, 0.33], "act_saturated": [0, 0, 0]}, config=config(lr=0.3))
    v = only(diagnose(c), "dead_units")
    assert v["layers"] == ["act1", "act2"]  # a third of a layer idle is ordinary for ReLU
    assert v["evidence"] == {"act1": 0.9, "act2": 0.75}
    assert "90%" in v["message"] and "lr=0.3" in v["cause"]
    assert "leaky_relu" in v["remedy"]


def test_dead_units_are_not_judged_for_non_relu_activations():
    c = ctx(last={"act_dead": [0.9, 0.9, 0.9]}, dead_check=False, config=config("leaky_relu"))
    assert kinds(diagnose(c)) == ["healthy"]


def test_saturation_that_stalls_the_loss_is_a_verdict():
    c = ctx(
        last={"act_saturated": [0.95, 0.9, 0.3]},
        dead_check=False,
        config=config("sigmoid", "normal"),
        metrics=metrics(np.full(40, 1.05)),
    )
    vs = diagnose(c)
    v = only(vs, "saturation")
    assert v["layers"] == ["act1", "act2"] and v["evidence"]["act1"] == 0.95
    assert v["evidence"]["final_train_loss"] == pytest.approx(1.05)
    assert "sigmoid" in v["cause"] and "normal init" in v["cause"]
    assert "xavier_uniform" in v["remedy"] and "norm: batch" in v["remedy"]
    assert kinds(vs) == ["saturation", "not_learning"]
    # A run too short for a loss curve is judged by its last interval's loss.
    one_step = ctx(
        last={"act_saturated": [0.95, 0.9, 0.9]},
        dead_check=False,
        config=config("sigmoid", "normal"),
        metrics=[{"step": 1, "train_loss": 50.0}],
    )
    assert kinds(diagnose(one_step)) == ["saturation"]


def test_saturated_tanh_units_of_a_net_that_learned_are_no_verdict():
    # quickstart with tanh: 82% of act3 at a bound, 98.6% test accuracy.
    c = ctx(
        last={"act_saturated": [0.0, 0.58, 0.82]},
        dead_check=False,
        config=config("tanh", "xavier_uniform"),
        metrics=metrics(falling(end=0.04)),
    )
    assert kinds(diagnose(c)) == ["healthy"]


def test_symmetric_layers_from_zero_init_are_named_with_their_spread():
    c = ctx(
        last={"unit_spread": [0.0, 0.0, 1e-9, 0.0]},
        config=config("sigmoid", "zeros"),
        metrics=metrics(np.full(40, LN3)),
    )
    vs = diagnose(c)
    v = vs[0]
    assert v["kind"] == "symmetry" and v["layers"] == ["fc1", "fc2", "fc3"]  # out is never judged
    assert v["evidence"]["fc3"] == 1e-9
    assert "init: zeros" in v["cause"] and "xavier_uniform" in v["remedy"]
    # Stuck at chance as well, and that points back at the symmetry.
    assert "symmetric units" in only(vs, "not_learning")["cause"]


# ---------------------------------------------------------------- the loss curve
def test_a_loss_that_climbs_back_up_is_lr_too_high():
    train = np.concatenate([falling(20, end=0.2), np.linspace(0.25, 0.9, 20)])
    c = ctx(metrics=metrics(train), config=config(optimizer="sgd", lr=2.0))
    v = only(diagnose(c), "lr_too_high")
    ev = v["evidence"]
    assert ev["min_loss"] < 0.3 and ev["final_loss"] > 0.8 and ev["rise"] > 0.5
    assert 150 <= ev["min_step"] <= 250  # where the fall turned into a climb
    assert "rose from its minimum" in v["message"]
    assert "sgd with lr=2.0" in v["cause"] and "no gradient clipping" in v["cause"]
    assert "optimizer.lr: 0.67" in v["remedy"]


def test_a_loss_that_jumps_between_intervals_is_lr_too_high():
    train = np.where(np.arange(40) % 2, 0.3, 1.0)
    v = only(diagnose(ctx(metrics=metrics(train), config=config(lr=0.5))), "lr_too_high")
    assert v["evidence"]["swing"] == pytest.approx(0.7)
    assert "oscillates" in v["message"] and "adam with lr=0.5" in v["cause"]


def test_a_loss_that_blows_up_while_gradients_grow_is_lr_too_high():
    train = np.concatenate([[200.0, 90.0, 8.0], falling(37, start=1.0, end=0.5)])
    grad = healthy_grad()
    grad[3:30] *= 100  # the steps, not the init: step 1 was ordinary
    v = only(
        diagnose(ctx(metrics=metrics(train), grad=grad, config=config("relu", optimizer="momentum", lr=1.0))),
        "lr_too_high",
    )
    assert v["evidence"]["peak_loss"] == 200.0 and v["evidence"]["peak_step"] == 10
    assert v["evidence"]["grad_growth"] > 10
    assert "blew up" in v["message"] and "momentum with lr=1.0" in v["cause"]


def test_a_high_first_loss_from_the_init_is_not_lr_too_high():
    # Large init: the first interval's loss is 5x chance, but step 1 had the largest gradients.
    train = np.concatenate([[6.0], falling(39, start=1.0, end=0.05)])
    assert kinds(diagnose(ctx(metrics=metrics(train)))) == ["healthy"]


def test_a_loss_at_chance_level_is_not_learning_with_the_numbers():
    c = ctx(metrics=metrics(np.full(40, LN3 * 0.99)), config=config(optimizer="sgd", lr=0.001))
    v = only(diagnose(c), "not_learning")
    assert v["evidence"]["fraction_of_chance"] == pytest.approx(0.99)
    assert v["evidence"]["chance_loss"] == pytest.approx(LN3) and v["evidence"]["steps"] == 400
    assert "ln 3" in v["message"] and "99%" in v["message"]
    assert "sgd with lr=0.001" in v["cause"] and "barely move" in v["cause"]
    assert "adam" in v["remedy"]


def test_regression_compares_with_predicting_the_mean():
    c = ctx(
        metrics=metrics(np.full(40, 0.17)),
        task="regression",
        chance_loss=0.1667,
        config=config("tanh", "default", lr=0.001, model={"name": "rnn", "hidden": 32}),
    )
    v = only(diagnose(c), "not_learning")
    assert "predicting the mean (0.167)" in v["message"]
    assert "model.name: lstm (or gru" in v["remedy"]


def test_not_learning_needs_a_known_chance_level():
    assert kinds(diagnose(ctx(metrics=metrics(np.full(40, 0.17)), task="regression", chance_loss=None))) == ["healthy"]


def test_test_loss_rising_while_train_loss_falls_is_overfitting():
    train = falling(40, start=1.0, end=0.02)
    test = [0.9, 0.7, 0.8, 1.1, 1.5, 2.0, 2.6, 3.2]  # minimum at the second evaluation (step 100)
    c = ctx(metrics=metrics(train, test), config={**config(), "data": {"name": "spirals", "n_train": 100}})
    v = only(diagnose(c), "overfitting")
    ev = v["evidence"]
    assert ev["test_loss_min"] == 0.7 and ev["test_min_step"] == 100 and ev["test_loss_final"] == 3.2
    assert ev["train_loss_final"] < 0.1 < ev["train_loss_at_test_min"]
    assert ev["gap_final"] > ev["gap_at_test_min"]
    assert "100 training samples" in v["cause"] and "no regularization" in v["cause"]
    assert "regularization.l2" in v["remedy"] and "dropout" in v["remedy"] and "early_stopping" in v["remedy"]
    # An L1 penalty or AdamW's decay is regularization too: the cause names it, never "none".
    cfg = {**config(), "data": {"name": "spirals", "n_train": 100}, "regularization": {"l1": 0.001}}
    cfg["optimizer"] = {"name": "adamw", "lr": 0.01, "weight_decay": 0.01}
    v = only(diagnose(ctx(metrics=metrics(train, test), config=cfg)), "overfitting")
    assert "with l1=0.001, weight_decay=0.01" in v["cause"] and "no regularization" not in v["cause"]


def test_a_small_test_loss_wobbling_near_zero_is_not_overfitting():
    # quickstart: test loss 0.015 -> 0.023 while train falls to 0.003 (a 50% rise of nothing much).
    train = falling(40, end=0.003)
    test = [0.4, 0.1, 0.03, 0.015, 0.018, 0.02, 0.021, 0.023]
    assert kinds(diagnose(ctx(metrics=metrics(train, test)))) == ["healthy"]


# ---------------------------------------------------------------- through time
def rnn_ctx(rows, names=("rnn.l0", "out"), model="rnn", **kw):
    return ctx(
        names=list(names),
        grad=healthy_grad(layers=len(names)),
        act_names=[],
        last={},
        dead_check=False,
        time_grad=rows,
        task="regression",
        chance_loss=0.167,
        metrics=metrics(falling(40, start=0.3, end=0.01)),
        config=config("tanh", "default", model={"name": model, "hidden": 32}),
        **kw,
    )


def test_a_gradient_that_dies_going_back_in_time_is_vanishing_through_time():
    T = 100
    row = 0.05 * 0.8 ** np.arange(T)[::-1]  # t = T gets 0.05, t = 1 gets 0.05 * 0.8^99
    v = only(diagnose(rnn_ctx([row.tolist()])), "vanishing_through_time")
    ev = v["evidence"]["rnn.l0"]
    assert v["layers"] == ["rnn.l0"]
    assert ev["ratio_first_to_last"] == pytest.approx(0.8**99) and ev["steps"] == T
    assert ev["decay_per_step"] == pytest.approx(0.8)
    assert ev["reach_steps"] == 31  # 0.8^30 = 1.2e-3 >= 1e-3 > 0.8^31
    assert "t=1" in v["message"]
    assert "rnn with tanh over 100 steps" in v["cause"]
    assert "model.name: lstm (or gru" in v["remedy"] and "tbptt" in v["remedy"] and "clipping" in v["remedy"]


def test_a_gradient_that_underflows_to_zero_still_reads_as_vanishing_through_time():
    row = 0.07 * 0.25 ** np.arange(100)[::-1]
    row[row < 1.4e-45] = 0.0  # what float32 keeps
    v = only(diagnose(rnn_ctx([row.tolist()])), "vanishing_through_time")
    ev = v["evidence"]["rnn.l0"]
    assert ev["ratio_first_to_last"] == 0.0 and ev["decay_per_step"] == pytest.approx(0.25)
    assert "0 (underflow)" in v["message"] and "0.25 per step" in v["cause"]


def test_an_lstm_that_carries_its_gradient_back_is_not_flagged():
    row = 0.01 * 0.97 ** np.arange(100)[::-1]  # 5e-2 of the last step's at t = 1
    assert "vanishing_through_time" not in kinds(diagnose(rnn_ctx([row.tolist()], ("lstm.l0", "out"), "lstm")))


def test_a_reverse_layer_is_judged_toward_t_equals_T():
    fwd = 0.05 * 0.9 ** np.arange(60)[::-1]  # healthy: 2e-3 of the last step's at t = 1
    rev = 0.05 * 0.5 ** np.arange(60)  # its pass ends at t = 1: the far end is t = T
    v = only(
        diagnose(rnn_ctx([fwd.tolist(), rev.tolist()], ("rnn.l0", "rnn.l0_reverse", "out"))), "vanishing_through_time"
    )
    assert v["layers"] == ["rnn.l0_reverse"]
    assert v["evidence"]["rnn.l0_reverse"]["ratio_first_to_last"] < TIME_VANISHING_RATIO
    assert v["evidence"]["rnn.l0"]["ratio_first_to_last"] > TIME_VANISHING_RATIO
    assert "t=T" in v["message"]


def test_truncated_bptt_is_judged_only_over_the_steps_it_keeps():
    row = np.zeros(100)
    row[-20:] = 0.05 * 0.95 ** np.arange(20)[::-1]  # nothing before the last 20 steps: cut on purpose
    c = rnn_ctx([row.tolist()])
    c.config["train"]["tbptt"] = 20
    assert "vanishing_through_time" not in kinds(diagnose(c))


# ---------------------------------------------------------------- order, headline, text
def test_verdicts_come_most_severe_first_and_healthy_only_alone():
    grad = healthy_grad() * np.array([1e-7, 1e-5, 1e-3, 1])
    c = ctx(
        grad=grad, last={"act_dead": [0.9, 0.9, 0.9], "unit_spread": [0.0, 1, 1, 1]}, metrics=metrics(np.full(40, LN3))
    )
    vs = diagnose(c)
    assert kinds(vs) == ["symmetry", "vanishing", "dead_units", "not_learning"]
    assert [KINDS.index(k) for k in kinds(vs)] == sorted(KINDS.index(k) for k in kinds(vs))
    assert headline(vs) == vs[0]["message"]


def test_verdict_text_prints_every_verdict_with_its_cause_and_remedy():
    vs = diagnose(
        ctx(
            grad=healthy_grad() * np.array([1e-7, 1e-5, 1e-3, 1]),
            metrics=metrics(np.full(40, LN3)),
            config=config("sigmoid", "xavier_uniform"),
        )
    )
    text = verdict_text({"verdicts": vs}).plain
    lines = text.splitlines()
    assert lines[0].startswith("verdict: vanishing gradients: fc1")
    # The root cause with its cause and remedy; its symptom in one line that names it.
    assert sum(l.strip().startswith("cause: ") for l in lines) == 1
    assert sum(l.strip().startswith("try: ") for l in lines) == 1
    assert lines[-1].startswith("symptom: not learning:") and lines[-1].endswith("(from the vanishing gradients above)")
    # Old run folders (no cause/remedy keys) still print.
    assert (
        verdict_text({"verdicts": [{"kind": "healthy", "message": "healthy: fine"}]}).plain == "verdict: healthy: fine"
    )


# ---------------------------------------------------------------- chance level
def test_chance_loss_is_what_the_best_constant_prediction_scores():
    balanced = np.repeat(np.arange(3), 100)
    assert chance_loss(balanced, "classification", "cross_entropy", 3) == pytest.approx(LN3)
    assert chance_loss(balanced, "classification", "mse", 3) == pytest.approx(2 / 9)  # (k-1)/k^2
    assert chance_loss(balanced, "classification", "cross_entropy", 3, sigmoid_out=True) == pytest.approx(
        -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))
    )
    skewed = np.array([0] * 90 + [1] * 10)
    assert chance_loss(skewed, "classification", "cross_entropy", 2) == pytest.approx(
        -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    )
    y = np.random.default_rng(0).uniform(0, 2, (1000, 1))
    assert chance_loss(y, "regression", "mse", None) == pytest.approx(y.var())


# ---------------------------------------------------------------- end to end
def test_a_tiny_healthy_run_says_healthy_only(tiny):
    tiny["train"]["epochs"] = 30
    r = dlx.train(tiny, save=False)
    assert kinds(r.summary["verdicts"]) == ["healthy"]
    assert r.summary["verdict"] == r.summary["verdicts"][0]["message"]


def test_a_tiny_deep_sigmoid_run_vanishes_and_blames_sigmoid_and_depth(tiny):
    tiny.update(
        activation="sigmoid",
        init="xavier_uniform",
        model={"name": "mlp", "depth": 8, "width": 16},
        optimizer={"name": "sgd", "lr": 0.1},
    )
    r = dlx.train(tiny, save=False)
    v = r.summary["verdicts"][0]
    assert v["kind"] == "vanishing" and v["layers"] == ["fc1", "out"]
    assert "sigmoid" in v["cause"] and "8 layers" in v["cause"] and "xavier_uniform" in v["cause"]


def test_a_tiny_rnn_over_a_long_sequence_loses_its_gradient_through_time():
    cfg = {
        "seed": 0,
        "data": {"name": "adding", "length": 60, "n_train": 256, "n_test": 64},
        "model": {"name": "rnn", "hidden": 16},
        "activation": "tanh",
        "init": "default",
        "optimizer": {"name": "adam", "lr": 0.001},
        "train": {"steps": 20, "batch_size": 32, "loss": "mse", "log_every": 10, "threads": 1},
    }
    r = dlx.train(cfg, save=False)
    v = next(v for v in r.summary["verdicts"] if v["kind"] == "vanishing_through_time")
    assert v["layers"] == ["rnn.l0"] and v["evidence"]["rnn.l0"]["steps"] == 60
    assert "rnn with tanh over 60 steps" in v["cause"]


# ---------------------------------------------------------------- false alarms found on the examples


def test_batch_noise_on_a_loss_far_above_chance_is_not_lr_too_high():
    # tanh with N(0,1) init: the loss sits at ~4x chance and moves ~7% of itself per interval.
    rng = np.random.default_rng(0)
    train = 4.47 * (1 + 0.07 * rng.standard_normal(40))
    c = ctx(metrics=metrics(train), dead_check=False, config=config("tanh", "normal"))
    assert "lr_too_high" not in kinds(diagnose(c))


def test_a_loss_oscillating_by_a_third_of_itself_is_still_lr_too_high():
    train = np.where(np.arange(40) % 2, 0.3, 0.9)  # swings 0.6 around a level of 0.6
    assert "lr_too_high" in kinds(diagnose(ctx(metrics=metrics(train))))


def test_one_bad_final_evaluation_is_not_overfitting():
    train = falling(40, end=0.02)
    test = [0.4, 0.1, 0.065, 0.071, 0.073, 0.067, 0.066, 0.18]
    assert "overfitting" not in kinds(diagnose(ctx(metrics=metrics(train, test))))


def test_a_wide_growing_train_test_gap_is_overfitting_even_when_the_test_loss_is_flat():
    # 100 points memorised: train loss to ~0, test loss levels off far above it.
    train = falling(40, start=1.0, end=1e-6)
    test = [0.25, 0.18, 0.15, 0.14, 0.14, 0.14, 0.14, 0.14]  # at the first evaluation train is ~0.24
    c = ctx(metrics=metrics(train, test), task="regression", chance_loss=1.0, dead_check=False)
    v = only(diagnose(c), "overfitting")
    assert "gap grew" in v["message"] and v["evidence"]["gap_final"] > 0.13


def test_dead_units_are_not_judged_on_a_batch_of_one():
    c = ctx(
        last={"act_dead": [0.9, 0.89, 0.8], "act_saturated": [0, 0, 0]}, config={**config(), "train": {"batch_size": 1}}
    )
    assert "dead_units" not in kinds(diagnose(c))


def test_a_high_loss_with_accuracy_far_above_chance_is_not_not_learning():
    c = ctx(
        metrics=[{**m, "test_acc": 0.70} for m in metrics(np.full(40, LN3 * 2.1))],
        config={**config(), "data": {"name": "spirals", "classes": 3}},
    )
    assert "not_learning" not in kinds(diagnose(c))
    stuck = ctx(metrics=[{**m, "test_acc": 0.34} for m in metrics(np.full(40, LN3))])
    assert "not_learning" in kinds(diagnose(stuck))


def test_pre_activations_a_norm_layer_rescales_are_no_saturated_start():
    """The init check measures W x; with batch norm before each activation the units see
    unit-variance inputs, so a large init saturates nothing at step 0."""
    hot = [{"layer": f"fc{i}", "measured_var": 100.0} for i in range(1, 5)]
    plain = diagnose(ctx(config=config("tanh", "normal"), init_check=hot, metrics=metrics(np.full(40, LN3))))
    assert kinds(plain)[0] == "init_scale"
    normed = diagnose(
        ctx(config=config("tanh", "normal", norm="batch"), init_check=hot, metrics=metrics(np.full(40, LN3)))
    )
    assert "init_scale" not in kinds(normed)


def test_the_lr_verdicts_sharpness_sentence_says_a_minibatch_rule_is_only_an_indication():
    from types import SimpleNamespace

    from dlx.diagnosis.checks.lr import sharpness_over

    def at(step, top, full_batch):
        sh = {"top": top, "threshold": 20.0, "rule": "2/lr", "full_batch": full_batch}
        return {"step": step, "lr": 0.1, "sharpness": sh}

    # Past the threshold at init only, then below it: the steps never went past it.
    assert sharpness_over(SimpleNamespace(instruments=[at(0, 90.0, True), at(50, 10.0, True)])) is None
    full = sharpness_over(SimpleNamespace(instruments=[at(0, 90.0, True), at(50, 30.0, True)]))
    assert full[1]["sharpness_step"] == 50 and "stable range" in full[0]
    mini = sharpness_over(SimpleNamespace(instruments=[at(50, 30.0, False)]))
    assert "only an indication" in mini[0] and "stable range" not in mini[0]


def test_chance_accuracy_is_the_most_common_class_not_one_over_the_classes():
    from dlx.diagnosis.context import chance_accuracy
    from dlx.diagnosis.engine import outcome as run_outcome

    y = np.array([0] * 70 + [1] * 20 + [2] * 10)  # copy-memory-like: 'blank' dominates
    assert chance_accuracy(y, "classification", 3) == pytest.approx(0.7)
    assert chance_accuracy(y, "regression", None) is None
    skewed_loss = chance_loss(y, "classification", "cross_entropy", 3)
    # A net that always answers 'blank': loss at chance, accuracy 0.72 -- that is not learning,
    # though 0.72 is far above 1/3.
    recs = metrics(np.full(40, skewed_loss * 0.99))
    for m in recs:
        m["test_acc"] = 0.72
    stuck = ctx(metrics=recs, chance_loss=skewed_loss, chance_acc=0.7, config=config(optimizer="sgd", lr=0.001))
    assert "not_learning" in kinds(diagnose(stuck))
    assert "(chance 0.7)" in run_outcome(stuck)["text"]
    # Without the labels' counts (an old summary): balanced classes, ln C -> 1/C.
    old = ctx(metrics=recs, config=config(optimizer="sgd", lr=0.001))
    assert "(chance 0.33)" in run_outcome(old)["text"]


def test_a_trainer_quotes_the_test_sets_most_common_class_as_chance(tmp_path):
    from dlx.config.loader import load_config
    from dlx.run.trainer import Trainer

    cfg = load_config(
        {
            "seed": 0,
            "data": {"name": "copy", "delay": 3, "n_train": 64, "n_test": 32},
            "model": {"name": "lstm", "hidden": 8, "head": "many_to_many"},
            "optimizer": {"name": "adam", "lr": 0.01},
            "train": {"steps": 2, "batch_size": 16, "log_every": 1},
        }
    )
    t = Trainer(cfg)
    y = t.data.y_test.numpy().reshape(-1)
    assert t.chance_acc == pytest.approx(np.bincount(y).max() / y.size) and t.chance_acc > 0.5


def test_a_class_recalled_little_on_near_balanced_data_is_not_called_ignored_for_its_rarity():
    recs = metrics(falling())
    for m in recs:
        m["test_acc"] = 0.78
    # Sequential MNIST at 600 steps: class 5 recalled 19%, but it is not rare (441 vs 557).
    near = {
        "recall": [0.9] * 5 + [0.19] + [0.85] * 4,
        "test_counts": [100] * 10,
        "train_counts": [500] * 5 + [441] + [557] * 4,
    }
    assert "ignored_class" not in kinds(diagnose(ctx(metrics=recs, classes=near)))
    # A rare class (100 against 600) that the loss can skip: ignored, remedy reweighting.
    rare = dict(near, train_counts=[600] * 5 + [100] + [600] * 4)
    v = only(diagnose(ctx(metrics=recs, classes=rare)), "ignored_class")
    assert "class 5" in v["message"] and "train.balance" in v["remedy"]

"""Remedies as data: every verdict's fixes are --set overrides the config accepts, and
its prose remedy is made from them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import CONFIGS

from dlx.config.catalogue import load_examples
from dlx.config.loader import load_config
from dlx.core.errors import ConfigError
from dlx.diagnosis.engine import KINDS, Context, Fix, diagnose, schema_accepts

LN3 = math.log(3)
NAMES = ["l1", "l2", "l3", "out"]
ACTS = ["a1", "a2", "a3"]


def _examples():
    out = []
    for e in load_examples(CONFIGS):
        try:
            out.append((e.name, load_config(e.path).resolved()))
        except ConfigError:  # broken.yaml: an example of a config with mistakes
            continue
    return out


EXAMPLES = _examples()


def _metrics(train, test=None, every=10):
    out = []
    for i, loss in enumerate(train):
        m = {"step": (i + 1) * every, "train_loss": float(loss)}
        if test is not None and (i + 1) % 5 == 0:
            m["test_loss"] = float(test[(i + 1) // 5 - 1])
        out.append(m)
    return out


def _falling(n=40, start=LN3, end=0.05):
    return start * (end / start) ** (np.arange(n) / (n - 1))


def _grad(scale=(1, 1, 1, 1), steps=200):
    rng = np.random.default_rng(0)
    return np.exp(rng.normal(0, 0.3, (steps, 4))) * np.asarray(scale, dtype=float)


def _contexts(config: dict) -> list[Context]:
    """Series that trip every verdict kind (and each remedy's branches), read against `config`."""
    base = dict(
        names=NAMES,
        grad=_grad(),
        act_names=ACTS,
        dead_check=True,
        last={"act_dead": [0.0] * 3, "act_saturated": [0.0] * 3, "unit_spread": [1.0] * 4, "update_ratio": [1e-3] * 4},
        metrics=_metrics(_falling()),
        config=config,
        accepts=schema_accepts(config, load_config),  # as dlx.run.history.diagnosis_context passes it
        task="classification",
        chance_loss=LN3,
    )
    flat = _metrics(np.full(40, LN3))
    grow = _grad() * np.linspace(1, 1e3, 200)[:, None]
    shrink = [
        {
            "layer": f"l{i}",
            "predicted_gain": 0.3,
            "verdict": "shrinks",
            "fan_in": 100,
            "weight_var": 0.005,
            "rule": "1/(2 fan_in)",
        }
        for i in range(6)
    ]
    hot = [{"layer": f"l{i}", "measured_var": 100.0} for i in range(4)]
    spike = np.concatenate([_falling(20), [50.0], _falling(19)])
    overfit_test = np.concatenate([np.linspace(0.5, 0.3, 3), np.linspace(0.4, 1.5, 5)])
    time_grad = [list(0.7 ** np.arange(60)[::-1])]

    def c(**kw):
        return Context(**{**base, **kw})

    def last(**kw):
        return {**base["last"], **kw}

    return [
        c(last=last(unit_spread=[0.0, 0.0, 0.0, 1.0]), metrics=flat),  # symmetry
        c(init_check=shrink, metrics=flat),  # init_scale (a signal that shrinks)
        c(init_check=hot, metrics=flat),  # init_scale (saturated from the start)
        c(grad=_grad((1e-7, 1e-5, 1e-3, 1)), metrics=flat),  # vanishing
        c(grad=_grad((1e5, 1e4, 1e2, 1))),  # exploding from the start
        c(grad=grow),  # exploding from steps that grew the weights
        c(last=last(act_dead=[0.9, 0.9, 0.9]), metrics=flat),  # dead units
        c(last=last(act_dead=[0.9, 0.9, 0.9]), config={**config, "init": {"name": "kaiming_normal", "bias": -1.0}}),
        c(last=last(act_saturated=[0.9, 0.9, 0.9]), metrics=flat),  # saturation
        c(diverged={"step": 30, "layer": "l1", "message": "non-finite loss"}, grad=_grad()[:3]),
        c(diverged={"step": 30, "layer": "l1", "message": "non-finite loss"}, grad=_grad((1e6,) * 4)[:3]),
        c(grad=grow, metrics=_metrics(spike)),  # lr too high: a blow-up
        c(metrics=_metrics(np.concatenate([_falling(20), np.linspace(0.1, 0.9, 20)]))),  # lr too high: climbs back
        c(last=last(update_ratio=[1e-7] * 4), metrics=flat),  # lr too low
        c(metrics=flat),  # not learning
        c(metrics=_metrics(np.linspace(LN3, 0.8, 40))),  # slow
        c(metrics=_metrics(_falling(), overfit_test)),  # overfitting
        c(time_grad=time_grad, metrics=flat, task="regression", chance_loss=0.2),  # vanishing through time
        c(classes={"recall": [1.0, 1.0, 0.0], "test_counts": [450, 450, 100], "train_counts": [900, 900, 20]}),
    ]


def test_the_fix_text_is_the_yaml_of_its_overrides_with_why():
    f = Fix(("activation=relu", "init=kaiming_normal"), "He init for relu")
    assert f.text == "activation: relu + init: kaiming_normal (He init for relu)"
    assert f.keys == ("activation", "init")
    assert f.as_dict() == {"set": ["activation=relu", "init=kaiming_normal"], "text": f.text}


def test_the_prose_remedy_is_made_from_the_fixes_and_names_each():
    config = dict(EXAMPLES)["vanishing_sigmoid"]
    v = next(v for v in diagnose(_contexts(config)[3]) if v["kind"] == "vanishing")
    assert v["fixes"], v
    for f in v["fixes"]:
        assert f["text"] in v["remedy"]
    assert v["fixes"][0]["set"] == ["activation=relu", "init=kaiming_normal"]


def test_a_symptom_carries_no_fixes_of_its_own():
    config = dict(EXAMPLES)["vanishing_sigmoid"]
    vs = diagnose(_contexts(config)[3])
    symptoms = [v for v in vs if v.get("symptom_of")]
    assert symptoms and all(v["fixes"] == [] for v in symptoms)


@pytest.mark.parametrize("name,config", EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_every_verdict_kinds_fixes_are_valid_set_overrides_for_the_example(name, config):
    seen: set[str] = set()
    tried: set[tuple[str, ...]] = set()
    for ctx in _contexts(config):
        for v in diagnose(ctx):
            seen.add(v["kind"])
            for f in v["fixes"]:
                sets = tuple(f["set"])
                if sets in tried:
                    continue
                tried.add(sets)
                try:
                    load_config(config, list(sets))
                except ConfigError as e:
                    pytest.fail(f"{name}: the {v['kind']} fix {f['text']!r} ({list(sets)}) is refused:\n{e}")
    # Every kind was read against this config (healthy only needs nothing wrong).
    assert seen >= set(KINDS) - {"healthy"} - _not_for(config), sorted(set(KINDS) - seen)
    assert tried, name


def _not_for(config: dict) -> set[str]:
    """Kinds a config's own settings rule out: truncated BPTT judges only the steps it keeps."""
    return {"vanishing_through_time"} if (config.get("train") or {}).get("tbptt") else set()

"""The diagnosis owns its verdict kinds and the activations own their facts: every kind has
its record (and every renderer styles it from that record), every activation declares every
fact its readers (diagnosis, init check, probes, dlx backprop, the stacked trainer) read,
and the diagnosis imports nothing above dlx.components."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dlx.components.activations import ACTIVATIONS, FACTS, SATURATING_STD, ActivationSpec
from dlx.components.init import INITS
from dlx.diagnosis import readers
from dlx.diagnosis.kinds import KIND, KINDS, LABEL, NOT_PRUNABLE, PRUNABLE, PRUNE_ORDER, SEVERITIES, SYMPTOMS

DIAGNOSIS = Path(__file__).resolve().parents[1] / "dlx" / "diagnosis"


# ---------------------------------------------------------------- verdict kinds
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_has_its_record(kind):
    k = KIND[kind]
    assert k.name == kind
    assert k.label and LABEL[kind] == k.label
    assert k.severity in SEVERITIES
    assert set(k.symptoms) <= set(KINDS) - {kind}
    assert k.why
    assert (kind in PRUNABLE) == k.prunable != (kind in NOT_PRUNABLE)


def test_the_derived_tables_agree_with_the_records():
    assert set(PRUNE_ORDER) == {k for k, r in KIND.items() if r.prunable}
    assert set(PRUNABLE) | set(NOT_PRUNABLE) == set(KINDS)
    assert SYMPTOMS == {k: r.symptoms for k, r in KIND.items() if r.symptoms}
    assert KIND["healthy"].severity == "healthy" and KINDS[-1] == "healthy"


def test_the_terminal_styles_every_kind_by_its_severity():
    from dlx.views.report import SEVERITY_STYLE, VERDICT_STYLE

    assert set(SEVERITY_STYLE) == set(SEVERITIES)
    assert set(VERDICT_STYLE) == set(KINDS)
    for kind in KINDS:
        assert VERDICT_STYLE[kind] == SEVERITY_STYLE[KIND[kind].severity]


@pytest.mark.parametrize("kind", KINDS)
def test_the_html_card_of_every_kind_follows_its_severity(kind):
    from dlx.views.html_run import HEALTHY, SEVERE, verdicts_html

    severity = KIND[kind].severity
    assert (kind in SEVERE) == (severity == "severe")
    assert (kind in HEALTHY) == (severity == "healthy")
    card = {"severe": "severe", "healthy": "healthy"}.get(severity, "warn")
    assert f'class="verdict {card}"' in verdicts_html([{"kind": kind, "message": "m"}])


# ---------------------------------------------------------------- activation facts
def _declared(cls: type, fact: str) -> bool:
    """Set by the activation itself (or a registered parent), not left to the base's annotation."""
    return any(fact in vars(k) for k in cls.__mro__ if issubclass(k, ActivationSpec) and k is not ActivationSpec)


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_every_activation_declares_every_fact(name):
    cls = ACTIVATIONS.get(name)
    missing = [f for f in FACTS if not _declared(cls, f)]
    assert not missing, f"{name} does not declare {missing}"
    spec = ACTIVATIONS.parse(name)
    for fact in FACTS:
        getattr(spec, fact)  # readable on a parsed spec (leaky_relu's units_can_die is a property)


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_the_facts_are_consistent(name):
    spec = ACTIVATIONS.parse(name)
    saturating = spec.bounds is not None
    assert (spec.saturating_std is not None) == saturating == bool(spec.saturates)
    assert not spec.units_can_die or spec.off_below is not None
    assert spec.fitting_init in INITS
    assert spec.learns is None or isinstance(spec.learns, str)
    f = spec.build(3).double()
    z = torch.linspace(-3, 3, 13, dtype=torch.float64)
    with torch.no_grad():
        assert (float(f(torch.zeros(1, dtype=torch.float64))) == 0.0) == spec.zero_at_zero
    if spec.bounds is not None:
        lo, hi = spec.bounds
        out = f(torch.linspace(-50, 50, 101, dtype=torch.float64))
        assert lo - 1e-9 <= float(out.min()) and float(out.max()) <= hi + 1e-9
    if spec.derivative is not None:
        _, fp = spec.derivative
        zg = (z + 0.05).requires_grad_()  # off the kink at 0
        a = f(zg)
        (auto,) = torch.autograd.grad(a.sum(), zg)
        assert torch.allclose(fp(zg.detach(), a.detach()), auto)
    assert bool(list(spec.build(3).parameters())) == (spec.learns is not None)


def test_the_readers_take_their_tables_from_the_facts():
    from dlx.run.backprop import DERIVATIVES
    from dlx.run.initcheck import SATURATING_STD as initcheck_std

    every = ACTIVATIONS.names(aliases=True)
    assert initcheck_std is SATURATING_STD
    assert SATURATING_STD == {
        n: ACTIVATIONS.get(n).saturating_std for n in ACTIVATIONS.names() if n in readers.SATURATING
    }
    assert set(readers.RELU_FAMILY) == {n for n in every if ACTIVATIONS.get(n).relu_like}
    assert set(readers.ZERO_AT_ZERO) == {n for n in every if ACTIVATIONS.get(n).zero_at_zero}
    assert set(DERIVATIVES) == {n for n in ACTIVATIONS.names() if ACTIVATIONS.get(n).derivative}
    for n in every:
        assert readers.good_init(n) == ACTIVATIONS.get(n).fitting_init


# ---------------------------------------------------------------- the layer
def test_the_diagnosis_imports_only_core_and_components():
    allowed = ("dlx.core", "dlx.components", "dlx.diagnosis")
    for path in sorted(DIAGNOSIS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                if name == "dlx" or name.startswith("dlx."):
                    assert name.startswith(allowed), f"{path.name} imports {name}"


def test_the_diagnosis_and_the_activation_facts_load_without_torch():
    code = "import sys, dlx.diagnosis.engine, dlx.diagnosis.kinds; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)

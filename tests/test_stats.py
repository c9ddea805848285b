"""The seed statistics of dlx compare: Student's t against its closed forms and tables, the
mean's interval covering the true mean 95% of the time, Welch's test by its formula."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlx.core.stats import mean_interval, t_quantile, t_sf, welch


@pytest.mark.parametrize("t", [-3.0, -0.4, 0.0, 0.7, 2.5, 40.0])
def test_t_tail_matches_the_closed_forms_for_one_and_two_degrees_of_freedom(t):
    assert t_sf(t, 1) == pytest.approx(0.5 - math.atan(t) / math.pi, abs=1e-12)  # Cauchy
    assert t_sf(t, 2) == pytest.approx(0.5 - t / (2 * math.sqrt(2 + t * t)), abs=1e-12)


@pytest.mark.parametrize(
    "df, want",  # two-sided 95% critical values, from any t table
    [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (29, 2.045), (99, 1.984), (10_000, 1.960)],
)
def test_the_975_quantile_is_the_tables(df, want):
    assert t_quantile(0.975, df) == pytest.approx(want, abs=5e-4)
    assert t_quantile(0.025, df) == pytest.approx(-want, abs=5e-4)


def test_the_mean_interval_covers_the_true_mean_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = 0
    trials = 4000
    for _ in range(trials):
        lo, hi = mean_interval(list(rng.normal(0.9, 0.02, size=4)))
        hits += lo <= 0.9 <= hi
    assert abs(hits / trials - 0.95) < 0.012  # 3 binomial sd of 4000 draws
    assert mean_interval([0.5]) is None


def test_welch_is_its_formula_and_tells_a_real_difference_from_seed_noise():
    a, b = [0.91, 0.93, 0.92, 0.94], [0.80, 0.85, 0.78]
    d = welch(a, b)
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 3
    assert d.t == pytest.approx((np.mean(a) - np.mean(b)) / math.sqrt(va + vb))
    assert d.df == pytest.approx((va + vb) ** 2 / (va**2 / 3 + vb**2 / 2))
    assert d.p == pytest.approx(2 * t_sf(abs(d.t), d.df)) and d.larger
    assert d.low < d.diff < d.high and d.low > 0
    # Two samples of one distribution: no difference claimed, the interval holds 0.
    same = welch([0.90, 0.92, 0.91], [0.91, 0.89, 0.93])
    assert not same.larger and same.low < 0 < same.high
    # Every seed identical: the difference is exact.
    assert welch([1.0, 1.0], [0.5, 0.5]).larger and welch([1.0, 1.0], [1.0, 1.0]).p == 1.0
    assert welch([1.0], [0.5, 0.6]) is None

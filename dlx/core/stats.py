"""What a handful of seeds can say: the mean's 95% interval and whether two variants differ
by more than their seeds' spread (Welch's t-test), in plain Python; and a power law's exponent.

Student's t distribution from its regularized incomplete beta function (the continued
fraction of Numerical Recipes, 6.4), so the core install needs no scipy for four numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence


def finite(values: Sequence[Any]) -> list[float]:
    """The finite numbers among values (a diverged run's None, NaN or Inf left out)."""
    return [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def root_sum_square(values: Sequence[Any]) -> float | None:
    """sqrt(sum of squares): the norm of a whole made of parts whose norms these are (a net's
    weights from each layer's); None where a part is missing or not finite (a non-finite layer
    norm is stored as null): a gap, never a smaller number."""
    if not values or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        return None
    return math.sqrt(sum(float(v) ** 2 for v in values))


def geometric_mean(values: Sequence[float]) -> float:
    """exp(mean(log v)) of positive values: the typical factor of a chain of factors."""
    return math.exp(sum(math.log(v) for v in values) / len(values))


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The least-squares slope of log(y) against log(x), so that y ~ x**slope (positive x, y;
    at least two distinct x): a mode's time against its strength, a layer's scale against width."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((x - mx) * (y - my) for x, y in zip(lx, ly)) / sum((x - mx) ** 2 for x in lx)


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with df degrees of freedom (df may be fractional: Welch)."""
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p (bisection on t_sf: 60 halvings, far below display precision)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_sf(hi, df) > 1.0 - p:
        hi *= 2.0
    for _ in range(60):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if t_sf(mid, df) > 1.0 - p else (lo, mid)
    return (lo + hi) / 2.0


def mean_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """The mean's `level` interval over these seeds (Student's t), or None with fewer than 2."""
    n = len(values)
    if n < 2:
        return None
    m = sum(values) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    half = t_quantile(0.5 + level / 2.0, n - 1) * sd / math.sqrt(n)
    return m - half, m + half


@dataclass
class Difference:
    """Welch's t-test of mean(a) - mean(b): the difference, its 95% interval, t, df and the
    two-sided p; larger is whether the difference stands out of the seeds' spread (p < 0.05)."""

    diff: float
    low: float
    high: float
    t: float
    df: float
    p: float

    @property
    def larger(self) -> bool:
        return self.p < 0.05


def welch(a: Sequence[float], b: Sequence[float]) -> Difference | None:
    """Welch's unequal-variance t-test (None with fewer than 2 values on a side)."""
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return None
    ma, mb = sum(a) / na, sum(b) / nb
    va = sum((x - ma) ** 2 for x in a) / (na - 1)
    vb = sum((x - mb) ** 2 for x in b) / (nb - 1)
    se2 = va / na + vb / nb
    diff = ma - mb
    if se2 == 0.0:  # every seed the same on both sides: the difference is exact
        p = 1.0 if diff == 0.0 else 0.0
        return Difference(diff, diff, diff, math.copysign(math.inf, diff) if diff else 0.0, float(na + nb - 2), p)
    df = se2**2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    se = math.sqrt(se2)
    t = diff / se
    half = t_quantile(0.975, df) * se
    return Difference(diff, diff - half, diff + half, t, df, min(1.0, 2.0 * t_sf(abs(t), df)))

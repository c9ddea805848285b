"""The one formatter of a number for people: tables, verdict text, the HTML report.

Every place that shows a number calls num() with its own digits and bounds, so a
number reads the same wherever it appears and tests can rebuild the exact text of
a cell from a --json value.
"""

from __future__ import annotations

import math
from typing import Any


def num(
    x: Any,
    digits: int = 3,
    *,
    small: float = 1e-3,
    large: float = 1e5,
    far: str = "e",
    short_exp: bool = False,
    exact_int: bool = False,
    none: str = "-",
) -> str:
    """x with `digits` significant digits: 0.0156, 54.6, 1.2e+04.

    Below `small` or from `large` on (in size), x is written far from 1: far="e", an
    exponent with digits-1 decimals (6.46e-04); far="g", digits-1 significant digits in
    whichever form is shorter (0.0046, 1.2e+05). short_exp drops the exponent's sign
    and zero padding where it can (6.46e-4, 1.2e5). None is `none`; nan and inf are
    "nan", "inf", "-inf"; 0 is "0"; exact_int writes an int as it is (no rounding).
    """
    if x is None:
        return none
    if exact_int and isinstance(x, int):
        return str(x)
    if not isinstance(x, (int, float)):
        return str(x)  # not a number (a file of an odd shape): shown as it is, never an error
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if abs(x) < small or abs(x) >= large:
        text = f"{x:.{max(digits - 1, 1)}{far}}"
    else:
        text = f"{x:.{digits}g}"
    if short_exp and "e" in text:
        mant, exp = text.split("e")
        text = f"{mant}e{int(exp)}"
    return text

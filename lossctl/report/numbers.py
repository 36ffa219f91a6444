"""Numbers for people: enough digits to tell values apart and no more, thousands separators.

Tables, Markdown and check details use these; JSON and CSV keep every digit
(``repr``), for programs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

DIGITS = 6  # significant digits of a value on its own
LEAST, MOST = 4, 12  # the range :func:`distinct_digits` picks from


def number(v: float | None, digits: int = DIGITS) -> str:
    """``v`` to ``digits`` significant digits, in fixed notation with separators where it reads.

    ``1713219364.38`` -> ``1,713,219,364``, ``16.04750`` -> ``16.0475``,
    ``0.000012345`` -> ``1.2345e-05``; trailing zeros are dropped.
    """
    if v is None or math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(v)))
    if magnitude < -4 or magnitude >= 15:
        mantissa, exponent = f"{v:.{digits - 1}e}".split("e")
        if "." in mantissa:
            mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{exponent}"
    decimals = max(0, digits - 1 - magnitude)
    text = f"{v:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def distinct_digits(values: Iterable[float | None], least: int = LEAST, most: int = MOST) -> int:
    """The fewest digits (at least ``least``) that show different values differently.

    Two models' losses that differ only in the 7th digit get 7 digits; equal
    values get ``least``.
    """
    vals = [v for v in values if v is not None and math.isfinite(v)]
    wanted = len(set(vals))
    for d in range(least, most + 1):
        if len({number(v, d) for v in vals}) == wanted:
            return d
    return most


def signed(v: float | None, digits: int = 3) -> str:
    """A difference: ``+0.00221``, ``-1.5``."""
    if v is None or math.isnan(v):
        return "nan"
    return ("+" if v > 0 else "") + number(v, digits) if v != 0 else "0"


def percent(v: float | None, digits: int = 3) -> str:
    """A relative change: ``+1.94%``."""
    if v is None or math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "+inf%" if v > 0 else "-inf%"
    return signed(v * 100, digits) + "%"


def count(n: int | None) -> str:
    """A count with thousands separators: ``1,234,567``."""
    return "?" if n is None else f"{n:,}"

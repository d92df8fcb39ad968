"""Early, explicit validation of user input.

Every public constructor checks its arguments here so that a bad value fails at once with a
``ValueError`` that names the parameter and the allowed range, never deep inside a step.
"""

from __future__ import annotations

import math
from numbers import Real

__all__ = ["check_real", "check_int", "check_choice"]


def _fmt_range(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    lo = "-inf" if low is None else repr(low)
    hi = "inf" if high is None else repr(high)
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    return f"{left}{lo}, {hi}{right}"


def check_real(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` naming ``name`` and the range.

    ``low``/``high`` are inclusive unless ``low_open``/``high_open``; ``None`` means unbounded.
    Non-finite values are always rejected.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a real number in "
                         f"{_fmt_range(low, high, low_open, high_open)}, "
                         f"got {value!r} ({type(value).__name__})")
    v = float(value)
    ok = math.isfinite(v)
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    if not ok:
        raise ValueError(f"{name} must be a finite number in "
                         f"{_fmt_range(low, high, low_open, high_open)}, got {value!r}")
    return v


def check_int(name: str, value: object, *, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as an int in ``[low, high]`` or raise ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer in {_fmt_range(low, high, False, False)}, "
                         f"got {value!r} ({type(value).__name__})")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer in {_fmt_range(low, high, False, False)}, "
                         f"got {value!r}")
    return value


def check_choice(name: str, value: object, choices: tuple[str, ...] | list[str]) -> str:
    """Return ``value`` if it is one of ``choices`` or raise ``ValueError`` listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value  # type: ignore[return-value]

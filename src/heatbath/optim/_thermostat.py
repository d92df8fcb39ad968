r"""A check of Adaptive Langevin's thermostat settings: noise that the thermostat cannot absorb.

In the step :math:`\dots C_{h/2}\,D_{h/2}\,E_h\,D_{h/2}\,C_{h/2}\dots` the thermostat update E
measures the momentum right after one additive-noise half-step
:math:`D_{h/2}: p \leftarrow p + \sigma_A\sqrt{h/2}\,R`. That half-step alone gives every entry
the variance :math:`s = \sigma_A^2 h/2`, independent of everything before it, so whatever
:math:`\xi` is, :math:`\langle p^\top p\rangle/n \ge s` where E looks. With :math:`s \ge \tau`
the drive :math:`p^\top p - n\tau` is positive on average at every finite :math:`\xi`, and
:math:`\xi` grows without bound. Below the bound, in a direction without forces, :math:`\xi`
settles at :math:`\bar\xi = \ln\bigl((\tau + s)/(\tau - s)\bigr)/(2h)`, which tends to the
continuous :math:`\sigma_A^2/(2\tau)` as :math:`h \to 0` and diverges as :math:`s \to \tau`;
gradient noise only raises it. See ``docs/theory/adaptive-langevin.md``, section
'Thermostat scale'.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from typing import Any

import torch

__all__ = ["noise_heating", "thermostat_runs_away", "check_thermostat"]

_HERE = os.path.dirname(os.path.abspath(__file__))
_TORCH = os.path.dirname(os.path.abspath(torch.__file__))


def noise_heating(h: float, sigma_A: float) -> float:
    r"""The variance :math:`\sigma_A^2 h/2` one noise half-step gives each momentum entry."""
    return 0.5 * sigma_A * sigma_A * h


def thermostat_runs_away(h: float, sigma_A: float, tau: float, epsilon: float) -> bool:
    r"""True when :math:`\sigma_A^2 h/2 \ge \tau` with noise on and the thermostat coupled
    (:math:`\sigma_A h > 0`, :math:`\epsilon > 0`): then :math:`\xi` has no equilibrium."""
    s = noise_heating(h, sigma_A)
    return epsilon > 0 and s > 0 and s >= tau


def _caller_level() -> int:
    """``stacklevel`` of the first frame outside heatbath's optimizers and torch (the user's
    call that built the optimizer or stepped it), counted from :func:`check_thermostat`."""
    frame: Any = sys._getframe(1)  # check_thermostat's frame: level 1
    level = 1
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if not (path.startswith(_HERE) or path.startswith(_TORCH)):
            return level
        frame = frame.f_back
        level += 1
    return 1


def check_thermostat(opt: Any, group: dict[str, Any], index: int) -> None:
    """Warn (``RuntimeWarning``) when an ``"adl"`` group's thermostat runs away.

    Called when the group is added and at every step; the check itself runs only when
    ``h``, ``sigma_A``, ``tau`` or ``epsilon`` changed since the last call for this group, and
    warns when the condition starts to hold (not again while it keeps holding).

    Args:
        opt: the optimizer (its class names the group in the message; the last checked values
            are kept on it).
        group: the parameter group (``method == "adl"``).
        index: the group's index in ``opt.param_groups``.
    """
    key = (group["h"], group["sigma_A"], group["tau"], group["epsilon"])
    seen = opt.__dict__.setdefault("_thermostat_checked", {})
    prev = seen.get(index)
    if prev is not None and prev[0] == key:
        return
    h, sigma_a, tau, epsilon = (float(v) for v in key)
    bad = thermostat_runs_away(h, sigma_a, tau, epsilon)
    seen[index] = (key, bad)
    if not bad or (prev is not None and prev[1]):
        return
    s = noise_heating(h, sigma_a)
    names = group.get("param_names") or []
    where = f" ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})" if names else ""
    if tau > 0:
        fix = (f"keep sigma_A**2 * h / 2 < tau: sigma_A < {math.sqrt(2.0 * tau / h):.4g} at "
               f"h = {h:g}, or h < {2.0 * tau / (sigma_a * sigma_a):.4g} at "
               f"sigma_A = {sigma_a:g}")
    else:
        fix = "with tau = 0 any noise does this: set sigma_A = 0 or tau > 0"
    warnings.warn(
        f"{type(opt).__name__}: Adaptive Langevin group {index}{where}: sigma_A**2 * h / 2 = "
        f"{s:.4g} >= tau = {tau:.4g} (sigma_A = {sigma_a:g}, h = {h:g}). The thermostat "
        "measures the momentum after a noise half-step, which alone gives every entry the "
        "variance sigma_A**2 * h / 2, so p^T p / n cannot come down to tau and xi grows without "
        f"bound; {fix} (docs/theory/adaptive-langevin.md, section 'Thermostat scale').",
        RuntimeWarning, stacklevel=_caller_level())

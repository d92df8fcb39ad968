r"""L2 PGD attacks, the multi-class hinge loss, logit margins, certificates and Lipschitz probes.

**L2 PGD** (Madry et al. 2018). From :math:`\delta_0` (zero, or uniform in the ball),

.. math::  \delta_{t+1} = \Pi_{\|\delta\|\le\varepsilon}\Big(\delta_t + \alpha\,
           \frac{g_t}{\|g_t\|_2}\Big),\qquad g_t = \nabla_\delta\,\ell(F(x+\delta), y),

with per-sample norms and :math:`\alpha = \text{step\_size}\cdot\varepsilon`; inputs are clamped
to ``bounds`` if given, which only moves a point closer to x (the box contains x), so the
returned perturbation stays in the ball. Two settings matter (see docs/structure-preserving.md,
section "Attacks and certificates"):

* :data:`STRONG_PGD`, heatbath's default: the margin (Carlini–Wagner) loss
  :math:`\ell = -M`, a random start, 50 steps of relative size 2.5/50, 5 restarts, and for each
  sample the **best iterate** (the lowest margin seen over all steps and restarts) is returned.
* :data:`PUBLISHED_PGD`, the setting of Celledoni et al. 2022: foolbox's ``L2PGD`` with its
  defaults (cross-entropy, random start, relative step 0.025) but only 10 steps, returning the
  last iterate. Its iterates can move at most :math:`10\cdot0.025\,\varepsilon = 0.25\,
  \varepsilon` away from the random start, so it under-explores the ball and overstates
  robust accuracy.

**Multi-class hinge loss** with margin m (Celledoni et al. 2022):
:math:`\ell = \sum_{j\ne y}\max(0, m - (F_y - F_j))`, averaged over the batch.

**Certificate** (derived). Let :math:`M(x) = F_y(x) - \max_{j\ne y}F_j(x)` be the logit margin
and F be L-Lipschitz in :math:`\ell^2`. For each :math:`j \ne y`,

.. math::  (F_y - F_j)(x+\delta) \ge (F_y - F_j)(x) - |\langle e_y - e_j,
           F(x+\delta) - F(x)\rangle| \ge M(x) - \|e_y - e_j\|_2\,L\,\|\delta\|
           = M(x) - \sqrt2\,L\,\|\delta\|,

so the prediction cannot change while :math:`\|\delta\| < M(x)/(\sqrt2\,L)`:
:func:`certified_radius`. The constant is sharp for F linear with rows
:math:`w_y = -w_j` orthogonal to the others (then :math:`\|w_y - w_j\| = \sqrt2\,\|W\|`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validate import check_choice, check_int, check_real

__all__ = ["pgd_l2", "multiclass_hinge", "logit_margin", "robust_accuracy",
           "empirical_lipschitz", "certified_radius", "certified_accuracy", "STRONG_PGD",
           "PUBLISHED_PGD"]

Model = Callable[[Tensor], Tensor]

#: heatbath's default attack: margin loss, random start, 50 steps, 5 restarts, best iterate
STRONG_PGD: dict[str, Any] = dict(steps=50, step_size=None, loss="margin", random_start=True,
                                  restarts=5, best_iterate=True)
#: Celledoni et al. 2022: foolbox L2PGD defaults (cross-entropy, random start, relative step
#: 0.025) with 10 steps, last iterate
PUBLISHED_PGD: dict[str, Any] = dict(steps=10, step_size=0.025, loss="ce", random_start=True,
                                     restarts=1, best_iterate=False)


def _bnorm(x: Tensor) -> Tensor:
    return x.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))


def logit_margin(logits: Tensor, y: Tensor) -> Tensor:
    """The logit margin per sample.

    Args:
        logits: ``[n, C]`` outputs.
        y: ``[n]`` labels.

    Returns:
        :math:`M = F_y - \\max_{j\\ne y}F_j`, negative when misclassified.
    """
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return true - other.max(1).values


def multiclass_hinge(logits: Tensor, y: Tensor, margin: float) -> Tensor:
    """Batch mean of :math:`\\sum_{j\\ne y}\\max(0, m - (F_y - F_j))`.

    Args:
        logits: ``[n, C]`` outputs.
        y: ``[n]`` labels.
        margin: m >= 0.

    Returns:
        The scalar loss.
    """
    margin = check_real("margin", margin, low=0.0)
    true = logits.gather(1, y[:, None])
    viol = torch.relu(margin - (true - logits))
    viol = viol.scatter(1, y[:, None], 0.0)
    return viol.sum(1).mean()


def _random_start(x: Tensor, e: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniform draw in the per-sample L2 balls, on ``x``'s device."""
    if generator is not None and generator.device != x.device:
        raise ValueError(f"generator is on {generator.device} but the input is on {x.device}; "
                         f"random starts draw on the input's device")
    d = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    u = torch.rand((x.shape[0],), generator=generator, dtype=x.dtype, device=x.device)
    r = u ** (1.0 / x[0].numel())
    return d / _bnorm(d) * r.view_as(e) * e


def pgd_l2(model: Model, x: Tensor, y: Tensor, eps: float | Tensor, *, steps: int = 50,
           step_size: float | None = None, loss: str = "margin", random_start: bool = True,
           restarts: int = 5, best_iterate: bool = True,
           bounds: tuple[float, float] | None = None,
           generator: torch.Generator | None = None) -> Tensor:
    """Adversarial examples in the L2 ball of radius ``eps`` around ``x``.

    The defaults are :data:`STRONG_PGD`; ``pgd_l2(..., **PUBLISHED_PGD)`` is the published
    foolbox setting (see the module docstring). The model's train/eval mode is left as it is;
    parameters get no gradient.

    Args:
        model: maps inputs ``[n, ...]`` to logits ``[n, C]``.
        x: clean inputs.
        y: labels ``[n]``.
        eps: radius, a float or a per-sample tensor, finite and >= 0.
        steps: gradient steps per restart, >= 1.
        step_size: step relative to eps (default 2.5/steps).
        loss: ``"margin"`` (maximise :math:`-M`, Carlini–Wagner) or ``"ce"`` (cross-entropy).
        random_start: start uniformly in the ball (else at x; then restarts > 1 repeat the same
            deterministic run, so they are only allowed with a random start).
        restarts: independent runs, >= 1.
        best_iterate: return, per sample, the iterate with the lowest margin over all steps and
            restarts (the last iterate of the last restart otherwise).
        bounds: clamp the attacked inputs to ``[lo, hi]``.
        generator: random source for the starts; must live on x's device.

    Returns:
        The adversarial inputs, detached, with ``||x_adv - x|| <= eps`` per sample.

    Raises:
        ValueError: a parameter is out of range, or the generator is on another device.
    """
    steps = check_int("steps", steps, low=1)
    restarts = check_int("restarts", restarts, low=1)
    loss = check_choice("loss", loss, ("ce", "margin"))
    if restarts > 1 and not random_start:
        raise ValueError("restarts > 1 needs random_start=True (otherwise every restart is the "
                         "same run)")
    rel = 2.5 / steps if step_size is None else check_real("step_size", step_size, low=0.0,
                                                             low_open=True)
    if random_start and generator is not None and generator.device != x.device:
        raise ValueError(f"generator is on {generator.device} but the input is on {x.device}; "
                         f"random starts draw on the input's device")
    e = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if bool((e < 0).any()) or not bool(torch.isfinite(e).all()):
        raise ValueError(f"eps must be finite and >= 0, got {eps!r}")
    e = e.expand(x.shape[0]).reshape(-1, *([1] * (x.dim() - 1)))
    x = x.detach()

    def clip(xa: Tensor) -> Tensor:
        return xa.clamp(*bounds) if bounds is not None else xa

    best_x = x.clone()
    best_m = torch.full((x.shape[0],), math.inf, dtype=x.dtype, device=x.device)

    def keep_best(xa: Tensor, out: Tensor) -> None:
        m = logit_margin(out.detach(), y)
        better = m < best_m
        best_m[better] = m[better]
        best_x[better] = xa.detach()[better]

    last = x
    for _ in range(restarts):
        delta = _random_start(x, e, generator) if random_start else torch.zeros_like(x)
        for _t in range(steps):
            delta = delta.detach().requires_grad_(True)
            xa = clip(x + delta)
            out = model(xa)
            if best_iterate:
                keep_best(xa, out)
            obj = F.cross_entropy(out, y, reduction="sum") if loss == "ce" \
                else -logit_margin(out, y).sum()
            (g,) = torch.autograd.grad(obj, delta)
            with torch.no_grad():
                delta = delta + rel * e * g / _bnorm(g)
                delta = delta * torch.clamp(e / _bnorm(delta), max=1.0)
        last = clip(x + delta.detach())
        if best_iterate:
            with torch.no_grad():
                keep_best(last, model(last))
    return best_x if best_iterate else last


def robust_accuracy(model: Model, x: Tensor, y: Tensor, eps_list: Sequence[float], *,
                    bounds: tuple[float, float] | None = None, batch_size: int = 1024,
                    generator: torch.Generator | None = None, **attack: Any) -> list[float]:
    """Accuracy under :func:`pgd_l2` for each radius (eps = 0 gives the clean accuracy).

    A sample counts as robust at eps > 0 only if it is classified correctly both clean and at
    the attack's output, so robust accuracy never exceeds clean accuracy.

    Args:
        model: the classifier (put it in ``eval()`` first).
        x: inputs.
        y: labels.
        eps_list: radii, each >= 0.
        bounds: input box passed to the attack.
        batch_size: samples attacked at once.
        generator: random source for the attack's starts.
        **attack: further :func:`pgd_l2` arguments (default :data:`STRONG_PGD`; pass
            ``**PUBLISHED_PGD`` for the published setting).

    Returns:
        One accuracy in [0, 1] per radius.
    """
    batch_size = check_int("batch_size", batch_size, low=1)
    with torch.no_grad():
        clean = torch.cat([model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]
                           for i in range(0, len(x), batch_size)])
    out = []
    for eps in eps_list:
        eps = check_real("eps", eps, low=0.0)
        if eps == 0:
            out.append(float(clean.float().mean()))
            continue
        ok = []
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            xa = pgd_l2(model, xb, yb, eps, bounds=bounds, generator=generator, **attack)
            with torch.no_grad():
                ok.append(model(xa).argmax(1) == yb)
        out.append(float((torch.cat(ok) & clean).float().mean()))
    return out


def certified_radius(model: Model, x: Tensor, y: Tensor, lipschitz: float | None = None
                     ) -> Tensor:
    r"""Per-sample L2 radius within which the prediction provably cannot change.

    :math:`r(x) = \max(M(x), 0)/(\sqrt2\,L)` with M the logit margin and L an upper bound of the
    model's :math:`\ell^2` Lipschitz constant (derivation in the module docstring).
    Misclassified samples get radius 0.

    Args:
        model: the classifier; if ``lipschitz`` is not given it must have a
            ``lipschitz_bound()`` method (the heatbath networks do).
        x: inputs.
        y: labels.
        lipschitz: an upper bound L > 0 of the Lipschitz constant.

    Returns:
        ``[n]`` radii, >= 0.

    Raises:
        ValueError: no bound is given and the model cannot provide one.
    """
    if lipschitz is None:
        fn = getattr(model, "lipschitz_bound", None)
        if not callable(fn):
            raise ValueError("lipschitz: give the model's Lipschitz bound, or a model with a "
                             "lipschitz_bound() method")
        lipschitz = float(fn())
    L = check_real("lipschitz", lipschitz, low=0.0, low_open=True)
    with torch.no_grad():
        M = logit_margin(model(x), y)
    return M.clamp_min(0.0) / (math.sqrt(2.0) * L)


def certified_accuracy(model: Model, x: Tensor, y: Tensor, eps_list: Sequence[float], *,
                       lipschitz: float | None = None) -> list[float]:
    """Fraction of samples with a certified radius above each eps (see :func:`certified_radius`).

    Args:
        model: the classifier.
        x: inputs.
        y: labels.
        eps_list: radii, each >= 0; at eps = 0 this is the clean accuracy.
        lipschitz: upper bound of the model's Lipschitz constant (default: the model's
            ``lipschitz_bound()``).

    Returns:
        One fraction in [0, 1] per radius.
    """
    r = certified_radius(model, x, y, lipschitz)
    return [float((r > check_real("eps", e, low=0.0)).float().mean()) for e in eps_list]


def empirical_lipschitz(fn: Model, u: Tensor, v: Tensor, *, steps: int = 50,
                        lr: float = 0.05) -> Tensor:
    """Per-pair ratios ||F(u) - F(v)|| / ||u - v|| after gradient ascent on the pairs.

    Each pair is moved by normalised-gradient ascent on the ratio (with ||u - v|| kept away
    from zero).

    Args:
        fn: the map F.
        u: first points of the pairs.
        v: second points.
        steps: ascent steps, >= 0.
        lr: step relative to ||u - v||, >= 0.

    Returns:
        The largest ratio seen for each pair over all iterates.
    """
    steps = check_int("steps", steps, low=0)
    lr = check_real("lr", lr, low=0.0)
    u = u.detach().clone()
    v = v.detach().clone()
    best = torch.zeros(u.shape[0], dtype=u.dtype, device=u.device)
    for t in range(steps + 1):
        u.requires_grad_(True)
        v.requires_grad_(True)
        num = (fn(u) - fn(v)).flatten(1).norm(dim=1)
        den = (u - v).flatten(1).norm(dim=1).clamp_min(1e-8)
        ratio = num / den
        best = torch.maximum(best, ratio.detach())
        if t == steps:
            break
        gu, gv = torch.autograd.grad(ratio.sum(), (u, v))
        with torch.no_grad():
            u = u + lr * gu / _bnorm(gu) * _bnorm(u - v)
            v = v + lr * gv / _bnorm(gv) * _bnorm(u - v)
    return best

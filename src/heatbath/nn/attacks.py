r"""L2 projected gradient descent (PGD) attack, hinge loss, margins and Lipschitz probes.

**L2 PGD** (Madry et al. 2018; the foolbox ``L2PGD`` setting of Celledoni et al. 2022, which
heatbath re-implements): starting from :math:`\delta_0 = 0` (or a uniform point in the ball),

.. math::  \delta_{t+1} = \Pi_{\|\delta\|\le\varepsilon}\Big(\delta_t + \alpha\,
           \frac{g_t}{\|g_t\|_2}\Big),\qquad g_t = \nabla_\delta\,\ell(F(x+\delta), y),

with per-sample norms, :math:`\alpha = 2.5\,\varepsilon/\text{steps}` (foolbox's default relative
step) and :math:`\ell` the cross-entropy (or the negative logit margin). Inputs are clamped to
``bounds`` if given. :math:`\varepsilon` may be a per-sample tensor.

**Multi-class hinge loss** with margin m (Celledoni et al. 2022):
:math:`\ell = \sum_{j\ne y}\max(0, m - (F_y - F_j))`, averaged over the batch.

**Margin** :math:`M(x) = F_y(x) - \max_{j\ne y}F_j(x)`. If F is :math:`\mathrm{Lip}`-Lipschitz in
:math:`\ell^2`, :math:`M` changes by at most :math:`\sqrt2\,\mathrm{Lip}\,\|\delta\|`, so the
prediction is certified for :math:`\|\delta\| < M/(\sqrt2\,\mathrm{Lip})` (spec §3).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validate import check_choice, check_int, check_real

__all__ = ["pgd_l2", "multiclass_hinge", "logit_margin", "robust_accuracy",
           "empirical_lipschitz"]

Model = Callable[[Tensor], Tensor]


def _bnorm(x: Tensor) -> Tensor:
    return x.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x.dim() - 1)))


def logit_margin(logits: Tensor, y: Tensor) -> Tensor:
    """M = F_y - max_{j != y} F_j per sample (negative when misclassified)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.clone()
    other.scatter_(1, y[:, None], float("-inf"))
    return true - other.max(1).values


def multiclass_hinge(logits: Tensor, y: Tensor, margin: float) -> Tensor:
    """Mean over the batch of sum_{j != y} max(0, margin - (F_y - F_j))."""
    margin = check_real("margin", margin, low=0.0)
    true = logits.gather(1, y[:, None])
    viol = torch.relu(margin - (true - logits))
    viol = viol.scatter(1, y[:, None], 0.0)
    return viol.sum(1).mean()


def pgd_l2(model: Model, x: Tensor, y: Tensor, eps: float | Tensor, *, steps: int = 10,
           step_size: float | None = None, loss: str = "ce", random_start: bool = False,
           bounds: tuple[float, float] | None = None,
           generator: torch.Generator | None = None) -> Tensor:
    """Adversarial examples in the L2 ball of radius ``eps`` around ``x`` (see module docstring).

    ``step_size`` is relative to eps (default 2.5/steps); ``loss`` is ``"ce"`` or ``"margin"``.
    The model's train/eval mode is left as it is; parameters get no gradient.
    """
    steps = check_int("steps", steps, low=1)
    loss = check_choice("loss", loss, ("ce", "margin"))
    rel = 2.5 / steps if step_size is None else check_real("step_size", step_size, low=0.0,
                                                             low_open=True)
    e = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if bool((e < 0).any()) or not bool(torch.isfinite(e).all()):
        raise ValueError(f"eps must be finite and >= 0, got {eps!r}")
    e = e.expand(x.shape[0]).reshape(-1, *([1] * (x.dim() - 1)))
    delta = torch.zeros_like(x)
    if random_start:
        d = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        r = torch.rand((x.shape[0],), generator=generator, dtype=x.dtype) ** (1.0 / x[0].numel())
        delta = d / _bnorm(d) * r.view_as(e) * e
    for _ in range(steps):
        delta = delta.detach().requires_grad_(True)
        xa = x + delta
        if bounds is not None:
            xa = xa.clamp(*bounds)
        out = model(xa)
        obj = F.cross_entropy(out, y) if loss == "ce" else -logit_margin(out, y).sum()
        (g,) = torch.autograd.grad(obj, delta)
        with torch.no_grad():
            delta = delta + rel * e * g / _bnorm(g)
            delta = delta * torch.clamp(e / _bnorm(delta), max=1.0)
    xa = (x + delta).detach()
    return xa.clamp(*bounds) if bounds is not None else xa


def robust_accuracy(model: Model, x: Tensor, y: Tensor, eps_list: Sequence[float], *,
                    steps: int = 10, loss: str = "ce",
                    bounds: tuple[float, float] | None = None) -> list[float]:
    """Accuracy on PGD examples for each eps (eps = 0 is the clean accuracy)."""
    out = []
    for eps in eps_list:
        xa = x if eps == 0 else pgd_l2(model, x, y, eps, steps=steps, loss=loss, bounds=bounds)
        with torch.no_grad():
            out.append(float((model(xa).argmax(1) == y).float().mean()))
    return out


def empirical_lipschitz(fn: Model, u: Tensor, v: Tensor, *, steps: int = 50,
                        lr: float = 0.05) -> Tensor:
    """Per-pair ratios ||F(u) - F(v)|| / ||u - v|| after gradient ascent on the pairs.

    Each pair is moved by normalised-gradient ascent on the ratio (with ||u - v|| kept away
    from zero); returns the largest ratio seen for each pair over all iterates.
    """
    steps = check_int("steps", steps, low=0)
    lr = check_real("lr", lr, low=0.0)
    u = u.detach().clone()
    v = v.detach().clone()
    best = torch.zeros(u.shape[0], dtype=u.dtype)
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

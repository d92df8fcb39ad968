"""The finiteness check's large-model path (multi-tensor norms), forced on small tensors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import heatbath.optim._base as base
from heatbath.optim import SGLD, Langevin, NonFiniteGradientError


@pytest.fixture
def large_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "_FINITE_FOREACH_MAX", 0)  # every model takes the norm path


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_gradient_raises_and_changes_nothing(large_path: None, bad: float) -> None:
    ps = [nn.Parameter(torch.randn(5, 3)), nn.Parameter(torch.randn(7))]
    opt = Langevin(ps, h=0.1, gamma=1.0, tau=0.1, seed=0, noise="eager")
    for p in ps:
        p.grad = torch.randn_like(p)
    opt.step()
    before = [p.detach().clone() for p in ps]
    gen = opt.generators[0].get_state()
    ps[1].grad[3] = bad
    with pytest.raises(NonFiniteGradientError, match="param_groups.0.1"):
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(ps, before))
    assert torch.equal(opt.generators[0].get_state(), gen) and opt.step_count == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_huge_finite_gradients_are_not_flagged(large_path: None, dtype: torch.dtype) -> None:
    # the largest finite values of the dtype: their squares overflow any float32 norm, so the
    # check must fall back to the per-tensor inspection and find nothing wrong
    big = torch.finfo(dtype).max
    p = nn.Parameter(torch.zeros(4, dtype=dtype))
    q = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = SGLD([p, q], h=2.0**-14, sigma=0.0)
    p.grad = torch.full((4,), -big, dtype=dtype)
    q.grad = torch.ones(3, dtype=torch.float64)
    opt.step()
    assert torch.isfinite(p).all() and float(p[0]) > 0 and float(q[0]) < 0

"""SHLP, MLP, heads and initialisation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from heatbath.models import MLP, SHLP, loss_per_sample, predict, probabilities


def test_shlp_structure_and_names() -> None:
    m = SHLP(2, 20)
    names = [n for n, _ in m.named_parameters()]
    assert names == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    assert m.layers[0].weight.shape == (20, 2) and m.layers[1].weight.shape == (1, 20)
    assert m(torch.zeros(7, 2)).shape == (7, 1)
    # the first module owning parameters directly is the input layer (AdLaLa/LOL "layer 1")
    first = next(mod for mod in m.modules() if list(mod.parameters(recurse=False)))
    assert first is m.layers[0]
    assert SHLP(2, 5, 3, head="softmax")(torch.zeros(4, 2)).shape == (4, 3)


def test_torch_init_matches_nn_linear_default() -> None:
    torch.manual_seed(123)
    ref = nn.Sequential(nn.Linear(2, 20), nn.ReLU(), nn.Linear(20, 1))
    torch.manual_seed(123)
    m = SHLP(2, 20)
    for a, b in zip(m.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)
    # a private seed gives the same draws without touching the global generator
    state = torch.get_rng_state()
    m2 = SHLP(2, 20, seed=123)
    assert torch.equal(torch.get_rng_state(), state)
    for a, b in zip(m2.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(SHLP(seed=1).layers[0].weight, SHLP(seed=2).layers[0].weight)


def test_forward_equals_reference_network() -> None:
    m = MLP(6, [8, 5], 4, activation="tanh", seed=0)
    x = torch.randn(10, 6)
    w = [layer.weight for layer in m.layers]
    b = [layer.bias for layer in m.layers]
    ref = torch.tanh(x @ w[0].T + b[0])
    ref = torch.tanh(ref @ w[1].T + b[1])
    ref = ref @ w[2].T + b[2]
    torch.testing.assert_close(m(x), ref)
    # inputs with trailing image dims are flattened
    torch.testing.assert_close(m(x.reshape(10, 2, 3)), ref)


def test_gaussian_init_statistics() -> None:
    std = 0.5
    m = MLP(100, 400, 10, init=f"gaussian:{std}", seed=3)
    w = m.layers[0].weight.detach().double().flatten()
    # 40,000 N(0, std^2) draws: the sample sd has relative sd 1/sqrt(2n) = 0.35 %; allow 2 %
    assert abs(float(w.std()) / std - 1) < 0.02
    assert abs(float(w.mean())) < 5 * std / math.sqrt(w.numel())
    b = m.layers[0].bias.detach().double()
    assert 0.3 * std < float(b.std()) < 1.7 * std  # 400 draws: sd of the sd ~ 3.5 %
    # torch init bound 1/sqrt(fan_in)
    t = MLP(100, 400, 10, seed=3).layers[1].weight.detach()
    assert float(t.abs().max()) <= 1 / math.sqrt(400)
    assert float(t.abs().max()) > 0.95 / math.sqrt(400)


@pytest.mark.parametrize("init", ["gauss:0.1", "gaussian:", "gaussian:-1", "gaussian:x", "uniform"])
def test_bad_init(init: str) -> None:
    with pytest.raises(ValueError, match="init"):
        SHLP(init=init)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="activation"):
        SHLP(activation="swishy")
    with pytest.raises(ValueError, match="head"):
        SHLP(head="linear")
    with pytest.raises(ValueError, match="n_classes"):
        SHLP(n_classes=3)  # sigmoid head is binary
    with pytest.raises(ValueError, match="hidden"):
        SHLP(hidden=0)
    with pytest.raises(ValueError, match="hidden"):
        MLP(4, [], 3)
    with pytest.raises(ValueError, match="seed"):
        SHLP(seed=-1)


def test_heads_match_torch_losses() -> None:
    torch.manual_seed(0)
    z = torch.randn(3, 8, 1) * 4
    y = torch.randint(0, 2, (3, 8))
    # -[y log s(z) + (1-y) log(1-s(z))] = log(1 + e^z) - y z, evaluated in float64
    zd = z.squeeze(-1).double()
    ref = (torch.log1p(torch.exp(zd)) - y.double() * zd).float()
    torch.testing.assert_close(loss_per_sample(z, y, "sigmoid"), ref)
    assert torch.equal(predict(z, "sigmoid"), (torch.sigmoid(z.squeeze(-1)) > 0.5).long())
    p = probabilities(z, "sigmoid")
    assert p.shape == (3, 8, 2)
    torch.testing.assert_close(p.sum(-1), torch.ones(3, 8))
    zs = torch.randn(3, 8, 5)
    ys = torch.randint(0, 5, (3, 8))
    ref = -torch.log_softmax(zs, -1).gather(-1, ys.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(loss_per_sample(zs, ys, "softmax"), ref)
    assert torch.equal(predict(zs, "softmax"), zs.argmax(-1))

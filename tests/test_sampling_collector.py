"""SampleCollector (memory, disk, reservoir, resume, replicas) and predictive()."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from heatbath.models import SHLP, EnsembleSHLP
from heatbath.models.heads import loss_per_sample, probabilities
from heatbath.optim import Langevin
from heatbath.sampling import SampleCollector, chain_diagnostics, load_samples, predictive


def marked() -> nn.Linear:
    return nn.Linear(1, 1, bias=False)


def feed(col: SampleCollector, model: nn.Linear, steps: range) -> None:
    """Set the single weight to the step number, then report the step (identifies samples)."""
    for k in steps:
        with torch.no_grad():
            model.weight.fill_(float(k))
        col.update(k)


def kept_values(col: SampleCollector) -> list[int]:
    return [int(s.params["weight"].item()) for s in col.samples]


def test_burn_in_thin_and_max_samples() -> None:
    m = marked()
    col = SampleCollector(m, burn_in=10, thin=3, max_samples=4)
    feed(col, m, range(1, 40))
    assert col.steps == [13, 16, 19, 22]  # step > 10 and (step - 10) % 3 == 0, first four
    assert kept_values(col) == col.steps
    assert col.full
    s = col.samples[0]
    assert s.params["weight"].shape == (1, 1, 1)  # one chain, leading chain dimension
    # without step numbers the collector counts calls
    col2 = SampleCollector(m, thin=2)
    for _ in range(6):
        col2.update()
    assert col2.steps == [2, 4, 6]
    col2.update(3)  # a replayed step is ignored
    assert col2.steps == [2, 4, 6] and col2.last_step == 6


def test_validation() -> None:
    m = marked()
    with pytest.raises(ValueError, match="thin"):
        SampleCollector(m, thin=0)
    with pytest.raises(ValueError, match="burn_in"):
        SampleCollector(m, burn_in=-1)
    with pytest.raises(ValueError, match="reservoir"):
        SampleCollector(m, reservoir=True)
    with pytest.raises(ValueError, match="replicas"):
        SampleCollector(m, replicas=3)  # weight [1, 1] has no leading dimension of size 3
    with pytest.raises(TypeError, match="model"):
        SampleCollector("model")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="loss"):
        SampleCollector(m).update(1, loss=[1.0, 2.0])


def test_reservoir_is_uniform() -> None:
    # Algorithm R keeps every one of the n eligible steps with probability k/n. Over 300 runs
    # of k = 10 out of n = 100, each step's inclusion count is Binomial(300, 0.1) (mean 30,
    # sd 5.2); the first and last 20 steps (6000 trials each, sd 23) stay within 4 sd of 600.
    m = marked()
    counts = torch.zeros(101)
    for seed in range(300):
        col = SampleCollector(m, max_samples=10, reservoir=True, seed=seed,
                              record_diagnostics=False)
        feed(col, m, range(1, 101))
        assert len(col) == 10
        for v in kept_values(col):
            counts[v] += 1
    sd = math.sqrt(6000 * 0.1 * 0.9)
    assert abs(float(counts[1:21].sum()) - 600) < 4 * sd
    assert abs(float(counts[81:101].sum()) - 600) < 4 * sd
    # chi-square over the 100 steps: df 99, sd sqrt(2 * 99) = 14; 4 sd above the mean
    chi2 = float(((counts[1:] - 30) ** 2 / 30).sum())
    assert chi2 < 99 + 4 * 14


@pytest.mark.parametrize("reservoir", [False, True])
def test_disk_resume_equals_uninterrupted(tmp_path, reservoir: bool) -> None:
    m = marked()
    kw = dict(burn_in=5, thin=2, max_samples=6 if reservoir else None, reservoir=reservoir,
              seed=3)
    whole = SampleCollector(m, path=tmp_path / "whole", **kw)
    feed(whole, m, range(1, 61))
    first = SampleCollector(m, path=tmp_path / "parts", **kw)
    feed(first, m, range(1, 31))
    del first  # "crash": nothing but the folder survives
    (tmp_path / "parts" / "sample_0000009999.safetensors").write_bytes(b"torn")
    (tmp_path / "parts" / ".manifest.json.x.tmp").write_text("torn")
    second = SampleCollector(m, path=tmp_path / "parts", **kw)
    assert not (tmp_path / "parts" / "sample_0000009999.safetensors").exists()
    assert not list((tmp_path / "parts").glob("*.tmp"))
    feed(second, m, range(25, 61))  # replays 25..30: ignored
    assert second.steps == whole.steps
    assert kept_values(second) == kept_values(whole) == second.steps
    assert [s.step for s in load_samples(tmp_path / "parts")] == whole.steps
    files = sorted(p.name for p in (tmp_path / "parts").glob("*.safetensors"))
    manifest = json.loads((tmp_path / "parts" / "manifest.json").read_text())
    assert files == sorted(s["file"] for s in manifest["samples"])  # replaced ones deleted


def test_resume_refuses_other_settings(tmp_path) -> None:
    m = marked()
    SampleCollector(m, path=tmp_path, thin=2)
    with pytest.raises(ValueError, match="thin"):
        SampleCollector(m, path=tmp_path, thin=3)
    with pytest.raises(ValueError, match="shapes"):
        SampleCollector(nn.Linear(2, 1, bias=False), path=tmp_path, thin=2)


def _spiral_batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 2, generator=g)
    return X, (X[:, 0] * X[:, 1] > 0).long()


def test_hooked_to_replicated_langevin_and_predictive(tmp_path) -> None:
    R = 3
    model = EnsembleSHLP(2, 8, 2, seeds=[0, 1, 2])
    opt = Langevin(model.parameters(), h=0.1, gamma=1.0, tau=1e-3, replicas=R, seed=0)
    X, y = _spiral_batch(64, 0)

    def loss_fn() -> torch.Tensor:
        with torch.no_grad():
            return loss_per_sample(model(X), y.float().expand(R, -1), "sigmoid").mean(1)

    col = SampleCollector(model, opt, burn_in=4, thin=2, path=tmp_path, loss_fn=loss_fn)
    assert col.chains == R and col.replicated
    for _ in range(20):
        opt.zero_grad()
        loss_per_sample(model(X), y.float().expand(R, -1), "sigmoid").mean(1).sum().backward()
        opt.step()
    assert col.steps == [6, 8, 10, 12, 14, 16, 18, 20]
    last = col.samples[-1]
    for n, p in model.named_parameters():
        assert torch.equal(last.params[n], p.detach())  # the parameters after step 20
    assert last.h == [0.1] and last.tau == [1e-3]
    assert len(last.loss) == R
    assert last.diagnostics[0]["method"] == "baoab"
    assert len(last.diagnostics[0]["kinetic_temperature"]) == R
    col.detach()
    opt.zero_grad()
    loss_per_sample(model(X), y.float().expand(R, -1), "sigmoid").mean(1).sum().backward()
    opt.step()
    assert col.last_step == 20  # detached: no more draws

    Xt, yt = _spiral_batch(50, 1)
    # reference: the ensemble's own forward pass with every sample's parameters loaded
    ref = torch.zeros(R, 50, 2, dtype=torch.float64)
    probe = EnsembleSHLP(2, 8, 2, seeds=[0, 1, 2])
    for s in col.samples:
        with torch.no_grad():
            for n, p in probe.named_parameters():
                p.copy_(s.params[n])
            ref += probabilities(probe(Xt), "sigmoid").double()
    ref /= len(col)
    loop = predictive(model, tmp_path, (Xt, yt), path="loop")
    vm = predictive(model, col, [(Xt[:20], yt[:20]), (Xt[20:], yt[20:])], path="vmap")
    auto = predictive(model, col.samples, (Xt, yt))
    assert loop.path == "loop" and vm.path == "vmap" and auto.path in ("loop", "vmap")
    assert "timed" in auto.reason or "failed" in auto.reason
    for res in (loop, vm, auto):
        torch.testing.assert_close(res.chain_probs, ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(res.probs, ref.mean(0), rtol=1e-5, atol=1e-6)
        assert res.per_sample.shape == (R, 8)
        assert torch.equal(res.y, yt)
    # the single model sees the R chains as R parameter sets of itself: same predictive
    single = predictive(SHLP(2, 8, 2, seed=0), col, (Xt, yt), path="vmap")
    torch.testing.assert_close(single.probs, ref.mean(0), rtol=1e-5, atol=1e-6)
    diag = chain_diagnostics(col, loop, n_projections=2)
    assert set(diag) == {"loss", "prediction", "proj0", "proj1"}
    assert all(math.isfinite(d["rhat"]) for d in diag.values())


def test_predictive_regression_and_shape_errors() -> None:
    model = nn.Linear(2, 1)
    S, R = 5, 2
    g = torch.Generator().manual_seed(0)
    stacked = {"weight": torch.randn(S, R, 1, 2, generator=g),
               "bias": torch.randn(S, R, 1, generator=g)}
    X = torch.randn(7, 2, generator=g)
    f = torch.einsum("srod,nd->srn", stacked["weight"], X) + stacked["bias"]  # [S, R, n]
    res = predictive(model, stacked, X, task="regression", noise_var=0.25, path="loop")
    torch.testing.assert_close(res.mean.squeeze(-1), f.mean((0, 1)).double())
    torch.testing.assert_close(res.var.squeeze(-1),
                               f.reshape(S * R, -1).double().var(0) + 0.25)
    with pytest.raises(ValueError, match="weight"):
        predictive(nn.Linear(3, 1), stacked, X, task="regression")
    with pytest.raises(ValueError, match="task"):
        predictive(model, stacked, X, task="ranking")
    with pytest.raises(ValueError, match="noise_var"):
        predictive(model, stacked, X, task="regression", noise_var=-1.0)

"""Median ``optimizer.step()`` time of every heatbath optimizer against torch's SGD and Adam.

Run: ``.venv/bin/python benchmarks/step.py`` (options: ``--threads``, ``--models``, ``--rounds``).

All optimizers are timed interleaved in one process, round by round, on gradients that are
refreshed (not recomputed) between steps, so that only ``step()`` is measured. Each round times a
few steps of every optimizer; the printed figure is the median over rounds of the per-step time,
and the ratio is the median over rounds of the per-round ratio to ``Adam(foreach=True)`` (and to
``Adam(fused=True)``), which cancels slow drifts of the machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from heatbath.optim import LOL, SGLD, AdaptiveLangevin, AdLaLa, Langevin

MODELS = {
    "shlp": ("SHLP 2-500-1", [2, 500, 1]),
    "mlp": ("MLP 784-500-500-10", [784, 500, 500, 10]),
    "mlp10m": ("MLP 784-2048x3-10", [784, 2048, 2048, 2048, 10]),
}


def make_model(widths: list[int]) -> nn.Module:
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def optimizers() -> dict[str, Callable[[nn.Module], torch.optim.Optimizer]]:
    out: dict[str, Callable[[nn.Module], torch.optim.Optimizer]] = {
        "torch SGD-momentum foreach": lambda m: torch.optim.SGD(
            m.parameters(), lr=0.01, momentum=0.9, foreach=True),
        "torch Adam foreach": lambda m: torch.optim.Adam(m.parameters(), lr=1e-3, foreach=True),
        "torch Adam fused": lambda m: torch.optim.Adam(m.parameters(), lr=1e-3, fused=True),
        "heatbath SGLD": lambda m: SGLD(m.parameters(), h=1e-3, sigma=1e-3, seed=0),
        "heatbath Langevin": lambda m: Langevin(m.parameters(), h=1e-2, gamma=1.0, tau=1e-6,
                                                seed=0),
        "heatbath AdaptiveLangevin": lambda m: AdaptiveLangevin(
            m.parameters(), h=1e-2, tau=1e-6, sigma_A=1e-3, epsilon=0.01,
            epsilon_scale="per_entry", seed=0),
        "heatbath AdLaLa": lambda m: AdLaLa(m, h=1e-2, epsilon=0.01, epsilon_scale="per_entry",
                                            seed=0),
        "heatbath LOL": lambda m: LOL(m, h=1e-2, seed=0),
    }
    try:
        from heatbath.optim import _philox  # noqa: F401

        if "philox" in _noise_backends():
            out["heatbath Langevin philox"] = lambda m: Langevin(
                m.parameters(), h=1e-2, gamma=1.0, tau=1e-6, seed=0, noise="philox")
            out["heatbath SGLD philox"] = lambda m: SGLD(
                m.parameters(), h=1e-3, sigma=1e-3, seed=0, noise="philox")
    except ImportError:
        pass
    return out


def _noise_backends() -> tuple[str, ...]:
    from heatbath.optim import _core

    return _core.NOISE_BACKENDS


def bench(key: str, rounds: int, warmup: int) -> None:
    title, widths = MODELS[key]
    torch.manual_seed(0)
    base = make_model(widths)
    n_params = sum(p.numel() for p in base.parameters())
    steps = max(1, min(50, int(2e7 // n_params)))
    runs = {}
    for name, make in optimizers().items():
        m = make_model(widths)
        m.load_state_dict(base.state_dict())
        for p in m.parameters():
            p.grad = torch.randn_like(p) * 1e-3
        opt = make(m)
        for _ in range(warmup):
            opt.step()
        runs[name] = opt
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for name, opt in runs.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                opt.step()
            times[name].append((time.perf_counter() - t0) / steps)
    ref_f = times["torch Adam foreach"]
    ref_u = times["torch Adam fused"]
    print(f"\n{title}: {n_params / 1e6:.3f}M parameters, {torch.get_num_threads()} thread(s), "
          f"{rounds} rounds x {steps} steps")
    print(f"{'optimizer':32s} {'median step':>12s} {'/Adam-foreach':>14s} {'/Adam-fused':>12s}")
    for name, ts in times.items():
        med = statistics.median(ts)
        rf = statistics.median(t / r for t, r in zip(ts, ref_f))
        ru = statistics.median(t / r for t, r in zip(ts, ref_u))
        unit = f"{med * 1e6:9.1f} us" if med < 1e-3 else f"{med * 1e3:9.2f} ms"
        print(f"{name:32s} {unit:>12s} {rf:14.2f} {ru:12.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    for t in args.threads:
        torch.set_num_threads(t)
        for key in args.models:
            bench(key, args.rounds, args.warmup)


if __name__ == "__main__":
    main()

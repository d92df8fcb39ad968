"""Gaussian noise for Langevin steps at 10M parameters: eager ``normal_`` vs Philox.

Run: ``.venv/bin/python benchmarks/noise.py`` (options: ``--n``, ``--rounds``, ``--threads``).

Measures, interleaved in one process (every round runs each method once, the report is the
median over rounds), on 2 threads and on 1 thread:

* ``normal_``           eager ``Tensor.normal_`` into a reused buffer (the RNG floor);
* ``philox_normal``     eager counter-based noise (the no-compiler fallback);
* ``philox_baoab``      compiled ``baoab_philox_step``: 4 BAOAB updates + in-kernel Philox;
* ``philox_sgld``       compiled ``sgld_philox_step``;
* ``philox_fill_``      compiled ``philox_fill_`` into a reused buffer (replaces ``normal_``);
* ``eager_baoab``       flat eager BAOAB: the same 4 updates + one ``normal_`` into a buffer;
* ``adam_foreach`` / ``adam_fused``: ``torch.optim.Adam`` step on ``nn.Linear(3162, 3162)``
  (10.0M parameters) with random gradients;

and prints each median time with the median of its per-round ratios to Adam-foreach and
Adam-fused. Goal (issue 2): compiled
Philox BAOAB step <= 1.2x Adam-foreach at 10M on 2 threads.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from heatbath.optim._philox import (
    baoab_philox_step,
    get_compiled,
    philox_fill_,
    philox_normal,
    sgld_philox_step,
)


def interleaved(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Per-round times: each round runs every method once, in order."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def ratio(times: dict[str, list[float]], name: str, ref: str) -> float:
    """Median over rounds of the per-round ratio (robust to drifts in machine load)."""
    return statistics.median(a / b for a, b in zip(times[name], times[ref], strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000, help="number of floats (10M)")
    ap.add_argument("--rounds", type=int, default=9, help="interleaved rounds per thread count")
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    args = ap.parse_args()
    n = args.n

    g = torch.Generator().manual_seed(0)
    theta, mom, grad = (torch.randn(n, generator=g) for _ in range(3))
    noise_buf = torch.empty(n)
    h, gamma, tau = 0.01, 1.0, 1e-4
    c = torch.exp(torch.tensor(-gamma * h))
    coeffs = [torch.tensor(-h), torch.tensor(h / 2), c, torch.sqrt(tau * (1 - c * c))]
    seed, step = torch.tensor(1234), torch.tensor(0)
    sgld_h, sgld_scale = torch.tensor(h), torch.tensor((2 * h * tau) ** 0.5)

    baoab_c = get_compiled(baoab_philox_step)
    sgld_c = get_compiled(sgld_philox_step)
    fill_c = get_compiled(philox_fill_)
    t0 = time.perf_counter()
    baoab_c(theta, mom, grad, *coeffs, seed, step)
    t_baoab = time.perf_counter() - t0
    t0 = time.perf_counter()
    sgld_c(theta, grad, sgld_h, sgld_scale, seed, step)
    t_sgld = time.perf_counter() - t0
    t0 = time.perf_counter()
    fill_c(noise_buf, seed, step)
    t_fill = time.perf_counter() - t0
    print(f"n = {n:,}; first call (compile) baoab {t_baoab:.1f} s, sgld {t_sgld:.1f} s, "
          f"fill {t_fill:.1f} s; compiled: "
          f"{baoab_c.is_compiled and sgld_c.is_compiled and fill_c.is_compiled}")

    def philox_baoab() -> None:
        step.add_(1)
        baoab_c(theta, mom, grad, *coeffs, seed, step)

    def philox_sgld() -> None:
        step.add_(1)
        sgld_c(theta, grad, sgld_h, sgld_scale, seed, step)

    k, hh, cc, d = (float(v) for v in coeffs)

    def eager_baoab() -> None:
        mom.add_(grad, alpha=k)
        theta.add_(mom, alpha=hh)
        noise_buf.normal_()
        mom.mul_(cc).add_(noise_buf, alpha=d)
        theta.add_(mom, alpha=hh)

    side = round((n / 1.0) ** 0.5)
    model = torch.nn.Linear(side, side)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g)
    adam_foreach = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)
    adam_fused = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    adam_foreach.step()
    adam_fused.step()
    n_adam = sum(p.numel() for p in model.parameters())

    fns: dict[str, Callable[[], object]] = {
        "normal_": noise_buf.normal_,
        "philox_normal (eager)": lambda: philox_normal(n, seed, step),
        "philox_baoab (compiled)": philox_baoab,
        "philox_sgld (compiled)": philox_sgld,
        "philox_fill_ (compiled)": lambda: fill_c(noise_buf, seed, step),
        "eager_baoab (normal_)": eager_baoab,
        f"adam_foreach ({n_adam / 1e6:.1f}M)": adam_foreach.step,
        f"adam_fused ({n_adam / 1e6:.1f}M)": adam_fused.step,
    }
    old = torch.get_num_threads()
    try:
        for threads in args.threads:
            torch.set_num_threads(threads)
            for fn in fns.values():  # warm-up at this thread count
                fn()
            times = interleaved(fns, args.rounds)
            ref_foreach = next(k_ for k_ in fns if k_.startswith("adam_foreach"))
            ref_fused = next(k_ for k_ in fns if k_.startswith("adam_fused"))
            print(f"\n{threads} thread(s), {args.rounds} interleaved rounds: median time, and "
                  "median of per-round ratios to Adam")
            print(f"{'method':28s} {'ms':>9s} {'M values/s':>11s} {'/foreach':>9s} {'/fused':>7s}")
            for name, ts in times.items():
                t = statistics.median(ts)
                r_foreach = ratio(times, name, ref_foreach)
                r_fused = ratio(times, name, ref_fused)
                print(f"{name:28s} {t * 1e3:9.1f} {n / t / 1e6:11.0f} {r_foreach:9.2f} "
                      f"{r_fused:7.2f}")
    finally:
        torch.set_num_threads(old)


if __name__ == "__main__":
    main()

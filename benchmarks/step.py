"""``optimizer.step()`` of heatbath's optimizers against torch's, and issue 9's goals table.

Run::

    .venv/bin/python benchmarks/step.py              # the goals table (several minutes)
    .venv/bin/python benchmarks/step.py --quick      # smoke test at tiny sizes (seconds)
    .venv/bin/python benchmarks/step.py --sharded-noise   # noise cost per rank under FSDP2

Method. Every optimizer of one setting (model, thread count) is timed interleaved in one
process, round by round, on the same gradients (computed once from a cross-entropy loss on a
batch: realistic magnitudes, no denormals), so that only ``step()`` is measured. Each optimizer
first takes ``--warmup`` (default 10) steps: at 10M parameters ``Adam(foreach=True)`` is 3x
slower for its first steps while glibc's mmap threshold adapts. A round times a few steps of each
optimizer; the reported ratio is the median over rounds of the per-round ratio to
``Adam(foreach=True)`` (and to ``Adam(fused=True)`` and SGD with momentum), which cancels slow
drifts in the machine's load. For steady figures the script re-executes itself with
``MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736`` (big temporaries stay
on the heap and are reused instead of being page-faulted every step); ``--no-malloc-env`` keeps
the environment as it is. The full training step (forward, backward, ``step()``) is timed the
same way at 10M parameters, batch 128.

The first run builds heatbath's native noise kernels (about a second, cached per user; see
docs/how-to/noise.md) and, for the tensor-op fallback, compiles the counter-based kernels
(a minute or more on a busy 2-core machine; inductor caches them); warm-up absorbs both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "68719476736"}

MODELS = {
    "shlp": ("SHLP 2-500-1", [2, 500, 1]),
    "mlp": ("MLP 784-500-500-10", [784, 500, 500, 10]),
    "mlp10m": ("MLP 784-2048x3-10", [784, 2048, 2048, 2048, 10]),
}
QUICK_MODELS = {
    "shlp": ("SHLP 2-20-1 (quick)", [2, 20, 1]),
    "mlp": ("MLP 16-32-10 (quick)", [16, 32, 10]),
    "mlp10m": ("MLP 16-64x2-10 (quick)", [16, 64, 64, 10]),
}
BATCH = {"shlp": 20, "mlp": 128, "mlp10m": 128}

Maker = Callable[[nn.Module], torch.optim.Optimizer]


def make_model(widths: list[int]) -> nn.Module:
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def _noise_kw(noise: str | None) -> dict[str, str]:
    return {} if noise is None else {"noise": noise}


def heatbath_makers(names: list[str]) -> dict[str, Maker]:
    """heatbath optimizers by label; ``"X philox"``/``"X eager"`` force a noise backend, a bare
    ``"X"`` uses the optimizer's default."""
    from heatbath.optim import LOL, SGLD, AdaptiveLangevin, AdLaLa, Langevin

    def build(name: str, noise: str | None) -> Maker:
        kw = _noise_kw(noise)
        if name == "Langevin":
            return lambda m: Langevin(m.parameters(), h=1e-2, gamma=1.0, tau=1e-6, seed=0, **kw)
        if name == "SGLD":
            return lambda m: SGLD(m.parameters(), h=1e-3, sigma=1e-3, seed=0, **kw)
        if name == "LOL":
            return lambda m: LOL(m, h=1e-2, seed=0, **kw)
        if name == "AdLaLa":
            return lambda m: AdLaLa(m, h=1e-2, epsilon=0.01, epsilon_scale="per_entry", seed=0,
                                    **kw)
        if name == "AdaptiveLangevin":
            return lambda m: AdaptiveLangevin(m.parameters(), h=1e-2, tau=1e-6, sigma_A=1e-3,
                                              epsilon=0.01, epsilon_scale="per_entry", seed=0,
                                              **kw)
        raise KeyError(name)

    out = {}
    for label in names:
        base, _, noise = label.partition(" ")
        out[label] = build(base, noise or None)
    return out


def torch_makers() -> dict[str, Maker]:
    return {
        "Adam foreach": lambda m: torch.optim.Adam(m.parameters(), lr=1e-3, foreach=True),
        "Adam fused": lambda m: torch.optim.Adam(m.parameters(), lr=1e-3, fused=True),
        "SGD-momentum foreach": lambda m: torch.optim.SGD(m.parameters(), lr=1e-2, momentum=0.9,
                                                          foreach=True),
    }


@dataclass
class Setting:
    key: str
    threads: int
    heatbath: list[str]
    full_step: bool = False  # time forward + backward + step instead of step()


@dataclass
class Result:
    title: str
    threads: int
    n_params: int
    median_s: dict[str, float]
    ratio: dict[str, dict[str, float]]  # ratio[name][reference]


def _data(widths: list[int], batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    X = torch.randn(batch, widths[0], generator=g)
    if widths[-1] == 1:
        y = torch.randint(0, 2, (batch,), generator=g).float()
    else:
        y = torch.randint(0, widths[-1], (batch,), generator=g)
    return X, y


def _loss(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = model(X)
    if out.shape[-1] == 1:
        return nn.functional.binary_cross_entropy_with_logits(out.squeeze(-1), y)
    return nn.functional.cross_entropy(out, y)


def bench(s: Setting, models: dict[str, tuple[str, list[int]]], rounds: int, warmup: int,
          log: Callable[[str], None], steps: int | None = None) -> Result:
    title, widths = models[s.key]
    torch.set_num_threads(s.threads)
    torch.manual_seed(0)
    base = make_model(widths)
    n_params = sum(p.numel() for p in base.parameters())
    X, y = _data(widths, BATCH[s.key])
    if steps is None:  # steps per round: about 20M parameter updates
        steps = max(1, min(50, int(2e7 // n_params)))
    makers = {**torch_makers(), **heatbath_makers(s.heatbath)}
    runs: dict[str, Callable[[], object]] = {}
    for name, make in makers.items():
        m = make_model(widths)
        m.load_state_dict(base.state_dict())
        _loss(m, X, y).backward()  # realistic gradients, reused by every step
        opt = make(m)
        if s.full_step:
            def run(m: nn.Module = m, opt: torch.optim.Optimizer = opt) -> None:
                opt.zero_grad(set_to_none=False)
                _loss(m, X, y).backward()
                opt.step()
        else:
            run = opt.step
        t0 = time.perf_counter()
        for _ in range(warmup):
            run()
        log(f"  warm-up {name}: {time.perf_counter() - t0:.1f} s")
        runs[name] = run
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                run()
            times[name].append((time.perf_counter() - t0) / steps)
    refs = ["Adam foreach", "Adam fused", "SGD-momentum foreach"]
    ratio = {name: {r: statistics.median(a / b for a, b in zip(ts, times[r])) for r in refs}
             for name, ts in times.items()}
    what = "train step" if s.full_step else "step()"
    return Result(f"{title} {what}", s.threads, n_params,
                  {k: statistics.median(v) for k, v in times.items()}, ratio)


def print_result(r: Result) -> None:
    print(f"\n{r.title}: {r.n_params / 1e6:.3f}M parameters, {r.threads} thread(s)")
    print(f"{'optimizer':28s} {'median':>11s} {'/Adam-foreach':>14s} {'/Adam-fused':>12s} "
          f"{'/SGD-mom':>9s}")
    for name, t in r.median_s.items():
        unit = f"{t * 1e6:8.1f} us" if t < 1e-3 else f"{t * 1e3:8.2f} ms"
        q = r.ratio[name]
        print(f"{name:28s} {unit:>11s} {q['Adam foreach']:14.2f} {q['Adam fused']:12.2f} "
              f"{q['SGD-momentum foreach']:9.2f}")


def _default_noise() -> str:
    import inspect

    from heatbath.optim import Langevin

    p = inspect.signature(Langevin).parameters.get("noise")
    return str(p.default) if p is not None else "?"


def goals(res: dict[str, Result]) -> list[tuple[str, str, str, bool]]:
    """(goal, measured, target, met) rows of issue 9's table."""
    rows: list[tuple[str, str, str, bool]] = []

    def ratio_row(label: str, key: str, name: str, limit: float) -> None:
        q = res[key].ratio[name]["Adam foreach"]
        rows.append((label, f"{q:.2f}x", f"<= {limit:.2f}x", q <= limit))

    def time_row(label: str, key: str, name: str, limit_us: float) -> None:
        t = res[key].median_s[name] * 1e6
        rows.append((label, f"{t:.1f} us", f"<= {limit_us:.0f} us", t <= limit_us))

    for name in ("Langevin", "SGLD", "LOL"):
        ratio_row(f"{name} at 10M, 2 threads", "10m", name, 1.0)
    ratio_row("AdLaLa at 10M, 2 threads", "10m", "AdLaLa", 1.2)
    ratio_row("AdaptiveLangevin at 10M, 2 threads", "10m", "AdaptiveLangevin", 1.3)
    ratio_row("Langevin at 0.65M, 1 thread", "0.65m", "Langevin", 1.8)
    time_row("Langevin at SHLP, 1 thread", "shlp", "Langevin", 25)
    time_row("SGLD at SHLP, 1 thread", "shlp", "SGLD", 25)
    time_row("AdLaLa at SHLP, 1 thread", "shlp", "AdLaLa", 50)
    shlp = res["shlp"].median_s
    for name in ("Langevin", "SGLD", "AdLaLa"):
        q = shlp[f"{name} philox"] / shlp[f"{name} eager"]
        rows.append((f"{name} philox / eager at SHLP", f"{q:.2f}x", "<= 1.00x", q <= 1.0))
    ratio_row("full train step, Langevin at 10M, 2 threads", "train", "Langevin", 1.05)
    return rows


def run_goals(args: argparse.Namespace) -> None:
    models = QUICK_MODELS if args.quick else MODELS
    all_noise = ["Langevin eager", "Langevin philox"]
    big = ["Langevin", "SGLD", "LOL", "AdLaLa", "AdaptiveLangevin", *all_noise,
           "SGLD philox", "AdaptiveLangevin philox"]
    settings = {
        "10m": Setting("mlp10m", 2, big),
        "0.65m": Setting("mlp", 1, ["Langevin", *all_noise]),
        "shlp": Setting("shlp", 1, ["Langevin", "SGLD", "AdLaLa", *all_noise, "SGLD eager",
                                     "SGLD philox", "AdLaLa eager", "AdLaLa philox"]),
        "train": Setting("mlp10m", 2, ["Langevin"], full_step=True),
    }
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.verbose else \
        (lambda msg: None)
    print(f"torch {torch.__version__}; heatbath default noise={_default_noise()!r}; "
          f"HEATBATH_COMPILE={os.environ.get('HEATBATH_COMPILE', '1')}; malloc env: "
          f"{all(os.environ.get(k) == v for k, v in MALLOC_ENV.items())}; "
          f"{args.rounds} interleaved rounds, {args.warmup} warm-up steps; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (ratios are robust to other "
          "load only up to a point: compare runs at similar load)")
    res: dict[str, Result] = {}
    for key in args.settings:
        res[key] = bench(settings[key], models, args.rounds, args.warmup, log,
                         1 if args.quick else None)
        print_result(res[key])
    if set(res) >= set(settings):
        rows = goals(res)
        print("\nIssue 9 goals (ratios: median of per-round ratios to Adam(foreach=True), "
              "same run)")
        print(f"{'goal':46s} {'measured':>10s} {'target':>10s}  status")
        for label, got, target, met in rows:
            print(f"{label:46s} {got:>10s} {target:>10s}  {'met' if met else 'NOT MET'}")
        print(f"{sum(r[3] for r in rows)} of {len(rows)} goals met (load average at the end: "
              f"{os.getloadavg()[0]:.1f})")


# --------------------------------------------------------------------------------------------
# Noise cost per rank under FSDP2 sharding
# --------------------------------------------------------------------------------------------
def _shard_worker(rank: int, world: int, port: int, widths: list[int], rounds: int,
                  q: object) -> None:
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from heatbath.optim import _distributed as D
    from heatbath.optim._philox import ListNoise

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        torch.manual_seed(0)
        model = make_model(widths)
        for layer in model:
            if isinstance(layer, nn.Linear):
                fully_shard(layer)
        fully_shard(model)
        params = list(model.parameters())
        local = [D.local_view(p) for p in params]
        plan = ListNoise([t.shape for t in local], list(range(len(local))),
                         [D.global_offset(p) for p in params], torch.float32,
                         torch.device("cpu"))
        grads = [torch.zeros_like(t) for t in local]
        plan.prepare(grads, 0)  # compile / warm
        ts = []
        for i in range(rounds):
            dist.barrier()
            t0 = time.perf_counter()
            plan.prepare(grads, i + 1)
            ts.append(time.perf_counter() - t0)
        q.put((rank, statistics.median(ts), sum(t.numel() for t in local)))  # type: ignore[attr-defined]
    finally:
        dist.destroy_process_group()


def run_sharded_noise(args: argparse.Namespace) -> None:
    """Median time per rank to generate one step's noise for the local shards (1 thread each),
    against one process generating the whole model's noise (1 thread)."""
    import socket

    import torch.multiprocessing as mp

    from heatbath.optim._philox import ListNoise

    widths = (QUICK_MODELS if args.quick else MODELS)["mlp10m"][1]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    params = list(make_model(widths).parameters())
    plan = ListNoise([p.shape for p in params], list(range(len(params))), [0] * len(params),
                     torch.float32, torch.device("cpu"))
    grads = [torch.zeros_like(p) for p in params]
    plan.prepare(grads, 0)
    ts = []
    for i in range(args.rounds):
        t0 = time.perf_counter()
        plan.prepare(grads, i + 1)
        ts.append(time.perf_counter() - t0)
    full = statistics.median(ts)
    n = sum(p.numel() for p in params)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_shard_worker, args=(r, 2, port, widths, args.rounds, q))
             for r in range(2)]
    for p in procs:
        p.start()
    got = sorted(q.get(timeout=1800) for _ in procs)
    for p in procs:
        p.join()
    print(f"noise for one step, {n / 1e6:.2f}M parameters, 1 thread per process:")
    print(f"  unsharded, 1 process: {full * 1e3:8.2f} ms")
    for rank, t, local_n in got:
        print(f"  FSDP2 rank {rank} of 2: {t * 1e3:8.2f} ms for {local_n / 1e6:.2f}M local "
              f"elements ({t / full:.2f} of the unsharded cost)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="tiny models, few rounds, eager kernels: a smoke test of the script")
    ap.add_argument("--settings", nargs="+", default=["10m", "0.65m", "shlp", "train"],
                    choices=["10m", "0.65m", "shlp", "train"])
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (15)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps (10)")
    ap.add_argument("--sharded-noise", action="store_true",
                    help="measure the per-rank noise cost of a 2-rank FSDP2 run instead")
    ap.add_argument("--no-malloc-env", action="store_true",
                    help="do not re-execute with the glibc malloc thresholds set")
    ap.add_argument("--verbose", action="store_true", help="log warm-up times to stderr")
    args = ap.parse_args(argv)
    if args.quick:
        os.environ.setdefault("HEATBATH_COMPILE", "0")
    if args.rounds is None:
        args.rounds = 2 if args.quick else 15
    if args.warmup is None:
        args.warmup = 1 if args.quick else 10
    if (argv is None and not args.no_malloc_env and not args.quick
            and any(os.environ.get(k) != v for k, v in MALLOC_ENV.items())):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})
    if args.sharded_noise:
        run_sharded_noise(args)
    else:
        run_goals(args)


if __name__ == "__main__":
    main()

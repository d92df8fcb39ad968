"""Batched ensemble versus the same runs one after another (issue 3, item 4).

Goal: 100 runs of the 20-node SHLP on the 2-turn spiral (500 train / 1000 test points, 5 %
subsampling = minibatches of 25, evaluation on the full sets every 100 steps), 10K steps each,
trained as one batched ensemble at least 20x faster than the same 100 runs one after another.

Method: the sequential baseline is timed on a subset of the runs (``--baseline-runs``, default 4,
each for the full number of steps) and scaled to all runs; the two measurements are interleaved
(a quarter of the ensemble's steps, then one baseline run, and so on) so that a change in the
machine's load hits both alike. Both use the same engine (``heatbath.engine.train``), the same
optimizer and the same number of threads.

    .venv/bin/python benchmarks/ensemble.py                 # the goal: prints the ratio
    .venv/bin/python benchmarks/ensemble.py --steps 1000    # quicker look
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

from heatbath.data import make_dataset
from heatbath.engine import ModelSpec, OptimSpec, Trainer

DEFAULT_HPARAMS = {
    # the authors' AdLaLa defaults (spec §2)
    "adlala": {"h": 0.25, "gamma": 0.1, "tau1": 1e-4, "tau2": 1e-4, "sigma_A": 0.01,
               "epsilon": 0.05},
    "langevin": {"h": 0.25, "gamma": 0.5, "tau": 1e-4},
    "sgld": {"h": 0.1, "sigma": 0.01},
    "lol": {"h": 0.25, "gamma1": 0.01, "tau1": 1e-3},
    "sgd": {"h": 0.1},
    "adam": {"h": 0.005},
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100, help="ensemble size R (default 100)")
    ap.add_argument("--steps", type=int, default=10_000, help="steps per run (default 10000)")
    ap.add_argument("--hidden", type=int, default=20, help="SHLP width (default 20)")
    ap.add_argument("--method", default="adlala", choices=sorted(DEFAULT_HPARAMS),
                    help="optimizer (default adlala, the authors' defaults)")
    ap.add_argument("--baseline-runs", type=int, default=4,
                    help="single runs timed for the sequential baseline (default 4)")
    ap.add_argument("--eval-every", type=int, default=100, help="evaluation period (100)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for both measurements (default 1: the fastest setting "
                         "for one SHLP run, so the baseline is not handicapped)")
    args = ap.parse_args(argv)
    if not 1 <= args.baseline_runs <= args.runs:
        ap.error("--baseline-runs must lie in [1, --runs]")

    data = make_dataset("spirals", n_train=500, n_test=1000, seed=0, turns=2)
    model = ModelSpec("shlp", hidden=args.hidden)
    opt = OptimSpec(args.method, DEFAULT_HPARAMS[args.method])
    seeds = list(range(args.runs))
    common = {"steps": args.steps, "subsample": 5.0, "eval_every": args.eval_every}

    print(f"heatbath ensemble benchmark: {args.runs} runs x {args.steps} steps, SHLP "
          f"2-{args.hidden}-1, spiral b=2 (500/1000 points, minibatch 25), {args.method} "
          f"{DEFAULT_HPARAMS[args.method]}, eval every {args.eval_every} steps")
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}, python {sys.version.split()[0]}")

    ens = Trainer(data, model, opt, seeds=seeds, **common)
    k = args.baseline_runs
    t_ens = 0.0
    c_ens = 0.0
    t_single: list[float] = []
    c_single: list[float] = []
    single_acc: list[float] = []
    for i in range(k):
        t0, c0 = time.perf_counter(), time.process_time()
        ens.run(until=args.steps * (i + 1) // k, num_threads=args.threads)
        t_ens += time.perf_counter() - t0
        c_ens += time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        single = Trainer(data, model, opt, seed=seeds[i], **common)
        res = single.run(num_threads=args.threads)
        t_single.append(time.perf_counter() - t0)
        c_single.append(time.process_time() - c0)
        single_acc.append(res.rows[-1]["accuracy"])
        print(f"  ensemble to step {ens.step:>6}: {t_ens:7.2f} s so far | single run seed "
              f"{seeds[i]}: {t_single[-1]:6.2f} s, final test accuracy {single_acc[-1]:.3f}",
              flush=True)
    result = ens.result()
    final = {r["seed"]: r["accuracy"] for r in result.rows
             if r["split"] == "test" and r["step"] == result.steps_done}

    per_run = statistics.mean(t_single)
    t_seq = per_run * args.runs
    ratio = t_seq / t_ens
    print()
    print(f"batched ensemble ({args.runs} runs, measured): {t_ens:8.2f} s "
          f"({t_ens / args.steps * 1e6:.0f} us/step for all runs)")
    print(f"one run after another ({args.runs} x the mean of {k} timed runs, {per_run:.2f} s "
          f"[{min(t_single):.2f}-{max(t_single):.2f}]): {t_seq:8.2f} s (estimated)")
    print(f"mean final test accuracy: ensemble {statistics.mean(final.values()):.3f} "
          f"over {len(final)} runs; timed single runs {statistics.mean(single_acc):.3f}"
          + (f"; diverged: {result.diverged}" if result.diverged else ""))
    cpu_ratio = statistics.mean(c_single) * args.runs / c_ens
    print(f"process CPU time: ensemble {c_ens:.2f} s, one run {statistics.mean(c_single):.2f} s; "
          f"ratio {cpu_ratio:.1f}x (insensitive to other processes sharing the CPUs)")
    print(f"SPEEDUP (sequential / batched, wall clock): {ratio:.1f}x  (goal >= 20x: "
          f"{'met' if ratio >= 20 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

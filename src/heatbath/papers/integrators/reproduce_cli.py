"""``heatbath reproduce fig1 … fig16 | all``: :func:`setup` adds its arguments, :func:`run` runs
it (``heatbath.cli`` lists it in its subcommand table)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from heatbath._validate import check_int
from heatbath.data.digits import idx_files
from heatbath.engine import shutdown
from heatbath.engine.executors import add_executor_options, executor_from_args

from .common import Context
from .figures import FIGURES, figure_spec, parse_keys, run_figures

__all__ = ["DESCRIPTION", "setup", "run"]

DESCRIPTION = (
    "Reproduce the figures of Leimkuhler, Matthews & Vlaar (2019), 'Partitioned integrators "
    "for thermodynamic parameterization of neural networks': each figure's caption settings as "
    "a config, its training jobs (batched ensembles) run here or on a Ray cluster, PNGs and "
    "CSVs in OUT/figN/, and OUT/REPORT.md with the paper's numbers next to ours and a verdict "
    "per claim.")


def setup(p: argparse.ArgumentParser) -> None:
    """Add the subcommand's arguments to ``p``."""
    p.add_argument("figures", nargs="*", metavar="FIG",
                   help="fig1 fig3 … fig16 (also '8' or 'fig6-8'), or 'all'")
    p.add_argument("--quick", action="store_true",
                   help="fewer runs and steps (same code): all figures in under 10 minutes")
    p.add_argument("--out", metavar="DIR", default="runs/paper",
                   help="report folder (default: runs/paper)")
    p.add_argument("--mnist-dir", metavar="DIR",
                   help="folder with the MNIST IDX files (default: the offline 5,000-digit "
                        "subset)")
    p.add_argument("--resume", action="store_true",
                   help="reuse the jobs an earlier run of the same settings finished (and the "
                        "checkpoints of unfinished ones)")
    p.add_argument("--steps", type=int, help="cap: steps per run (smoke tests)")
    p.add_argument("--runs", type=int, help="cap: runs per configuration (smoke tests)")
    p.add_argument("--list", action="store_true", help="list the figures and exit")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    add_executor_options(p, jobs_help="local executor: training jobs run at once in worker "
                                      "processes (default 1: in this process; 2 on 2 cores "
                                      "about halves the time of 'all')")


def run(args: argparse.Namespace) -> int:
    """Run the figures named in ``args``; returns the exit status."""
    if args.list:
        for key in FIGURES:
            spec, _ = figure_spec(key)
            print(f"{key:6s} {spec.title}")
        return 0
    if not args.figures:
        raise ValueError("name at least one figure (fig1 … fig16) or 'all'; see --list")
    keys = parse_keys(args.figures)
    executor = executor_from_args(args)
    steps = None if args.steps is None else check_int("steps", args.steps, low=1)
    runs = None if args.runs is None else check_int("runs", args.runs, low=2)
    mnist_dir = None
    if args.mnist_dir is not None:
        mnist_dir = Path(args.mnist_dir)
        if not mnist_dir.is_dir():
            raise ValueError(f"mnist-dir must be a folder with the MNIST IDX files, got "
                             f"{args.mnist_dir!r}")
        try:  # before any figure runs: an empty or incomplete folder is bad input
            idx_files(mnist_dir)
        except FileNotFoundError as exc:
            raise ValueError(f"--mnist-dir: {exc}") from None
    ctx = Context(out=Path(args.out), quick=args.quick, mnist_dir=mnist_dir,
                  threads=executor.threads,
                  steps=steps, runs=runs, verbose=not args.quiet)
    t0 = time.perf_counter()
    with shutdown.handle_signals():  # SIGTERM/SIGINT: jobs write checkpoints; --resume
        run_figures(keys, ctx, executor, resume=args.resume)
    if not args.quiet:
        print(f"reproduce: {len(keys)} figure(s) in {time.perf_counter() - t0:.1f} s; report: "
              f"{ctx.out / 'REPORT.md'}")
    return 0

"""``heatbath reproduce fig1 … fig16 | all``: :func:`setup` adds its arguments, :func:`run` runs
it (``heatbath.cli`` lists it in its subcommand table)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from heatbath._validate import check_int
from heatbath.data.digits import idx_files

from .common import Context
from .figures import FIGURES, figure_spec, parse_keys, run_figures

__all__ = ["DESCRIPTION", "setup", "run"]

DESCRIPTION = (
    "Reproduce the figures of Leimkuhler, Matthews & Vlaar (2019), 'Partitioned integrators "
    "for thermodynamic parameterization of neural networks': each figure's caption settings as "
    "a config, runs as batched ensembles, PNGs and CSVs in OUT/figN/, and OUT/REPORT.md with "
    "the paper's numbers next to ours and a verdict per claim.")


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
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads per training call (default 1: fastest for these models)")
    p.add_argument("--jobs", "-j", type=int, default=1,
                   help="figures run in this many processes at once (default 1; 2 on 2 cores "
                        "halves the time of 'all')")
    p.add_argument("--steps", type=int, help="cap: steps per run (smoke tests)")
    p.add_argument("--runs", type=int, help="cap: runs per configuration (smoke tests)")
    p.add_argument("--list", action="store_true", help="list the figures and exit")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")


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
    threads = check_int("threads", args.threads, low=1)
    jobs = check_int("jobs", args.jobs, low=1)
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
    ctx = Context(out=Path(args.out), quick=args.quick, mnist_dir=mnist_dir, threads=threads,
                  steps=steps, runs=runs, verbose=not args.quiet)
    t0 = time.perf_counter()
    run_figures(keys, ctx, jobs=jobs)
    if not args.quiet:
        print(f"reproduce: {len(keys)} figure(s) in {time.perf_counter() - t0:.1f} s; report: "
              f"{ctx.out / 'REPORT.md'}")
    return 0

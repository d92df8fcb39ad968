"""``heatbath ctld sda | charrnn | sensitivity``: the CTLD paper's experiments from the CLI.

``heatbath.cli`` lists it in its subcommand table and calls :func:`setup` and :func:`run`.
Each experiment is one of the recipes of :mod:`heatbath.papers.ctld.recipes` and writes into
``--out``:

- ``<name>_*.png``: the curves (SdA: MSE curves and the temperature trace; char-RNN: train and
  test perplexity; sensitivity: heat maps over (w, sigma) and the line over S),
- ``<name>_table.csv``: the table, ``<name>_report.md``: the report section (the paper's
  claims next to our verdicts, sizes, wall time), ``<name>_summary.json``: everything.

Every experiment is a set of jobs (docs/ctld.md, "Experiments") run by ``--executor local``
(``--jobs N`` worker processes; the default runs them one at a time in this process) or
``--executor ray [--address ADDR]``; the outputs are the same. ``--resume`` reuses the jobs a
stopped run finished and continues the others from their checkpoints. Jobs that did not
finish are named in the report and on stderr (exit status 1).

``--quick`` runs the recipe's seconds-to-minutes size, ``--size reduced`` the documented size
that fits ~15 minutes on 2 cores, and the default the full size (``docs/ctld.md`` gives the
wall times). Bad input (an unknown experiment or method, a negative
seed, a missing text file or MNIST folder, an option that does not apply to the experiment)
ends with one line ``heatbath ctld: error: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from heatbath._validate import check_int, check_real
from heatbath.engine import shutdown
from heatbath.engine.executors import add_executor_options, executor_from_args

__all__ = ["DESCRIPTION", "EXPERIMENTS", "setup", "run"]

#: experiment name -> one-line description
EXPERIMENTS = {
    "sda": "stacked denoising autoencoder on MNIST, six methods (paper Fig. 2)",
    "charrnn": "3-layer 64-unit character LSTM, six methods (paper Fig. 3)",
    "sensitivity": "CTLD's test perplexity over (w, sigma) and over S (paper Fig. 4)",
}

DESCRIPTION = (
    "Run the experiments of Ye, Zhu & Mantiuk (NIPS 2017), 'Langevin dynamics with continuous "
    "tempering for training deep neural networks': CTLD against SGD-M, RMSprop, Adam, "
    "AnnealSGD and Santa. Writes curves (PNG), a table (CSV), a report section with the "
    "paper's claims and our verdicts (Markdown) and a JSON summary into --out. "
    + "; ".join(f"{k}: {v}" for k, v in EXPERIMENTS.items()) + ".")


def setup(p: argparse.ArgumentParser) -> None:
    """Add the subcommand's arguments to ``p``."""
    p.add_argument("experiment", choices=tuple(EXPERIMENTS), metavar="EXPERIMENT",
                   help="sda | charrnn | sensitivity")
    p.add_argument("--quick", action="store_true",
                   help="the small size (seconds to a few minutes; numbers are a smoke test); "
                        "same as --size quick")
    p.add_argument("--size", choices=("quick", "reduced", "full"), default=None,
                   help="quick | reduced (~15 min on 2 cores) | full (default)")
    p.add_argument("--seeds", type=int, default=None,
                   help="number of seeds per method (default: the size's; reports give "
                        "mean and standard error)")
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default: runs/ctld-EXPERIMENT, with -quick or -reduced "
                        "appended for those sizes)")
    p.add_argument("--seed", type=int, default=0, help="seed of models, data order and "
                   "optimizers (default 0)")
    p.add_argument("--mnist-dir", metavar="DIR",
                   help="sda: folder with the MNIST IDX files (default: the offline "
                        "5,000-digit subset)")
    p.add_argument("--text", metavar="PATH",
                   help="charrnn, sensitivity: a UTF-8 text file (default: the Python standard "
                        "library's own source text)")
    p.add_argument("--methods", metavar="M1,M2,...",
                   help="sda, charrnn: a subset of ctld, annealsgd, santa, sgdm, rmsprop, adam "
                        "(default: all six)")
    p.add_argument("--tempering", choices=("intensive", "paper"), default="intensive",
                   help="CTLD's tempering: intensive (default; docs/ctld.md 'Tempering at "
                        "scale') or paper (Algorithm 1 as printed)")
    p.add_argument("--alpha-step", metavar="A", default=None,
                   help="intensive tempering: alpha's step a > 0 (default 0.02)")
    p.add_argument("--alpha-step-scale", metavar="KAPPA", default=None,
                   help="paper tempering: 'auto' (default: alpha moves at most one bias bin per "
                        "step under the initial coupling force) or a number (1 = the paper's "
                        "shared step)")
    p.add_argument("--resume", action="store_true",
                   help="reuse the jobs an earlier run of the same settings finished into "
                        "--out (and the checkpoints of unfinished ones)")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no progress lines; print only the output folder")
    add_executor_options(p, jobs_help="local executor: jobs run at once in worker processes "
                                      "(default 1: in this process)")


def _methods(text: str | None, experiment: str) -> tuple[str, ...] | None:
    from heatbath.papers.ctld.recipes import METHODS

    if text is None:
        return None
    if experiment == "sensitivity":
        raise ValueError("--methods does not apply to sensitivity (it runs CTLD only)")
    names = tuple(m.strip().lower() for m in text.split(",") if m.strip())
    if not names:
        raise ValueError("--methods is empty; give e.g. ctld,sgdm")
    for m in names:
        if m not in METHODS:
            raise ValueError(f"--methods: unknown method {m!r}; must be among "
                             f"{', '.join(METHODS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"--methods lists a method twice: {text!r}")
    return names


def _check_inputs(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    exp = args.experiment
    mnist_dir = text = None
    if args.mnist_dir is not None:
        if exp != "sda":
            raise ValueError(f"--mnist-dir applies to sda only, not {exp}")
        mnist_dir = Path(args.mnist_dir)
        if not mnist_dir.is_dir():
            raise ValueError(f"mnist-dir must be a folder with the MNIST IDX files, got "
                             f"{args.mnist_dir!r}")
        from heatbath.data import mnist

        try:  # fail now, not after the first method has trained
            mnist(mnist_dir, split="test")
        except OSError as exc:
            raise ValueError(f"mnist-dir {args.mnist_dir!r}: {exc}") from exc
    if args.text is not None:
        if exp == "sda":
            raise ValueError("--text applies to charrnn and sensitivity, not sda")
        text = Path(args.text)
        if not text.is_file():
            raise ValueError(f"text must be a UTF-8 text file, got {args.text!r} (not a file)")
        try:
            with text.open(encoding="utf-8") as fh:
                fh.read(1 << 16)
        except UnicodeDecodeError as exc:
            raise ValueError(f"text {args.text!r} is not UTF-8: {exc}") from exc
    return mnist_dir, text


def run(args: argparse.Namespace) -> int:
    """Run the experiment named in ``args``; returns the exit status."""
    if args.experiment not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {', '.join(EXPERIMENTS)}, got "
                         f"{args.experiment!r}")
    seed = check_int("seed", args.seed, low=0)
    check_int("threads", args.threads, low=1)
    check_int("jobs", args.jobs, low=1)
    methods = _methods(args.methods, args.experiment)
    config: dict[str, Any] = {"tempering": args.tempering}
    if args.alpha_step_scale is not None:
        if args.tempering != "paper":
            raise ValueError("--alpha-step-scale applies to --tempering paper only")
        kappa: str | float = args.alpha_step_scale
        if kappa != "auto":
            try:
                kappa = float(kappa)
            except ValueError:
                raise ValueError(f"alpha-step-scale must be 'auto' or a number > 0, got "
                                 f"{args.alpha_step_scale!r}") from None
            check_real("alpha-step-scale", kappa, low=0.0, low_open=True)
        config["alpha_step_scale"] = kappa
    if args.alpha_step is not None:
        if args.tempering != "intensive":
            raise ValueError("--alpha-step applies to --tempering intensive only")
        try:
            step = float(args.alpha_step)
        except ValueError:
            raise ValueError(f"alpha-step must be a number > 0, got {args.alpha_step!r}") \
                from None
        config["alpha_step"] = check_real("alpha-step", step, low=0.0, low_open=True)
    if args.seeds is not None:
        config["seeds"] = check_int("seeds", args.seeds, low=1, high=100)
    if args.quick and args.size not in (None, "quick"):
        raise ValueError(f"--quick contradicts --size {args.size}")
    size = "quick" if args.quick else (args.size or "full")
    mnist_dir, text = _check_inputs(args)
    out = Path(args.out) if args.out else Path(
        "runs") / f"ctld-{args.experiment}{'' if size == 'full' else '-' + size}"

    executor = executor_from_args(args)

    from heatbath.papers.ctld import recipes as ctld

    kw: dict[str, Any] = {"size": size, "seed": seed, "config": config,
                          "executor": executor, "resume": args.resume,
                          "verbose": not args.quiet}
    if methods is not None:
        kw["methods"] = methods
    t0 = time.perf_counter()
    with shutdown.handle_signals():  # SIGTERM/SIGINT: jobs write checkpoints; --resume
        if args.experiment == "sda":
            summary = ctld.run_sda(out, mnist_dir=mnist_dir, **kw)
        elif args.experiment == "charrnn":
            summary = ctld.run_charrnn(out, text_path=text, **kw)
        else:
            summary = ctld.run_sensitivity(out, text_path=text, **kw)
    wall = time.perf_counter() - t0
    missing = summary["missing"]
    if args.quiet:
        print(out)
    else:
        report = out / f"{args.experiment}_report.md"
        print(report.read_text(encoding="utf-8"), end="")
        print(f"\nctld {args.experiment}: {wall:.1f} s; outputs in {out}/")
        for path in sorted(out.glob(f"{args.experiment}*")):
            print(f"  {path}")
    if missing:
        print(f"heatbath ctld: {len(missing)} job(s) did not finish ({', '.join(missing)}); "
              f"the report covers the others; run again with --resume to complete it",
              file=sys.stderr)
        return 1
    return 0

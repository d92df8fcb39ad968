"""``heatbath structure shapes2d|mnist|robustness|thermo|all``: the structure-preserving
experiments of :mod:`heatbath.papers.structure.experiments` from the command line.

The named experiments' jobs run as one set on the chosen executor (``--executor local`` with
``--jobs N`` worker processes, or ``--executor ray [--address ADDR]``); each experiment writes
``OUT/NAME/`` (figures, tables, ``REPORT.md``, ``result.json``; jobs under ``OUT/NAME/jobs/``).
``--resume`` keeps the jobs an earlier run finished and continues the others from their
checkpoints. ``heatbath structure robustness --data-dir DIR`` runs the published CIFAR-10
comparison on the CIFAR-10 batches in DIR (never downloaded); without it the offline MNIST subset
runs. The strong attack is set with --attack-steps, --restarts and --attack-loss, the radii with
--eps."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from heatbath._validate import check_int
from heatbath.engine import shutdown
from heatbath.engine.executors import add_executor_options, executor_from_args
from heatbath.output.io import write_text

__all__ = ["DESCRIPTION", "EXPERIMENTS", "setup", "run"]

DESCRIPTION = __doc__

#: experiment name -> (configure function in heatbath.papers.structure.experiments, description)
EXPERIMENTS: dict[str, tuple[str, str]] = {
    "shapes2d": ("shapes2d_experiment",
                 "2-D classification on five data sets, feature flow per layer"),
    "mnist": ("mnist_experiment", "MNIST accuracy of each block family at equal size"),
    "robustness": ("robustness_experiment",
                   "accuracy under L2 PGD: unconstrained vs non-expansive"),
    "thermo": ("thermo_experiment", "Hamiltonian/contractive nets trained with AdLaLa, "
                                    "Langevin and Adam"),
}

_ROBUST_FLAGS = ("data", "data_dir", "eps", "n_train", "n_test", "epochs")


def setup(p: argparse.ArgumentParser) -> None:
    """Add the subcommand's arguments to ``p``."""
    p.add_argument("experiments", nargs="+", metavar="NAME",
                   help=f"one or more of {', '.join(EXPERIMENTS)}, or 'all'")
    p.add_argument("--quick", action="store_true", help="small sizes (tens of seconds each)")
    p.add_argument("--out", metavar="DIR", default="runs/structure",
                   help="parent folder (default: runs/structure); each experiment writes "
                        "OUT/NAME/")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--resume", action="store_true",
                   help="reuse the jobs an earlier run of the same settings finished (and the "
                        "checkpoints of unfinished ones)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    r = p.add_argument_group("robustness")
    r.add_argument("--data", choices=("mnist", "cifar10"), default=None,
                   help="data set (default: cifar10 when --data-dir is given, else the offline "
                        "MNIST subset)")
    r.add_argument("--data-dir", metavar="DIR", default=None,
                   help="folder with the CIFAR-10 python or binary batches (never downloaded)")
    r.add_argument("--eps", type=float, nargs="+", metavar="E", default=None,
                   help="L2 radii (default: 0 0.1 0.5 1 2)")
    r.add_argument("--attack-steps", type=int, default=50,
                   help="steps of the strong PGD attack (default 50)")
    r.add_argument("--restarts", type=int, default=5,
                   help="random restarts of the strong attack (default 5)")
    r.add_argument("--attack-loss", choices=("margin", "ce"), default="margin",
                   help="loss of the strong attack (default: margin, i.e. Carlini-Wagner)")
    r.add_argument("--n-train", type=int, default=None, help="training images (default: all)")
    r.add_argument("--n-test", type=int, default=None, help="attacked test images")
    r.add_argument("--epochs", type=int, default=None, help="override the epochs")
    r.add_argument("--device", default="cpu", help="torch device (default cpu)")
    add_executor_options(p, jobs_help="local executor: jobs run at once in worker processes "
                                      "(default 1: in this process)")


def _robust_options(args: argparse.Namespace) -> dict[str, Any]:
    """The robustness experiment's options, checked."""
    data = args.data or ("cifar10" if args.data_dir is not None else "mnist")
    if data == "cifar10" and args.data_dir is None:
        raise ValueError("--data cifar10 needs --data-dir DIR (the folder with the CIFAR-10 "
                         "batches); heatbath never downloads data")
    if data == "mnist" and args.data_dir is not None:
        raise ValueError("--data-dir is the CIFAR-10 folder; it cannot be used with --data "
                         "mnist")
    for flag in ("attack_steps", "restarts"):
        check_int(flag.replace("_", "-"), getattr(args, flag), low=1)
    for flag in ("n_train", "n_test", "epochs"):
        if getattr(args, flag) is not None:
            check_int(flag.replace("_", "-"), getattr(args, flag), low=1)
    return dict(data=data, data_dir=args.data_dir, eps=args.eps, attack_steps=args.attack_steps,
                restarts=args.restarts, attack_loss=args.attack_loss, n_train=args.n_train,
                n_test=args.n_test, epochs=args.epochs, device=args.device)


def run(args: argparse.Namespace) -> int:
    """Run the experiments named in ``args``; returns the exit status (1: a job did not
    finish; the reports then cover the finished ones)."""
    names = list(EXPERIMENTS) if "all" in args.experiments else list(dict.fromkeys(
        args.experiments))
    for name in names:
        if name not in EXPERIMENTS:
            raise ValueError(f"experiment must be one of {', '.join(EXPERIMENTS)} or 'all'; "
                             f"got {name!r}")
    if "robustness" not in names:
        used = [f"--{f.replace('_', '-')}" for f in _ROBUST_FLAGS
                if getattr(args, f, None) is not None]
        if used:
            raise ValueError(f"{', '.join(used)} only apply to the robustness experiment")
    seed = check_int("seed", args.seed, low=0)
    executor = executor_from_args(args)
    from heatbath.papers.structure import experiments as structure

    exps = []
    for name in names:
        extra = _robust_options(args) if name == "robustness" else {}
        exps.append(getattr(structure, EXPERIMENTS[name][0])(quick=args.quick, seed=seed,
                                                             **extra))
    out = Path(args.out)
    t0 = time.perf_counter()
    if not args.quiet:
        print(f"structure {', '.join(names)}: {sum(len(e.jobs) for e in exps)} jobs on the "
              f"{executor.name} executor -> {out}/", flush=True)
    incomplete: Any = None
    with shutdown.handle_signals():  # SIGTERM/SIGINT: jobs write checkpoints; --resume
        try:
            numbers = structure.run_experiments(exps, out, executor=executor,
                                                resume=args.resume, quiet=args.quiet)
        except structure.IncompleteExperiment as exc:
            incomplete = exc
            numbers = exc.numbers
    for name, result in numbers.items():
        write_text(out / name / "result.json", json.dumps(result, indent=2, default=str))
        if not args.quiet:
            print(f"structure {name}: {out / name / 'REPORT.md'}", flush=True)
    if not args.quiet:
        print(f"structure: done in {time.perf_counter() - t0:.1f} s", flush=True)
    if incomplete is not None:
        print(f"heatbath structure: {incomplete}", file=sys.stderr, flush=True)
        return 1
    return 0

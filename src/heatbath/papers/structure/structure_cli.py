"""``heatbath structure shapes2d|mnist|robustness|thermo|all``: the structure-preserving
experiments of :mod:`heatbath.papers.structure.experiments` from the command line.

``heatbath structure robustness --data-dir DIR`` runs the published CIFAR-10 comparison on the
CIFAR-10 batches in DIR (never downloaded); without it the offline MNIST subset runs. The strong
attack is set with --attack-steps, --restarts and --attack-loss, the radii with --eps."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from heatbath._validate import check_int
from heatbath.output.io import write_text

__all__ = ["DESCRIPTION", "EXPERIMENTS", "setup", "run"]

DESCRIPTION = __doc__

#: experiment name -> (function name in heatbath.papers.structure.experiments, one-line description)
EXPERIMENTS: dict[str, tuple[str, str]] = {
    "shapes2d": ("run_shapes2d", "2-D classification on five data sets, feature flow per layer"),
    "mnist": ("run_mnist_families", "MNIST accuracy of each block family at equal size"),
    "robustness": ("run_robustness", "accuracy under L2 PGD: unconstrained vs non-expansive"),
    "thermo": ("run_thermo_training", "Hamiltonian/contractive nets trained with AdLaLa, "
                                      "Langevin and Adam"),
}


def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("experiments", nargs="+", metavar="NAME",
                   help=f"one or more of {', '.join(EXPERIMENTS)}, or 'all'")
    p.add_argument("--quick", action="store_true", help="small sizes (tens of seconds each)")
    p.add_argument("--out", metavar="DIR", default="runs/structure",
                   help="parent folder (default: runs/structure); each experiment writes "
                        "OUT/NAME/")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
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
    from heatbath.engine.executors import add_executor_options

    add_executor_options(p, jobs_help="robustness: the two networks' jobs run at once in worker "
                                      "processes (default 1: in this process)")


def _extra(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The robustness options (other experiments take none)."""
    robust_flags = ("data", "data_dir", "eps", "n_train", "n_test", "epochs")
    if name in ("mnist", "thermo"):
        from heatbath.engine.executors import executor_from_args

        return dict(executor=executor_from_args(args))
    if name != "robustness":
        used = [f"--{f.replace('_', '-')}" for f in robust_flags
                if getattr(args, f, None) is not None]
        if used and args.experiments != ["all"] and "robustness" not in args.experiments:
            raise ValueError(f"{', '.join(used)} only apply to the robustness experiment")
        return {}
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
    from heatbath.engine.executors import executor_from_args

    return dict(data=data, data_dir=args.data_dir, eps=args.eps, attack_steps=args.attack_steps,
                restarts=args.restarts, attack_loss=args.attack_loss, n_train=args.n_train,
                n_test=args.n_test, epochs=args.epochs, device=args.device,
                executor=executor_from_args(args))


def run(args: argparse.Namespace) -> int:
    names = list(EXPERIMENTS) if "all" in args.experiments else args.experiments
    for name in names:
        if name not in EXPERIMENTS:
            raise ValueError(f"experiment must be one of {', '.join(EXPERIMENTS)} or 'all'; "
                             f"got {name!r}")
    seed = check_int("seed", args.seed, low=0)
    from heatbath.papers.structure import experiments as structure

    for name in names:
        fn: Callable[..., dict[str, Any]] = getattr(structure, EXPERIMENTS[name][0])
        out = Path(args.out) / name
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        if not args.quiet:
            print(f"structure {name}: {EXPERIMENTS[name][1]} -> {out}/", flush=True)
        result = fn(out, quick=args.quick, seed=seed, **_extra(name, args))
        if not args.quiet:
            keys = ", ".join(sorted(result)) if isinstance(result, dict) else ""
            print(f"structure {name}: done in {time.perf_counter() - t0:.1f} s "
                  f"({keys})", flush=True)
        write_text(out / "result.json", json.dumps(result, indent=2, default=str))
    return 0

"""``heatbath structure shapes2d|mnist|robustness|thermo|all``: the structure-preserving
experiments of :mod:`heatbath.papers.structure.experiments` from the command line."""

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
        result = fn(out, quick=args.quick, seed=seed)
        if not args.quiet:
            keys = ", ".join(sorted(result)) if isinstance(result, dict) else ""
            print(f"structure {name}: done in {time.perf_counter() - t0:.1f} s "
                  f"({keys})", flush=True)
        write_text(out / "result.json", json.dumps(result, indent=2, default=str))
    return 0

"""The ``heatbath`` command line: one static table of subcommands (:data:`SUBCOMMANDS`).

Every experiment command builds one config dict (see :mod:`heatbath.engine.config`), resolves and
checks it, runs it through the training engine as batched ensembles (all seeds of a method in
one computation) and writes ``<out>/<name>/``::

    config.toml      the resolved config (every default filled in)
    metrics.csv      long format: method, seed, step, split, loss, accuracy
    summary.md/.csv  final test/train accuracy and loss per method: mean ± sd, min, max
    curves.png       accuracy and loss curves, mean ± sd over seeds (paper Fig. 11/12/14)
    decision_maps.png  classifiers on the plane, 2-D data only (Fig. 1/9)
    histograms.png   weight and bias distributions over time (Fig. 6-8)

Bad input (unknown method, dataset or key, a negative size, a malformed config, a run folder
that is not this run's or is in use, a corrupt checkpoint, a read-only or full disk) ends with
one line ``heatbath <command>: error: ...`` naming the field or file, and exit status 2. SIGTERM
and SIGINT write the checkpoints and end with status 128 + the signal number (see
docs/run-folders.md).

The subcommands are listed in :data:`SUBCOMMANDS`: ``train``, ``compare`` and ``demo`` are
defined here; ``reproduce``, ``ctld`` and ``structure`` live with their paper under
:mod:`heatbath.papers` and are imported only when they run (they pull in heavier dependencies).
Each is a ``setup(parser)`` function that adds its arguments and a ``run(args)`` function that
returns the exit status.

A ``ValueError`` raised by a subcommand's run function is bad input by the house rules: it is
printed as one line and the exit status is 2. Set ``HEATBATH_DEBUG=1`` to get the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from heatbath import __version__
from heatbath.engine.config import (
    METHOD_NAMES,
    ConfigError,
    apply_assignments,
    load_toml,
    merge,
)

__all__ = ["Subcommand", "SUBCOMMANDS", "build_parser", "main"]

class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


@dataclass(frozen=True)
class Subcommand:
    """One row of :data:`SUBCOMMANDS`.

    ``target`` is ``"module"`` for a subcommand defined in another module (that module's
    ``setup(parser)``, ``run(args)`` and ``DESCRIPTION`` are used, imported only when the
    subcommand is parsed) or ``""`` for one defined here (``setup``/``run`` given directly).
    """

    name: str
    help: str
    target: str = ""
    setup: Callable[[argparse.ArgumentParser], None] | None = None
    run: Callable[[argparse.Namespace], int] | None = None
    description: str = ""

    def resolve(self) -> tuple[Callable[[argparse.ArgumentParser], None],
                               Callable[[argparse.Namespace], int], str]:
        """``(setup, run, description)``, importing the subcommand's module if it has one."""
        if not self.target:
            assert self.setup is not None and self.run is not None
            return self.setup, self.run, self.description or self.help
        module = importlib.import_module(self.target)
        return module.setup, module.run, getattr(module, "DESCRIPTION", None) or self.help


# --------------------------------------------------------------------------- shared options


def _add_experiment_options(p: argparse.ArgumentParser, *, seeds_default: str,
                            set_example: str) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--config", metavar="FILE", help="TOML config; flags given here override it")
    g.add_argument("--name", help="run name: outputs go to OUT/NAME/")
    g.add_argument("--out", metavar="DIR", help="parent folder of runs (default: runs)")
    g.add_argument("--steps", type=int, help="optimizer steps per run (default: 10000)")
    g.add_argument("--subsample", type=float, metavar="PCT",
                   help="minibatch size as %% of the training set (default: 5)")
    g.add_argument("--seeds", type=int, metavar="N", help=f"runs per method ({seeds_default})")
    g.add_argument("--first-seed", type=int, metavar="S", help="seeds are S, S+1, ... (default 0)")
    g.add_argument("--eval-every", type=int, metavar="K",
                   help="evaluate full train/test loss and accuracy every K steps "
                        "(default: steps/100)")
    g.add_argument("--threads", type=int,
                   help="torch threads per process (default: 1 for small models)")
    g.add_argument("--workers", "--jobs", "-j", dest="workers", type=int, metavar="W",
                   help="local executor: train W methods at once in separate processes; 0: one "
                        "per CPU core (default 1)")
    _add_executor_choice(g)
    d = p.add_argument_group("data and model")
    d.add_argument("--data", metavar="NAME", help="spirals | trig | mnist (default: spirals)")
    d.add_argument("--n-train", type=int, metavar="N",
                   help="training points (default 500; MNIST: the whole split)")
    d.add_argument("--n-test", type=int, metavar="N",
                   help="test points (default 1000; MNIST: the whole split)")
    d.add_argument("--data-seed", type=int, metavar="S", help="seed of the data (default 0)")
    d.add_argument("--turns", type=float, metavar="B", help="spirals: number of turns b")
    d.add_argument("--model", metavar="NAME", help="shlp | mlp (default: shlp)")
    d.add_argument("--hidden", type=int, metavar="H", help="hidden width (default 20)")
    d.add_argument("--init", metavar="INIT", help="torch | gaussian:<std> (default: torch)")
    o = p.add_argument_group("outputs")
    o.add_argument("--snapshots", type=int, metavar="K",
                   help="parameter-histogram snapshots per run (default 4: 0, 50, 1000, 10000 "
                        "of 10K)")
    o.add_argument("--map-last-steps", type=int, metavar="K",
                   help="decision map = mean classifier over the last K steps (default 10)")
    o.add_argument("--map-replicas", choices=("first", "mean"),
                   help="decision map of the first seed or the mean over seeds (default first)")
    o.add_argument("--collect", metavar="burn_in=B,thin=K",
                   help="keep posterior samples of every run (also max_samples=M, reservoir=1): "
                        "the sample average's NLL/ECE beside the final iterates', R-hat/ESS "
                        "and reliability diagrams in samples/ and summary.md "
                        "(docs/sampling.md)")
    o.add_argument("--no-plots", action="store_true", help="write tables only")
    o.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no table")
    o.add_argument("--resume", action="store_true",
                   help="continue an interrupted run of the same name from its checkpoint")
    _add_run_folder_options(o)
    p.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                   help=f"set any config field, e.g. {set_example} (values are TOML: 1e-4, "
                        "true, \"text\"); repeatable")


def _add_run_folder_options(g: Any) -> None:
    g.add_argument("--force", action="store_true",
                   help="replace a heatbath run of another config in OUT/NAME (a folder that "
                        "is not a heatbath run is never replaced)")
    g.add_argument("--restart-from-scratch", action="store_true",
                   help="discard the run's checkpoints and outputs and train from step 0 "
                        "(after a corrupt checkpoint)")


def _add_executor_choice(g: Any) -> None:
    g.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where the methods train: local processes (default) or a Ray cluster "
                        "(pip install 'heatbath[ray]'; see docs/cluster.md)")
    g.add_argument("--address", metavar="ADDR",
                   help="Ray cluster address (default: start a local Ray instance)")


_FLAG_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("name", ("name",)),
    ("out", ("out",)),
    ("steps", ("steps",)),
    ("subsample", ("subsample",)),
    ("seeds", ("seeds",)),
    ("first_seed", ("first_seed",)),
    ("eval_every", ("eval_every",)),
    ("threads", ("threads",)),
    ("workers", ("workers",)),
    ("data", ("data", "name")),
    ("n_train", ("data", "n_train")),
    ("n_test", ("data", "n_test")),
    ("data_seed", ("data", "seed")),
    ("turns", ("data", "turns")),
    ("model", ("model", "name")),
    ("hidden", ("model", "hidden")),
    ("init", ("model", "init")),
    ("snapshots", ("plots", "snapshots")),
    ("map_last_steps", ("plots", "map_last_steps")),
    ("map_replicas", ("plots", "map_replicas")),
    ("collect", ("collect",)),
)


def _set_path(cfg: dict[str, Any], path: Sequence[str], value: Any) -> None:
    node = cfg
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def _flags_to_config(args: argparse.Namespace) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    for attr, path in _FLAG_FIELDS:
        value = getattr(args, attr, None)
        if value is not None:
            _set_path(cfg, path, value)
    if getattr(args, "no_plots", False):
        _set_path(cfg, ("plots", "enabled"), False)
    return cfg


def _base_config(args: argparse.Namespace) -> dict[str, Any]:
    cfg = load_toml(args.config) if getattr(args, "config", None) else {}
    return merge(cfg, _flags_to_config(args))


# --------------------------------------------------------------------------- train

# explicit flags for the hyperparameters of heatbath.optim (paper names)
_HPARAM_FLAGS: tuple[tuple[str, type, str], ...] = (
    ("h", float, "time step h (learning rate for sgd/adam)"),
    ("gamma", float, "friction γ (langevin; adlala: of the Langevin layers)"),
    ("tau", float, "temperature τ (langevin, adl)"),
    ("tau1", float, "first-layer temperature τ₁ (adlala, lol)"),
    ("tau2", float, "temperature τ₂ of the other layers (adlala, lol)"),
    ("gamma1", float, "first-layer friction γ₁ (lol)"),
    ("sigma", float, "noise amplitude σ (sgld)"),
    ("sigma_A", float, "additive noise σ_A (adl, adlala)"),
    ("epsilon", float, "thermostat coupling ε (adl, adlala)"),
    ("xi0", float, "initial thermostat variable ξ₀ (adl, adlala)"),
)


def _setup_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("method", nargs="?", metavar="METHOD",
                   help=f"one of {', '.join(METHOD_NAMES)} (or the single method of --config)")
    _add_experiment_options(p, seeds_default="default 1; several seeds run as one batch",
                            set_example="--set gamma=0.5 --set data.c=0.1 (a bare name is "
                                        "a hyperparameter)")
    h = p.add_argument_group("hyperparameters (unset ones take the demo's, paper Fig. 8, values)")
    for name, typ, text in _HPARAM_FLAGS:
        flag = "--" + name.replace("_", "-")
        h.add_argument(flag, dest=f"hp_{name}", type=typ, metavar="X", help=text)


def _train_config(args: argparse.Namespace) -> dict[str, Any]:
    cfg = _base_config(args)
    methods = cfg.get("methods") or {}
    if not isinstance(methods, dict):
        raise ConfigError(f"methods must be a table, got {methods!r}")
    if args.method is None:
        if len(methods) != 1:
            raise ConfigError("give a METHOD (e.g. heatbath train adlala), or a --config with "
                              "exactly one [methods.*] table")
        label = next(iter(methods))
    else:
        label = args.method
        if label not in METHOD_NAMES and label not in methods:
            raise ConfigError(f"unknown method {label!r}; must be one of "
                              f"{', '.join(METHOD_NAMES)}")
        if methods and label not in methods:
            if len(methods) > 1:
                raise ConfigError(f"method {label!r} is not among the config's methods "
                                  f"({', '.join(methods)}); train runs one method")
            methods = {}
        methods = {label: dict(methods.get(label) or {})}
    cfg["methods"] = methods
    for name, _, _ in _HPARAM_FLAGS:
        value = getattr(args, f"hp_{name}")
        if value is not None:
            methods[label][name] = value
    cfg.setdefault("name", f"train-{label}")
    apply_assignments(cfg, args.assignments, default_section=["methods", label])
    return cfg


def _run_train(args: argparse.Namespace) -> int:
    return _run_config(_train_config(args), args, title="train")


# --------------------------------------------------------------------------- compare


def _route_to_methods(assignments: Sequence[str], labels: Any) -> list[str]:
    """``adlala.gamma=10`` → ``methods.adlala.gamma=10`` when ``adlala`` is a method label."""
    out = []
    for text in assignments:
        key = text.split("=", 1)[0].strip()
        head = key.split(".", 1)[0]
        out.append(f"methods.{text.strip()}" if "." in key and head in labels else text)
    return out



def _setup_compare(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", metavar="M1,M2,...",
                   help="methods to compare (names from " + ", ".join(METHOD_NAMES) +
                        "); with --config: a subset of its [methods.*] labels")
    _add_experiment_options(p, seeds_default="default 1; all seeds of a method run as one batch",
                            set_example="--set adlala.gamma=10 --set data.c=0.1")


def _compare_config(args: argparse.Namespace) -> dict[str, Any]:
    cfg = _base_config(args)
    methods = cfg.get("methods") or {}
    if not isinstance(methods, dict):
        raise ConfigError(f"methods must be a table, got {methods!r}")
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
        if not wanted:
            raise ConfigError("--methods is empty")
        if methods:
            missing = [m for m in wanted if m not in methods]
            if missing:
                raise ConfigError(f"--methods: {missing[0]!r} is not a method of the config "
                                  f"({', '.join(methods)})")
            methods = {m: methods[m] for m in wanted}
        else:
            methods = {m: {} for m in wanted}
    if not methods:
        raise ConfigError("nothing to compare: give --methods a,b or a --config with "
                          "[methods.*] tables")
    cfg["methods"] = methods
    cfg.setdefault("name", "compare")
    apply_assignments(cfg, _route_to_methods(args.assignments, methods))
    return cfg


def _run_compare(args: argparse.Namespace) -> int:
    return _run_config(_compare_config(args), args, title="compare")


# --------------------------------------------------------------------------- demo

DEMO_CONFIG = "demo.toml"
QUICK_CONFIG = "demo_quick.toml"


def config_path(name: str) -> Path:
    """Path of a config shipped in ``heatbath/configs/``."""
    return Path(__file__).resolve().parent / "configs" / name


def _setup_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="a seconds-long version (fewer steps and seeds) for smoke tests")
    p.add_argument("--out", metavar="DIR", help="parent folder of runs (default: runs)")
    p.add_argument("--name", help="run name (default: demo, or demo-quick)")
    p.add_argument("--seeds", type=int, metavar="N", help="runs per method (default 20)")
    p.add_argument("--steps", type=int, help="steps per run (default 10000)")
    p.add_argument("--threads", type=int, help="torch threads per process (default 1)")
    p.add_argument("--workers", "--jobs", "-j", dest="workers", type=int, metavar="W",
                   help="methods trained at once, in separate processes (default 0: one per "
                        "CPU core)")
    _add_executor_choice(p)
    p.add_argument("--no-plots", action="store_true", help="write tables only")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no table")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo")
    _add_run_folder_options(p)
    p.add_argument("--set", dest="assignments", action="append", default=[],
                   metavar="KEY=VALUE", help="override any config field (see compare --help)")


def _run_demo(args: argparse.Namespace) -> int:
    cfg = load_toml(config_path(QUICK_CONFIG if args.quick else DEMO_CONFIG))
    cfg = merge(cfg, _flags_to_config(args))
    apply_assignments(cfg, _route_to_methods(args.assignments, cfg.get("methods") or {}))
    return _run_config(cfg, args, title="demo")


# --------------------------------------------------------------------------- running


def _run_config(cfg: dict[str, Any], args: argparse.Namespace, *, title: str) -> int:
    from heatbath.engine.experiment import run_experiment  # engine and matplotlib load lazily

    executor = None
    if args.executor != "local" or args.address is not None:
        from heatbath.engine.executors import make_executor

        executor = make_executor(args.executor, address=args.address,
                                 threads=getattr(args, "threads", None) or 1)
    result = run_experiment(cfg, quiet=args.quiet, resume=args.resume, force=args.force,
                            restart=args.restart_from_scratch, executor=executor)
    if not args.quiet:
        print(result.summary_markdown, end="")
        print(f"\n{title}: {result.wall_s:.1f} s; outputs in {result.out_dir}/")
        for path in result.files:
            print(f"  {path}")
    if result.missing:
        print(f"heatbath {title}: method(s) {', '.join(result.missing)} did not finish; "
              f"rerun with --resume", file=sys.stderr)
        return 1
    return 0


#: every ``heatbath`` subcommand, in the order ``heatbath --help`` lists them
SUBCOMMANDS: tuple[Subcommand, ...] = (
    Subcommand(
        "train", "train one method (several seeds as one batch)",
        setup=_setup_train, run=_run_train,
        description="Train one method on one dataset, several seeds as one batched ensemble, "
                    "and write metrics, a summary and plots to OUT/NAME/."),
    Subcommand(
        "compare", "compare methods × seeds (flags or a TOML config)",
        setup=_setup_compare, run=_run_compare,
        description="Compare several methods, each over several seeds, on one dataset and "
                    "model; from flags or a TOML config (see heatbath/configs/demo.toml)."),
    Subcommand(
        "demo", "AdLaLa, LOL, Langevin, SGLD, SGD, Adam on the 2-turn spiral, 20 seeds each",
        setup=_setup_demo, run=_run_demo,
        description="The paper's spiral comparison (Fig. 8 hyperparameters): six methods, 20 "
                    "seeds each, 20-node SHLP, 500 train / 1000 test points, 5 % subsampling, "
                    "10K steps. Prints the table and where the plots are."),
    Subcommand("sweep", "a grid of settings × seeds from a config (summary table, heat map)",
               target="heatbath.engine.sweep"),
    Subcommand("reproduce", "reproduce the paper's figures (fig1 … fig16)",
               target="heatbath.papers.integrators.reproduce_cli"),
    Subcommand("ctld", "CTLD paper experiments: sda, charrnn, sensitivity (Figs. 2-4)",
               target="heatbath.papers.ctld.ctld_cli"),
    Subcommand("structure", "structure-preserving networks: 2-D flows, MNIST, robustness",
               target="heatbath.papers.structure.structure_cli"),
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser. Every subcommand is listed; only ``command``'s arguments are set
    up (``None``: all of them), so a command imports no other command's module."""
    parser = _Parser(prog="heatbath",
                     description="Thermodynamic training experiments (heatbath "
                                 f"{__version__}).")
    parser.add_argument("--version", action="version", version=f"heatbath {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for cmd in SUBCOMMANDS:
        if command is not None and cmd.name != command:
            sub.add_parser(cmd.name, help=cmd.help, add_help=False)
            continue
        setup, run, description = cmd.resolve()
        sp = sub.add_parser(cmd.name, help=cmd.help, description=description)
        setup(sp)
        sp.set_defaults(_run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``heatbath`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    names = {cmd.name for cmd in SUBCOMMANDS}
    parser = build_parser(argv[0] if argv and argv[0] in names else None)
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    prog = f"heatbath {args.command}"
    try:
        return int(args._run(args))
    except ValueError as exc:  # ConfigError included: bad input, one line, status 2
        if os.environ.get("HEATBATH_DEBUG"):
            raise
        msg = " ".join(str(exc).split())
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGINT after the checkpoints
        signum = getattr(exc, "signum", 2)
        print(f"{prog}: interrupted" + (" (checkpoints written; continue with --resume)"
                                        if hasattr(exc, "signum") else ""), file=sys.stderr)
        return 128 + signum
    except OSError as exc:  # a read-only folder, a full disk: one line naming the file
        if os.environ.get("HEATBATH_DEBUG"):
            raise
        msg = (f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror
               else " ".join(str(exc).split()))
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `heatbath ... | head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())

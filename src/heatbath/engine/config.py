"""Experiment configurations: a TOML file or CLI flags, resolved and checked before any work.

An experiment is data: one dict, which ``heatbath compare --config FILE`` reads from
TOML and ``heatbath train``/``compare`` build from flags, merged in this order (later wins):
built-in defaults ← config file ← explicit flags ← ``--set key=value``. Layout::

    name = "demo"            # the run's folder: <out>/<name>/
    out = "runs"
    steps = 10000            # optimizer steps per run
    subsample = 5.0          # minibatch size as % of the training set
    seeds = 20               # a count (seeds first_seed, first_seed+1, ...) or a list of seeds
    first_seed = 0
    eval_every = 100         # evaluate full train and test loss/accuracy every this many steps
    threads = 1              # torch threads per training process (default: 1 for small models)
    workers = 1              # methods trained at once, in separate processes (0: one per core)
    [data]                   # heatbath.data.make_dataset: name, n_train, n_test, seed, params
    name = "spirals"
    turns = 2
    [model]                  # heatbath.models: name ("shlp" | "mlp"), hidden, init, ...
    name = "shlp"
    hidden = 20
    [plots]
    enabled = true
    snapshots = 4            # histogram snapshot steps: a count (spread over the run) or a list
                             # (steps beyond the run are dropped)
    map_last_steps = 10      # decision map averaged over the classifiers of the last k steps
    map_replicas = "first"   # "first": seed first_seed's classifier; "mean": mean over seeds
    [methods.adlala]         # one table per compared method; the table name is its label
    h = 0.25                 # hyperparameters under the paper's names (heatbath.optim)
    [methods.adlala_g10]     # a second AdLaLa, told apart by `method`
    method = "adlala"
    gamma = 10.0

A method table may also hold ``init`` (overriding ``model.init`` for that method, as in the
paper's Fig. 14, where Adam runs with two initialisations).

:func:`resolve` checks every field whose meaning is known here (types, ranges, unknown keys) and
raises :class:`ConfigError` naming the field (``steps``, ``data.turns``, ``methods.sgd.foo``).
The run name and method labels must be safe file names
(:func:`heatbath.engine.runfolder.check_component`), seeds lie in 0 … 2⁶³ − 1, every number of
the data, model and method tables is a finite float32 value, and counts whose memory estimate
exceeds the available memory are refused (:func:`check_memory`; see docs/run-folders.md);
dataset, model and optimizer parameters are checked by building them once, which the runner does
before training starts.
"""

from __future__ import annotations

import copy
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from heatbath._validate import check_choice, check_int, check_real

__all__ = [
    "ConfigError",
    "DEFAULTS",
    "METHOD_NAMES",
    "METHOD_DEFAULTS",
    "load_toml",
    "merge",
    "parse_assignment",
    "apply_assignments",
    "resolve",
    "snapshot_steps",
    "method_hparams",
    "available_memory",
    "check_memory",
    "estimate_run_bytes",
    "model_params",
    "FLOAT32_MAX",
    "MAX_SEED",
]

#: optimizer names a method table may use (heatbath.optim.build_optimizer's)
METHOD_NAMES: tuple[str, ...] = ("sgd", "adam", "sgld", "langevin", "adl", "adlala", "lol")

#: Hyperparameters a method table starts from (user values override them). They are the
#: paper's for the 2-turn spiral with a 20-node SHLP: Fig. 8 (SGD h = 0.1; Adam h = 0.005; SGLD
#: h = 0.1, σ = 0.1; AdLaLa h = 0.25, τ₁ = τ₂ = 1e-4, σ_A = 0.01, ε = 0.1, γ = 0.5) and Fig. 14
#: (LOL h = 0.25, γ₁ = 0.01, τ₁ = 1e-3; τ₂ = τ₁ is heatbath's default). The captions give no
#: plain Langevin or AdL run: heatbath's choice is AdLaLa's values on every layer (Langevin:
#: h = 0.25, γ = 0.5, τ = 1e-4, i.e. AdLaLa's second-layer thermostat everywhere; AdL: h = 0.25,
#: τ = 1e-4, σ_A = 0.01, ε = 0.1, i.e. its first-layer thermostat everywhere).
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"h": 0.1},
    "adam": {"h": 0.005},
    "sgld": {"h": 0.1, "sigma": 0.1},
    "langevin": {"h": 0.25, "gamma": 0.5, "tau": 1e-4},
    "adl": {"h": 0.25, "tau": 1e-4, "sigma_A": 0.01, "epsilon": 0.1},
    "adlala": {"h": 0.25, "gamma": 0.5, "tau1": 1e-4, "tau2": 1e-4, "sigma_A": 0.01,
               "epsilon": 0.1},
    "lol": {"h": 0.25, "gamma1": 0.01, "tau1": 1e-3},
}


class ConfigError(ValueError):
    """Bad experiment input; the message is one line that names the field."""


DEFAULTS: dict[str, Any] = {
    "name": "run",
    "out": "runs",
    "steps": 10_000,
    "subsample": 5.0,
    "seeds": 1,
    "first_seed": 0,
    "eval_every": None,  # resolved to max(1, steps // 100)
    # sizes: spirals/trig default to 500 train / 1000 test (filled in by resolve), MNIST to the
    # whole split
    "data": {"name": "spirals", "seed": 0},
    "model": {"name": "shlp", "hidden": 20},
    "plots": {"enabled": True, "snapshots": 4, "map_last_steps": 10, "map_replicas": "first"},
    "methods": {},
}
_TOP_KEYS = set(DEFAULTS) | {"title", "description", "threads", "checkpoint_every", "workers",
                              "collect"}
_PLOT_KEYS = set(DEFAULTS["plots"])
_METHOD_META_KEYS = {"method", "init"}


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML config; a missing or malformed file is a :class:`ConfigError`."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {p} is a directory") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {p} is not UTF-8 text (byte {exc.start}: "
                          f"{exc.reason}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
    except PermissionError:
        raise ConfigError(f"config file {p} cannot be read (permission denied)") from None


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``over`` into a copy of ``base`` (tables merge, everything else replaces)."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """Split ``"data.turns=4"`` into ``(["data", "turns"], 4)``.

    The value is read as a TOML value (``4``, ``1e-4``, ``true``, ``[1, 2]``, ``"x"``); anything
    that is not valid TOML is kept as a plain string, so ``init=gaussian:0.01`` works unquoted.
    """
    if "=" not in text:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key, raw = key.strip(), raw.strip()
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"--set has an empty key in {text!r}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return parts, value


def apply_assignments(cfg: dict[str, Any], assignments: list[str], *,
                      default_section: list[str] | None = None) -> dict[str, Any]:
    """Apply ``--set`` assignments to ``cfg`` (in place, and returned).

    A key without a dot goes to the top level if it is a top-level key, else into
    ``default_section`` (``heatbath train`` uses the method's table, so ``--set gamma=0.5``
    sets a hyperparameter).
    """
    for text in assignments:
        parts, value = parse_assignment(text)
        if len(parts) == 1 and parts[0] not in _TOP_KEYS and default_section:
            parts = [*default_section, parts[0]]
        node = cfg
        for p in parts[:-1]:
            child = node.get(p)
            if child is None:
                child = node[p] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text}: {p} is not a table")
            node = child
        node[parts[-1]] = value
    return cfg


def _field(name: str, fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(name, *args, **kw)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def snapshot_steps(spec: int | list[int], steps: int) -> list[int]:
    """Histogram snapshot steps: an explicit list, or ``k`` steps spread over ``[0, steps]``.

    ``k`` steps are 0, ``steps``, and ``k - 2`` steps spaced evenly in log-step between
    ``steps/200`` and ``steps``, each rounded to the nearest (in log) "round" number 1, 2 or 5
    × 10^j (duplicates dropped), so both early motion and late drift are visible (as the
    paper's Fig. 6-8 show steps 50, 1000, 10000 of 10K).
    """
    if isinstance(spec, list):
        return sorted({int(s) for s in spec if 0 <= int(s) <= steps})
    if spec <= 1:
        return [steps]
    lo = max(1.0, steps / 200)
    if spec == 2:
        return [0, steps]
    out = {0, steps}
    for i in range(spec - 2):
        t = math.log(lo) + (math.log(steps) - math.log(lo)) * i / (spec - 2)
        j = math.floor(t / math.log(10))
        nice = min((m * 10.0**k for m in (1, 2, 5) for k in (j - 1, j, j + 1)),
                   key=lambda v: abs(math.log(v) - t))
        out.add(min(steps, max(1, round(nice))))
    return sorted(out)


def resolve(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``cfg`` over :data:`DEFAULTS`, check it, and return the resolved config.

    Resolution fills ``eval_every``, expands ``seeds`` to a list, gives every method table a
    ``method`` and the defaults of :data:`METHOD_DEFAULTS` under the user's values, and turns
    ``plots.snapshots`` into a list of steps. Raises :class:`ConfigError`
    naming the first bad field.
    """
    from heatbath.engine.runfolder import check_component

    c = merge(DEFAULTS, cfg)
    unknown = sorted(set(c) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} (top level); allowed: "
                          f"{', '.join(sorted(_TOP_KEYS))}")
    c["name"] = check_component("name", c["name"])
    if not isinstance(c["out"], str) or not c["out"]:
        raise ConfigError(f"out must be a folder path, got {c['out']!r}")
    c["steps"] = _field("steps", check_int, c["steps"], low=1)
    c["subsample"] = _field("subsample", check_real, c["subsample"], low=0.0, high=100.0,
                            low_open=True)
    c["first_seed"] = _field("first_seed", check_int, c["first_seed"], low=0, high=MAX_SEED)
    seeds = c["seeds"]
    if isinstance(seeds, list):
        if not seeds:
            raise ConfigError("seeds must be a positive count or a non-empty list of seeds")
        c["seeds"] = [_field(f"seeds[{i}]", check_int, s, low=0, high=MAX_SEED)
                      for i, s in enumerate(seeds)]
        if len(set(c["seeds"])) != len(c["seeds"]):
            raise ConfigError(f"seeds must not repeat, got {seeds}")
    else:
        n = _field("seeds", check_int, seeds, low=1, high=MAX_SEED - c["first_seed"] + 1)
        # a lower bound (every run keeps at least its metric rows): refuse before the list
        check_memory("seeds", n * _MIN_BYTES_PER_RUN, f"seeds = {n}")
        c["seeds"] = list(range(c["first_seed"], c["first_seed"] + n))
    if c["eval_every"] is None:
        c["eval_every"] = max(1, c["steps"] // 100)
    c["eval_every"] = _field("eval_every", check_int, c["eval_every"], low=1)
    if c.get("threads") is not None:
        c["threads"] = _field("threads", check_int, c["threads"], low=1)
    if c.get("workers") is not None:
        c["workers"] = _field("workers", check_int, c["workers"], low=0)
    if c.get("checkpoint_every") is not None:
        c["checkpoint_every"] = _field("checkpoint_every", check_int, c["checkpoint_every"],
                                       low=1)
    if c.get("collect") is not None:  # posterior samples (docs/sampling.md)
        from heatbath.sampling.run import parse_collect

        c["collect"] = _field("collect", lambda _, v: parse_collect(v), c["collect"])

    for section in ("data", "model", "plots", "methods"):
        if not isinstance(c[section], dict):
            raise ConfigError(f"{section} must be a table, got {c[section]!r}")
    data = c["data"]
    if "name" not in data:
        raise ConfigError("data.name is required")
    if data["name"] in ("spirals", "trig"):
        data.setdefault("n_train", 500)
        data.setdefault("n_test", 1000)
    for key in ("n_train", "n_test"):
        if data.get(key) is not None:
            data[key] = _field(f"data.{key}", check_int, data[key], low=2)
            if data["name"] in ("spirals", "trig"):  # generated: 2-D points, a few copies
                check_memory(f"data.{key}", data[key] * _BYTES_PER_2D_POINT,
                             f"data.{key} = {data[key]}")
    data["seed"] = _field("data.seed", check_int, data.get("seed", 0), low=0)
    if not isinstance(c["model"].get("name"), str):
        raise ConfigError("model.name is required (e.g. \"shlp\")")

    plots = c["plots"]
    unknown = sorted(set(plots) - _PLOT_KEYS)
    if unknown:
        raise ConfigError(f"unknown key 'plots.{unknown[0]}'; allowed: "
                          f"{', '.join(sorted(_PLOT_KEYS))}")
    if not isinstance(plots["enabled"], bool):
        raise ConfigError(f"plots.enabled must be true or false, got {plots['enabled']!r}")
    snaps = plots["snapshots"]
    if isinstance(snaps, list):
        # steps beyond the run are dropped, so `--steps` can shorten a config's run
        checked = [_field(f"plots.snapshots[{i}]", check_int, s, low=0)
                   for i, s in enumerate(snaps)]
        plots["snapshots"] = sorted({s for s in checked if s <= c["steps"]})
    else:
        k = _field("plots.snapshots", check_int, snaps, low=0, high=50)
        plots["snapshots"] = snapshot_steps(k, c["steps"]) if k else []
    # at most the whole run (so `--steps` can shorten a config's run)
    plots["map_last_steps"] = min(c["steps"], _field("plots.map_last_steps", check_int,
                                                     plots["map_last_steps"], low=1))
    plots["map_replicas"] = _field("plots.map_replicas", check_choice, plots["map_replicas"],
                                   ("first", "mean"))

    methods = c["methods"]
    if not methods:
        raise ConfigError("methods is empty: give at least one method (e.g. [methods.adam])")
    for label, table in methods.items():
        if not isinstance(table, dict):
            raise ConfigError(f"methods.{label} must be a table of hyperparameters, "
                              f"got {table!r}")
        method = table.get("method", label)
        try:
            check_choice(f"methods.{label}.method", method, METHOD_NAMES)
        except ValueError as exc:
            hint = "" if "method" in table else " (set method = ... for a custom label)"
            raise ConfigError(f"unknown method {method!r} in methods.{label}: must be one of "
                              f"{', '.join(METHOD_NAMES)}{hint}") from exc
        table["method"] = method
        check_component("method label", label)
        for key, value in METHOD_DEFAULTS[method].items():
            table.setdefault(key, value)
        if "init" in table and not isinstance(table["init"], str):
            raise ConfigError(f"methods.{label}.init must be a string, got {table['init']!r}")
    for section in ("data", "model", "methods"):
        _check_float32(section, c[section])
    return c


def _check_float32(where: str, value: Any) -> None:
    """Numbers of the data, model and method tables must be finite float32 values.

    The training runs in float32: a hyperparameter such as ``h = 1e39`` would become ``inf``
    in the first step, so it is refused here, naming the field.
    """
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_float32(f"{where}.{k}", v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_float32(f"{where}[{i}]", v)
    elif isinstance(value, float) and not (math.isfinite(value) and abs(value) <= FLOAT32_MAX):
        raise ConfigError(f"{where} must be a finite number of magnitude at most "
                          f"{FLOAT32_MAX:.4g} (float32), got {value!r}")


# --------------------------------------------------------------------------- resource guards

#: the largest float32 (training runs in float32)
FLOAT32_MAX = 3.4028234663852886e38
#: seeds are 63-bit (the data-order and noise generators take signed 64-bit seeds)
MAX_SEED = (1 << 63) - 1
# the least memory one run (one seed of one method) takes: its metric rows, its generator
_MIN_BYTES_PER_RUN = 4096
# a generated 2-D point while the data is built: float64 draws, float32 copies, its label
_BYTES_PER_2D_POINT = 128


def model_params(model: Mapping[str, Any], d_in: int, n_classes: int) -> int:
    """Number of parameters of one replica of a ``model`` table (an upper bound for 2 classes).

    Computed from the widths, before anything is allocated: ``d_in → hidden… → n_classes``,
    a weight matrix and a bias per layer.
    """
    hidden = model.get("hidden", 20)
    widths = list(hidden) if isinstance(hidden, (list, tuple)) else [hidden]
    if not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths):
        return 0  # not a valid width: the model's own check names it
    sizes = [d_in, *widths, n_classes]
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), or ``None``."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PB"


def check_memory(field: str, need: float, what: str) -> None:
    """Raise :class:`ConfigError` if ``need`` bytes (an estimate) exceed the available memory.

    Args:
        field: the config field to name (``seeds``, ``data.n_train``, ``model.hidden``).
        need: the estimated peak memory in bytes.
        what: what needs it, for the message (``"seeds = 10000000"``).
    """
    avail = available_memory()
    if avail is not None and need > avail:
        raise ConfigError(f"{what} needs about {_fmt_bytes(need)} of memory (estimate), "
                          f"more than the {_fmt_bytes(avail)} available; lower {field}")


def estimate_run_bytes(*, n_params: int, replicas: int, n_evals: int, n_snapshots: int,
                       batch: int, widest: int, data_bytes: int, parallel: int = 1) -> int:
    """Estimated peak memory (bytes) of training one method as a batched ensemble.

    Parameters, gradients, optimizer state, the divergence backup and frozen copies and the
    step's temporaries are about 10 float32 copies of the ensemble's parameters; each snapshot
    is one more; a metric row is a small dict (about 600 bytes, two per run and evaluation);
    the minibatch activations are ``replicas × batch × widest`` floats (a few copies); the
    evaluation works in chunks of a fixed size (about 64 MB). ``parallel`` methods train at
    once, each with its own copy of the data.
    """
    params = 4 * n_params * replicas * (10 + n_snapshots)
    rows = 600 * 2 * replicas * n_evals
    activations = 4 * 4 * replicas * batch * widest + (64 << 20)
    return parallel * (params + rows + activations + data_bytes)


def method_hparams(table: Mapping[str, Any]) -> dict[str, Any]:
    """The optimizer hyperparameters of a resolved method table (without ``method``/``init``)."""
    return {k: v for k, v in table.items() if k not in _METHOD_META_KEYS}

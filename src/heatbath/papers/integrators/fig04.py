"""Fig. 4: AdLaLa against Adam classifiers on the 2-turn spiral, two initialisations.

Caption: 20-node SHLP, b = 2, 20,000 steps, 500 training and 500 test points, 5 % subsampling.
Left: AdLaLa 100 % train / 99 % test, Adam 88 % / 91 %; right: AdLaLa 100 % / 98 %, Adam 96 % /
94 %. The caption gives no hyperparameters: we use Fig. 8's (AdLaLa h = 0.25, τ₁ = τ₂ = 1e-4,
σ_A = 0.01, ε = 0.1, γ = 0.5; Adam h = 0.005). Both methods start from the same initialisation
in each run (same seed). The maps show runs 0 and 1; the paper's single-run numbers are judged
against the range of all our runs, and the ordering (AdLaLa ahead of Adam from the same init)
against the paired runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from heatbath.engine.jobs import Job
from heatbath.output.claims import Claim, pct, verdict_holds, verdict_single
from heatbath.output.plots import plot_decision_maps

from .common import (
    Context,
    FigureOutput,
    FigureResults,
    FigureSpec,
    all_rows,
    begin_figure,
    final_values,
    finish_figure,
    make_data,
    setting_jobs,
    train_notes,
    write_rows,
)
from .figplots import decision_panel, plot_final_accuracy

__all__ = ["FIG4", "jobs", "report"]

FIG4 = FigureSpec(
    key="fig4",
    title="Fig. 4: AdLaLa vs Adam classifiers, 2-turn spiral, two initialisations",
    caption="20-node SHLP, b = 2, 20,000 steps, 500 training and 500 test points, 5 % "
            "subsampling. Left: AdLaLa 100 % train, 99 % test; Adam 88 % train, 91 % test. "
            "Right: AdLaLa 100 % / 98 %; Adam 96 % / 94 %.",
    settings={
        "data": {"name": "spirals", "turns": 2, "n_train": 500, "n_test": 500, "seed": 0},
        "model": {"name": "shlp", "hidden": 20},
        "subsample": 5.0, "steps": 20_000, "runs": 20,
        "methods": {
            "adlala": {"method": "adlala", "hparams": {
                "h": 0.25, "gamma": 0.5, "tau1": 1e-4, "tau2": 1e-4, "sigma_A": 0.01,
                "epsilon": 0.1}},
            "adam": {"method": "adam", "hparams": {"h": 0.005}},
        },
        "paper": {"left": {"adlala": [1.00, 0.99], "adam": [0.88, 0.91]},
                  "right": {"adlala": [1.00, 0.98], "adam": [0.96, 0.94]}},
    },
    choices={
        "methods": "hyperparameters of Fig. 8 (the caption gives none): AdLaLa h = 0.25, "
                   "τ₁ = τ₂ = 1e-4, σ_A = 0.01, ε = 0.1, γ = 0.5; Adam h = 0.005.",
        "model.init": "PyTorch's default initialisation; the two panels are seeds 0 and 1.",
        "runs": "20 paired runs (the paper shows two) to judge the single-run numbers.",
    },
    quick={"steps": 3000, "runs": 4},
)


def jobs(spec: FigureSpec, cfg: dict[str, Any], ctx: Context) -> list[Job]:
    """Both methods from the same inits (same seeds)."""
    return setting_jobs(ctx, spec, cfg, steps=cfg["steps"], runs=cfg["runs"])


def report(spec: FigureSpec, cfg: dict[str, Any], ctx: Context, done: FigureResults
           ) -> FigureOutput:
    """Maps of runs 0 and 1; judge the numbers."""
    t0, d = begin_figure(spec, cfg, ctx)
    data = make_data(cfg["data"], ctx)
    steps, runs = cfg["steps"], cfg["runs"]
    res = done.methods()
    rows = all_rows(res)
    acc = {(m, split): final_values(rows, m, split) for m in res for split in ("train", "test")}
    X, y = data.X_test.numpy(), data.y_test.numpy()
    panels = []
    for r in range(min(2, runs)):
        for m, name in (("adlala", "AdLaLa"), ("adam", "Adam")):
            panels.append(decision_panel(
                res[m], X, f"{name}, init {r} (seed {res[m].seeds[r]})",
                f"train {pct(acc[(m, 'train')][r], 0)}, test {pct(acc[(m, 'test')][r], 0)}",
                run=r))
    images = [plot_decision_maps(d / "decision_maps.png", panels, X, y, max_cols=2,
                                 title=f"Fig. 4: 20-node SHLP, {steps:,} steps (rows: two "
                                       "initialisations; test data shown)").name]
    images.append(plot_final_accuracy(
        d / "final_accuracy.png", {m: acc[(m, "test")] for m in res}, None,
        title=f"Fig. 4: final test accuracy, {runs} paired runs", note="Paper (two runs): "
        "AdLaLa 99 %, 98 %; Adam 91 %, 94 % test accuracy.").name)
    csvs = [write_rows(d / "metrics.csv", rows),
            write_rows(d / "final_accuracy.csv",
                       [{"method": m, "seed": s, "train_accuracy": float(acc[(m, "train")][i]),
                         "test_accuracy": float(acc[(m, "test")][i])}
                        for m in res for i, s in enumerate(res[m].seeds)],
                       ("method", "seed", "train_accuracy", "test_accuracy"))]
    claims = []
    for side, per in cfg["paper"].items():
        for m, (tr, te) in per.items():
            for split, val in (("train", tr), ("test", te)):
                text, v, why = verdict_single(val, acc[(m, split)])
                claims.append(Claim(f"{side} panel: {m} {split} accuracy after {steps:,} steps "
                                    "(one run)", pct(val, 0), text, v, why))
    wins = acc[("adlala", "test")] > acc[("adam", "test")]
    ma, mb = float(np.mean(acc[("adlala", "test")])), float(np.mean(acc[("adam", "test")]))
    v, why = verdict_holds(ma > mb and wins.mean() >= 0.5,
                           f"AdLaLa is ahead in {wins.sum()} of {runs} paired runs")
    claims.append(Claim("AdLaLa's classifier beats Adam's from the same init (test accuracy)",
                        "both panels: 99 > 91, 98 > 94",
                        f"ahead in {int(wins.sum())}/{runs} paired runs; means {pct(ma)} vs "
                        f"{pct(mb)}", v, why))
    return finish_figure(spec, cfg, t0, images, csvs, claims, train_notes(res))

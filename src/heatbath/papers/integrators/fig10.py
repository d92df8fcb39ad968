"""Fig. 10: fixed AdLaLa against swept SGD/SGLD (left) and Adam (right), 4-turn spiral.

Caption: AdLaLa (h = 0.25, τ₁ = τ₂ = 1e-4, γ = 0.1, σ_A = 0.01, ε = 0.05) is the dotted line;
the bars are SGLD with σ ∈ {0 (= SGD), 0.005, 0.01, 0.05, 0.1} (left) and Adam (right) at
varied parameters; averaged over multiple runs with the same initial conditions for all.
Claim: AdLaLa consistently outperforms them. Which step sizes the bars used is not in the
available text: we sweep SGLD's h over {0.05, 0.1, 0.2} and Adam's over {0.001, 0.0025, 0.005,
0.01, 0.02}. The claim holds when AdLaLa's mean final test accuracy exceeds every bar's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from heatbath.engine.jobs import Job
from heatbath.engine.sweep import Axis, Sweep, sweep_rows, sweep_table
from heatbath.output.claims import Claim, pct, verdict_holds

from .common import (
    Context,
    FigureOutput,
    FigureResults,
    FigureSpec,
    begin_figure,
    finish_figure,
    write_rows,
)
from .figplots import plot_grouped_bars

__all__ = ["FIG10", "jobs", "report", "sweeps"]

_SIGMA_COLORS = ["#1f77b4", "#d62728", "#e6a800", "#7b3fa0", "#2ca02c"]  # the caption's order

FIG10 = FigureSpec(
    key="fig10",
    title="Fig. 10: fixed AdLaLa vs SGLD (σ sweep) and Adam (step-size sweep), 4-turn spiral",
    caption="AdLaLa (dotted line; h = 0.25, τ₁ = τ₂ = 1e-4, γ = 0.1, σ_A = 0.01, ε = 0.05) "
            "consistently outperforms SGD and SGLD with σ = 0, 0.005, 0.01, 0.05, 0.1 (left) and "
            "Adam (right) with varied parameters; averaged over multiple runs, same initial "
            "conditions for all runs.",
    settings={
        "data": {"name": "spirals", "turns": 4, "n_train": 500, "n_test": 500, "seed": 0},
        "model": {"name": "shlp", "hidden": 20},
        "subsample": 5.0, "steps": 10_000, "runs": 10,
        "adlala": {"method": "adlala", "hparams": {
            "h": 0.25, "tau1": 1e-4, "tau2": 1e-4, "gamma": 0.1, "sigma_A": 0.01,
            "epsilon": 0.05}},
        "sgld_h": [0.05, 0.1, 0.2],
        "sgld_sigma": [0.0, 0.005, 0.01, 0.05, 0.1],
        "adam_h": [0.001, 0.0025, 0.005, 0.01, 0.02],
    },
    choices={
        "model/data": "SHLP 20, 500 train / 500 test points, 5 % subsampling, 10,000 steps: "
                      "Fig. 7's setting on the same 4-turn data (the caption names none).",
        "sgld_h": "SGLD/SGD step sizes h ∈ {0.05, 0.1, 0.2} (the bars' step sizes are not in "
                  "the available text).",
        "adam_h": "Adam step sizes {0.001, 0.0025, 0.005, 0.01, 0.02}.",
        "runs": "10 runs per bar with seeds 0-9 for every configuration (same initial "
                "conditions, as the caption says).",
    },
    quick={"steps": 2000, "runs": 3, "sgld_h": [0.1, 0.2], "adam_h": [0.001, 0.005, 0.02]},
)


def sweeps(spec: FigureSpec, cfg: dict[str, Any]) -> list[Sweep]:
    """AdLaLa once, SGLD over h × σ, Adam over h; every point over the same seeds."""
    base = {"data": cfg["data"], "model": cfg["model"], "steps": cfg["steps"],
            "subsample": cfg["subsample"], "eval_every": max(1, cfg["steps"] // 10)}
    seeds = range(cfg["runs"])
    root = f"{spec.key}/jobs"
    return [
        Sweep(f"{root}/adlala", {**base, "method": "adlala", "hparams": cfg["adlala"]["hparams"]},
              seeds=seeds, label="adlala"),
        Sweep(f"{root}/sgld", {**base, "method": "sgld", "hparams": {}},
              [Axis("h", ("hparams", "h"), tuple(cfg["sgld_h"])),
               Axis("sigma", ("hparams", "sigma"), tuple(cfg["sgld_sigma"]))],
              seeds=seeds, label="sgld_h{h:g}_s{sigma:g}"),
        Sweep(f"{root}/adam", {**base, "method": "adam", "hparams": {}},
              [Axis("h", ("hparams", "h"), tuple(cfg["adam_h"]))], seeds=seeds,
              label="adam_h{h:g}"),
    ]


def jobs(spec: FigureSpec, cfg: dict[str, Any], ctx: Context) -> list[Job]:
    """The jobs of the three sweeps."""
    return [j for s in sweeps(spec, cfg) for j in s.jobs()]


def report(spec: FigureSpec, cfg: dict[str, Any], ctx: Context, done: FigureResults
           ) -> FigureOutput:
    """Grouped bars against AdLaLa's line; the claims."""
    t0, d = begin_figure(spec, cfg, ctx)
    steps, runs = cfg["steps"], cfg["runs"]
    parts = sweeps(spec, cfg)
    methods = {row["label"]: row for s in parts for row in sweep_table(s, done.results)}
    stat = {m: (row["test_accuracy_mean"], row["test_accuracy_se"])
            for m, row in methods.items()}
    rows = [r for s in parts for r in sweep_rows(s, done.results)]
    ada = stat["adlala"][0]
    ref = (100 * ada, f"AdLaLa {100 * ada:.1f} %")
    left = {"title": f"SGLD (σ = 0 is SGD), {runs} runs per bar", "xlabel": "step size h",
            "groups": [f"{h:g}" for h in cfg["sgld_h"]], "ref": ref,
            "series": [{"label": f"σ = {s:g}" + (" (SGD)" if s == 0 else ""),
                        "color": _SIGMA_COLORS[i % len(_SIGMA_COLORS)],
                        "mean": [100 * stat[f"sgld_h{h:g}_s{s:g}"][0] for h in cfg["sgld_h"]],
                        "err": [100 * np.nan_to_num(stat[f"sgld_h{h:g}_s{s:g}"][1])
                                for h in cfg["sgld_h"]]}
                       for i, s in enumerate(cfg["sgld_sigma"])]}
    right = {"title": f"Adam, {runs} runs per bar", "xlabel": "step size h",
             "groups": [f"{h:g}" for h in cfg["adam_h"]], "ref": ref,
             "series": [{"label": "Adam", "color": "#1f77b4",
                         "mean": [100 * stat[f"adam_h{h:g}"][0] for h in cfg["adam_h"]],
                         "err": [100 * np.nan_to_num(stat[f"adam_h{h:g}"][1])
                                 for h in cfg["adam_h"]]}]}
    images = [plot_grouped_bars(d / "sweeps.png", [left, right],
                                title=f"Fig. 10: mean final test accuracy after {steps:,} steps "
                                      "(error bars: SE); dotted line: AdLaLa",
                                note="AdLaLa h = 0.25, τ₁ = τ₂ = 1e-4, γ = 0.1, σ_A = 0.01, "
                                     "ε = 0.05; SHLP 20, 4-turn spiral.").name]
    table = [{"config": m, "method": m.split("_")[0],
              "h": row.get("h", cfg["adlala"]["hparams"]["h"]), "sigma": row.get("sigma"),
              "test_accuracy_mean": stat[m][0], "test_accuracy_se": stat[m][1], "runs": runs}
             for m, row in methods.items()]
    csvs = [write_rows(d / "metrics.csv", rows),
            write_rows(d / "sweep_summary.csv", table, ("config", "method", "h", "sigma",
                                                        "test_accuracy_mean",
                                                        "test_accuracy_se", "runs"))]
    claims = []
    for fam, name in (("sgld", "SGD and SGLD (every σ and h)"), ("adam", "Adam (every h)")):
        others = {m: stat[m][0] for m in methods if m.startswith(fam)}
        best = max(others, key=others.__getitem__)
        beaten = sum(ada > v for v in others.values())
        v, why = verdict_holds(beaten == len(others), f"{best} reaches {pct(others[best])}")
        claims.append(Claim(f"fixed AdLaLa outperforms {name}", "AdLaLa best throughout",
                            f"AdLaLa {pct(ada)} beats {beaten}/{len(others)} bars; best bar "
                            f"{best} {pct(others[best])}", v, why))
    return finish_figure(spec, cfg, t0, images, csvs, claims, done.notes())

"""Fig. 16: LOL classifiers on the 4-turn spiral for a sweep of temperatures.

Caption: 200-node SHLP, LOL with friction γ₁ = 1, h = 0.8, 50,000 steps; performance increases
with τ up to τ = 1e-5 and then decreases; the method is unusable at τ = 1e-3.

Judged on the mean final test accuracy per τ. The sentence "performance increased with τ until
τ = 1e-5, after which it began to decrease" is one claim
(:func:`heatbath.output.claims.verdict_interior` with the peak named at 1e-5): τ = 1e-5 must
beat both ends of the sweep by 2 SE of the difference, and no τ may beat 1e-5 by 2 SE. The
parenthesis "unusable already at τ = 1e-3" is a second sentence: its mean test accuracy is below
60 % (chance is 50 %) or every run stopped on a non-finite loss.
"""

from __future__ import annotations

from typing import Any

from heatbath.engine.jobs import Job
from heatbath.output.claims import Claim, pct, verdict_holds, verdict_interior
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
    sweep_stats,
    tau_sweep,
    train_notes,
    write_rows,
)
from .figplots import decision_panel, plot_lines

__all__ = ["FIG16", "jobs", "report", "UNUSABLE"]

#: mean test accuracy below which a temperature counts as "unusable" (chance is 0.5)
UNUSABLE = 0.60

FIG16 = FigureSpec(
    key="fig16",
    title="Fig. 16: LOL classifiers over a temperature sweep, 200-node SHLP, 4-turn spiral",
    caption="200-node SHLP, 4-turn spiral; LOL with γ = 1, h = 0.8, 50,000 steps. Performance "
            "increased with τ until τ = 1e-5, then decreased; unusable already at τ = 1e-3.",
    settings={
        "data": {"name": "spirals", "turns": 4, "n_train": 500, "n_test": 500, "seed": 0},
        "model": {"name": "shlp", "hidden": 200},
        "subsample": 5.0, "steps": 50_000, "runs": 4,
        "method": {"method": "lol", "hparams": {"h": 0.8, "gamma1": 1.0}},
        "taus": [1e-7, 1e-6, 1e-5, 1e-4, 1e-3],
    },
    choices={
        "taus": "τ ∈ {1e-7, 1e-6, 1e-5, 1e-4, 1e-3} (the caption names 1e-5 and 1e-3; the "
                "panels' other values are not in the available text); τ₂ = τ₁ (see "
                "docs/theory/adaptive-langevin.md, section 'LOL').",
        "data": "500 training / 500 test points, 5 % subsampling: no caption of the 4-turn "
                "spiral states them (Fig. 9's 2 % is for the p = 1 variant with 500 nodes).",
        "runs": "4 runs per τ (the paper shows one), so that each τ has a standard error; maps "
                "show run 0.",
        "model.init": "PyTorch's default initialisation.",
    },
    quick={"steps": 4000, "runs": 1},
)


def jobs(spec: FigureSpec, cfg: dict[str, Any], ctx: Context) -> list[Job]:
    """One ensemble per τ."""
    methods = tau_sweep(cfg["method"], [float(t) for t in cfg["taus"]], "tau1")
    return setting_jobs(ctx, spec, cfg, methods=methods, steps=cfg["steps"], runs=cfg["runs"],
                        eval_every=max(1, cfg["steps"] // 50))


def report(spec: FigureSpec, cfg: dict[str, Any], ctx: Context, done: FigureResults
           ) -> FigureOutput:
    """Decision maps of run 0; accuracy against τ; the two claims."""
    t0, d = begin_figure(spec, cfg, ctx)
    data = make_data(cfg["data"], ctx)
    taus = [float(t) for t in cfg["taus"]]
    methods = tau_sweep(cfg["method"], taus, "tau1")
    steps, runs = cfg["steps"], cfg["runs"]
    res = done.methods()
    rows = all_rows(res)
    X, y = data.X_test.numpy(), data.y_test.numpy()
    stats, mean, se = sweep_stats(rows, methods)
    panels = [decision_panel(res[m], X, f"τ = {t:.0e}: test {pct(final_values(rows, m)[0])}")
              for m, t in zip(methods, taus, strict=True)]
    images = [plot_decision_maps(d / "decision_maps.png", panels, X, y, max_cols=3,
                                 title=f"Fig. 16: LOL (h = 0.8, γ₁ = 1), {steps:,} steps, "
                                       "200-node SHLP; test data shown",
                                 note="Run 0 after the last step (a run stopped on a "
                                      "non-finite loss shows its last finite state).").name]
    images.append(plot_lines(d / "accuracy_vs_tau.png", [{
        "title": f"LOL final test accuracy against τ ({runs} run(s) each)", "xlabel": "τ",
        "ylabel": "test accuracy (%)", "logx": True,
        "lines": [{"x": taus, "y": 100 * mean, "band": (100 * (mean - se), 100 * (mean + se)),
                   "label": "LOL", "marker": "o", "color": "#e6a800"}]}], width=6.0).name)
    csvs = [write_rows(d / "metrics.csv", rows),
            write_rows(d / "accuracy_vs_tau.csv",
                       [{"tau": t, "test_accuracy_mean": stats[m][0],
                         "test_accuracy_se": stats[m][1],
                         "stopped_runs": len(res[m].diverged), "runs": runs}
                        for m, t in zip(methods, taus, strict=True)],
                       ("tau", "test_accuracy_mean", "test_accuracy_se", "stopped_runs",
                        "runs"))]
    claims = []
    names = [f"{t:.0e}" for t in taus]
    j = verdict_interior(mean, [stats[m][1] for m in methods], names,
                         at=taus.index(1e-5) if 1e-5 in taus else None)
    claims.append(j.claim("performance increases with τ up to τ = 1e-5, then decreases (an "
                          "interior optimum at 1e-5, by 2 SE against both ends)",
                          "increases up to τ = 1e-5, then decreases"))
    if 1e-3 in taus:
        m = f"tau={1e-3:.0e}"
        dead = len(res[m].diverged) == runs
        ok = dead or mean[taus.index(1e-3)] < UNUSABLE
        v, why = verdict_holds(bool(ok), f"mean test accuracy {pct(mean[taus.index(1e-3)])} "
                                         f"≥ {pct(UNUSABLE, 0)}")
        claims.append(Claim("unusable at τ = 1e-3", "unusable",
                            f"{pct(mean[taus.index(1e-3)])}, {len(res[m].diverged)}/{runs} runs "
                            "stopped on a non-finite loss", v, why))
    return finish_figure(spec, cfg, t0, images, csvs, claims, train_notes(res))

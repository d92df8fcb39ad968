"""Fig. 1: BAOAB Langevin classifiers on trigonometric data at four temperatures.

Caption: h = 0.4, N = 50,000 steps, γ = 10, 500-node SHLP (ReLU, sigmoid output, cross-entropy),
τ ∈ {1e-8, 1e-7, 1e-6, 1e-5}, data Eq. (17) with a = 3, b = 2, c = 0.02, 1000 training and 1000
test points, 2 % subsampling. Claim: the classifier improves substantially as τ is raised.

Eq. (17) is not in the available text: heatbath's stand-in (see docs/data.md, section
'Trigonometric data') labels x ~ U[−1, 1]² by x₂ > sin(a x₁)/b. An outcome on invented data says
nothing about the paper's, so the claim is "not tested (Eq. 17 unavailable)"; the runs and the
maps are kept, with our accuracy at every temperature, and the stand-in is not tuned.
"""

from __future__ import annotations

from typing import Any

from heatbath.engine.jobs import Job
from heatbath.output.claims import not_tested, pct
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

__all__ = ["FIG1", "jobs", "report", "EQ17"]

#: :attr:`heatbath.output.claims.Claim.untested` of a claim on the stand-in for Eq. (17)
EQ17 = "Eq. 17 unavailable"

FIG1 = FigureSpec(
    key="fig1",
    title="Fig. 1: BAOAB Langevin classifiers at four temperatures (trigonometric data)",
    caption="BAOAB h = 0.4, γ = 10, N = 50,000 steps, 500-node SHLP, τ = 1e-8, 1e-7, 1e-6, 1e-5; "
            "Eq. (17) data with a = 3, b = 2, c = 0.02; 1000 train / 1000 test points, 2 % "
            "subsampling. The classifier substantially improves as the temperature is raised.",
    settings={
        "data": {"name": "trig", "a": 3.0, "b": 2.0, "c": 0.02, "n_train": 1000, "n_test": 1000,
                 "seed": 0},
        "model": {"name": "shlp", "hidden": 500},
        "subsample": 2.0, "steps": 50_000, "runs": 2,
        "method": {"method": "langevin", "hparams": {"h": 0.4, "gamma": 10.0}},
        "taus": [1e-8, 1e-7, 1e-6, 1e-5],
    },
    choices={
        "data": "Eq. (17) is not in the available text: heatbath's stand-in x₂ > sin(a x₁)/b "
                "on x ~ U[−1, 1]² (see docs/data.md, section 'Trigonometric data').",
        "runs": "2 runs per temperature (the paper shows one); the maps show run 0, the claim "
                "uses the mean of both.",
        "model.init": "PyTorch's default initialisation (the caption names none).",
    },
    quick={"steps": 5000, "runs": 1},
)


def jobs(spec: FigureSpec, cfg: dict[str, Any], ctx: Context) -> list[Job]:
    """One ensemble per temperature."""
    methods = tau_sweep(cfg["method"], [float(t) for t in cfg["taus"]])
    return setting_jobs(ctx, spec, cfg, methods=methods, steps=cfg["steps"], runs=cfg["runs"])


def report(spec: FigureSpec, cfg: dict[str, Any], ctx: Context, done: FigureResults
           ) -> FigureOutput:
    """Decision maps of run 0; accuracy against τ."""
    t0, d = begin_figure(spec, cfg, ctx)
    data = make_data(cfg["data"], ctx)
    taus = [float(t) for t in cfg["taus"]]
    methods = tau_sweep(cfg["method"], taus)
    results = done.methods()
    rows = all_rows(results)
    X = data.X_test.numpy()
    y = data.y_test.numpy()
    stats, mean, se = sweep_stats(rows, methods)
    panels = [decision_panel(results[m], X, f"τ = {t:.0e}",
                             f"test accuracy {pct(final_values(rows, m)[0])} (run 0)")
              for m, t in zip(methods, taus, strict=True)]
    images = [plot_decision_maps(d / "decision_maps.png", panels, X, y, max_cols=2,
                                 title=f"Fig. 1: BAOAB (h = 0.4, γ = 10), {cfg['steps']:,} "
                                       "steps, 500-node SHLP; test data shown",
                                 note="Probability of class 1 after the last step, run 0.").name]
    images.append(plot_lines(d / "accuracy_vs_tau.png", [{
        "title": f"final accuracy against temperature ({cfg['runs']} run(s) each)",
        "xlabel": "τ", "ylabel": "accuracy (%)", "logx": True,
        "lines": [{"x": taus, "y": 100 * mean, "label": "test", "color": "#7b3fa0",
                   "marker": "o", "band": (100 * (mean - se), 100 * (mean + se))},
                  {"x": taus, "y": [100 * final_values(rows, m, split="train").mean()
                                    for m in methods],
                   "label": "train", "color": "0.4", "style": "--", "marker": "s"}]}],
        width=6.0).name)
    csvs = [write_rows(d / "metrics.csv", rows),
            write_rows(d / "accuracy_vs_tau.csv",
                       [{"tau": t, "test_accuracy_mean": stats[m][0], "test_accuracy_se":
                         stats[m][1], "runs": cfg["runs"]} for m, t in zip(methods, taus,
                                                                            strict=True)],
                       ("tau", "test_accuracy_mean", "test_accuracy_se", "runs"))]
    ours = ", ".join(f"{t:.0e}: {pct(stats[m][0])}" for m, t in zip(methods, taus, strict=True))
    claims = [not_tested("the classifier substantially improves as τ rises from 1e-8 to 1e-5 "
                         "(test accuracy)", "improves (accuracies printed on the panels, not "
                         "in the text)", ours, EQ17,
                         "the data formula (Eq. 17) is not in the available text; on "
                         "heatbath's stand-in the outcome is a property of invented data")]
    return finish_figure(spec, cfg, t0, images, csvs, claims, train_notes(results))

"""Fig. 5: test curves on MNIST (left) against the 2-turn spiral (right).

The caption says only "MNIST (left) vs. Spirals (2-turn) (right) on Test"; methods, model and
hyperparameters are heatbath's choice (recorded in ``config.toml``): SGD, Adam, SGLD and AdLaLa,
with Fig. 8's settings on the spiral and the usual MNIST values there. The figure contrasts a
data set on which the methods end close together (MNIST) with one on which they spread (the
spiral); we report both spreads, but the caption makes no claim to judge.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from heatbath.engine.experiment import format_hparams
from heatbath.engine.jobs import Job
from heatbath.output.claims import Claim, pct

from .common import (
    Context,
    FigureOutput,
    FigureResults,
    FigureSpec,
    all_rows,
    begin_figure,
    final_values,
    finish_figure,
    part_jobs,
    write_rows,
)
from .figplots import plot_lines

__all__ = ["FIG5", "jobs", "report", "test_curves"]

_ADLALA8 = {"h": 0.25, "gamma": 0.5, "tau1": 1e-4, "tau2": 1e-4, "sigma_A": 0.01,
            "epsilon": 0.1}

FIG5 = FigureSpec(
    key="fig5",
    title="Fig. 5: test curves, MNIST vs 2-turn spiral",
    caption="MNIST (left) vs. Spirals (2-turn) (right) on Test.",
    settings={
        "runs": 5,
        "mnist": {
            "data": {"name": "mnist", "seed": 0},
            "model": {"name": "shlp", "hidden": 100},
            "batch_size": 100, "steps": 2000,
            "methods": {
                "sgd": {"method": "sgd", "hparams": {"h": 0.1}},
                "adam": {"method": "adam", "hparams": {"h": 0.001}},
                "sgld": {"method": "sgld", "hparams": {"h": 0.1, "sigma": 0.01}},
                "adlala": {"method": "adlala", "hparams": {
                    "h": 0.25, "gamma": 0.1, "tau1": 1e-4, "tau2": 1e-4, "sigma_A": 0.01,
                    "epsilon": 0.05}},
            },
        },
        "spiral": {
            "data": {"name": "spirals", "turns": 2, "n_train": 500, "n_test": 1000, "seed": 0},
            "model": {"name": "shlp", "hidden": 20, "init": "gaussian:0.01"},
            "subsample": 2.0, "steps": 10_000,
            "methods": {
                "sgd": {"method": "sgd", "hparams": {"h": 0.1}},
                "adam": {"method": "adam", "hparams": {"h": 0.005}},
                "sgld": {"method": "sgld", "hparams": {"h": 0.1, "sigma": 0.1}},
                "adlala": {"method": "adlala", "hparams": _ADLALA8},
            },
        },
    },
    choices={
        "everything": "the caption gives no settings. Methods SGD, Adam, SGLD, AdLaLa; 5 runs "
                      "each; mean ± sd of the test accuracy.",
        "mnist": "offline 5,000-digit subset unless --mnist-dir; SHLP 784 → 100 → 10, "
                 "minibatch 100, 2,000 steps; SGD h = 0.1, Adam h = 0.001, SGLD h = 0.1 "
                 "σ = 0.01, AdLaLa with the values of the authors' spiral notebook (h = 0.25, "
                 "γ = 0.1, τ = 1e-4, σ_A = 0.01, ε = 0.05): no caption gives an MNIST setting.",
        "spiral": "Fig. 8's setting (with Fig. 14's stated choices for the same problem): SHLP "
                  "20, 0.01·N(0, 1) init, 500 training / 1,000 test points, 2 % subsampling, "
                  "10,000 steps, SGD h = 0.1, Adam 0.005, SGLD h = 0.1 σ = 0.1, AdLaLa "
                  "γ = 0.5 ε = 0.1; one data draw.",
    },
    quick={"runs": 2, "mnist": {"steps": 300}, "spiral": {"steps": 2000}},
)


def test_curves(rows: list[dict[str, Any]], methods: dict[str, Any], title: str
                ) -> dict[str, Any]:
    """A :func:`plot_lines` panel: mean ± sd test accuracy (%) against step per method."""
    lines = []
    for m, spec in methods.items():
        steps = sorted({int(r["step"]) for r in rows if r["method"] == m})
        per = np.array([final_values(rows, m, step=s) for s in steps]) * 100
        mean, sd = per.mean(1), per.std(1, ddof=1) if per.shape[1] > 1 else 0 * per.mean(1)
        lines.append({"x": steps, "y": mean, "band": (mean - sd, mean + sd),
                      "label": f"{m} ({format_hparams(spec['hparams'])})"})
    return {"title": title, "xlabel": "step", "ylabel": "test accuracy (%)", "lines": lines}


def jobs(spec: FigureSpec, cfg: dict[str, Any], ctx: Context) -> list[Job]:
    """Four methods on MNIST and on the spiral."""
    return [j for part in ("mnist", "spiral") for j in part_jobs(ctx, spec, cfg, part, evals=50)]


def report(spec: FigureSpec, cfg: dict[str, Any], ctx: Context, done: FigureResults
           ) -> FigureOutput:
    """Plot the test accuracy curves."""
    t0, d = begin_figure(spec, cfg, ctx)
    panels, rows_all, ours = [], [], []
    for part, pretty in (("mnist", "MNIST"), ("spiral", "2-turn spiral")):
        res = done.methods(part)
        rows = all_rows(res)
        rows_all.extend({**r, "data": part} for r in rows)
        if part == "mnist":
            pretty += " (full set)" if ctx.mnist_dir else " (5,000-digit subset)"
        panels.append(test_curves(rows, cfg[part]["methods"], f"{pretty}, {cfg['runs']} runs"))
        means = {m: float(final_values(rows, m).mean()) for m in res}
        spread = max(means.values()) - min(means.values())
        ours.append(f"{pretty}: " + ", ".join(f"{m} {pct(v)}" for m, v in means.items())
                    + f" (spread {100 * spread:.1f} pp)")
    images = [plot_lines(d / "test_curves.png", panels, title="Fig. 5: test accuracy, mean ± sd"
                         " over runs", width=6.4, height=4.4).name]
    csvs = [write_rows(d / "metrics.csv", rows_all,
                       ("data", "method", "seed", "step", "split", "loss", "accuracy"))]
    claims = [Claim("test curves on MNIST vs the 2-turn spiral (no number or statement in the "
                    "caption)", "–", "; ".join(ours), "not tested",
                    "the caption makes no claim")]
    return finish_figure(spec, cfg, t0, images, csvs, claims)

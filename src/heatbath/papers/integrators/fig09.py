"""Fig. 9: Adam (top) vs AdLaLa (bottom) classifiers at 20K, 40K and 60K steps, 4-turn spiral.

Caption: 500-node SHLP; spiral a = 2, b = 4, c = 0.02, p = 1; Adam h = 0.005 with Gaussian
initial weights of standard deviation 0.5; AdLaLa ε = 0.1, τ₁ = 1e-4, σ_A = 0.01, γ₂ = 0.03,
τ₂ = 1e-5, h = 0.1 with Gaussian initial weights of standard deviation 0.01; 2 % subsampling;
20K steps = 400 epochs (so 50 minibatches per epoch); the classifier is averaged over the last
10 steps. The caption states no number; the figure's point is that AdLaLa's classifier follows
the spiral where Adam's does not. We judge it by the test accuracy of the averaged classifier
(probabilities averaged over the 10 snapshots): AdLaLa ahead of Adam at every time by a
one-sided paired sign test at the 5 % level (:func:`heatbath.output.claims.verdict_beats`;
5 runs, the fewest with which that test can pass).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from heatbath.engine.jobs import Job
from heatbath.output.claims import FEW_RUNS, Claim, pct, verdict_beats
from heatbath.output.plots import plot_decision_maps

from .common import (
    Context,
    FigureOutput,
    FigureResults,
    FigureSpec,
    all_rows,
    begin_figure,
    finish_figure,
    make_data,
    setting_jobs,
    train_notes,
    write_rows,
)
from .figplots import decision_panel

__all__ = ["FIG9", "jobs", "report", "averaged_accuracy"]

FIG9 = FigureSpec(
    key="fig9",
    title="Fig. 9: Adam vs AdLaLa classifiers at 20K / 40K / 60K steps, 500-node SHLP, 4 turns",
    caption="500-node SHLP, spiral a = 2, b = 4, c = 0.02, p = 1. Adam h = 0.005, Gaussian init "
            "std 0.5. AdLaLa ε = 0.1, τ₁ = 1e-4, σ_A = 0.01, γ₂ = 0.03, τ₂ = 1e-5, h = 0.1, "
            "Gaussian init std 0.01. 2 % subsampling. Classifiers at 20K, 40K, 60K steps, "
            "averaged over the last 10 steps.",
    settings={
        "data": {"name": "spirals", "turns": 4, "a": 2.0, "c": 0.02, "p": 1.0, "n_train": 1000,
                 "n_test": 1000, "seed": 0},
        "model": {"name": "shlp", "hidden": 500},
        "subsample": 2.0, "steps": 60_000, "runs": 5, "average_last": 10,
        "methods": {
            "adam": {"method": "adam", "hparams": {"h": 0.005}, "init": "gaussian:0.5"},
            "adlala": {"method": "adlala", "init": "gaussian:0.01", "hparams": {
                "h": 0.1, "gamma": 0.03, "tau1": 1e-4, "tau2": 1e-5, "sigma_A": 0.01,
                "epsilon": 0.1}},
        },
    },
    choices={
        "data.n_train/n_test": "1000 training and 1000 test points (not in the caption; Fig. "
                               "1's sizes for the other 500-node, 2 % experiment): 20 points per "
                               "step, 50 steps per epoch as the caption's 20K steps = 400 epochs "
                               "implies.",
        "init": "Gaussian N(0, std²) for weights and biases alike (the caption says 'weights').",
        "runs": "5 runs (the paper shows one): the fewest paired runs with which a one-sided sign "
                "test can reach the 5 % level (0.5⁵ = 3.1 %); the maps show run 0.",
    },
    quick={"steps": 6000, "runs": 1},
)


@torch.no_grad()
def averaged_accuracy(res: Any, X: torch.Tensor, y: torch.Tensor, steps: list[int]
                      ) -> np.ndarray:
    """Test accuracy ``[R]`` of the classifier whose probabilities are averaged over ``steps``."""
    prob = torch.stack([res.predict_proba(X, step=s)[:, :, 1] for s in steps]).mean(0)
    return ((prob > 0.5).to(torch.int64) == y).double().mean(1).numpy()


def _windows(cfg: dict[str, Any]) -> tuple[list[int], dict[int, list[int]]]:
    """The map times and, for each, the last ``average_last`` steps up to it."""
    steps, k = cfg["steps"], cfg["average_last"]
    at = [steps // 3, 2 * steps // 3, steps]
    return at, {t: list(range(max(1, t - k + 1), t + 1)) for t in at}


def jobs(spec: FigureSpec, cfg: dict[str, Any], ctx: Context) -> list[Job]:
    """Both methods to 60K steps with snapshots of the last 10 steps before each map."""
    _, windows = _windows(cfg)
    snaps = sorted({s for w in windows.values() for s in w})
    return setting_jobs(ctx, spec, cfg, steps=cfg["steps"], runs=cfg["runs"],
                        eval_every=max(1, cfg["steps"] // 100), snapshot_steps=snaps)


def report(spec: FigureSpec, cfg: dict[str, Any], ctx: Context, done: FigureResults
           ) -> FigureOutput:
    """Maps of the averaged classifiers at three times; judge the ordering."""
    t0, d = begin_figure(spec, cfg, ctx)
    data = make_data(cfg["data"], ctx)
    k = cfg["average_last"]
    at, windows = _windows(cfg)
    res = done.methods()
    X, y = data.X_test.numpy(), data.y_test.numpy()
    acc = {(m, t): averaged_accuracy(res[m], data.X_test, data.y_test, windows[t])
           for m in res for t in at}
    per_epoch = max(1, round(data.X_train.shape[0] * cfg["subsample"] / 100))
    per_epoch = data.X_train.shape[0] // per_epoch
    panels = [decision_panel(res[m], X, f"{name}, {t:,} steps ({t // per_epoch:,} epochs): "
                             f"test {pct(acc[(m, t)][0])}", steps=windows[t])
              for m, name in (("adam", "Adam"), ("adlala", "AdLaLa")) for t in at]
    images = [plot_decision_maps(d / "decision_maps.png", panels, X, y, max_cols=3,
                                 title="Fig. 9: 500-node SHLP on the 4-turn spiral (p = 1); "
                                       "top Adam, bottom AdLaLa; test data shown",
                                 note=f"Probabilities averaged over the last {k} steps before "
                                      "each time; run 0.").name]
    rows = all_rows(res)
    csvs = [write_rows(d / "metrics.csv", rows),
            write_rows(d / "averaged_accuracy.csv",
                       [{"method": m, "step": t, "seed": s, "test_accuracy": float(v)}
                        for (m, t), a in acc.items() for s, v in zip(res[m].seeds, a,
                                                                     strict=True)],
                       ("method", "step", "seed", "test_accuracy"))]
    tests = {t: verdict_beats(acc[("adlala", t)], acc[("adam", t)], names=("AdLaLa", "Adam"))
             for t in at}
    verdicts = {j.verdict for j in tests.values()}
    if "not tested" in verdicts:
        verdict, untested, why = "not tested", FEW_RUNS, "too few runs for a 5 % sign test"
    elif verdicts == {"reproduced"}:
        verdict, untested, why = "reproduced", "", ""
    else:
        verdict, untested = "not reproduced", ""
        why = "not significantly ahead at " + ", ".join(
            f"{t:,}" for t, j in tests.items() if j.verdict != "reproduced") + " steps"
    claims = [Claim("AdLaLa's classifier separates the 4-turn spiral better than Adam's at "
                    f"{', '.join(f'{t:,}' for t in at)} steps (test accuracy of the averaged "
                    "classifier)", "shown visually (no number)",
                    "; ".join(f"{t:,}: {j.ours}" for t, j in tests.items()), verdict, why,
                    untested)]
    return finish_figure(spec, cfg, t0, images, csvs, claims, train_notes(res))

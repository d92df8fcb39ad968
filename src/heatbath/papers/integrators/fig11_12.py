"""Figs. 11-12: test loss and accuracy curves on planar trigonometric data, LOL vs AdLaLa (vs SGLD).

Fig. 11: Eq. (17) with a = 6, 100-node SHLP, 1000 training / 1000 test points, 5 % subsampling;
LOL h = 0.1, γ₁ = 0.01, τ₁ = 1e-3; AdLaLa h = 0.2, τ₁ = τ₂ = 1e-4, γ = 10, σ_A = 1e-3, ε = 0.1.
Fig. 12: a = 10, averaged over 20 runs; LOL as Fig. 11; AdLaLa h = 0.1, γ = 5 (else as Fig. 11);
SGLD h = 0.1, σ = 0.01. The captions state no number and no ranking, and Eq. (17) is not in
the available text: the verdict is "not tested (Eq. 17 unavailable)"; we report the final test
accuracy and loss of every method on heatbath's stand-in (not tuned).

Choices: Eq. (17) is heatbath's stand-in (see docs/data.md, section 'Trigonometric data');
LOL's τ₂ = τ₁ (see docs/theory/adaptive-langevin.md, section 'LOL'); 20,000 steps.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from heatbath.engine.jobs import Job

from .common import Context, FigureOutput, FigureResults, FigureSpec
from .fig01 import EQ17
from .figplots import curves_figure, curves_jobs

__all__ = ["FIG11", "FIG12", "jobs", "report"]

_LOL = {"method": "lol", "hparams": {"h": 0.1, "gamma1": 0.01, "tau1": 1e-3}}
_SGLD = {"method": "sgld", "hparams": {"h": 0.1, "sigma": 0.01}}
_CHOICES = {
    "data": "Eq. (17) is not in the available text: heatbath's stand-in x₂ > sin(a x₁)/b with "
            "b = 2, c = 0.02 on x ~ U[−1, 1]² (see docs/data.md, section 'Trigonometric "
            "data').",
    "steps": "20,000 steps (not in the caption).",
    "lol.tau2": "LOL's τ₂ = τ₁ (the caption gives only h, γ₁, τ₁; see "
                "docs/theory/adaptive-langevin.md, section 'LOL').",
    "model.init": "PyTorch's default initialisation.",
}

FIG11 = FigureSpec(
    key="fig11",
    title="Fig. 11: test loss / accuracy on trigonometric data (a = 6), LOL vs AdLaLa",
    caption="Eq. (17) with a = 6, 100-node SHLP, 1000 test and 1000 training points, 5 % "
            "subsampling. LOL h = 0.1, γ₁ = 0.01, τ₁ = 1e-3; AdLaLa h = 0.2, τ₁ = τ₂ = 1e-4, "
            "γ = 10, σ_A = 0.001, ε = 0.1.",
    settings={
        "data": {"name": "trig", "a": 6.0, "b": 2.0, "c": 0.02, "n_train": 1000, "n_test": 1000,
                 "seed": 0},
        "model": {"name": "shlp", "hidden": 100},
        "subsample": 5.0, "steps": 20_000, "runs": 5,
        "methods": {
            "lol": _LOL,
            "adlala": {"method": "adlala", "hparams": {
                "h": 0.2, "tau1": 1e-4, "tau2": 1e-4, "gamma": 10.0, "sigma_A": 0.001,
                "epsilon": 0.1}},
            "sgld": _SGLD,
        },
    },
    choices={**_CHOICES,
             "methods": "SGLD h = 0.1, σ = 0.01 (Fig. 12's) added as a reference; the caption "
                        "names only LOL's and AdLaLa's settings.",
             "runs": "5 runs (the caption does not say; the band is ± 1 sd)."},
    quick={"steps": 3000, "runs": 2},
)

FIG12 = FigureSpec(
    key="fig12",
    title="Fig. 12: test loss / accuracy on trigonometric data (a = 10), averaged over 20 runs",
    caption="Eq. (17) with a = 10, 100-node SHLP, averaged over 20 runs. LOL h = 0.1, γ₁ = "
            "0.01, τ₁ = 1e-3; AdLaLa h = 0.1, τ₁ = τ₂ = 1e-4, γ = 5, σ_A = 0.001, ε = 0.1; SGLD "
            "h = 0.1, σ = 0.01.",
    settings={
        **FIG11.settings,
        "data": {"name": "trig", "a": 10.0, "b": 2.0, "c": 0.02, "n_train": 1000,
                 "n_test": 1000, "seed": 0},
        "runs": 20,
        "methods": {
            "lol": _LOL,
            "adlala": {"method": "adlala", "hparams": {
                "h": 0.1, "tau1": 1e-4, "tau2": 1e-4, "gamma": 5.0, "sigma_A": 0.001,
                "epsilon": 0.1}},
            "sgld": _SGLD,
        },
    },
    choices={**_CHOICES,
             "data sizes": "1000 training / 1000 test points and 5 % subsampling, as Fig. 11 "
                           "(the caption does not repeat them)."},
    quick={"steps": 3000, "runs": 4},
)


def jobs(spec: FigureSpec, cfg: dict[str, Any], ctx: Context) -> list[Job]:
    """The methods as ensembles."""
    return curves_jobs(spec, cfg, ctx)


def report(spec: FigureSpec, cfg: dict[str, Any], ctx: Context, done: FigureResults
           ) -> FigureOutput:
    """Curves of mean ± sd; final numbers in the claims."""
    out = curves_figure(spec, cfg, ctx, done, f"{spec.title.split(':')[0]}: trigonometric "
                                              f"data a = {cfg['data']['a']:g}, 100-node SHLP")
    out.claims = [replace(c, untested=EQ17, reason="the data formula (Eq. 17) is not in the "
                          "available text, and the caption states no number")
                  for c in out.claims]
    return out

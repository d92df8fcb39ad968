"""Figs. 6-8: weight and bias distributions over time, SGD / Adam / SGLD / AdLaLa on spirals.

Fig. 6 (2-turn) and Fig. 7 (4-turn) show one run's distributions at several times and quote the
test accuracy of that run at steps 50, 1,000 and 10,000. Fig. 8 pools the final parameters of
100 runs per method and quotes the mean test accuracy (SGD 79 %, Adam 83.7 %, SGLD 78 %, AdLaLa
93.4 % with γ = 0.5 and 85.5 % with γ = 10).

Where the captions are silent we take what Fig. 14's caption states for the same problem (the
2-turn spiral, 100 runs, the same Adam and AdLaLa settings): a 20-node SHLP, 500 training
points, 2 % minibatches and a 0.01·N(0, 1) initialisation; 1,000 test points. The runs come in
blocks that each draw their own data set (Fig. 8: 10 draws × 10 runs; Figs. 6, 7: 4 × 5), so
that the spread of our runs and the SE of a mean include the data-draw variance; within a
block every method trains on the same data from the same seeds (paired runs).

Verdicts: Figs. 6/7's single-run numbers against the central 5–95 % interval of our runs;
Fig. 8's means against ours with the SE over the draws' means
(:func:`heatbath.output.claims.verdict_mean_blocks`). The ordering AdLaLa > SGD, Adam, SGLD is
read off the caption's numbers, so it is not a second claim: the notes give it with a one-sided
paired sign test. SGLD's noise follows heatbath's convention θ ← θ − h∇L + σ√h·R; Fig. 8 also
runs the other reading of the caption's σ, noise σ·R per step (heatbath σ = σ_caption/√h), and
reports it next to the SGLD claim.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from torch import Tensor

from heatbath.engine.jobs import Job
from heatbath.output.claims import (
    Claim,
    block_mean_se,
    pct,
    verdict_beats,
    verdict_mean_blocks,
    verdict_single_run,
)
from heatbath.output.plots import plot_curves, plot_histograms

from .common import (
    Context,
    FigureOutput,
    FigureResults,
    FigureSpec,
    begin_figure,
    block_jobs,
    block_results,
    final_values,
    finish_figure,
    method_labels,
    train_notes,
    write_rows,
)
from .figplots import plot_final_accuracy

__all__ = ["FIG6", "FIG7", "FIG8", "jobs", "report", "param_kinds", "ordering_notes"]

_ADLALA = {"h": 0.25, "tau1": 1e-4, "tau2": 1e-4, "sigma_A": 0.01, "epsilon": 0.1, "gamma": 0.5}
_INIT = "gaussian:0.01"

_COMMON_CHOICES = {
    "model": "SHLP with 20 hidden nodes: the caption names no model; Fig. 14's caption (the "
             "same 2-turn spiral, 100 runs, the same Adam and AdLaLa settings) states a 20-node "
             "SHLP.",
    "model.init": "0.01·N(0, 1) for every method (biases alike), as Fig. 14's caption states "
                  "for Adam and AdLaLa on the same problem.",
    "subsample": "2 % (10 of the 500 training points per step), as Fig. 14's caption states for "
                 "the same problem.",
    "data.n_train/n_test": "500 training points (Fig. 14's caption) and 1,000 test points (no "
                           "caption states it; more test points make each run's accuracy less "
                           "noisy).",
    "sgld noise": "heatbath's convention θ ← θ − h∇L + σ√h·R with the caption's σ.",
}


def _blocks_choice(runs: int, draws: int) -> str:
    return (f"{draws} data draws × {runs // draws} runs: block k draws its data with seed k; "
            f"runs differ in initialisation, minibatch order and noise (seeds 0 … {runs - 1}, "
            "the same seeds for every method), so the spread and the SE include the data-draw "
            "variance.")


def _methods(sgd_h: float, sgld_sigma: float, gamma: float) -> dict[str, Any]:
    return {
        "sgd": {"method": "sgd", "hparams": {"h": sgd_h}},
        "adam": {"method": "adam", "hparams": {"h": 0.005}},
        "sgld": {"method": "sgld", "hparams": {"h": 0.1, "sigma": sgld_sigma}},
        "adlala": {"method": "adlala", "hparams": {**_ADLALA, "gamma": gamma}},
    }


FIG6 = FigureSpec(
    key="fig6",
    title="Fig. 6: weight and bias distributions over time, 2-turn spiral",
    caption="h_SGD = 0.2, h_Adam = 0.005, SGLD h = 0.1 σ = 0.01, AdLaLa h = 0.25 σ_A = 0.01 "
            "τ₁ = τ₂ = 1e-4 ε = 0.1 γ = 0.5. Test accuracy at step 50: 0.66 (SGD), 0.65 (Adam), "
            "0.61 (SGLD), 0.62 (AdLaLa); at 1000: 0.66, 0.89, 0.68, 0.82; at 10000: 0.96, 0.99, "
            "0.74, 0.99.",
    settings={
        "data": {"name": "spirals", "turns": 2, "n_train": 500, "n_test": 1000, "seed": 0},
        "model": {"name": "shlp", "hidden": 20, "init": _INIT},
        "subsample": 2.0, "steps": 10_000, "runs": 20, "draws": 4,
        "snapshot_steps": [0, 50, 200, 1000, 3000, 10_000],
        "quoted_at": [50, 1000, 10_000],
        "methods": _methods(0.2, 0.01, 0.5),
        "paper": {"50": {"sgd": 0.66, "adam": 0.65, "sgld": 0.61, "adlala": 0.62},
                  "1000": {"sgd": 0.66, "adam": 0.89, "sgld": 0.68, "adlala": 0.82},
                  "10000": {"sgd": 0.96, "adam": 0.99, "sgld": 0.74, "adlala": 0.99}},
    },
    choices={**_COMMON_CHOICES,
             "runs": "20 runs (the paper shows one) in " + _blocks_choice(20, 4)
                     + " The paper's single-run numbers are judged against the central "
                       "5–95 % interval of ours; the histograms show run 0.",
             "sgld noise": _COMMON_CHOICES["sgld noise"]},
    quick={"steps": 2000, "runs": 4, "draws": 2},
)

FIG7 = FigureSpec(
    key="fig7",
    title="Fig. 7: weight and bias distributions over time, 4-turn spiral",
    caption="Same settings as Fig. 6 with γ = 0.1 in AdLaLa. Test accuracy at step 50: 0.5 (SGD), "
            "0.58 (Adam), 0.52 (SGLD), 0.45 (AdLaLa); at 1000: 0.56, 0.55, 0.5, 0.62; at 10k: "
            "0.58, 0.67, 0.54, 0.8.",
    settings=FIG6.settings | {
        "data": {"name": "spirals", "turns": 4, "n_train": 500, "n_test": 1000, "seed": 0},
        "methods": _methods(0.2, 0.01, 0.1),
        "paper": {"50": {"sgd": 0.5, "adam": 0.58, "sgld": 0.52, "adlala": 0.45},
                  "1000": {"sgd": 0.56, "adam": 0.55, "sgld": 0.5, "adlala": 0.62},
                  "10000": {"sgd": 0.58, "adam": 0.67, "sgld": 0.54, "adlala": 0.8}},
    },
    choices={**FIG6.choices,
             "everything unstated": "as Fig. 6 (the caption: 'same parameter settings as in "
                                    "Fig. 6'), i.e. Fig. 14's choices for the 2-turn spiral; "
                                    "no caption states them for 4 turns."},
    quick={"steps": 2000, "runs": 4, "draws": 2},
)

FIG8 = FigureSpec(
    key="fig8",
    title="Fig. 8: parameter distributions over 100 runs after 10K steps, 2-turn spiral",
    caption="h_SGD = 0.1, h_Adam = 0.005, SGLD h = 0.1 σ = 0.1, AdLaLa h = 0.25 τ₁ = τ₂ = 1e-4 "
            "σ_A = 0.01 ε = 0.1, γ = 0.5 (left) and γ = 10 (right). Average test accuracies: "
            "SGD 79 %, Adam 83.7 %, SGLD 78 %, AdLaLa (γ = 0.5) 93.4 %, AdLaLa (γ = 10) 85.5 %.",
    settings={
        **FIG6.settings,
        "runs": 100, "draws": 10,
        "snapshot_steps": [0, 10_000],
        "methods": {**_methods(0.1, 0.1, 0.5),
                    "adlala_g10": {"method": "adlala", "hparams": {**_ADLALA, "gamma": 10.0}},
                    "sgld_per_step": {"method": "sgld", "hparams": {
                        "h": 0.1, "sigma": round(0.1 / math.sqrt(0.1), 12)}}},
        "paper": {"sgd": 0.79, "adam": 0.837, "sgld": 0.78, "adlala": 0.934,
                  "adlala_g10": 0.855},
    },
    choices={**_COMMON_CHOICES,
             "runs": "100 runs (the caption's number) in " + _blocks_choice(100, 10)
                     + " The SE of a mean is the SD of the 10 draws' means / √10.",
             "sgld noise": _COMMON_CHOICES["sgld noise"] + " The other reading, noise σ·R per "
                           "step (heatbath σ = 0.1/√0.1 = 0.316), runs beside it as "
                           "`sgld_per_step` and is reported next to the SGLD claim; the "
                           "verdict uses the σ√h reading."},
    quick={"steps": 2000, "runs": 10, "draws": 2},
)


def param_kinds(snap: Mapping[str, Tensor], runs: slice | int | None = None
                ) -> dict[str, np.ndarray]:
    """Values of layer-1 weights, layer-1 biases and layer-2 weights (pooled over ``runs``)."""
    sel = slice(None) if runs is None else runs
    names = {"W₁ (input → hidden)": "layers.0.weight", "b₁": "layers.0.bias",
             "W₂ (hidden → output)": "layers.1.weight"}
    return {k: snap[n][sel].reshape(-1).numpy() for k, n in names.items() if n in snap}


def _note(labels: Mapping[str, str]) -> str:
    return "; ".join(labels.values())


def _schedule(cfg: dict[str, Any]) -> tuple[list[int], dict[int, int], list[int]]:
    """Snapshot steps, the quoted steps (paper's → ours, capped by the run) and the
    evaluation steps."""
    steps = cfg["steps"]
    snaps = sorted({min(s, steps) for s in cfg["snapshot_steps"]} | {steps})
    quote = {int(s): min(int(s), steps) for s in cfg.get("quoted_at", [])}
    evals = sorted(set(range(0, steps + 1, max(1, steps // 100))) | set(quote.values()))
    return snaps, quote, evals


def jobs(spec: FigureSpec, cfg: dict[str, Any], ctx: Context) -> list[Job]:
    """Every method on every data draw over the same seeds, with snapshots for histograms."""
    snaps, _, evals = _schedule(cfg)
    return block_jobs(ctx, spec, cfg, steps=cfg["steps"], runs=cfg["runs"],
                      draws=cfg["draws"], eval_steps=evals, snapshot_steps=snaps)


def _pooled(blocks: list[Any], step: int) -> dict[str, np.ndarray]:
    """:func:`param_kinds` of every run of every block at ``step``, concatenated."""
    parts = [param_kinds(r.snapshots[step]) for r in blocks]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def report(spec: FigureSpec, cfg: dict[str, Any], ctx: Context, done: FigureResults
           ) -> FigureOutput:
    """Write the figures and judge the caption's claims."""
    t0, d = begin_figure(spec, cfg, ctx)
    steps, runs = cfg["steps"], cfg["runs"]
    snaps, quote, _ = _schedule(cfg)
    blocks, draw_of = block_results(done, runs, cfg["draws"])
    rows = [r for res in blocks.values() for b in res for r in b.rows]
    labels = method_labels(cfg["methods"])
    csvs = [write_rows(d / "metrics.csv", rows)]
    images = []
    claims: list[Claim] = []
    extra_notes: list[str] = []
    seeds = sorted(draw_of)
    finals = {m: final_values(rows, m) for m in blocks}
    draws = np.array([draw_of[s] for s in seeds])
    final_rows = [{"method": m, "draw": draw_of[s], "seed": s, "test_accuracy": float(v)}
                  for m in blocks for s, v in zip(seeds, finals[m], strict=True)]
    csvs.append(write_rows(d / "final_accuracy.csv", final_rows,
                           ("method", "draw", "seed", "test_accuracy")))

    if spec.key in ("fig6", "fig7"):
        hist = {m: {s: param_kinds(blocks[m][0].snapshots[s], 0) for s in snaps}
                for m in blocks}
        images.append(plot_histograms(d / "histograms.png", hist, note=_note(labels),
                                      title=f"{spec.title.split(':')[0]}: run 0 (seed 0) of each "
                                            "method, distributions by step").name)
        for ps, qs in quote.items():
            paper = cfg["paper"].get(str(ps), {})
            at = f"step {ps:,}" + (f" (ours: step {qs:,})" if qs != ps else "")
            for m in blocks:
                if m in paper:
                    j = verdict_single_run(paper[m], final_values(rows, m, step=qs))
                    claims.append(j.claim(f"{m}: test accuracy at {at}, one run",
                                          f"{paper[m]:.2f}"))
        paper_final = cfg["paper"].get("10000", {})
    else:
        pooled = {m: {s: _pooled(blocks[m], s) for s in snaps} for m in blocks}
        images.append(plot_histograms(d / "histograms.png", pooled, note=_note(labels),
                                      title=f"Fig. 8: parameters pooled over {runs} runs, at the "
                                            f"start and after {steps:,} steps").name)
        paper_final = cfg["paper"]
        for m in blocks:
            if m not in paper_final:
                continue
            j = verdict_mean_blocks(paper_final[m], finals[m], draws)
            if m == "sgld" and "sgld_per_step" in finals:
                alt = block_mean_se(finals["sgld_per_step"], draws)
                j = j._replace(ours=f"{j.ours}; σ-per-step reading (heatbath σ = "
                                    f"{cfg['methods']['sgld_per_step']['hparams']['sigma']:.3g}"
                                    f"): {pct(alt[0])} ± {100 * alt[1]:.1f}")
            claims.append(j.claim(f"{m}: mean test accuracy after {steps:,} steps over {runs} "
                                  "runs", pct(paper_final[m])))
        extra_notes.extend(ordering_notes(finals))
        extra_notes.extend(draw_notes(finals, draws))
        extra_notes.extend(offset_notes(finals, paper_final))
    images.append(plot_final_accuracy(d / "final_accuracy.png", finals, paper_final,
                                      labels={m: m.replace("_", "\n") for m in finals},
                                      title=f"{spec.key}: test accuracy after {steps:,} steps, "
                                            f"{runs} runs per method (◇ = paper)").name)
    images.append(plot_curves(d / "curves.png", rows, labels=labels,
                              title=f"{spec.key}: mean ± sd over {runs} runs").name)
    return finish_figure(spec, cfg, t0, images, csvs, claims,
                         extra_notes + train_notes({f"{m}/draw{k}": b
                                                    for m, res in blocks.items()
                                                    for k, b in enumerate(res)}))


def ordering_notes(finals: Mapping[str, np.ndarray]) -> list[str]:
    """AdLaLa (γ = 0.5) against SGD, Adam and SGLD on the paired runs, with a one-sided sign
    test: the ordering the caption's means imply (a note, not a second claim)."""
    if "adlala" not in finals:
        return []
    out = []
    for other in ("sgd", "adam", "sgld"):
        if other in finals:
            j = verdict_beats(finals["adlala"], finals[other], names=("AdLaLa", other))
            out.append(f"Ordering read off the caption's means (not a separate claim): AdLaLa "
                       f"(γ = 0.5) vs {other}: {j.ours} ({j.label} at the 5 % level).")
    return out


def draw_notes(finals: Mapping[str, np.ndarray], draws: np.ndarray) -> list[str]:
    """The range of the per-draw means of each method, and the plain SE next to the SE over
    draws (how much the data draw adds)."""
    if np.unique(draws).size < 2:
        return []
    parts = []
    for m, v in finals.items():
        per = [float(np.nanmean(v[draws == k])) for k in np.unique(draws)]
        _, se, _ = block_mean_se(v, draws)
        plain = float(np.nanstd(v, ddof=1) / math.sqrt(np.isfinite(v).sum()))
        parts.append(f"{m} {100 * min(per):.1f}–{100 * max(per):.1f} % (SE over draws "
                     f"{100 * se:.1f} pp, plain SE over runs {100 * plain:.1f} pp)")
    return ["Per-draw means across the data draws: " + "; ".join(parts) + "."]


def offset_notes(finals: Mapping[str, np.ndarray], paper: Mapping[str, float]) -> list[str]:
    """Rankings of ours and the paper's, and the offset of our means from the paper's."""
    means = {m: float(np.nanmean(v)) for m, v in finals.items() if m in paper}
    if not means:
        return []
    ours = " > ".join(sorted(means, key=lambda m: -means[m]))
    theirs = " > ".join(sorted(means, key=lambda m: -paper[m]))
    off = ", ".join(f"{m} {100 * (means[m] - paper[m]):+.1f} pp" for m in means)
    return [f"Ranking by mean test accuracy: ours {ours}; paper {theirs}. Our means minus the "
            f"paper's: {off}. The settings the captions leave open (listed above) are ours; "
            "the paper's are not known."]

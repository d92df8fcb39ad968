"""Figure-specific plots of the reproductions (the generic ones come from heatbath.output.plots).

- :func:`plot_final_accuracy` - every run's final test accuracy per method (strip + box), with
  the paper's reported number as a marker (Figs. 4, 6-8, 14 summaries).
- :func:`plot_lines` - y against x, several labelled lines (Fig. 3 interpolation, Fig. 14
  mean and variance, Fig. 16 accuracy against τ).
- :func:`plot_grouped_bars` - grouped bars with a horizontal reference line (Fig. 10).
- :func:`decision_panel` - a :class:`heatbath.output.plots.MapPanel` from a trained ensemble.
- :func:`curves_jobs`, :func:`curves_figure` - the jobs and the report of a figure of
  loss/accuracy curves whose caption states no number (Figs. 11-13).

The heat map (Fig. 15) is :func:`heatbath.engine.sweep.plot_heatmap`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from heatbath.engine import TrainResult
from heatbath.engine.jobs import Job
from heatbath.output.plots import MapPanel, grid, method_color, plot_curves, plt, save_figure

from .common import (
    Context,
    FigureOutput,
    FigureResults,
    FigureSpec,
    all_rows,
    begin_figure,
    final_numbers_claim,
    finish_figure,
    method_labels,
    setting_jobs,
    train_notes,
    write_rows,
)

__all__ = [
    "curves_figure",
    "curves_jobs",
    "decision_panel",
    "plot_final_accuracy",
    "plot_grouped_bars",
    "plot_lines",
]


def _finish(fig: Figure, path: str | os.PathLike[str], note: str, *, suptitle: str = "",
            bottom: float = 0.05) -> Path:
    """Lay out and save ``fig``: ``suptitle`` on top, ``note`` in a strip of height ``bottom``
    (figure fraction) at the bottom left; each leaves its room only when given."""
    if suptitle:
        fig.suptitle(suptitle, fontsize=12)
    fig.tight_layout(rect=(0, bottom if note else 0, 1, 0.95 if suptitle else 1))
    if note:
        fig.text(0.01, 0.01, note, fontsize=8, color="0.3")
    return save_figure(fig, path)


def decision_panel(res: TrainResult, X: np.ndarray, label: str, subtitle: str = "", *,
                   run: int = 0, steps: Sequence[int] | None = None, n: int = 160) -> MapPanel:
    """P(class 1) of run ``run`` on a mesh over ``X``; averaged over snapshot ``steps`` if given.

    Averaging the probability maps of the last few steps is what the paper's Fig. 9 does
    ("averaged over the last 10 steps").
    """
    xx, yy = grid(X, n=n)
    pts = torch.from_numpy(np.stack([xx.ravel(), yy.ravel()], 1)).to(torch.float32)
    if steps:
        prob = torch.stack([res.predict_proba(pts, step=s)[run, :, 1] for s in steps]).mean(0)
    else:
        prob = res.predict_proba(pts)[run, :, 1]
    return MapPanel(label, xx, yy, prob.reshape(xx.shape).numpy(), subtitle)


def plot_final_accuracy(
    path: str | os.PathLike[str],
    values: Mapping[str, np.ndarray],
    paper: Mapping[str, float] | None = None,
    *,
    title: str = "",
    note: str = "",
    ylabel: str = "final test accuracy (%)",
    labels: Mapping[str, str] | None = None,
) -> Path:
    """One column per method: each run a dot, a box of the quartiles, our mean as a bar,
    the paper's number as a black diamond."""
    methods = list(values)
    labels = labels or {}
    paper = paper or {}
    fig, ax = plt.subplots(figsize=(max(5.5, 1.45 * len(methods) + 2.0), 4.6))
    rng = np.random.default_rng(0)
    for i, m in enumerate(methods):
        v = 100 * np.asarray(values[m], dtype=np.float64)
        v = v[np.isfinite(v)]
        color = method_color(m, methods)
        if v.size > 3:
            ax.boxplot([v], positions=[i], widths=0.5, showfliers=False, patch_artist=True,
                       boxprops={"facecolor": color, "alpha": 0.25, "edgecolor": color},
                       medianprops={"color": color}, whiskerprops={"color": color},
                       capprops={"color": color})
        ax.scatter(i + rng.uniform(-0.17, 0.17, v.size), v, s=10, color=color, alpha=0.7,
                   zorder=3, lw=0)
        if v.size:
            ax.hlines(v.mean(), i - 0.3, i + 0.3, color="k", lw=2.0, zorder=4)
            ax.annotate(f"{v.mean():.1f}", (i + 0.32, v.mean()), fontsize=8, va="center")
        if m in paper:
            ax.scatter([i], [100 * paper[m]], marker="D", s=55, color="k", zorder=5,
                       facecolors="none", linewidths=1.6)
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels([labels.get(m, m) for m in methods], fontsize=9)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="k", lw=2, label="our mean"),
               Line2D([], [], marker="o", color="0.4", lw=0, label="one run (ours)")]
    if paper:
        handles.append(Line2D([], [], marker="D", color="k", lw=0, markerfacecolor="none",
                              label="paper"))
    ax.legend(handles=handles, fontsize=8, loc="lower right")
    if title:
        ax.set_title(title, fontsize=11)
    return _finish(fig, path, note)


def plot_lines(
    path: str | os.PathLike[str],
    panels: Sequence[Mapping[str, object]],
    *,
    title: str = "",
    note: str = "",
    width: float = 5.2,
    height: float = 4.0,
) -> Path:
    """Side-by-side panels. Each panel: ``{"title", "xlabel", "ylabel", "lines": [{"x", "y",
    "label", "color"?, "style"?, "band"? (lo, hi)}], "logx"?, "logy"?, "vlines"?: [(x, text)]}``.
    """
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), height),
                             squeeze=False)
    for ax, p in zip(axes[0], panels, strict=True):
        names = [str(ln["label"]) for ln in p["lines"]]  # type: ignore[index, union-attr]
        for ln in p["lines"]:  # type: ignore[union-attr]
            color = ln.get("color") or method_color(str(ln["label"]), names)
            ax.plot(ln["x"], ln["y"], ln.get("style", "-"), color=color, lw=1.6,
                    label=ln["label"], marker=ln.get("marker"))
            if ln.get("band") is not None:
                lo, hi = ln["band"]
                ax.fill_between(ln["x"], lo, hi, color=color, alpha=0.18, lw=0)
        for x, text in p.get("vlines", []):  # type: ignore[union-attr]
            ax.axvline(x, color="0.5", ls=":", lw=1)
            ax.annotate(text, (x, 1.0), xycoords=("data", "axes fraction"), fontsize=8,
                        ha="center", va="bottom")
        if p.get("logx"):
            ax.set_xscale("log")
        if p.get("logy"):
            ax.set_yscale("log")
        ax.set_xlabel(str(p.get("xlabel", "")))
        ax.set_ylabel(str(p.get("ylabel", "")))
        ax.set_title(str(p.get("title", "")), fontsize=10, pad=14 if p.get("vlines") else 6)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return _finish(fig, path, note, suptitle=title)


def plot_grouped_bars(
    path: str | os.PathLike[str],
    panels: Sequence[Mapping[str, object]],
    *,
    title: str = "",
    note: str = "",
) -> Path:
    """Panels of grouped bars. Each: ``{"title", "groups": [x labels], "xlabel",
    "series": [{"label", "mean": [...], "err": [...], "color"}], "ref": (value, label)}``."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.4), squeeze=False)
    for ax, p in zip(axes[0], panels, strict=True):
        groups = list(p["groups"])  # type: ignore[call-overload]
        series = list(p["series"])  # type: ignore[call-overload]
        k = len(series)
        w = 0.8 / max(k, 1)
        for i, s in enumerate(series):
            x = np.arange(len(groups)) - 0.4 + w * (i + 0.5)
            ax.bar(x, s["mean"], w, yerr=s.get("err"), color=s.get("color"), label=s["label"],
                   capsize=2, error_kw={"lw": 0.8})
        if p.get("ref") is not None:
            val, lab = p["ref"]  # type: ignore[misc]
            ax.axhline(val, color="k", ls=":", lw=1.6, label=lab)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels(groups)
        ax.set_xlabel(str(p.get("xlabel", "")))
        ax.set_ylabel("mean final test accuracy (%)")
        lo = min(min(np.asarray(s["mean"], dtype=float)) for s in series)
        ax.set_ylim(max(0.0, lo - 10), 100)
        ax.set_title(str(p.get("title", "")), fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", ncol=3)
    return _finish(fig, path, note, suptitle=title)


def curves_jobs(spec: FigureSpec, cfg: dict[str, Any], ctx: Context) -> list[Job]:
    """The jobs of a curves figure: ``cfg["methods"]`` as ensembles, 100 evaluations each."""
    return setting_jobs(ctx, spec, cfg, steps=cfg["steps"], runs=cfg["runs"],
                        eval_every=max(1, cfg["steps"] // 100))


def curves_figure(spec: FigureSpec, cfg: dict[str, Any], ctx: Context, done: FigureResults,
                  what: str) -> FigureOutput:
    """Curves of mean ± sd (``curves.png``, titled ``"{what}, mean ± sd over {runs} runs"``);
    every method's final numbers in one claim with the verdict "not tested" (the caption shows
    curves only)."""
    t0, d = begin_figure(spec, cfg, ctx)
    steps, runs = cfg["steps"], cfg["runs"]
    res = done.methods()
    rows = all_rows(res)
    images = [plot_curves(d / "curves.png", rows, labels=method_labels(cfg["methods"]),
                          title=f"{what}, mean ± sd over {runs} runs").name]
    csvs = [write_rows(d / "metrics.csv", rows)]
    claims = [final_numbers_claim(rows, res, steps, runs)]
    return finish_figure(spec, cfg, t0, images, csvs, claims, train_notes(res))

"""The figures a run writes: decision-boundary maps, learning curves, parameter histograms.

All functions draw with matplotlib's non-interactive Agg backend (no display needed), take plain
numpy data (so they do not depend on how it was produced), and save the PNG atomically through
:mod:`heatbath.output.io`. Each method keeps one colour across all figures of a run.

* :func:`plot_decision_maps` - the paper's Fig. 1/9 style: the classifier's probability of class 1
  as a filled map over the plane, its 0.5 level as a line, the data on top; one panel per method.
* :func:`plot_curves` - accuracy and loss against step, mean ± one sample standard deviation over
  seeds as a band, test solid and train dashed (Fig. 11/12/14).
* :func:`plot_histograms` - weight and bias distributions over time (Fig. 6-8): one row per
  method, one column per parameter kind, each panel a ridge of histograms, one per snapshot step.
"""

from __future__ import annotations

import io
import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from heatbath.output.io import write_bytes  # noqa: E402

__all__ = [
    "DPI",
    "MapPanel",
    "method_color",
    "grid",
    "save_figure",
    "plot_decision_maps",
    "plot_curves",
    "plot_histograms",
]

DPI = 110

# Fixed colours for the methods heatbath knows, so a method looks the same in every figure
# (close to the paper's Fig. 14: SGD red, Adam blue, LOL yellow, AdLaLa purple).
_METHOD_COLORS: dict[str, str] = {
    "sgd": "#d62728",
    "adam": "#1f77b4",
    "sgld": "#2ca02c",
    "langevin": "#8c564b",
    "adl": "#e377c2",
    "adlala": "#7b3fa0",
    "lol": "#e6a800",
}
_SPARE_COLORS = ["#17becf", "#7f7f7f", "#bcbd22", "#ff7f0e", "#393b79", "#637939"]

# Blue (class 0) -> white (undecided) -> red (class 1); the data points use the same two hues.
_PROB_CMAP = LinearSegmentedColormap.from_list(
    "heatbath_prob", ["#2b5fa8", "#9cc3e6", "#f7f7f7", "#f2a48f", "#b2182b"])
_CLASS_COLORS = ("#1d4f91", "#a50f15")


def method_color(method: str, order: Sequence[str] = ()) -> str:
    """The colour of ``method``: a fixed one for known optimizers, else by position in ``order``.

    A name such as ``"adlala_g10"`` or ``"adam (gaussian init)"`` gets the colour of its known
    prefix, unless another entry of ``order`` already has that exact known name.
    """
    key = method.lower()
    if key in _METHOD_COLORS:
        return _METHOD_COLORS[key]
    base = key.replace("-", "_").replace(" ", "_").split("_")[0]
    lowered = [m.lower() for m in order]
    if base in _METHOD_COLORS and base not in lowered:
        return _METHOD_COLORS[base]
    unknown = [m for m in lowered if m not in _METHOD_COLORS]
    i = unknown.index(key) if key in unknown else len(unknown)
    return _SPARE_COLORS[i % len(_SPARE_COLORS)]


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Render ``fig`` to PNG in memory, write it atomically to ``path`` and close the figure."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return write_bytes(path, buf.getvalue())


def grid(x: np.ndarray, n: int = 200, margin: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """A square ``n × n`` mesh covering the 2-D points ``x`` with a relative ``margin``.

    Returns ``(xx, yy)`` of shape ``(n, n)``; evaluate the classifier on
    ``np.stack([xx.ravel(), yy.ravel()], 1)`` and reshape to ``(n, n)``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape (N, 2) for a decision map; got {x.shape}")
    lo, hi = x.min(axis=0), x.max(axis=0)
    centre, half = (lo + hi) / 2, float((hi - lo).max()) / 2 * (1 + margin)
    half = half if half > 0 else 1.0
    g0 = np.linspace(centre[0] - half, centre[0] + half, n)
    g1 = np.linspace(centre[1] - half, centre[1] + half, n)
    xx, yy = np.meshgrid(g0, g1)
    return xx, yy


@dataclass(frozen=True)
class MapPanel:
    """One panel of a decision map: the probability of class 1 on the mesh ``(xx, yy)``."""

    label: str
    xx: np.ndarray
    yy: np.ndarray
    prob: np.ndarray
    subtitle: str = ""


def plot_decision_maps(
    path: str | os.PathLike[str],
    panels: Sequence[MapPanel],
    x: np.ndarray,
    y: np.ndarray,
    *,
    title: str = "",
    note: str = "",
    max_cols: int = 3,
) -> Path:
    """Filled probability maps with the 0.5 level line and the points ``(x, y)``, one per panel.

    ``y`` holds the class labels 0/1. ``note`` is printed small under the panels (e.g. how
    the maps were averaged).
    """
    if not panels:
        raise ValueError("panels must not be empty")
    x = np.asarray(x)
    y = np.asarray(y).reshape(-1)
    # Fixed layout in inches (square panels, room for three title lines above each, a colour
    # bar on the right), so titles never collide whatever the number of panels.
    n = len(panels)
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    side, gap_x, gap_y, title_h = 3.7, 0.3, 0.15, 0.75
    left, cbar_w = 0.2, 1.15
    top = 0.55 if title else 0.1
    bottom = 0.4 if note else 0.15
    fig_w = left + cols * side + (cols - 1) * gap_x + cbar_w
    fig_h = top + rows * (title_h + side) + (rows - 1) * gap_y + bottom
    fig = plt.figure(figsize=(fig_w, fig_h))
    axes = []
    for i in range(n):
        r, col = divmod(i, cols)
        x0 = left + col * (side + gap_x)
        y0 = fig_h - top - (r + 1) * (title_h + side) - r * gap_y
        axes.append(fig.add_axes((x0 / fig_w, y0 / fig_h, side / fig_w, side / fig_h)))
    levels = np.linspace(0.0, 1.0, 21)
    mappable = None
    for ax, panel in zip(axes, panels, strict=True):
        prob = np.clip(np.asarray(panel.prob, dtype=np.float64), 0.0, 1.0)
        mappable = ax.contourf(panel.xx, panel.yy, prob, levels=levels, cmap=_PROB_CMAP,
                               vmin=0.0, vmax=1.0)
        if prob.min() < 0.5 < prob.max():
            ax.contour(panel.xx, panel.yy, prob, levels=[0.5], colors="k", linewidths=1.0)
        for cls in (0, 1):
            sel = y == cls
            ax.scatter(x[sel, 0], x[sel, 1], s=9, c=_CLASS_COLORS[cls], edgecolors="white",
                       linewidths=0.4, label=f"class {cls}", zorder=3)
        ax.set_xlim(panel.xx.min(), panel.xx.max())
        ax.set_ylim(panel.yy.min(), panel.yy.max())
        ax.set_xticks([])
        ax.set_yticks([])
        head = panel.label if not panel.subtitle else f"{panel.label}\n{panel.subtitle}"
        ax.set_title(head, fontsize=10)
    axes[0].legend(loc="lower left", fontsize=8, framealpha=0.85, markerscale=1.5)
    if title:
        fig.suptitle(title, fontsize=12, y=1 - 0.12 / fig_h, va="top")
    grid_w = left + cols * side + (cols - 1) * gap_x
    span = min(fig_h - top - bottom, 4.0)
    cy = bottom + (fig_h - top - bottom - span) / 2
    cax = fig.add_axes(((grid_w + 0.3) / fig_w, cy / fig_h, 0.18 / fig_w, span / fig_h))
    cb = fig.colorbar(mappable, cax=cax, ticks=[0, 0.25, 0.5, 0.75, 1])
    cb.set_label("P(class 1)")
    if note:
        fig.text(0.1 / fig_w, 0.1 / fig_h, note, fontsize=8, color="0.3", ha="left",
                 va="bottom")
    return save_figure(fig, path)


def _curve_stats(
    rows: Sequence[Mapping[str, object]], method: str, split: str, column: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    per_step: dict[int, list[float]] = {}
    for r in rows:
        if r["method"] == method and r["split"] == split:
            per_step.setdefault(int(r["step"]), []).append(float(r[column]))  # type: ignore[arg-type]
    steps = np.array(sorted(per_step), dtype=np.float64)
    mean = np.full(steps.shape, np.nan)
    sd = np.zeros(steps.shape)
    for i, s in enumerate(sorted(per_step)):
        v = np.asarray(per_step[s], dtype=np.float64)
        v = v[np.isfinite(v)]
        if v.size:
            mean[i] = v.mean()
            sd[i] = v.std(ddof=1) if v.size > 1 else 0.0
    return steps, mean, sd


def _wrap(text: str, width: int = 34) -> str:
    """Wrap a legend entry at commas/spaces so long hyperparameter lists stay in the margin."""
    return "\n".join(textwrap.wrap(text, width, break_long_words=False,
                                   subsequent_indent="   "))


def plot_curves(
    path: str | os.PathLike[str],
    rows: Sequence[Mapping[str, object]],
    *,
    title: str = "",
    note: str = "",
    labels: Mapping[str, str] | None = None,
) -> Path:
    """Accuracy (left, %) and loss (right, log scale) against step from long-format metrics.

    One colour per method; test solid, train dashed; the band is mean ± one sample sd over seeds
    at each evaluated step (drawn for test only, to keep the figure readable; the dashed train
    mean is shown without band). ``labels`` maps a method to its legend text (e.g. with its
    hyperparameters).
    """
    methods: list[str] = []
    for r in rows:
        m = str(r["method"])
        if m not in methods:
            methods.append(m)
    if not methods:
        raise ValueError("rows must not be empty")
    labels = labels or {}
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(14, 5.2))
    nseeds = {m: len({r["seed"] for r in rows if r["method"] == m}) for m in methods}
    for m in methods:
        color = method_color(m, methods)
        for ax, column, scale in ((ax_acc, "accuracy", 100.0), (ax_loss, "loss", 1.0)):
            for split, style in (("test", "-"), ("train", "--")):
                steps, mean, sd = _curve_stats(rows, m, split, column)
                if steps.size == 0:
                    continue
                ax.plot(steps, mean * scale, style, color=color, lw=1.6 if split == "test" else 1.1,
                        alpha=1.0 if split == "test" else 0.8)
                if split == "test" and nseeds[m] > 1:
                    lo, hi = (mean - sd) * scale, (mean + sd) * scale
                    if column == "loss":  # log axis: keep the band's lower edge positive
                        lo = np.maximum(lo, mean * scale * 0.05)
                    else:  # an accuracy band stays within [0, 100] %
                        lo, hi = np.clip(lo, 0.0, 100.0), np.clip(hi, 0.0, 100.0)
                    ax.fill_between(steps, lo, hi, color=color, alpha=0.18, lw=0)
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_title("Accuracy")
    ax_loss.set_ylabel("loss")
    ax_loss.set_yscale("log")
    ax_loss.set_title("Loss")
    for ax in (ax_acc, ax_loss):
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        ax.margins(x=0.01)
    handles = [Line2D([], [], color=method_color(m, methods), lw=2.5,
                      label=_wrap(f"{labels.get(m, m)}  (n={nseeds[m]})")) for m in methods]
    handles += [Line2D([], [], color="0.3", ls="-", label="test (band: ± 1 sd)"),
                Line2D([], [], color="0.3", ls="--", label="train")]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.78, 0.5), fontsize=9,
               frameon=False, labelspacing=0.8)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0, 0.04 if note else 0, 0.775, 0.95 if title else 1.0))
    if note:
        fig.text(0.01, 0.01, note, fontsize=8, color="0.3", ha="left", va="bottom")
    return save_figure(fig, path)


def plot_histograms(
    path: str | os.PathLike[str],
    snapshots: Mapping[str, Mapping[int, Mapping[str, np.ndarray]]],
    *,
    title: str = "",
    note: str = "",
    bins: int | None = None,
    labels: Mapping[str, str] | None = None,
) -> Path:
    """Ridge plots of parameter distributions over time.

    ``snapshots[method][step][kind]`` is a 1-D array of values (e.g. ``kind`` = ``"weights"`` or
    ``"biases"``, pooled over layers and replicas). Rows are methods, columns kinds; in each panel
    the histogram at each snapshot step (``bins`` bins, by default twice Rice's rule, 4·n^(1/3),
    clipped to [20, 80]) is a filled curve (earliest at the bottom, colour from
    light to dark with time), scaled to the same peak height. The x-range of a column is shared
    across methods and covers the central 99.8 % of all its values, so a few outliers do not
    squash the rest.
    """
    methods = list(snapshots)
    if not methods:
        raise ValueError("snapshots must not be empty")
    labels = labels or {}
    kinds: list[str] = []
    for m in methods:
        for per_kind in snapshots[m].values():
            for k in per_kind:
                if k not in kinds:
                    kinds.append(k)
    ranges: dict[tuple[str, str], tuple[float, float]] = {}
    for m in methods:
        for k in kinds:
            vals = [np.asarray(pk[k], dtype=np.float64).ravel()
                    for pk in snapshots[m].values() if k in pk]
            allv = np.concatenate(vals) if vals else np.zeros(1)
            allv = allv[np.isfinite(allv)]
            lo, hi = (np.percentile(allv, [0.1, 99.9]) if allv.size else (-1.0, 1.0))
            pad = 0.05 * (hi - lo) if hi > lo else 1.0
            ranges[m, k] = (float(lo - pad), float(hi + pad))
    nsteps = max(len(snapshots[m]) for m in methods)
    fig, axes = plt.subplots(len(methods), len(kinds), squeeze=False,
                             figsize=(4.6 * len(kinds) + 0.6, 0.45 * nsteps + 1.3 * len(methods)))
    cmap = plt.get_cmap("viridis_r")
    for i, m in enumerate(methods):
        steps = sorted(snapshots[m])
        for j, k in enumerate(kinds):
            ax = axes[i][j]
            lo, hi = ranges[m, k]
            sizes = [np.size(snapshots[m][s][k]) for s in steps if k in snapshots[m][s]]
            nb = bins or int(np.clip(4.0 * max(sizes, default=1) ** (1 / 3), 20, 80))
            edges = np.linspace(lo, hi, nb + 1)
            centres = (edges[:-1] + edges[1:]) / 2
            for n, s in enumerate(steps):
                if k not in snapshots[m][s]:
                    continue
                v = np.asarray(snapshots[m][s][k], dtype=np.float64).ravel()
                counts, _ = np.histogram(v[np.isfinite(v)], bins=edges)
                height = counts / counts.max() * 1.6 if counts.max() > 0 else counts * 0.0
                color = cmap(0.15 + 0.8 * n / max(len(steps) - 1, 1))
                z = len(steps) - n
                ax.fill_between(centres, n, n + height, color=color, alpha=0.75, lw=0, zorder=z)
                ax.plot(centres, n + height, color="k", lw=0.5, zorder=z)
            ax.set_yticks(range(len(steps)))
            ax.set_yticklabels([f"{s:,}" for s in steps], fontsize=8)
            ax.set_xlim(lo, hi)
            ax.set_ylim(-0.2, len(steps) + 1.0)
            ax.grid(True, axis="x", alpha=0.3)
            ax.spines[["top", "right"]].set_visible(False)
            if j == 0:
                ax.set_ylabel(f"{labels.get(m, m)}\nstep", fontsize=9,
                              color=method_color(m, methods))
            if i == 0:
                ax.set_title(k, fontsize=11)
            if i == len(methods) - 1:
                ax.set_xlabel("value")
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0, 0.03 if note else 0, 1, 0.97 if title else 1.0))
    if note:
        fig.text(0.01, 0.005, note, fontsize=8, color="0.3", ha="left", va="bottom")
    return save_figure(fig, path)

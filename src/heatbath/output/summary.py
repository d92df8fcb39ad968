"""Per-method summaries of a run's long-format metrics.

A metrics row is a mapping with the keys ``method, seed, step, split, loss, accuracy`` (``split``
is ``"train"`` or ``"test"``). The *final* value of a run (one method, one seed) is the value at
the last step recorded for that run and split; a run stopped early on a non-finite loss therefore
contributes its last values, and is counted in ``stopped``.

For each method and each of the four final quantities (test/train accuracy, test/train loss)
the summary gives the mean, the sample standard deviation (``ddof = 1``; ``nan`` for one run),
the minimum and the maximum over seeds. Non-finite values (a diverged loss) are left out of these
statistics and counted in ``stopped``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from heatbath.output.io import write_csv, write_text

__all__ = [
    "METRIC_COLUMNS",
    "QUANTITIES",
    "Stat",
    "MethodSummary",
    "final_values",
    "summarize",
    "summary_rows",
    "summary_markdown",
    "write_summary",
]

METRIC_COLUMNS: tuple[str, ...] = ("method", "seed", "step", "split", "loss", "accuracy")
# (name used in files, split, column of the metrics row)
QUANTITIES: tuple[tuple[str, str, str], ...] = (
    ("test_accuracy", "test", "accuracy"),
    ("train_accuracy", "train", "accuracy"),
    ("test_loss", "test", "loss"),
    ("train_loss", "train", "loss"),
)


@dataclass(frozen=True)
class Stat:
    """Mean, sample standard deviation, minimum and maximum of a set of finite values."""

    n: int
    mean: float
    sd: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        x = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
        if x.size == 0:
            nan = float("nan")
            return cls(0, nan, nan, nan, nan)
        sd = float(np.std(x, ddof=1)) if x.size > 1 else float("nan")
        return cls(int(x.size), float(np.mean(x)), sd, float(np.min(x)), float(np.max(x)))


@dataclass(frozen=True)
class MethodSummary:
    """Final-value statistics of one method over its seeds."""

    method: str
    runs: int
    final_step: int
    stopped: int
    stats: dict[str, Stat] = field(default_factory=dict)


def final_values(
    rows: Iterable[Mapping[str, object]],
) -> dict[str, dict[object, dict[str, tuple[int, float]]]]:
    """``{method: {seed: {quantity: (step, value)}}}`` at each run's last recorded step."""
    out: dict[str, dict[object, dict[str, tuple[int, float]]]] = {}
    for row in rows:
        method = str(row["method"])
        seed = row["seed"]
        step = int(row["step"])  # type: ignore[call-overload]
        split = str(row["split"])
        per_run = out.setdefault(method, {}).setdefault(seed, {})
        for name, q_split, column in QUANTITIES:
            if split != q_split:
                continue
            value = float(row[column])  # type: ignore[arg-type]
            if name not in per_run or step >= per_run[name][0]:
                per_run[name] = (step, value)
    return out


def summarize(rows: Iterable[Mapping[str, object]], steps: int | None = None
              ) -> list[MethodSummary]:
    """One :class:`MethodSummary` per method, in order of first appearance in ``rows``.

    A run counts as ``stopped`` (ended early) if its last row is before ``steps``, the planned
    length of the runs, or one of its final values is not finite. Without ``steps`` the planned
    length is taken to be the method's last recorded step, which undercounts when every run
    of a method stopped early: pass ``steps`` when it is known.
    """
    finals = final_values(rows)
    summaries = []
    for method, runs in finals.items():
        run_steps = [max(s for s, _ in q.values()) for q in runs.values() if q]
        last = max(run_steps) if run_steps else 0
        planned = last if steps is None else steps
        stopped = 0
        for q in runs.values():
            run_last = max((s for s, _ in q.values()), default=0)
            if run_last < planned or any(not math.isfinite(v) for _, v in q.values()):
                stopped += 1
        stats = {
            name: Stat.of([q[name][1] for q in runs.values() if name in q])
            for name, _, _ in QUANTITIES
        }
        summaries.append(MethodSummary(method, len(runs), last, stopped, stats))
    return summaries


SUMMARY_COLUMNS: tuple[str, ...] = ("method", "runs", "final_step", "stopped") + tuple(
    f"{name}_{s}" for name, _, _ in QUANTITIES for s in ("mean", "sd", "min", "max")
)


def summary_rows(summaries: Sequence[MethodSummary]) -> list[dict[str, object]]:
    """Flat dict rows with the columns :data:`SUMMARY_COLUMNS` (for ``summary.csv``)."""
    rows = []
    for s in summaries:
        row: dict[str, object] = {"method": s.method, "runs": s.runs,
                                  "final_step": s.final_step, "stopped": s.stopped}
        for name, _, _ in QUANTITIES:
            st = s.stats[name]
            row.update({f"{name}_mean": st.mean, f"{name}_sd": st.sd,
                        f"{name}_min": st.min, f"{name}_max": st.max})
        rows.append(row)
    return rows


def _fmt(st: Stat, scale: float, digits: int) -> str:
    if st.n == 0:
        return "–"
    sd = "–" if math.isnan(st.sd) else f"{st.sd * scale:.{digits}f}"
    return (f"{st.mean * scale:.{digits}f} ± {sd} "
            f"[{st.min * scale:.{digits}f}, {st.max * scale:.{digits}f}]")


def summary_markdown(summaries: Sequence[MethodSummary], title: str | None = None,
                     notes: Sequence[str] = ()) -> str:
    """A Markdown table: accuracies in %, losses to 4 decimals, as ``mean ± sd [min, max]``.

    ``notes`` are appended as a bullet list (e.g. hyperparameters, wall time, divergences).
    """
    head = ("| method | runs | test acc % | train acc % | test loss | train loss |\n"
            "|---|---:|---|---|---|---|\n")
    body = ""
    for s in summaries:
        runs = f"{s.runs}" + (f" ({s.stopped} stopped)" if s.stopped else "")
        body += (f"| {s.method} | {runs} | {_fmt(s.stats['test_accuracy'], 100, 1)} | "
                 f"{_fmt(s.stats['train_accuracy'], 100, 1)} | "
                 f"{_fmt(s.stats['test_loss'], 1, 4)} | {_fmt(s.stats['train_loss'], 1, 4)} |\n")
    steps = sorted({s.final_step for s in summaries})
    note = (f"\nFinal values at step {', '.join(map(str, steps))}: mean ± sample sd "
            f"[min, max] over seeds.\n")
    top = f"# {title}\n\n" if title else ""
    extra = "".join(f"- {n}\n" for n in notes)
    return top + head + body + note + ("\n" + extra if extra else "")


def write_summary(
    out_dir: str | os.PathLike[str],
    rows: Iterable[Mapping[str, object]],
    title: str | None = None,
    notes: Sequence[str] = (),
    steps: int | None = None,
) -> tuple[list[MethodSummary], Path, Path]:
    """Write ``summary.md`` and ``summary.csv`` into ``out_dir``; return the summaries and paths.

    ``steps`` is the planned length of the runs (see :func:`summarize`).
    """
    summaries = summarize(rows, steps)
    out = Path(out_dir)
    md = write_text(out / "summary.md", summary_markdown(summaries, title, notes))
    csv_path = write_csv(out / "summary.csv", summary_rows(summaries), SUMMARY_COLUMNS)
    return summaries, md, csv_path

"""Run figures by key and keep the report up to date.

Each figure's module exposes ``run(spec, cfg, ctx) -> FigureOutput``; :data:`FIGURES` maps the
key (``"fig8"``) to ``(module, spec name)``, imported only when the figure runs. After each
figure its :class:`FigureOutput` is stored as ``figN/result.json`` and ``REPORT.md`` is rewritten
from every ``result.json`` under the output folder, so running one figure updates its section
and keeps the others.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import multiprocessing as mp
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from heatbath.output.io import write_json

from .claims_report import write_report
from .common import Claim, Context, FigureOutput, FigureSpec

__all__ = ["FIGURES", "figure_spec", "parse_keys", "run_figure", "run_figures", "load_outputs"]

#: figure key -> (module in heatbath.papers.integrators, name of its FigureSpec)
FIGURES: dict[str, tuple[str, str]] = {
    "fig1": ("fig01", "FIG1"),
    "fig3": ("fig03", "FIG3"),
    "fig4": ("fig04", "FIG4"),
    "fig5": ("fig05", "FIG5"),
    "fig6": ("fig06_08", "FIG6"),
    "fig7": ("fig06_08", "FIG7"),
    "fig8": ("fig06_08", "FIG8"),
    "fig9": ("fig09", "FIG9"),
    "fig10": ("fig10", "FIG10"),
    "fig11": ("fig11_12", "FIG11"),
    "fig12": ("fig11_12", "FIG12"),
    "fig13": ("fig13", "FIG13"),
    "fig14": ("fig14", "FIG14"),
    "fig15": ("fig15", "FIG15"),
    "fig16": ("fig16", "FIG16"),
}


def parse_keys(names: Sequence[str]) -> list[str]:
    """``["all"]`` → every figure; ``"fig8"``, ``"8"``, ``"fig6-8"`` → keys; else ValueError."""
    keys: list[str] = []
    for raw in names:
        name = raw.lower().strip()
        if name == "all":
            keys.extend(FIGURES)
            continue
        body = name[3:] if name.startswith("fig") else name
        lo, _, hi = body.partition("-")
        try:
            nums = list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
        except ValueError:
            nums = []
        found = [f"fig{n}" for n in nums if f"fig{n}" in FIGURES]
        if not found or len(found) != len(nums) and not hi:
            raise ValueError(f"figure must be one of {', '.join(FIGURES)} or 'all' "
                             f"(Fig. 2 shows data only), got {raw!r}")
        keys.extend(found)
    return list(dict.fromkeys(keys))


def figure_spec(key: str) -> tuple[FigureSpec, Any]:
    """The figure's spec and its module."""
    mod_name, spec_name = FIGURES[key]
    mod = importlib.import_module(f"heatbath.papers.integrators.{mod_name}")
    return getattr(mod, spec_name), mod


def run_figure(key: str, ctx: Context) -> FigureOutput:
    """Run one figure, store ``result.json`` and rewrite ``REPORT.md``."""
    spec, mod = figure_spec(key)
    cfg = spec.resolve(ctx.quick, ctx.steps, ctx.runs)
    ctx.say(f"{key}: {spec.title}")
    t0, c0 = time.perf_counter(), time.process_time()
    out = mod.run(spec, cfg, ctx)
    out.wall_s = time.perf_counter() - t0
    out.cpu_s = time.process_time() - c0
    ctx.say(f"{key}: done in {out.wall_s:.1f} s (CPU {out.cpu_s:.1f} s)")
    write_json(ctx.fig_dir(key) / "result.json",
               {**dataclasses.asdict(out), "quick": ctx.quick,
                "caps": {"steps": ctx.steps, "runs": ctx.runs}})
    write_report(ctx.out, load_outputs(ctx.out))
    return out


#: measured full-run seconds per figure on 2 cores (one thread each): the pool starts the
#: longest first so that two workers finish close together
COST_HINT_S: dict[str, float] = {
    "fig1": 330, "fig3": 120, "fig4": 90, "fig5": 160, "fig6": 130, "fig7": 130, "fig8": 190,
    "fig9": 220, "fig10": 330, "fig11": 100, "fig12": 160, "fig13": 110, "fig14": 260,
    "fig15": 260, "fig16": 380,
}


def _worker(key: str, ctx: Context) -> FigureOutput:
    torch.set_num_threads(ctx.threads)
    return run_figure(key, ctx)


def run_figures(keys: Sequence[str], ctx: Context, jobs: int = 1) -> list[FigureOutput]:
    """Run figures (``jobs`` > 1: that many worker processes, longest first); outputs in
    the order of ``keys``. ``REPORT.md`` is rewritten after each figure and at the end."""
    if jobs <= 1 or len(keys) <= 1:
        return [run_figure(k, ctx) for k in keys]
    order = sorted(keys, key=lambda k: -COST_HINT_S.get(k, 0.0))
    outputs: dict[str, FigureOutput] = {}
    failed: dict[str, BaseException] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {k: pool.submit(_worker, k, ctx) for k in order}
        for k, f in futures.items():
            try:
                outputs[k] = f.result()
            except Exception as exc:  # keep the other figures; report the failure at the end
                failed[k] = exc
                ctx.say(f"{k}: FAILED: {type(exc).__name__}: {exc}")
    write_report(ctx.out, load_outputs(ctx.out))
    if failed:
        first = next(iter(failed.values()))
        raise RuntimeError(f"figure(s) {', '.join(failed)} failed; the others are in the "
                           f"report") from first
    return [outputs[k] for k in keys]


def load_outputs(out: Path) -> list[tuple[FigureOutput, dict[str, Any]]]:
    """Every stored figure result under ``out`` in figure order, with its run metadata."""
    found = []
    for key in FIGURES:
        p = out / key / "result.json"
        if not p.exists():
            continue
        raw = json.loads(p.read_text(encoding="utf-8"))
        meta = {"quick": raw.pop("quick", False), "caps": raw.pop("caps", {})}
        raw["claims"] = [Claim(**c) for c in raw["claims"]]
        found.append((FigureOutput(**raw), meta))
    return found

"""Run figures by key as jobs on an executor, and keep the report up to date.

Each figure's module exposes ``jobs(spec, cfg, ctx) -> list[Job]`` and
``report(spec, cfg, ctx, results) -> FigureOutput``; :data:`FIGURES` maps the key (``"fig8"``)
to ``(module, spec name)``, imported only when the figure runs. :func:`run_figures` lists the
jobs of every figure asked for, runs them all on one executor (the largest first; local
processes or a Ray cluster, see :mod:`heatbath.engine.executors`), and writes each figure as
soon as its jobs have finished: its files, ``figN/result.json``, and ``REPORT.md`` rebuilt from
every ``result.json`` under the output folder (so running one figure updates its section and
keeps the others). A figure whose jobs did not all finish is left out of the report, which
names the missing jobs (``figN/missing.json``) until a later run completes them. In a shortened
run (``--quick``, step or run caps) every judged claim becomes "not tested (shortened run)"
(:func:`heatbath.output.claims.shorten`): the paper's numbers are for its full settings.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from heatbath.engine.executors import ConsoleProgress, Executor, LocalExecutor
from heatbath.engine.jobs import Job, JobResult
from heatbath.output.claims import Claim, shorten
from heatbath.output.io import write_json

from .claims_report import write_report
from .common import Context, FigureOutput, FigureResults, FigureSpec

__all__ = ["FIGURES", "figure_spec", "parse_keys", "run_figure", "run_figures", "load_outputs",
           "load_missing"]

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


def run_figure(key: str, ctx: Context, executor: Executor | None = None) -> FigureOutput:
    """Run one figure (see :func:`run_figures`)."""
    return run_figures([key], ctx, executor)[0]


def run_figures(keys: Sequence[str], ctx: Context, executor: Executor | None = None, *,
                resume: bool = False) -> list[FigureOutput]:
    """Run figures: every figure's jobs on ``executor`` (default: one at a time in this
    process), each figure written as soon as its jobs are done; outputs in the order of
    ``keys``. With ``resume``, jobs finished by an earlier run of the same settings are
    reused. Raises ``RuntimeError`` at the end if a job or a figure failed (the report then
    covers the others and names the missing jobs)."""
    executor = executor or LocalExecutor(1, threads=ctx.threads)
    plans: dict[str, tuple[FigureSpec, Any, dict[str, Any], list[Job]]] = {}
    for key in keys:
        spec, mod = figure_spec(key)
        cfg = spec.resolve(ctx.quick, ctx.steps, ctx.runs)
        plans[key] = (spec, mod, cfg, mod.jobs(spec, cfg, ctx))
        (ctx.out / key / "result.json").unlink(missing_ok=True)
        (ctx.out / key / "missing.json").unlink(missing_ok=True)
    all_jobs = [j for *_, jobs in plans.values() for j in jobs]
    owner = {j.name: key for key, (*_, jobs) in plans.items() for j in jobs}
    waiting = {key: {j.name for j in jobs} for key, (*_, jobs) in plans.items()}
    finished: dict[str, JobResult] = {}
    outputs: dict[str, FigureOutput] = {}
    failed: dict[str, BaseException] = {}

    def figure_done(key: str) -> None:
        spec, mod, cfg, jobs = plans[key]
        ctx.say(f"{key}: all {len(jobs)} job(s) done; writing the figure")
        try:
            outputs[key] = _report(key, ctx, spec, mod, cfg,
                                   FigureResults(spec, jobs, finished))
        except Exception as exc:  # keep the other figures; report the failure at the end
            failed[key] = exc
            ctx.say(f"{key}: FAILED: {type(exc).__name__}: {exc}")
        write_report(ctx.out, load_outputs(ctx.out), load_missing(ctx.out))

    def on_result(job: Job, res: JobResult) -> None:
        finished[job.name] = res
        key = owner[job.name]
        waiting[key].discard(job.name)
        if not waiting[key]:
            figure_done(key)

    for key in [k for k, names in waiting.items() if not names]:  # a figure without jobs
        figure_done(key)
    progress = ConsoleProgress(all_jobs, log=ctx.log) if ctx.verbose else None
    outcome = executor.run(all_jobs, ctx.out, resume=resume, progress=progress,
                           on_result=on_result)
    for key, (*_, jobs) in plans.items():
        lost = {j.name: outcome.missing[j.name] for j in jobs if j.name in outcome.missing}
        if lost:
            write_json(ctx.out / key / "missing.json", lost)
    write_report(ctx.out, load_outputs(ctx.out), load_missing(ctx.out))
    if outcome.missing or failed:
        what = [f"job(s) {', '.join(outcome.missing)} did not finish"] if outcome.missing else []
        what += [f"figure(s) {', '.join(failed)} failed"] if failed else []
        raise RuntimeError("; ".join(what) + "; the other figures are in the report") from (
            next(iter(failed.values()), None))
    return [outputs[k] for k in keys]


def _report(key: str, ctx: Context, spec: FigureSpec, mod: Any, cfg: dict[str, Any],
            done: FigureResults) -> FigureOutput:
    """Write one figure from its finished jobs; store ``result.json``."""
    c0 = time.process_time()
    out = mod.report(spec, cfg, ctx, done)
    if ctx.quick or ctx.steps is not None or ctx.runs is not None:
        out.claims = shorten(out.claims)  # the paper's numbers are for its full settings
    out.wall_s += done.wall_s
    out.cpu_s = time.process_time() - c0 + done.cpu_s
    ctx.say(f"{key}: {out.wall_s:.1f} s of jobs and plots (CPU {out.cpu_s:.1f} s)")
    write_json(ctx.fig_dir(key) / "result.json",
               {**dataclasses.asdict(out), "quick": ctx.quick,
                "caps": {"steps": ctx.steps, "runs": ctx.runs}})
    return out


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


def load_missing(out: Path) -> dict[str, str]:
    """The jobs (and why) that did not finish in the last run of each figure under ``out``."""
    missing: dict[str, str] = {}
    for key in FIGURES:
        p = out / key / "missing.json"
        if p.exists():
            missing.update(json.loads(p.read_text(encoding="utf-8")))
    return missing

"""Run a resolved experiment config through the training engine and write its outputs.

:func:`run_experiment` is what ``heatbath train``, ``compare`` and ``demo`` call:

1. resolve and check the config (:func:`heatbath.engine.config.resolve`), then build the data
   and, once, every method's model and optimizer on a one-replica model, so that any bad value
   fails with a :class:`ConfigError` naming the field before any training starts;
2. write ``config.toml`` (the resolved config: every default filled in);
3. train each method as one batched ensemble over all seeds (:func:`heatbath.engine.train`),
   with a checkpoint per method under ``checkpoints/`` (``resume=True`` continues from them);
   ``metrics.csv`` is rewritten after each method, so a long comparison shows partial results;
4. write ``summary.md``/``summary.csv`` and the figures (``curves.png``, ``decision_maps.png``
   for 2-D inputs, ``histograms.png``).

All files are written atomically (:mod:`heatbath.output.io`). Before anything is written the
run folder is claimed (:mod:`heatbath.engine.runfolder`: it must be this run's or free, and it
is locked), and on ``resume`` every checkpoint is verified (:mod:`heatbath.engine.checkpoint`).
"""

from __future__ import annotations

import inspect
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from heatbath.engine import shutdown
from heatbath.engine.config import (
    ConfigError,
    check_memory,
    estimate_run_bytes,
    method_hparams,
    model_params,
    resolve,
)
from heatbath.engine.executors import Executor, JobEvent, LocalExecutor
from heatbath.engine.jobs import Job, JobResult, classifier_job
from heatbath.engine.runfolder import RUN_FILES, RunFolder, open_run
from heatbath.output.io import write_csv, write_toml
from heatbath.output.summary import (
    METRIC_COLUMNS,
    MethodSummary,
    summary_markdown,
    write_summary,
)

__all__ = ["RunOutput", "Prepared", "prepare", "run_experiment", "format_hparams"]

# how hyperparameter names are printed in titles and legends (the paper's symbols)
_SYMBOLS = {"gamma": "γ", "tau": "τ", "tau1": "τ₁", "tau2": "τ₂", "gamma1": "γ₁", "sigma": "σ",
            "sigma_A": "σ_A", "epsilon": "ε", "xi0": "ξ₀"}


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.0e}".replace("e-0", "e-") if v != 0 and abs(v) < 1e-3 else f"{v:g}"
    return str(v)


def format_hparams(hparams: Mapping[str, Any]) -> str:
    """``{"h": 0.25, "tau1": 1e-4}`` → ``"h=0.25, τ₁=1e-4"`` (for titles and legends)."""
    return ", ".join(f"{_SYMBOLS.get(k, k)}={_num(v)}" for k, v in hparams.items())


@dataclass
class Prepared:
    """A checked config with its data and per-method engine specs, ready to train."""

    config: dict[str, Any]
    data: Any  # heatbath.data.Dataset
    models: dict[str, Any]  # label -> engine ModelSpec
    optims: dict[str, Any]  # label -> engine OptimSpec


@dataclass
class RunOutput:
    """What :func:`run_experiment` did: where the files are, the table, the time taken."""

    out_dir: Path
    files: list[Path]
    summaries: list[MethodSummary]
    summary_markdown: str
    wall_s: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    method_wall_s: dict[str, float] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


#: Below this many parameters in a whole ensemble (replicas × parameters per model), a run
#: defaults to one torch thread: the kernels are too small to split, and on a busy machine each
#: parallel region waits for a scheduler slice (measured: the quick demo took 153 s with torch's
#: default two threads on a loaded 2-core machine, 11 s with one; same numbers either way).
SMALL_MODEL_PARAMS = 1 << 20


def prepare(cfg: Mapping[str, Any]) -> Prepared:
    """Resolve ``cfg`` and build everything once; bad input raises :class:`ConfigError`.

    An unset ``threads`` becomes 1 for small ensembles (see :data:`SMALL_MODEL_PARAMS`).
    """
    from heatbath.data import DATASETS, make_dataset
    from heatbath.engine import MODEL_NAMES, ModelSpec, OptimSpec

    c = resolve(cfg)
    data_kw = dict(c["data"])
    name = data_kw.pop("name")
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset data.name = {name!r}; must be one of "
                          f"{', '.join(DATASETS)}")
    if c["model"]["name"] not in MODEL_NAMES:
        raise ConfigError(f"unknown model model.name = {c['model']['name']!r}; must be one of "
                          f"{', '.join(MODEL_NAMES)}")
    try:
        data = make_dataset(name, **data_kw)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"data: {_one_line(exc)}") from None
    except FileNotFoundError as exc:
        raise ConfigError(f"data: {_one_line(exc)}") from None
    d_in = data.input_dim
    models: dict[str, Any] = {}
    optims: dict[str, Any] = {}
    n_params = 0
    _check_resources(c, data)  # before any model is built
    for label, table in c["methods"].items():
        model_kw = dict(c["model"])
        if "init" in table:
            model_kw["init"] = table["init"]
        unknown = sorted(set(model_kw) - set(inspect.signature(ModelSpec).parameters))
        if unknown:
            raise ConfigError(f"unknown key 'model.{unknown[0]}'; allowed: "
                              f"{', '.join(inspect.signature(ModelSpec).parameters)}")
        try:
            spec = ModelSpec(**model_kw)
        except TypeError as exc:
            raise ConfigError(f"model: {_one_line(exc)}") from None
        except ValueError as exc:
            where = f"methods.{label}.init" if "init" in table else "model"
            raise ConfigError(f"{where}: {_one_line(exc)}") from None
        try:
            probe = spec.build_ensemble(d_in, data.n_classes, [0])
        except ValueError as exc:
            raise ConfigError(f"model: {_one_line(exc)}") from None
        optim = OptimSpec(table["method"], method_hparams(table), label=label)
        try:
            optim.build(probe, replicas=1, seed=0)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"methods.{label}: {_one_line(exc)}") from None
        models[label] = spec
        optims[label] = optim
        n_params = max(n_params, sum(p.numel() for p in probe.parameters()))
    if c.get("threads") is None and n_params * len(c["seeds"]) < SMALL_MODEL_PARAMS:
        c["threads"] = 1
    return Prepared(c, data, models, optims)


def _check_resources(c: Mapping[str, Any], data: Any) -> None:
    """Refuse a run whose memory estimate exceeds what is available (names the field)."""
    d_in, n_classes = data.input_dim, data.n_classes
    n_params = model_params(c["model"], d_in, n_classes)
    hidden = c["model"].get("hidden", 20)
    widest = max([d_in, n_classes, *(hidden if isinstance(hidden, list) else [hidden])])
    n_train = data.X_train.shape[0]
    batch = max(1, round(n_train * c["subsample"] / 100.0))
    data_bytes = 4 * (n_train + data.X_test.shape[0]) * (d_in + 2)
    n_labels = len(c["methods"])
    parallel = min(n_labels, c.get("workers") or 1) if c.get("workers") != 0 else \
        min(n_labels, os.cpu_count() or 1)
    need = estimate_run_bytes(
        n_params=n_params, replicas=len(c["seeds"]), n_evals=c["steps"] // c["eval_every"] + 2,
        n_snapshots=len(c["plots"]["snapshots"]) + c["plots"]["map_last_steps"],
        batch=batch, widest=widest if isinstance(widest, int) else 1, data_bytes=data_bytes,
        parallel=parallel)
    check_memory("seeds, model.hidden or steps/eval_every", need,
                 f"training {len(c['seeds'])} seeds x {n_params:,} parameters x "
                 f"{c['steps'] // c['eval_every'] + 1:,} evaluations")


def _data_title(c: Mapping[str, Any], data: Any) -> str:
    d = c["data"]
    n = f"{data.X_train.shape[0]} train / {data.X_test.shape[0]} test"
    if d["name"] == "spirals":
        turns = d.get("turns", 2)
        return f"{_num(turns)}-turn spiral ({n})"
    if d["name"] == "trig":
        return f"trigonometric data a={_num(d.get('a', 3.0))} ({n})"
    if d["name"] == "mnist":
        return f"MNIST digits ({n})"
    return f"{d['name']} ({n})"


def _model_title(c: Mapping[str, Any]) -> str:
    m = c["model"]
    hidden = m.get("hidden", 20)
    init = m.get("init", "torch")
    init_s = "" if init == "torch" else f", init {init}"
    if m["name"] == "shlp":
        return f"{hidden}-node SHLP{init_s}"
    return f"MLP {hidden}{init_s}"


def _progress_bar(total: int, quiet: bool) -> Any:
    if quiet or not sys.stdout.isatty():
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress bars are optional
        return None
    return tqdm(total=total, unit="step", dynamic_ncols=True, file=sys.stderr, leave=False)


def _grid_probabilities(result: Any, xx: np.ndarray, yy: np.ndarray, steps: Sequence[int],
                        replicas: str) -> np.ndarray:
    pts = torch.tensor(np.stack([xx.ravel(), yy.ravel()], axis=1), dtype=torch.float32)
    probs = []
    available = [s for s in steps if s in result.snapshots] or [None]
    for s in available:
        p = result.predict_proba(pts, step=s)[..., -1]  # [R, n]: P(class 1)
        probs.append(p[0] if replicas == "first" else p.mean(0))
    return torch.stack(probs).mean(0).reshape(xx.shape).numpy()


def _histogram_values(snapshot: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    weights = [v.reshape(-1) for k, v in snapshot.items() if k.endswith("weight")]
    biases = [v.reshape(-1) for k, v in snapshot.items() if k.endswith("bias")]
    out = {}
    if weights:
        out["weights (all layers)"] = torch.cat(weights).numpy()
    if biases:
        out["biases (all layers)"] = torch.cat(biases).numpy()
    return out


def _final_acc(rows: Sequence[Mapping[str, Any]], method: str, seed: int | None) -> float:
    last: dict[Any, tuple[int, float]] = {}
    for r in rows:
        if r["method"] == method and r["split"] == "test" and (seed is None or r["seed"] == seed):
            if r["seed"] not in last or r["step"] >= last[r["seed"]][0]:
                last[r["seed"]] = (r["step"], r["accuracy"])
    vals = [v for _, v in last.values()]
    return float(np.mean(vals)) if vals else math.nan


#: the files a run writes into its folder (besides ``checkpoints/``)
OUTPUT_FILES = RUN_FILES


def run_experiment(cfg: Mapping[str, Any], *, quiet: bool = False, resume: bool = False,
                   force: bool = False, restart: bool = False,
                   executor: Executor | None = None) -> RunOutput:
    """Check ``cfg``, train every method over all seeds, write all outputs; see module doc.

    Each method is one job (:mod:`heatbath.engine.jobs`, folder ``jobs/<label>/``, checkpoint
    ``checkpoints/<label>.pt``) run by ``executor`` (default: a
    :class:`heatbath.engine.executors.LocalExecutor` with ``workers`` (config) processes, 0
    meaning one per CPU core, at most one per method; 1: in this process). A method whose job
    did not finish is left out of the outputs and named in ``RunOutput.missing`` and the notes.

    The run folder is claimed first (:func:`heatbath.engine.runfolder.open_run`: ownership,
    lock, on resume the checkpoints' SHA-256), and only then written. ``force`` lets a fresh
    run replace a heatbath run of another config; ``restart`` starts afresh even when
    ``resume`` is asked (after a corrupt checkpoint). SIGTERM and SIGINT stop the training at a
    step boundary, write the checkpoints and raise
    :class:`heatbath.engine.shutdown.Interrupted`.
    """
    t_start = time.perf_counter()
    prep = prepare(cfg)
    resume = resume and not restart
    with shutdown.handle_signals(), open_run(prep.config, prep.config["methods"],
                                             resume=resume, force=force) as folder:
        return _run_in_folder(prep, folder, quiet=quiet, resume=resume, t_start=t_start,
                              executor=executor)


def _run_in_folder(prep: Prepared, folder: RunFolder, *, quiet: bool, resume: bool,
                   t_start: float, executor: Executor | None) -> RunOutput:
    c = prep.config
    out_dir = folder.path
    files = [write_toml(out_dir / "config.toml", c)]

    steps = c["steps"]
    plots_cfg = c["plots"]
    map_steps = list(range(steps - plots_cfg["map_last_steps"] + 1, steps + 1))
    is_2d = prep.data.input_dim == 2 and prep.data.n_classes == 2
    snapshot_steps = sorted(set(plots_cfg["snapshots"]) | (set(map_steps) if is_2d else set()))
    if not plots_cfg["enabled"]:
        snapshot_steps = []
    ckpt_every = c.get("checkpoint_every") or max(1, steps // 10)

    labels = list(c["methods"])
    jobs = [classifier_job(
        f"jobs/{label}", data=c["data"], model=prep.models[label].to_dict(),
        method=prep.optims[label].method, hparams=prep.optims[label].hparams, label=label,
        seeds=c["seeds"], steps=steps, subsample=c["subsample"], eval_every=c["eval_every"],
        snapshot_steps=snapshot_steps, checkpoint_every=ckpt_every,
        checkpoint=folder.checkpoint_path(label).relative_to(out_dir).as_posix(),
        collect=c.get("collect"))
        for label in labels]
    if executor is None:
        workers = c.get("workers", 1) or min(len(labels), os.cpu_count() or 1)
        executor = LocalExecutor(min(workers, len(labels)), threads=c.get("threads"))
    parallel = not isinstance(executor, LocalExecutor) or executor.processes
    bar = _progress_bar(steps * len(labels), quiet)
    results: dict[str, Any] = {}
    method_wall: dict[str, float] = {}
    done: dict[str, int] = dict.fromkeys(labels, 0)

    def on_event(ev: JobEvent) -> None:
        if bar is None:
            return
        label = ev.job.split("/", 1)[1]
        step = ev.step if ev.kind == "progress" else steps if ev.kind in ("done", "reused",
                                                                           "failed") else None
        if step is not None:
            bar.update(step - done[label])
            done[label] = step
        bar.set_description(f"{len(results)}/{len(labels)} methods" if parallel else label)
        acc = ev.info.get("test_acc") if ev.kind == "progress" else None
        if acc is not None and math.isfinite(acc):  # the mean test accuracy over the seeds
            bar.set_postfix_str(f"{label + ' ' if parallel else ''}test acc {100 * acc:.1f} %")

    def on_result(job: Job, res: JobResult) -> None:
        label = job.name.split("/", 1)[1]
        results[label] = res.value
        method_wall[label] = res.wall_s
        finished = [lb for lb in labels if lb in results]  # config order, whatever finished first
        write_csv(out_dir / "metrics.csv", [r for lb in finished for r in results[lb].rows],
                  METRIC_COLUMNS)

    try:
        outcome = executor.run(jobs, out_dir, resume=resume, progress=on_event,
                               on_result=on_result)
    finally:
        if bar is not None:
            bar.close()
    missing = {name.split("/", 1)[1]: why for name, why in outcome.missing.items()}
    labels = [lb for lb in labels if lb in results]
    # config order, whatever finished first: the figures' panels and legends must not depend on
    # which executor ran the jobs or how fast they were
    results = {lb: results[lb] for lb in labels}
    method_wall = {lb: method_wall[lb] for lb in labels}
    if not labels:
        raise RuntimeError("no method finished: " + "; ".join(
            f"{k}: {v}" for k, v in missing.items()))
    rows = [r for label in labels for r in results[label].rows]
    messages = [f"{label}: {m}" for label in labels for m in results[label].messages]
    files.append(out_dir / "metrics.csv")

    hp = {label: format_hparams(method_hparams(c["methods"][label])) for label in labels}
    title = (f"{c['name']}: {_data_title(c, prep.data)}, {_model_title(c)}, "
             f"{_num(c['subsample'])} % minibatches, {steps:,} steps")
    notes = [f"{label} ({c['methods'][label]['method']}): {hp[label] or 'defaults'}"
             + (f", init {c['methods'][label]['init']}" if "init" in c["methods"][label] else "")
             for label in labels]
    notes.append(f"seeds: {c['seeds'][0]}–{c['seeds'][-1]} ({len(c['seeds'])} per method); "
                 f"training time per method (s): "
                 + ", ".join(f"{k} {v:.1f}" for k, v in method_wall.items()))
    if c.get("description"):
        notes.insert(0, " ".join(str(c["description"]).split()))
    notes.extend(f"{label}: MISSING (its job did not finish: {why})"
                 for label, why in missing.items())
    notes.extend(messages[:20])
    if len(messages) > 20:
        notes.append(f"... and {len(messages) - 20} more stopped runs")
    summaries, md_path, csv_path = write_summary(out_dir, rows, title=title, notes=notes,
                                                 steps=steps)
    files += [md_path, csv_path]
    if c.get("collect"):  # posterior samples: final iterates vs sample average, R-hat/ESS
        from heatbath.sampling.run import write_sample_reports

        folders = {job.name.split("/", 1)[1]: job.folder(out_dir) / "samples" for job in jobs}
        files += write_sample_reports(out_dir, prep.data, {lb: results[lb] for lb in labels},
                                      c["collect"], md_path, sample_dirs=folders,
                                      figures=plots_cfg["enabled"])

    if plots_cfg["enabled"]:
        files += _write_plots(out_dir, c, prep, results, rows, hp, title, is_2d, map_steps)
    return RunOutput(out_dir, files, summaries,
                     summary_markdown(summaries, title, notes[:1] if c.get("description") else ()),
                     time.perf_counter() - t_start, rows, messages, method_wall, missing)


def _write_plots(out_dir: Path, c: Mapping[str, Any], prep: Prepared, results: Mapping[str, Any],
                 rows: list[dict[str, Any]], hp: Mapping[str, str], title: str, is_2d: bool,
                 map_steps: Sequence[int]) -> list[Path]:
    from heatbath.output import plots

    n_seeds = len(c["seeds"])
    legend = {label: f"{label} ({hp[label]})" if hp[label] else label for label in results}
    files = [plots.plot_curves(
        out_dir / "curves.png", rows, title=title, labels=legend,
        note=f"Lines: mean over {n_seeds} seeds; band: ± 1 sample sd (test). Full train and "
             f"test sets evaluated every {c['eval_every']} steps.")]
    if is_2d:
        X = prep.data.X_train.numpy()
        y = prep.data.y_train.numpy()
        xx, yy = plots.grid(np.concatenate([X, prep.data.X_test.numpy()]), n=160)
        which = c["plots"]["map_replicas"]
        panels = []
        for label, result in results.items():
            prob = _grid_probabilities(result, xx, yy, map_steps, which)
            acc = _final_acc(rows, label, c["seeds"][0] if which == "first" else None)
            sub = f"{hp[label]}\ntest acc {100 * acc:.1f} %" if hp[label] else \
                f"test acc {100 * acc:.1f} %"
            panels.append(plots.MapPanel(label, xx, yy, prob, sub))
        k = len(map_steps)
        who = (f"seed {c['seeds'][0]}" if which == "first"
               else f"the mean over {n_seeds} seeds")
        avg = f"averaged over the last {k} steps" if k > 1 else "at the last step"
        files.append(plots.plot_decision_maps(
            out_dir / "decision_maps.png", panels, X, y,
            title=f"Classifiers after {c['steps']:,} steps: "
                  f"{_data_title(c, prep.data)}, {_model_title(c)}",
            note=f"Colour: P(class 1) of {who}, {avg}; black line: P = 0.5; points: the "
                 f"training set. Test accuracy of {who} at the last step."))
    snaps = {label: {s: _histogram_values(snap) for s, snap in sorted(r.snapshots.items())
                     if s in c["plots"]["snapshots"]}
             for label, r in results.items()}
    snaps = {k: v for k, v in snaps.items() if v}
    if snaps:
        files.append(plots.plot_histograms(
            out_dir / "histograms.png", snaps,
            title=f"Parameter distributions over time: {_data_title(c, prep.data)}, "
                  f"{_model_title(c)}",
            note=f"All {n_seeds} seeds pooled; each ridge a histogram scaled to equal peak "
                 f"height; x range of each panel: the central 99.8 % of its values "
                 f"(ranges differ)."))
    return files

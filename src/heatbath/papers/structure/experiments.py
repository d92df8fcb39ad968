"""Experiments for the structure-preserving networks (see docs/structure-preserving.md).

Each experiment is a set of jobs of the experiment framework (:mod:`heatbath.engine.jobs`) run
by an executor (:mod:`heatbath.engine.executors`: processes on this machine or a Ray cluster),
in three steps: *configure* (``<name>_experiment(...) -> Experiment``: the jobs), *train* (the
jobs' tasks, module-level functions run on the workers, which checkpoint to their job folder and
resume from it) and *report* (figures, a table and a claims report ``REPORT.md`` written with
:func:`heatbath.output.claims.write_report` from the finished jobs only, naming any missing).

- :func:`run_shapes2d` — binary classification on the spiral, swiss roll, double moons, double
  circles and donut sets with several block families; the feature flow drawn layer by layer.
  One job per (set, family).
- :func:`run_mnist_families` — MNIST (offline 5,000-digit subset) test accuracy of every block
  family at (nearly) equal parameter count. One job per family.
- :func:`run_robustness` — accuracy under the published L2 PGD setting and heatbath's strong
  one for an unconstrained ResNet-like network and a non-expansive one (gradient-flow blocks,
  lift and head of norm <= 1), both trained with the multi-class hinge loss, margin 0.15, as in
  Celledoni et al. 2022, on the offline MNIST subset (dense nets) or on CIFAR-10 from a user
  folder (convolutional nets); expected ordering: the unconstrained net wins at eps = 0, the
  non-expansive one at large eps. Also the certified accuracy of the non-expansive net. One job
  per network.
- :func:`run_thermo_training` — Hamiltonian and contractive networks trained with
  ``heatbath.optim`` AdLaLa and Langevin versus Adam on the swiss roll. One job per
  (family, method).

Each ``run_<name>(out_dir, *, quick=False, seed=0, executor=None, resume=False, quiet=True)``
runs one experiment into ``out_dir`` (jobs under ``out_dir/jobs/``) and returns its numbers;
:func:`run_experiments` runs several as one set of jobs (``heatbath structure all``), so an
executor with several workers trains them side by side. The outputs do not depend on the
executor: the same jobs give the same bytes locally and on Ray.

``quick=True`` shrinks every run to seconds or tens of seconds on 2 CPU cores; the full sizes
are in the ``FULL``/``QUICK`` dicts. All randomness comes from ``seed``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from heatbath.data.shapes2d import DOMAINS, make_shape
from heatbath.engine import checkpoint as _ckpt
from heatbath.engine.executors import ConsoleProgress, Executor, LocalExecutor
from heatbath.engine.jobs import Job, JobContext
from heatbath.nn import StructuredNet, multiclass_hinge
from heatbath.output.claims import (
    Claim,
    Section,
    markdown_table,
    not_tested,
    pct,
    shorten,
    verdict_beats,
    write_report,
)
from heatbath.output.io import write_csv, write_text

__all__ = ["CIFAR_FULL", "CIFAR_QUICK", "DATASETS", "EPS_GRID", "Experiment", "FULL",
           "IncompleteExperiment", "QUICK", "mnist_experiment", "robustness_experiment",
           "run_experiments", "run_mnist_families", "run_robustness", "run_shapes2d",
           "run_thermo_training", "shapes2d_experiment", "thermo_experiment"]

QUICK: dict[str, dict[str, Any]] = {
    "shapes2d": dict(n=200, steps=80, families=["euler", "symplectic"], depth=8),
    "mnist": dict(n_train=1000, n_test=500, epochs=2, families=["euler", "gradient_flow",
                                                                  "symplectic", "shear"]),
    "robustness": dict(n_train=1500, n_test=200, epochs=3),
    "thermo": dict(n=300, steps=80, families=["symplectic", "gradient_flow"],
                   methods=["adam", "langevin", "adlala"]),
}
FULL: dict[str, dict[str, Any]] = {
    "shapes2d": dict(n=600, steps=800, families=["euler", "gradient_flow", "symplectic",
                                                 "shear"], depth=16),
    "mnist": dict(n_train=None, n_test=None, epochs=15,
                  families=["euler", "gradient_flow", "symplectic", "symplectic_euler",
                            "shear", "leapfrog", "midpoint"]),
    "robustness": dict(n_train=None, n_test=1000, epochs=20),
    "thermo": dict(n=1000, steps=1500, families=["symplectic", "gradient_flow"],
                   methods=["adam", "langevin", "adlala"]),
}

DATASETS = ["spiral", "swiss_roll", "double_moons", "double_circles", "donut"]

_TASKS = "heatbath.papers.structure.experiments"


# ----------------------------------------------------------------------------- the framework
class IncompleteExperiment(RuntimeError):
    """Some jobs did not finish; the reports were written from the finished ones.

    Attributes:
        missing: ``{job name: why}``.
        numbers: every experiment's numbers from its finished jobs, by name.
    """

    def __init__(self, missing: Mapping[str, str],
                 numbers: Mapping[str, dict[str, Any]] | None = None) -> None:
        self.missing = dict(missing)
        self.numbers = dict(numbers or {})
        super().__init__(f"{len(self.missing)} job(s) did not finish (the reports cover the "
                         f"finished ones; run again with --resume to finish them): " + "; ".join(
                             f"{k}: {v}" for k, v in self.missing.items()))


#: ``report(out_dir, values, missing) -> numbers``: ``values`` are the finished jobs' task
#: values and ``missing`` the others' reasons, both by job name (relative to the experiment)
ReportFn = Callable[[Path, Mapping[str, Any], Mapping[str, str]], dict[str, Any]]


@dataclass
class Experiment:
    """One structure experiment: its jobs and how to report them.

    Attributes:
        name: the experiment (``"shapes2d"``); its folder's name under ``heatbath structure``.
        jobs: its jobs, named relative to the experiment's folder (``"jobs/spiral/euler"``).
        report: writes the figures, tables and ``REPORT.md`` from the finished jobs and
            returns the experiment's numbers (with ``"missing"`` when jobs are missing).
    """

    name: str
    jobs: list[Job]
    report: ReportFn


def run_experiments(experiments: Sequence[Experiment], out: str | Path, *,
                    executor: Executor | None = None, resume: bool = False,
                    quiet: bool = True) -> dict[str, dict[str, Any]]:
    """Run several experiments as one set of jobs into ``out/<name>/``; report each.

    Args:
        experiments: what to run (distinct names).
        out: the parent folder.
        executor: where the jobs run (default: :class:`LocalExecutor` ``(1)``, in this process).
        resume: keep the jobs an earlier run of the same settings finished, and the checkpoints
            of unfinished ones.
        quiet: no progress lines.

    Returns:
        Each experiment's numbers, by name.

    Raises:
        IncompleteExperiment: a job did not finish (after every report was written).
    """
    out = Path(out)
    jobs = [dataclasses.replace(j, name=f"{e.name}/{j.name}") for e in experiments
            for j in e.jobs]
    folders = {e.name: (out / e.name, e.name + "/") for e in experiments}
    return _execute(experiments, folders, jobs, out, executor, resume, quiet)


def _run_one(exp: Experiment, out_dir: str | Path, executor: Executor | None, resume: bool,
             quiet: bool) -> dict[str, Any]:
    out_dir = Path(out_dir)
    return _execute([exp], {exp.name: (out_dir, "")}, exp.jobs, out_dir, executor, resume,
                    quiet)[exp.name]


def _execute(experiments: Sequence[Experiment], folders: Mapping[str, tuple[Path, str]],
             jobs: list[Job], root: Path, executor: Executor | None, resume: bool,
             quiet: bool) -> dict[str, dict[str, Any]]:
    root.mkdir(parents=True, exist_ok=True)
    progress = None if quiet else ConsoleProgress(jobs)
    outcome = (executor or LocalExecutor(1)).run(jobs, root, resume=resume, progress=progress)
    numbers: dict[str, dict[str, Any]] = {}
    for exp in experiments:
        folder, prefix = folders[exp.name]
        folder.mkdir(parents=True, exist_ok=True)
        values = {n[len(prefix):]: r.value for n, r in outcome.results.items()
                  if n.startswith(prefix)}
        missing = {n[len(prefix):]: why for n, why in outcome.missing.items()
                   if n.startswith(prefix)}
        numbers[exp.name] = exp.report(folder, values, missing)
        if missing:
            numbers[exp.name]["missing"] = {f"{prefix}{k}": v for k, v in missing.items()}
    if outcome.missing:
        raise IncompleteExperiment(outcome.missing, numbers)
    return numbers


# ----------------------------------------------------------------------------- helpers
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _write_table(out_dir: Path, stem: str, rows: list[dict[str, Any]], title: str,
                 note: str = "") -> str:
    """``<stem>.csv`` and ``<stem>.md`` (title, table, note); returns the table's Markdown."""
    if not rows:
        write_text(out_dir / f"{stem}.md", f"# {title}\n\nNo job finished.\n")
        return "No job finished.\n"
    cols = list(rows[0])
    write_csv(out_dir / f"{stem}.csv", rows, cols)
    table = markdown_table(rows, cols)
    write_text(out_dir / f"{stem}.md", f"# {title}\n\n{table}" + (f"\n{note}\n" if note else ""))
    return table


def _times_line(values: Mapping[str, Any], seconds: Callable[[Any], float]) -> str:
    """One line of wall times per job (kept apart: they differ from run to run)."""
    return ("Wall time per job: " + ", ".join(f"{k} {seconds(v):.1f} s"
                                              for k, v in values.items()) + ".\n")


def _report(out_dir: Path, title: str, intro: list[str], section: Section,
            missing: Mapping[str, str]) -> None:
    write_report(out_dir / "REPORT.md", title=title, intro=intro, sections=[section],
                 missing=missing, group_label="experiment")


#: how the orderings between two networks are judged (the intro of every report)
PAIRED_BY_POINT = (
    "Orderings (\"A beats B\") are judged on the test points, paired: an exact one-sided sign "
    "test on the points that exactly one of the two networks gets right (McNemar's exact test), "
    "reproduced at p <= 0.05 (docs/reproduce.md, section 'Verdicts'). This covers the sampling "
    "of the test set, not the spread over training seeds (one seed per network).\n")


def _beats(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str], claim: str,
           paper: str) -> Claim:
    """The claim "``names[0]`` beats ``names[1]``" from per-test-point correctness ``a``, ``b``
    (see :data:`PAIRED_BY_POINT`)."""
    judged = verdict_beats(a.double().numpy(), b.double().numpy(), names=names)
    ours = judged.ours.replace("paired runs", "paired test points")
    return Claim(claim, paper, ours, judged.verdict, judged.reason, judged.untested)


def _correct(net: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-point correctness (bool) of ``net`` on ``(X, y)``."""
    net.eval()
    with torch.no_grad():
        ok = net(X).argmax(1) == y
    net.train()
    return ok


def _accuracy(net: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        acc = float((net(X).argmax(1) == y).float().mean())
    net.train()
    return acc


# the operators' power-iteration vectors (the norm estimate of the non-expansiveness clamp) are
# plain attributes, not in the state dict; a checkpoint keeps them so a resumed run is exact
def _pi_vectors(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: m._pi_v for name, m in net.named_modules()
            if isinstance(getattr(m, "_pi_v", None), torch.Tensor)}


def _save_checkpoint(ctx: JobContext, net: torch.nn.Module, opt: torch.optim.Optimizer,
                     g: torch.Generator, step: int, **extra: Any) -> None:
    _ckpt.save(ctx.checkpoint, {"step": step, "net": net.state_dict(), "opt": opt.state_dict(),
                                "gen": g.get_state(), "pi": _pi_vectors(net), **extra})


def _load_checkpoint(ctx: JobContext | None) -> dict[str, Any] | None:
    if ctx is None or not ctx.checkpoint.exists():
        return None
    return _ckpt.load(ctx.checkpoint)  # type: ignore[no-any-return]


def _restore(state: Mapping[str, Any], net: torch.nn.Module, opt: torch.optim.Optimizer,
             g: torch.Generator) -> int:
    net.load_state_dict(state["net"])
    opt.load_state_dict(state["opt"])
    g.set_state(state["gen"])
    modules = dict(net.named_modules())
    for name, v in state["pi"].items():
        modules[name]._pi_v = v
    return int(state["step"])


def _train(net: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, *, steps: int, batch: int,
           make_opt: Callable[[torch.nn.Module], torch.optim.Optimizer], seed: int,
           loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
           ctx: JobContext | None = None, checkpoints: int = 10) -> list[float]:
    """Minibatch training of a structure-preserving net (the engine's trainer builds only its
    MLP classifiers); returns the losses.

    Minibatches are drawn without replacement from a generator seeded by ``seed``. With ``ctx``
    (a job's context) it reports progress and writes ``checkpoints`` checkpoints over the run
    to ``ctx.checkpoint`` (model, optimizer, generator, the losses so far), and resumes from an
    existing one: a resumed run gives the same numbers as an uninterrupted one.
    """
    opt = make_opt(net)
    g = torch.Generator().manual_seed(seed + 7919)
    losses: list[float] = []
    n = len(X)
    perm = torch.randperm(n, generator=g)
    pos, start = 0, 0
    state = _load_checkpoint(ctx)
    if state is not None:
        start = _restore(state, net, opt, g)
        perm, pos, losses = state["perm"], int(state["pos"]), state["losses"].tolist()
    every = max(1, steps // max(1, checkpoints))
    for step in range(start, steps):
        if batch >= n:
            idx = torch.arange(n)
        else:
            if pos + batch > n:
                perm, pos = torch.randperm(n, generator=g), 0
            idx = perm[pos:pos + batch]
            pos += batch
        opt.zero_grad()
        loss = loss_fn(net(X[idx]), y[idx])
        if not torch.isfinite(loss):
            break
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if ctx is not None and ((step + 1) % every == 0 or step + 1 == steps):
            if step + 1 < steps:
                _save_checkpoint(ctx, net, opt, g, step + 1, perm=perm, pos=pos,
                                 losses=torch.tensor(losses, dtype=torch.float64))
            ctx.progress(step + 1, steps)
    return losses


def _adam(lr: float) -> Callable[[torch.nn.Module], torch.optim.Optimizer]:
    return lambda net: torch.optim.Adam(net.parameters(), lr=lr)


def _mnist(split: str, n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor] | str:
    try:
        from heatbath.data import mnist
    except ImportError as exc:  # pragma: no cover - depends on the other helper's module
        return f"heatbath.data.mnist is not available ({exc}); MNIST experiment skipped"
    try:
        X, y = mnist(split=split)
    except (FileNotFoundError, ImportError, OSError) as exc:
        return f"MNIST data not available ({exc}); MNIST experiment skipped"
    if n is not None and n < len(X):
        idx = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))[:n]
        X, y = X[idx], y[idx]
    return X, y


def _n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def _smooth(losses: Sequence[float], parts: int) -> np.ndarray:
    k = max(1, len(losses) // parts)
    return np.convolve(np.asarray(losses, dtype=float), np.ones(k) / k, mode="valid")


# ----------------------------------------------------------------------------- 2-D shapes
_GRID = 120  # decision-region grid points per axis


def _shapes_data(name: str, n: int, seed: int, di: int, nf: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    Xtr, ytr = make_shape(name, n, 0.0, seed=seed + di, embed_dim=nf)
    Xte, yte = make_shape(name, n, 0.0, seed=seed + 1000 + di, embed_dim=nf)
    scale = max(abs(v) for v in DOMAINS[name])
    return Xtr / scale, ytr, Xte / scale, yte  # inputs in [-1, 1]^2


def shapes2d_task(job: Job, ctx: JobContext) -> dict[str, Any]:
    """Job task: train one family on one 2-D set (see :func:`run_shapes2d`).

    Args:
        job: a :class:`heatbath.engine.jobs.Job` with setting ``{"dataset", "family", "n",
            "steps", "depth", "index", "family_index"}``.
        ctx: its :class:`heatbath.engine.jobs.JobContext` (checkpoints and progress).

    Returns:
        The table row, P(class 1) on the plotting grid, and the test features at the plotted
        layers (channels 0 and nf - 1).
    """
    st, seed = job.setting, job.seeds[0]
    t0 = time.perf_counter()
    nf, K = 4, st["depth"]
    Xtr, ytr, Xte, yte = _shapes_data(st["dataset"], st["n"], seed, st["index"], nf)
    torch.manual_seed(seed + 31 * st["family_index"] + st["index"])
    net = StructuredNet(nf, 2, family=st["family"], width=nf, depth=K, T=0.25 * K,
                        lift="identity", init_scale=1.0)
    losses = _train(net, Xtr, ytr, steps=st["steps"], batch=len(Xtr), make_opt=_adam(1e-2),
                    seed=seed, ctx=ctx)
    row = dict(dataset=st["dataset"], family=st["family"], params=_n_params(net),
               final_loss=losses[-1] if losses else float("nan"),
               train_acc=_accuracy(net, Xtr, ytr), test_acc=_accuracy(net, Xte, yte))
    gx = torch.linspace(-1.05, 1.05, _GRID)
    GX, GY = torch.meshgrid(gx, gx, indexing="xy")
    grid = torch.zeros(GX.numel(), nf)
    grid[:, 0], grid[:, nf - 1] = GX.reshape(-1), GY.reshape(-1)
    net.eval()
    with torch.no_grad():
        prob = torch.softmax(net(grid), 1)[:, 1].reshape(GX.shape)
        traj = net.trajectory(Xte)
    layers = [0, K // 4, K // 2, 3 * K // 4, K]
    return {"row": row, "prob": prob, "layers": layers,
            "features": [traj[k][:, :nf][:, [0, nf - 1]].clone() for k in layers],
            "seconds": time.perf_counter() - t0}


def shapes2d_experiment(*, quick: bool = False, seed: int = 0) -> Experiment:
    """Configure :func:`run_shapes2d`: one job per (set, family)."""
    cfg = QUICK["shapes2d"] if quick else FULL["shapes2d"]
    jobs = [Job(f"jobs/{name}/{fam}", dict(dataset=name, family=fam, n=cfg["n"],
                                            steps=cfg["steps"], depth=cfg["depth"], index=di,
                                            family_index=fi),
                (seed,), task=f"{_TASKS}:shapes2d_task", cost=float(cfg["steps"]))
            for di, name in enumerate(DATASETS) for fi, fam in enumerate(cfg["families"])]

    def report(out_dir: Path, values: Mapping[str, Any], missing: Mapping[str, str]
               ) -> dict[str, Any]:
        return _shapes2d_report(out_dir, cfg, seed, values, missing)

    return Experiment("shapes2d", jobs, report)


def _shapes2d_report(out_dir: Path, cfg: Mapping[str, Any], seed: int,
                     values: Mapping[str, Any], missing: Mapping[str, str]) -> dict[str, Any]:
    plt = _plt()
    nf, K = 4, cfg["depth"]
    fams = cfg["families"]
    rows: list[dict[str, Any]] = []
    figures = []
    for di, name in enumerate(DATASETS):
        done = [f for f in fams if f"jobs/{name}/{f}" in values]
        rows += [values[f"jobs/{name}/{f}"]["row"] for f in done]
        if not done:
            continue
        _, _, Xte, yte = _shapes_data(name, cfg["n"], seed, di, nf)
        layers = values[f"jobs/{name}/{done[0]}"]["layers"]
        fig, axes = plt.subplots(len(done), len(layers) + 1,
                                 figsize=(2.6 * (len(layers) + 1), 2.6 * len(done)),
                                 squeeze=False)
        gx = torch.linspace(-1.05, 1.05, _GRID)
        GX, GY = torch.meshgrid(gx, gx, indexing="xy")
        for fi, fam in enumerate(done):
            v = values[f"jobs/{name}/{fam}"]
            ax = axes[fi, 0]
            ax.contourf(GX.numpy(), GY.numpy(), v["prob"].numpy(), levels=20, cmap="RdBu_r",
                        alpha=0.6)
            ax.scatter(Xte[:, 0], Xte[:, nf - 1], c=yte, cmap="bwr", s=3)
            ax.set_title(f"{fam}: test acc {v['row']['test_acc']:.2f}", fontsize=8)
            for si, (k, f) in enumerate(zip(v["layers"], v["features"], strict=True)):
                ax = axes[fi, si + 1]
                ax.scatter(f[:, 0], f[:, 1], c=yte, cmap="bwr", s=3)
                ax.set_title(f"layer {k}", fontsize=8)
            for a in axes[fi]:
                a.set_xticks([])
                a.set_yticks([])
        fig.suptitle(f"{name}: decision regions and feature flow (channels 0, {nf - 1})")
        fig.tight_layout()
        fig.savefig(out_dir / f"shapes2d_{name}.png", dpi=90)
        plt.close(fig)
        figures.append(f"![{name}](shapes2d_{name}.png)\n")
    setup = (f"nf = {nf}, K = {K}, T = {0.25 * K}, Adam lr 1e-2, full batch, {cfg['steps']} "
             f"steps, n = {cfg['n']} (fresh test set, other seed).")
    table = _write_table(out_dir, "shapes2d", rows, "2-D classification by block family", setup)
    claims = []
    for fam in fams:
        accs = {r["dataset"]: r["test_acc"] for r in rows if r["family"] == fam}
        ours = (f"test accuracy {pct(min(accs.values()))}–{pct(max(accs.values()))} over "
                f"{len(accs)} sets" if accs else "n/a")
        claims.append(not_tested(
            f"{fam} networks classify the 2-D toy sets", "qualitative (Benning et al. 2019; "
            "its tables are not transcribed)", ours, "no number in the paper",
            "the figures and the table show what each family does"))
    times = _times_line(values, lambda v: v["seconds"]) if values else ""
    _report(out_dir, "Structure-preserving networks on 2-D sets", [f"{setup}\n"],
            Section("shapes2d", "2-D classification by block family", claims,
                    before=[table], after=[*figures, times]), missing)
    return {"rows": rows}


def run_shapes2d(out_dir: Path, *, quick: bool = False, seed: int = 0,
                 executor: Executor | None = None, resume: bool = False,
                 quiet: bool = True) -> dict[str, Any]:
    """Train each family on each 2-D set; plot decision regions and the layer-by-layer flow.

    Networks: the two input coordinates embedded at channels 0 and nf - 1 of nf = 4 features
    (identity lift, as ``DecodEPFL/HamiltonianNet``), K blocks with T = 0.25 K, linear head;
    Adam (lr 1e-2), full batch, cross-entropy. The flow panels show the features at layers
    0, K/4, K/2, 3K/4, K projected on channels 0 and nf - 1 (the (z) part for (z, p) states).
    Each (set, family) is one job (task :func:`shapes2d_task`); the figures are drawn from the
    jobs' results.

    Args:
        out_dir: output folder (``shapes2d_<set>.png``, ``shapes2d.md``/``.csv``, ``REPORT.md``,
            ``jobs/``).
        quick: small sizes.
        seed: seed of data and initialisation.
        executor: where the jobs run (default: in this process).
        resume: keep finished jobs and checkpoints of an earlier run.
        quiet: no progress lines.

    Returns:
        The table rows.

    Raises:
        IncompleteExperiment: a job did not finish (the report covers the others).
    """
    return _run_one(shapes2d_experiment(quick=quick, seed=seed), out_dir, executor, resume,
                    quiet)


# ----------------------------------------------------------------------------- MNIST
def _mnist_net(family: str, seed: int, width: int = 32, depth: int = 6) -> StructuredNet:
    torch.manual_seed(seed)
    return StructuredNet(784, 10, family=family, width=width, depth=depth, T=float(depth) * 0.5,
                         hidden=width)


def mnist_family_task(job: Job, ctx: JobContext) -> dict[str, Any]:
    """Job task: train one family of :func:`run_mnist_families`.

    Args:
        job: a :class:`heatbath.engine.jobs.Job` with setting ``{"family", "n_train",
            "n_test", "epochs"}``.
        ctx: its :class:`heatbath.engine.jobs.JobContext` (checkpoints and progress).

    Returns:
        The table row, the training losses and the wall time.
    """
    st, seed = job.setting, job.seeds[0]
    tr = _mnist("train", st["n_train"], seed)
    te = _mnist("test", st["n_test"], seed + 1)
    if isinstance(tr, str) or isinstance(te, str):
        raise RuntimeError(tr if isinstance(tr, str) else str(te))
    (Xtr, ytr), (Xte, yte) = tr, te
    steps = st["epochs"] * math.ceil(len(Xtr) / 128)
    net = _mnist_net(st["family"], seed)
    t0 = time.perf_counter()
    losses = _train(net, Xtr, ytr, steps=steps, batch=128, make_opt=_adam(2e-3), seed=seed,
                    ctx=ctx)
    row = dict(family=st["family"], params=_n_params(net), train_acc=_accuracy(net, Xtr, ytr),
               test_acc=_accuracy(net, Xte, yte))
    return {"row": row, "losses": losses, "n_test": len(Xte),
            "seconds": time.perf_counter() - t0}


def mnist_experiment(*, quick: bool = False, seed: int = 0) -> Experiment:
    """Configure :func:`run_mnist_families`: one job per family (none without MNIST)."""
    cfg = QUICK["mnist"] if quick else FULL["mnist"]
    tr = _mnist("train", cfg["n_train"], seed)
    te = _mnist("test", cfg["n_test"], seed + 1)
    skipped = tr if isinstance(tr, str) else te if isinstance(te, str) else None
    sizes = "" if skipped else f"{len(tr[0])} train / {len(te[0])} test"
    jobs = [] if skipped else [
        Job(f"jobs/{fam}", dict(family=fam, n_train=cfg["n_train"], n_test=cfg["n_test"],
                                epochs=cfg["epochs"]), (seed,),
            task=f"{_TASKS}:mnist_family_task", cost=float(cfg["epochs"]) * 10)
        for fam in cfg["families"]]

    def report(out_dir: Path, values: Mapping[str, Any], missing: Mapping[str, str]
               ) -> dict[str, Any]:
        if skipped:
            write_text(out_dir / "mnist_families.md", f"# MNIST by block family\n\n{skipped}\n")
            return {"skipped": skipped}
        return _mnist_report(out_dir, cfg, sizes, values, missing)

    return Experiment("mnist", jobs, report)


def _mnist_report(out_dir: Path, cfg: Mapping[str, Any], sizes: str,
                  values: Mapping[str, Any], missing: Mapping[str, str]) -> dict[str, Any]:
    fams = [f for f in cfg["families"] if f"jobs/{f}" in values]
    rows = [values[f"jobs/{f}"]["row"] for f in fams]
    setup = (f"MNIST subset ({sizes}); {cfg['epochs']} epochs, Adam lr 2e-3, batch 128, lift "
             f"784 -> 32, 6 blocks of width 32, T = 3, linear head.")
    table = _write_table(out_dir, "mnist_families", rows, "MNIST accuracy by block family",
                         setup)
    figures = []
    if rows:
        plt = _plt()
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
        for f in fams:
            ax1.plot(_smooth(values[f"jobs/{f}"]["losses"], 30), label=f)
        ax1.set_xlabel("step")
        ax1.set_ylabel("training loss (smoothed)")
        ax1.set_yscale("log")
        ax1.legend(fontsize=8)
        ax2.bar([r["family"] for r in rows], [r["test_acc"] for r in rows], color="tab:blue")
        lo = min(r["test_acc"] for r in rows)
        ax2.set_ylim(max(0.0, lo - 0.1), 1.0)
        ax2.set_ylabel("test accuracy")
        ax2.tick_params(axis="x", rotation=30)
        fig.suptitle(f"MNIST subset ({sizes}), equal parameter count")
        fig.tight_layout()
        fig.savefig(out_dir / "mnist_families.png", dpi=90)
        plt.close(fig)
        figures.append("![MNIST by family](mnist_families.png)\n")
    acc = {r["family"]: r["test_acc"] for r in rows}
    ours = ", ".join(f"{f} {pct(a)}" for f, a in acc.items()) or "n/a"
    claims = [not_tested(
        "Hamiltonian networks are as accurate as ResNets (Euler blocks) of the same size",
        "qualitative, on CIFAR-10/100 and STL-10 (Chang et al. 2018)", ours,
        "other data set", "the paper has no MNIST number; the table compares the families at "
                          "equal parameter count")]
    counts = [r["params"] for r in rows]
    after = [*figures]
    if counts:
        after.append(f"Parameter counts {min(counts):,}–{max(counts):,} (the (z, p) families "
                     f"have a 64 -> 10 head).\n")
    if values:
        after.append(_times_line(values, lambda v: v["seconds"]))
    _report(out_dir, "Structure-preserving block families on MNIST",
            [f"{setup}\n"],
            Section("mnist", "MNIST accuracy by block family", claims, before=[table],
                    after=after), missing)
    return {"rows": rows}


def run_mnist_families(out_dir: Path, *, quick: bool = False, seed: int = 0,
                       executor: Executor | None = None, resume: bool = False,
                       quiet: bool = True) -> dict[str, Any]:
    """Test accuracy of each block family on the offline MNIST subset at equal parameter count.

    Every net: linear lift 784 -> 32, 6 blocks of width 32 (A is 32 x 32 in every family), T = 3,
    linear head; the (z, p) families have a 64 -> 10 head, so parameter counts agree to ~1.5 %
    (listed). Adam lr 2e-3, batch 128, cross-entropy. Each family is one job (task
    :func:`mnist_family_task`, checkpointed), under ``out_dir/jobs/``.

    Args:
        out_dir: output folder.
        quick: small sizes.
        seed: seed of data order and initialisation.
        executor: where the jobs run (default: in this process).
        resume: keep finished jobs and checkpoints of an earlier run.
        quiet: no progress lines.

    Returns:
        The table rows (or ``{"skipped": why}`` without MNIST).

    Raises:
        IncompleteExperiment: a job did not finish (the report covers the others).
    """
    return _run_one(mnist_experiment(quick=quick, seed=seed), out_dir, executor, resume, quiet)


# ----------------------------------------------------------------------------- robustness
EPS_GRID = [0.0, 0.1, 0.5, 1.0, 2.0]

#: the CIFAR-10 networks: the published architecture (Celledoni et al. 2022: 3 stages of 32, 64,
#: 128 channels, 4 dynamic layers each, max-pool between stages, linear head, hinge margin 0.15,
#: SGD lr 0.01 momentum 0.9, StepLR(30, 0.1), 100 epochs) and the quick size for tests
CIFAR_FULL: dict[str, Any] = dict(widths=(32, 64, 128), depth=4, epochs=100, n_train=None,
                                  n_test=1024, batch=128, lr=0.01, step_every=30, grad_clip=1.0)
CIFAR_QUICK: dict[str, Any] = dict(widths=(4, 8), depth=2, epochs=2, n_train=None, n_test=None,
                                   batch=32, lr=0.01, step_every=30, grad_clip=1.0)


def _robust_data(cfg: dict[str, Any], seed: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]:
    tr = _mnist("train", cfg["n_train"], seed)
    te = _mnist("test", cfg["n_test"], seed + 1)
    if not isinstance(tr, str) and not isinstance(te, str):
        return tr[0], tr[1], te[0], te[1], "MNIST subset"
    Xtr, ytr = make_shape("double_moons", 2000, 0.1, seed=seed)
    Xte, yte = make_shape("double_moons", 500, 0.1, seed=seed + 1)
    return Xtr, ytr, Xte, yte, "double moons (MNIST unavailable)"


def _subsample(X: torch.Tensor, y: torch.Tensor, n: int | None, seed: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    if n is None or n >= len(X):
        return X, y
    idx = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed))[:n]
    return X[idx], y[idx]


def _train_sgd_steplr(net: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, *, epochs: int,
                      batch: int, lr: float, step_every: int, seed: int,
                      loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                      grad_clip: float | None = None, ctx: JobContext | None = None) -> None:
    """SGD (momentum 0.9) with StepLR(step_every epochs, 0.1), as published.

    ``grad_clip`` (heatbath's addition) clips the gradient norm: without it the unconstrained
    conv net diverged at lr 0.01 (gradient norm 320 at the first step, NaN by the sixth, on the
    test-made CIFAR-10 files), while the non-expansive one trained. With ``ctx`` it checkpoints
    after every epoch to ``ctx.checkpoint`` and resumes from it (the same numbers as an
    uninterrupted run), and reports progress per epoch.
    """
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_every, 0.1)
    g = torch.Generator().manual_seed(seed + 7919)
    start = 0
    state = _load_checkpoint(ctx)
    if state is not None:
        start = _restore(state, net, opt, g)
        sched.load_state_dict(state["sched"])
    net.train()
    for epoch in range(start, epochs):
        perm = torch.randperm(len(X), generator=g)
        for k in range(0, len(X), batch):
            idx = perm[k:k + batch].to(X.device)
            opt.zero_grad()
            loss = loss_fn(net(X[idx]), y[idx])
            if not torch.isfinite(loss):
                break
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
            opt.step()
        sched.step()
        if ctx is not None:
            _save_checkpoint(ctx, net, opt, g, epoch + 1, sched=sched.state_dict())
            ctx.progress(epoch + 1, epochs)


def _robust_setup(st: dict[str, Any], ctx: JobContext | None = None) -> dict[str, Any]:
    """Data, network builder and training of one robustness setting (see run_robustness)."""
    from heatbath.nn import ConvStructuredNet

    seed, dev = st["seed"], torch.device(st["device"])

    def hinge(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return multiclass_hinge(out, y, 0.15)

    if st["data"] == "cifar10":
        from heatbath.data import cifar10
        from heatbath.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD

        cfg = dict(CIFAR_QUICK if st["quick"] else CIFAR_FULL)
        Xtr, ytr = cifar10(st["data_dir"], split="train")
        Xte, yte = cifar10(st["data_dir"], split="test")
        Xtr, ytr = _subsample(Xtr, ytr, st["n_train"] if st["n_train"] is not None
                              else cfg["n_train"], seed)
        Xte, yte = _subsample(Xte, yte, st["n_test"] if st["n_test"] is not None
                              else cfg["n_test"], seed + 1)
        source = f"CIFAR-10 from {st['data_dir']} ({len(Xtr)} train / {len(Xte)} test images)"
        n_epochs = st["epochs"] if st["epochs"] is not None else cfg["epochs"]
        arch = (f"ConvStructuredNet widths {tuple(cfg['widths'])}, {cfg['depth']} blocks per "
                f"stage, h = 1, max-pool, normalisation inside the model, hinge margin 0.15, "
                f"SGD lr {cfg['lr']} momentum 0.9, StepLR({cfg['step_every']}, 0.1), "
                f"gradient-norm clipping at {cfg['grad_clip']} (heatbath's addition), "
                f"{n_epochs} epochs, batch {cfg['batch']}")

        def build(constrained: bool) -> torch.nn.Module:
            torch.manual_seed(seed)
            return ConvStructuredNet(3, 10, family="gradient_flow" if constrained else "euler",
                                     widths=cfg["widths"], depth=cfg["depth"], image_size=32,
                                     T=float(cfg["depth"]), norm_bound=constrained, pool="max",
                                     normalize=(CIFAR10_MEAN, CIFAR10_STD),
                                     activation="relu")

        def fit(net: torch.nn.Module) -> None:
            _train_sgd_steplr(net, Xtr.to(dev), ytr.to(dev), epochs=n_epochs,
                              batch=cfg["batch"], lr=cfg["lr"], step_every=cfg["step_every"],
                              seed=seed, loss_fn=hinge, grad_clip=cfg["grad_clip"], ctx=ctx)
        bounds: tuple[float, float] | None = (0.0, 1.0)
    else:
        cfg = dict(QUICK["robustness"] if st["quick"] else FULL["robustness"])
        for key in ("n_train", "n_test"):
            if st[key] is not None:
                cfg[key] = st[key]
        Xtr, ytr, Xte, yte, source = _robust_data(cfg, seed)
        n_epochs = st["epochs"] if st["epochs"] is not None else cfg["epochs"]
        arch = (f"dense StructuredNet width 64, 4 blocks, T = 4, hinge margin 0.15, Adam lr "
                f"2e-3, batch 128, {n_epochs} epochs")
        bounds = (0.0, 1.0) if source.startswith("MNIST") else None
        source = f"{source} ({len(Xtr)} train / {len(Xte)} test)"

        def build(constrained: bool) -> torch.nn.Module:
            torch.manual_seed(seed)
            return StructuredNet(Xtr.shape[1], int(ytr.max()) + 1,
                                 family="gradient_flow" if constrained else "euler", width=64,
                                 depth=4, T=4.0, norm_bound=constrained)

        def fit(net: torch.nn.Module) -> None:
            steps = n_epochs * math.ceil(len(Xtr) / 128)
            _train(net, Xtr.to(dev), ytr.to(dev), steps=steps, batch=128,
                   make_opt=_adam(2e-3), seed=seed, loss_fn=hinge, ctx=ctx)
    return dict(Xte=Xte, yte=yte, source=source, arch=arch, build=build, fit=fit,
                bounds=bounds)



def _robust_correct(net: torch.nn.Module, X: torch.Tensor, y: torch.Tensor,
                    eps_list: Sequence[float], *, bounds: tuple[float, float] | None,
                    generator: torch.Generator, batch_size: int = 256, **attack: Any
                    ) -> list[torch.Tensor]:
    """Per test point and radius: correct both clean and under :func:`heatbath.nn.pgd_l2`
    (the points behind :func:`heatbath.nn.robust_accuracy`, same attack draws)."""
    from heatbath.nn import pgd_l2

    with torch.no_grad():
        clean = torch.cat([net(X[i:i + batch_size]).argmax(1) == y[i:i + batch_size]
                           for i in range(0, len(X), batch_size)])
    out = []
    for eps in eps_list:
        if eps == 0:
            out.append(clean)
            continue
        ok = []
        for i in range(0, len(X), batch_size):
            xb, yb = X[i:i + batch_size], y[i:i + batch_size]
            xa = pgd_l2(net, xb, yb, eps, bounds=bounds, generator=generator, **attack)
            with torch.no_grad():
                ok.append(net(xa).argmax(1) == yb)
        out.append(torch.cat(ok) & clean)
    return out


def robustness_task(job: Job, ctx: JobContext) -> dict[str, Any]:
    """Job task: train one network of the comparison and attack it with both attacks.

    Args:
        job: a :class:`heatbath.engine.jobs.Job` whose setting is built by
            :func:`robustness_experiment` (``constrained`` picks the net).
        ctx: its :class:`heatbath.engine.jobs.JobContext` (the training checkpoints and
            reports progress through it).

    Returns:
        Robust accuracies under both attacks (and which test points count as robust), the
        certified accuracy (non-expansive net), the Lipschitz bound, the parameter count and a
        description of the run.
    """
    from heatbath.nn import PUBLISHED_PGD, certified_accuracy

    st = dict(job.setting)
    t0 = time.perf_counter()
    setup = _robust_setup(st, ctx)
    dev = torch.device(st["device"])
    net = setup["build"](st["constrained"]).to(dev)
    setup["fit"](net)
    net.eval()
    Xte, yte = setup["Xte"].to(dev), setup["yte"].to(dev)
    attacks = {"published": PUBLISHED_PGD, "strong": st["strong"]}
    res: dict[str, Any] = {}
    for name, atk in attacks.items():
        g = torch.Generator(device=dev).manual_seed(st["seed"] + 17)
        ok = _robust_correct(net, Xte, yte, st["eps"], bounds=setup["bounds"], generator=g,
                             **atk)
        res[name] = [float(c.float().mean()) for c in ok]  # as robust_accuracy
        res[f"{name}_correct"] = [c.cpu() for c in ok]
    res["certified"] = (certified_accuracy(net, Xte, yte, st["eps"]) if st["constrained"]
                        else None)
    res.update(lipschitz=float(net.lipschitz_bound()), params=_n_params(net),
               source=setup["source"], arch=setup["arch"], n_test=len(Xte),
               seconds=time.perf_counter() - t0)
    return res


_NETS = {"unconstrained": False, "non-expansive": True}


def robustness_experiment(*, quick: bool = False, seed: int = 0, data: str = "mnist",
                          data_dir: str | Path | None = None, eps: Sequence[float] | None = None,
                          attack_steps: int = 50, restarts: int = 5,
                          attack_loss: str = "margin", n_train: int | None = None,
                          n_test: int | None = None, epochs: int | None = None,
                          device: str = "cpu") -> Experiment:
    """Configure :func:`run_robustness` (arguments as there; checked here): one job per net.

    Raises:
        ValueError: a bad argument (named), or CIFAR-10 without a readable ``data_dir``.
    """
    from heatbath._validate import check_choice, check_int

    data = check_choice("data", data, ("mnist", "cifar10"))
    attack_steps = check_int("attack_steps", attack_steps, low=1)
    restarts = check_int("restarts", restarts, low=1)
    attack_loss = check_choice("attack_loss", attack_loss, ("margin", "ce"))
    radii = [float(e) for e in (EPS_GRID if eps is None else eps)]
    if not radii or any((not math.isfinite(e)) or e < 0 for e in radii):
        raise ValueError(f"eps must be a non-empty list of finite radii >= 0, got {radii}")
    for key, v in (("n_train", n_train), ("n_test", n_test), ("epochs", epochs)):
        if v is not None:
            check_int(key, v, low=1)
    if data == "cifar10":
        if data_dir is None:
            raise ValueError("data='cifar10' needs data_dir (the folder with the CIFAR-10 "
                             "batches); heatbath never downloads data")
        from heatbath.data import cifar10

        cifar10(data_dir, split="test")  # fail early with the reader's one-line error
    strong = dict(steps=attack_steps, step_size=None, loss=attack_loss, random_start=True,
                  restarts=restarts, best_iterate=True)
    base = dict(data=data, data_dir=None if data_dir is None else str(data_dir), eps=radii,
                quick=bool(quick), n_train=n_train, n_test=n_test, epochs=epochs,
                device=str(device), strong=strong, seed=seed)
    jobs = [Job(f"jobs/{label}", dict(base, constrained=c), (seed,),
                task=f"{_TASKS}:robustness_task", cost=1e6)
            for label, c in _NETS.items()]

    def report(out_dir: Path, values: Mapping[str, Any], missing: Mapping[str, str]
               ) -> dict[str, Any]:
        return _robustness_report(out_dir, data, radii, strong, bool(quick), values, missing)

    return Experiment("robustness", jobs, report)


def _robustness_report(out_dir: Path, data: str, eps: list[float], strong: Mapping[str, Any],
                       quick: bool, values: Mapping[str, Any], missing: Mapping[str, str]
                       ) -> dict[str, Any]:
    from heatbath.nn import PUBLISHED_PGD

    res = {label: values[f"jobs/{label}"] for label in _NETS if f"jobs/{label}" in values}
    nets = list(res)
    first = next(iter(res.values()), None)
    source = first["source"] if first else "n/a (no job finished)"
    rows = []
    for i, e in enumerate(eps):
        row: dict[str, Any] = {"eps": e}
        for label in nets:
            row[f"{label} (published PGD)"] = res[label]["published"][i]
            row[f"{label} (strong PGD)"] = res[label]["strong"][i]
        if "non-expansive" in res:
            row["non-expansive certified"] = res["non-expansive"]["certified"][i]
        rows.append(row)
    overstate = {label: [res[label]["published"][i] - res[label]["strong"][i]
                         for i in range(len(eps))] for label in nets}
    steps, restarts, loss = strong["steps"], strong["restarts"], strong["loss"]
    figures = []
    if res:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        colours = {"unconstrained": "tab:red", "non-expansive": "tab:blue"}
        for label in nets:
            ax.plot(eps, res[label]["published"], "o--", color=colours[label], alpha=0.6,
                    label=f"{label}, published PGD (10 steps)")
            ax.plot(eps, res[label]["strong"], "o-", color=colours[label],
                    label=f"{label}, strong PGD ({steps} x {restarts}, {loss})")
        if "non-expansive" in res:
            ax.plot(eps, res["non-expansive"]["certified"], "k:", marker="s",
                    label="non-expansive, certified")
        ax.set_xlabel("L2 radius eps")
        ax.set_ylabel("accuracy")
        ax.set_title(f"Robustness: {source.split(' (')[0]}", fontsize=10)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "robustness.png", dpi=90)
        plt.close(fig)
        figures.append("![robustness](robustness.png)\n")
    worst = max((max(v) for v in overstate.values()), default=math.nan)
    described = " / ".join(f"{label}: {res[label]['params']:,} parameters, Lipschitz bound "
                           f"{res[label]['lipschitz']:.3g}" for label in nets)
    note = (f"Data set: {source}. Networks: {first['arch'] if first else 'n/a'}; {described}. "
            f"Published PGD: foolbox L2PGD defaults with 10 steps (relative step 0.025, "
            f"cross-entropy, random start, last iterate). Strong PGD: {loss} loss, random "
            f"start, {steps} steps x {restarts} restarts, best iterate."
            + (f" The published setting overstates robust accuracy by up to "
               f"{100 * worst:.1f} points." if math.isfinite(worst) else ""))
    table = _write_table(out_dir, "robustness", rows if nets else [],
                         f"Robust accuracy under L2 PGD ({source})", note)
    both = len(nets) == 2
    clean_claim = ("the unconstrained net is more accurate on clean data", "90.9 % vs 81.1 %")
    large_claim = (f"the non-expansive net is more robust at eps = {eps[-1]:g} (strong attack)",
                   "47.0 % vs 7.2 % at eps = 1 (10-step PGD)")
    if both:
        u, ne = res["unconstrained"], res["non-expansive"]
        clean_ok, large_ok = u["strong"][0] >= ne["strong"][0], ne["strong"][-1] > u["strong"][-1]
        claims = [_beats(u["strong_correct"][0], ne["strong_correct"][0],
                         ("unconstrained", "non-expansive"), *clean_claim),
                  _beats(ne["strong_correct"][-1], u["strong_correct"][-1],
                         ("non-expansive", "unconstrained"), *large_claim)]
    else:
        clean_ok = large_ok = None
        claims = [not_tested(c, p, "n/a", "job missing", "a network's job did not finish")
                  for c, p in (clean_claim, large_claim)]
    for label in nets:  # heatbath's finding: the published attack is too weak
        claims.append(_beats(res[label]["published_correct"][-1],
                             res[label]["strong_correct"][-1], ("published", "strong"),
                             f"the published 10-step attack overstates the {label} net's robust "
                             f"accuracy at eps = {eps[-1]:g} (heatbath's finding)",
                             "– (the paper reports the 10-step numbers)"))
    if quick:
        claims = shorten(claims)
    after = [_times_line(res, lambda v: v["seconds"])] if res else []
    _report(out_dir, "Robustness of non-expansive networks",
            [f"{note}\n", *figures, PAIRED_BY_POINT],
            Section("robustness", f"Robust accuracy ({source})", claims, before=[table],
                    after=after), missing)
    return {"rows": rows, "source": source, "data": data, "eps": eps,
            "n_test": first["n_test"] if first else 0,
            "ordering_clean": clean_ok, "ordering_large_eps": large_ok,
            "overstatement": overstate,
            "lipschitz": {label: res[label]["lipschitz"] for label in nets},
            "params": {label: res[label]["params"] for label in nets},
            "attack": {"published": dict(PUBLISHED_PGD), "strong": dict(strong)}}


def run_robustness(out_dir: Path, *, quick: bool = False, seed: int = 0, data: str = "mnist",
                   data_dir: str | Path | None = None, eps: list[float] | None = None,
                   attack_steps: int = 50, restarts: int = 5, attack_loss: str = "margin",
                   n_train: int | None = None, n_test: int | None = None,
                   epochs: int | None = None, device: str = "cpu",
                   executor: Executor | None = None, resume: bool = False,
                   quiet: bool = True) -> dict[str, Any]:
    """Accuracy under L2 PGD of an unconstrained versus a non-expansive net, two attacks.

    Both networks have the same width, depth, parameter count, loss (multi-class hinge, margin
    0.15) and training; they differ only in the constraints. Each network is one job (task
    :func:`robustness_task`; its training checkpoints), under ``out_dir/jobs/``; the report is
    ``robustness.md``/``.csv`` (table), ``REPORT.md`` (claims) and ``robustness.png``.

    * ``data="mnist"`` (default, offline subset): dense nets, lift to width 64, 4 blocks, T = 4,
      head; Adam lr 2e-3, batch 128. Unconstrained: Euler residual blocks (tanh), free lift and
      head. Non-expansive: gradient-flow blocks (ReLU, clamped step), lift and head of norm <= 1.
    * ``data="cifar10"`` (needs ``data_dir``; see :func:`heatbath.data.cifar10`): the published
      convolutional comparison (:data:`CIFAR_FULL`, quick size :data:`CIFAR_QUICK`) with
      :class:`heatbath.nn.ConvStructuredNet`: Euler blocks with free convolutions versus
      gradient-flow blocks with norm-bounded lift, 1x1 transitions and head; max pooling
      between stages; per-channel normalisation inside the model; SGD + StepLR.

    Attacks (inputs in [0, 1]): the **published** setting (foolbox L2PGD defaults, 10 steps,
    relative step 0.025, cross-entropy, last iterate; :data:`heatbath.nn.PUBLISHED_PGD`) and
    heatbath's **strong** one (``attack_loss``, random start, ``attack_steps`` steps,
    ``restarts`` restarts, best iterate). The certified accuracy of the non-expansive net uses
    its Lipschitz bound (1 for MNIST; :math:`1/\\min_c\\,\\text{std}_c` with the CIFAR-10
    normalisation).

    Args:
        out_dir: output folder.
        quick: small sizes (tens of seconds).
        seed: seed of data order, initialisation and attacks.
        data: ``"mnist"`` or ``"cifar10"``.
        data_dir: CIFAR-10 folder (required for ``"cifar10"``).
        eps: radii (default 0, 0.1, 0.5, 1, 2).
        attack_steps: steps of the strong attack, >= 1.
        restarts: restarts of the strong attack, >= 1.
        attack_loss: ``"margin"`` or ``"ce"`` for the strong attack.
        n_train: training images (default: all; MNIST quick 1,500).
        n_test: attacked test images (default: MNIST 1,000 / quick 200; CIFAR-10 1,024).
        epochs: override the configuration's epochs.
        device: torch device for training and attacks.
        executor: where the jobs run (default: in this process).
        resume: keep finished jobs and checkpoints of an earlier run.
        quiet: no progress lines.

    Returns:
        The table rows, the data set that ran, the orderings and the overstatement of the
        published attack.

    Raises:
        ValueError: a bad argument (named).
        IncompleteExperiment: a job did not finish (the report covers the other).
    """
    exp = robustness_experiment(quick=quick, seed=seed, data=data, data_dir=data_dir, eps=eps,
                                attack_steps=attack_steps, restarts=restarts,
                                attack_loss=attack_loss, n_train=n_train, n_test=n_test,
                                epochs=epochs, device=device)
    return _run_one(exp, out_dir, executor, resume, quiet)


# ----------------------------------------------------------------------------- thermodynamic
_THERMO_HP = {"adam": dict(h=5e-3),
              "langevin": dict(h=0.2, gamma=1.0, tau=1e-5),
              # sigma_A**2 * h / 2 = 2.5e-6 < tau1: the thermostat can bring the lift's kinetic
              # energy down to tau1 (docs/theory/adaptive-langevin.md, 'Thermostat scale')
              "adlala": dict(h=0.2, gamma=1.0, tau1=1e-5, tau2=1e-5, sigma_A=0.005,
                             epsilon=0.05)}


def thermo_task(job: Job, ctx: JobContext) -> dict[str, Any]:
    """Job task: one (family, method) run of :func:`run_thermo_training`.

    Args:
        job: a :class:`heatbath.engine.jobs.Job` with setting ``{"family", "method", "n",
            "steps"}``.
        ctx: its :class:`heatbath.engine.jobs.JobContext` (checkpoints and progress).

    Returns:
        The table row, the training losses, which test points it classifies correctly, and
        the wall time.
    """
    from heatbath.optim import build_optimizer

    st, seed = job.setting, job.seeds[0]
    fam, method = st["family"], st["method"]
    Xtr, ytr = make_shape("swiss_roll", st["n"], 0.05, seed=seed)
    Xte, yte = make_shape("swiss_roll", st["n"], 0.05, seed=seed + 1)
    torch.manual_seed(seed)
    net = StructuredNet(2, 2, family=fam, width=8, depth=8, T=4.0)

    def make_opt(m: torch.nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(method, m, seed=seed, **_THERMO_HP[method])

    t0 = time.perf_counter()
    losses = _train(net, Xtr, ytr, steps=st["steps"], batch=64, make_opt=make_opt, seed=seed,
                    ctx=ctx)
    correct = _correct(net, Xte, yte)
    row = dict(family=fam, method=method, final_loss=float(np.mean(losses[-20:])),
               train_acc=_accuracy(net, Xtr, ytr), test_acc=float(correct.double().mean()))
    return {"row": row, "losses": losses, "correct": correct,
            "seconds": time.perf_counter() - t0}


def thermo_experiment(*, quick: bool = False, seed: int = 0) -> Experiment:
    """Configure :func:`run_thermo_training`: one job per (family, method)."""
    cfg = QUICK["thermo"] if quick else FULL["thermo"]
    jobs = [Job(f"jobs/{fam}/{method}", dict(family=fam, method=method, n=cfg["n"],
                                              steps=cfg["steps"]), (seed,),
                task=f"{_TASKS}:thermo_task", cost=float(cfg["steps"]))
            for fam in cfg["families"] for method in cfg["methods"]]

    def report(out_dir: Path, values: Mapping[str, Any], missing: Mapping[str, str]
               ) -> dict[str, Any]:
        return _thermo_report(out_dir, cfg, quick, values, missing)

    return Experiment("thermo", jobs, report)


def _thermo_report(out_dir: Path, cfg: Mapping[str, Any], quick: bool,
                   values: Mapping[str, Any], missing: Mapping[str, str]) -> dict[str, Any]:
    fams, methods = cfg["families"], cfg["methods"]
    done = [(f, m) for f in fams for m in methods if f"jobs/{f}/{m}" in values]
    rows = [values[f"jobs/{f}/{m}"]["row"] for f, m in done]
    setup = (f"Swiss roll (noise 0.05, n = {cfg['n']}), lift 2 -> 8, 8 blocks, T = 4, "
             f"{cfg['steps']} steps of batch 64. Adam h = lr = 5e-3; Langevin BAOAB h = 0.2, "
             f"gamma = 1, tau = 1e-5; AdLaLa h = 0.2, gamma = 1, tau1 = tau2 = 1e-5, "
             f"sigma_A = 0.005, epsilon = 0.05.")
    table = _write_table(out_dir, "thermo_training", rows,
                         "Structure-preserving nets trained with thermodynamic optimisers", setup)
    figures = []
    if rows:
        plt = _plt()
        fig, axes = plt.subplots(1, len(fams), figsize=(5.5 * len(fams), 4), squeeze=False)
        for fi, fam in enumerate(fams):
            for method in methods:
                if (fam, method) in done:
                    axes[0, fi].plot(_smooth(values[f"jobs/{fam}/{method}"]["losses"], 25),
                                     label=method)
            axes[0, fi].set_title(f"{fam} network, swiss roll")
            axes[0, fi].set_xlabel("step")
            axes[0, fi].set_ylabel("training loss (smoothed)")
            axes[0, fi].set_yscale("log")
            axes[0, fi].legend()
        fig.tight_layout()
        fig.savefig(out_dir / "thermo_training.png", dpi=90)
        plt.close(fig)
        figures.append("![thermodynamic training](thermo_training.png)\n")
    claims = []
    for fam in fams:
        text = f"AdLaLa beats Adam (test accuracy, {fam} network)"
        paper = "AdLaLa beats Adam on SHLPs (Leimkuhler et al. 2019); here on another network"
        if (fam, "adlala") not in done or (fam, "adam") not in done:
            claims.append(not_tested(text, paper, "n/a", "job missing"))
            continue
        claims.append(_beats(values[f"jobs/{fam}/adlala"]["correct"],
                             values[f"jobs/{fam}/adam"]["correct"], ("AdLaLa", "Adam"), text,
                             paper))
    if quick:
        claims = shorten(claims)
    after = [*figures, _times_line(values, lambda v: v["seconds"])] if values else []
    _report(out_dir, "Structure-preserving networks trained with thermodynamic optimisers",
            [f"{setup}\n", PAIRED_BY_POINT],
            Section("thermo", "Thermodynamic training", claims, before=[table], after=after),
            missing)
    return {"rows": rows}


def run_thermo_training(out_dir: Path, *, quick: bool = False, seed: int = 0,
                        executor: Executor | None = None, resume: bool = False,
                        quiet: bool = True) -> dict[str, Any]:
    """Hamiltonian (Verlet) and contractive (gradient-flow) nets: AdLaLa / Langevin vs Adam.

    Swiss roll (noise 0.05), linear lift 2 -> 8, 8 blocks, T = 4, minibatch 64. Optimisers from
    :func:`heatbath.optim.build_optimizer`: Adam (h = lr = 5e-3); Langevin BAOAB (h = 0.2,
    gamma = 1, tau = 1e-5); AdLaLa (h = 0.2, gamma = 1, tau1 = tau2 = 1e-5, sigma_A = 0.005,
    epsilon = 0.05) with the lift as its thermostatted first layer. Each (family, method) run is
    one job (task :func:`thermo_task`).

    Args:
        out_dir: output folder.
        quick: small sizes.
        seed: seed of data, initialisation and noise.
        executor: where the jobs run (default: in this process).
        resume: keep finished jobs and checkpoints of an earlier run.
        quiet: no progress lines.

    Returns:
        The table rows.

    Raises:
        IncompleteExperiment: a job did not finish (the report covers the others).
    """
    return _run_one(thermo_experiment(quick=quick, seed=seed), out_dir, executor, resume, quiet)

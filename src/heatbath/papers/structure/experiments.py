"""Experiments for the structure-preserving networks (see docs/structure-preserving.md).

Four entry points, each ``run_<name>(out_dir, *, quick=False, seed=0) -> dict`` writing PNG
figures and a markdown + CSV table into ``out_dir`` and returning the numbers:

- :func:`run_shapes2d` — binary classification on the spiral, swiss roll, double moons, double
  circles and donut sets with several block families; the feature flow drawn layer by layer.
- :func:`run_mnist_families` — MNIST (offline 5,000-digit subset) test accuracy of every block
  family at (nearly) equal parameter count.
- :func:`run_robustness` — accuracy under the published L2 PGD setting and heatbath's strong
  one for an unconstrained ResNet-like network and a non-expansive one (gradient-flow blocks,
  lift and head of norm <= 1), both trained with the multi-class hinge loss, margin 0.15, as in
  Celledoni et al. 2022, on the offline MNIST subset (dense nets) or on CIFAR-10 from a user
  folder (convolutional nets); expected ordering: the unconstrained net wins at eps = 0, the
  non-expansive one at large eps. Also the certified accuracy of the non-expansive net.
- :func:`run_thermo_training` — Hamiltonian and contractive networks trained with
  ``heatbath.optim`` AdLaLa and Langevin versus Adam on the swiss roll.

``quick=True`` shrinks every run to ~10-30 s on 2 CPU cores (for the test suite); the full sizes
are in the ``FULL``/``QUICK`` dicts. All randomness comes from ``seed``.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from heatbath.data.shapes2d import DOMAINS, make_shape
from heatbath.nn import StructuredNet, multiclass_hinge, robust_accuracy

__all__ = ["run_shapes2d", "run_mnist_families", "run_robustness", "run_thermo_training",
           "QUICK", "FULL", "CIFAR_FULL", "CIFAR_QUICK", "EPS_GRID"]

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


# ----------------------------------------------------------------------------- helpers
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _write_table(out_dir: Path, stem: str, rows: list[dict[str, Any]], title: str,
                 note: str = "") -> None:
    if not rows:
        return
    cols = list(rows[0])
    with open(out_dir / f"{stem}.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)

    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = [f"# {title}", "", "| " + " | ".join(cols) + " |",
             "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    if note:
        lines += ["", note]
    (out_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")


def _accuracy(net: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    with torch.no_grad():
        acc = float((net(X).argmax(1) == y).float().mean())
    net.train()
    return acc


def _train(net: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, *, steps: int, batch: int,
           make_opt: Callable[[torch.nn.Module], torch.optim.Optimizer], seed: int,
           loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
           ) -> list[float]:
    opt = make_opt(net)
    g = torch.Generator().manual_seed(seed + 7919)
    losses: list[float] = []
    n = len(X)
    perm = torch.randperm(n, generator=g)
    pos = 0
    for _ in range(steps):
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


# ----------------------------------------------------------------------------- 2-D shapes
def run_shapes2d(out_dir: Path, *, quick: bool = False, seed: int = 0) -> dict[str, Any]:
    """Train each family on each 2-D set; plot decision regions and the layer-by-layer flow.

    Networks: the two input coordinates embedded at channels 0 and nf - 1 of nf = 4 features
    (identity lift, as ``DecodEPFL/HamiltonianNet``), K blocks with T = 0.25 K, linear head;
    Adam (lr 1e-2), full batch, cross-entropy. The flow panels show the features at layers
    0, K/4, K/2, 3K/4, K projected on channels 0 and nf - 1 (the (z) part for (z, p) states).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = QUICK["shapes2d"] if quick else FULL["shapes2d"]
    plt = _plt()
    nf, K = 4, cfg["depth"]
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for di, name in enumerate(DATASETS):
        Xtr, ytr = make_shape(name, cfg["n"], 0.0, seed=seed + di, embed_dim=nf)
        Xte, yte = make_shape(name, cfg["n"], 0.0, seed=seed + 1000 + di, embed_dim=nf)
        scale = max(abs(v) for v in DOMAINS[name])
        Xtr, Xte = Xtr / scale, Xte / scale  # inputs in [-1, 1]^2
        fams = cfg["families"]
        snaps = [0, K // 4, K // 2, 3 * K // 4, K]
        fig, axes = plt.subplots(len(fams), len(snaps) + 1,
                                 figsize=(2.6 * (len(snaps) + 1), 2.6 * len(fams)),
                                 squeeze=False)
        for fi, fam in enumerate(fams):
            torch.manual_seed(seed + 31 * fi + di)
            net = StructuredNet(nf, 2, family=fam, width=nf, depth=K, T=0.25 * K,
                                lift="identity", init_scale=1.0)
            losses = _train(net, Xtr, ytr, steps=cfg["steps"], batch=len(Xtr),
                            make_opt=_adam(1e-2), seed=seed)
            acc_tr, acc_te = _accuracy(net, Xtr, ytr), _accuracy(net, Xte, yte)
            rows.append(dict(dataset=name, family=fam, params=_n_params(net),
                             final_loss=losses[-1] if losses else float("nan"),
                             train_acc=acc_tr, test_acc=acc_te))
            # decision regions in the input plane
            ax = axes[fi, 0]
            gx = torch.linspace(-1.05, 1.05, 120)
            GX, GY = torch.meshgrid(gx, gx, indexing="xy")
            grid = torch.zeros(GX.numel(), nf)
            grid[:, 0], grid[:, nf - 1] = GX.reshape(-1), GY.reshape(-1)
            net.eval()
            with torch.no_grad():
                prob = torch.softmax(net(grid), 1)[:, 1].reshape(GX.shape)
                traj = net.trajectory(Xte)
            ax.contourf(GX.numpy(), GY.numpy(), prob.numpy(), levels=20, cmap="RdBu_r",
                        alpha=0.6)
            ax.scatter(Xte[:, 0], Xte[:, nf - 1], c=yte, cmap="bwr", s=3)
            ax.set_title(f"{fam}: test acc {acc_te:.2f}", fontsize=8)
            for si, k in enumerate(snaps):
                ax = axes[fi, si + 1]
                f = traj[k][:, :nf]
                ax.scatter(f[:, 0], f[:, nf - 1], c=yte, cmap="bwr", s=3)
                ax.set_title(f"layer {k}", fontsize=8)
            for a in axes[fi]:
                a.set_xticks([])
                a.set_yticks([])
        fig.suptitle(f"{name}: decision regions and feature flow (channels 0, {nf - 1})")
        fig.tight_layout()
        fig.savefig(out_dir / f"shapes2d_{name}.png", dpi=90)
        plt.close(fig)
    _write_table(out_dir, "shapes2d", rows, "2-D classification by block family",
                 f"nf = {nf}, K = {K}, T = {0.25 * K}, Adam lr 1e-2, full batch, "
                 f"{cfg['steps']} steps, n = {cfg['n']} (fresh test set, other seed). "
                 f"Wall time {time.perf_counter() - t0:.0f} s.")
    return {"rows": rows}


# ----------------------------------------------------------------------------- MNIST
def _mnist_net(family: str, seed: int, width: int = 32, depth: int = 6) -> StructuredNet:
    torch.manual_seed(seed)
    return StructuredNet(784, 10, family=family, width=width, depth=depth, T=float(depth) * 0.5,
                         hidden=width)


def mnist_family_task(job: Any, ctx: Any) -> tuple[dict[str, Any], list[float]]:
    """Job task: train one family of :func:`run_mnist_families`.

    Args:
        job: a :class:`heatbath.engine.jobs.Job` with setting ``{"family", "quick"}``.
        ctx: its :class:`heatbath.engine.jobs.JobContext` (unused: the run is short).

    Returns:
        The table row and the training losses.
    """
    fam, seed = job.setting["family"], job.seeds[0]
    cfg = QUICK["mnist"] if job.setting["quick"] else FULL["mnist"]
    tr = _mnist("train", cfg["n_train"], seed)
    te = _mnist("test", cfg["n_test"], seed + 1)
    if isinstance(tr, str) or isinstance(te, str):
        raise RuntimeError(tr if isinstance(tr, str) else str(te))
    (Xtr, ytr), (Xte, yte) = tr, te
    steps = cfg["epochs"] * math.ceil(len(Xtr) / 128)
    net = _mnist_net(fam, seed)
    t0 = time.perf_counter()
    losses = _train(net, Xtr, ytr, steps=steps, batch=128, make_opt=_adam(2e-3), seed=seed)
    row = dict(family=fam, params=_n_params(net), train_acc=_accuracy(net, Xtr, ytr),
               test_acc=_accuracy(net, Xte, yte), seconds=time.perf_counter() - t0)
    return row, losses


def run_mnist_families(out_dir: Path, *, quick: bool = False, seed: int = 0,
                       executor: Any = None) -> dict[str, Any]:
    """Test accuracy of each block family on the offline MNIST subset at equal parameter count.

    Every net: linear lift 784 -> 32, 6 blocks of width 32 (A is 32 x 32 in every family), T = 3,
    linear head; the (z, p) families have a 64 -> 10 head, so parameter counts agree to ~1.5 %
    (listed). Adam lr 2e-3, batch 128, cross-entropy. Each family is one job of the experiment
    framework (task :func:`mnist_family_task`), run by ``executor`` (default: in this process)
    into ``out_dir/jobs/``.

    Args:
        out_dir: output folder.
        quick: small sizes.
        seed: seed of data order and initialisation.
        executor: a :class:`heatbath.engine.executors.Executor` (default ``LocalExecutor(1)``).

    Returns:
        The table rows (or ``{"skipped": why}`` without MNIST).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = QUICK["mnist"] if quick else FULL["mnist"]
    tr = _mnist("train", cfg["n_train"], seed)
    te = _mnist("test", cfg["n_test"], seed + 1)
    if isinstance(tr, str) or isinstance(te, str):
        msg = tr if isinstance(tr, str) else str(te)
        (out_dir / "mnist_families.md").write_text(f"# MNIST by block family\n\n{msg}\n")
        print(msg)
        return {"skipped": msg}
    Xtr, Xte = tr[0], te[0]
    from heatbath.engine.executors import LocalExecutor
    from heatbath.engine.jobs import Job

    jobs = [Job(fam, dict(family=fam, quick=bool(quick)), (seed,),
                task="heatbath.papers.structure.experiments:mnist_family_task")
            for fam in cfg["families"]]
    outcome = (executor or LocalExecutor(1)).run(jobs, out_dir / "jobs")
    if outcome.missing:
        raise RuntimeError("MNIST family jobs did not finish: " + "; ".join(
            f"{k}: {v}" for k, v in outcome.missing.items()))
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    rows = []
    for fam in cfg["families"]:
        row, losses = outcome.value(fam)
        rows.append(row)
        k = max(1, len(losses) // 30)
        sm = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax1.plot(sm, label=fam)
    ax1.set_xlabel("step")
    ax1.set_ylabel("training loss (smoothed)")
    ax1.set_yscale("log")
    ax1.legend(fontsize=8)
    ax2.bar([r["family"] for r in rows], [r["test_acc"] for r in rows], color="tab:blue")
    lo = min(r["test_acc"] for r in rows)
    ax2.set_ylim(max(0.0, lo - 0.1), 1.0)
    ax2.set_ylabel("test accuracy")
    ax2.tick_params(axis="x", rotation=30)
    fig.suptitle(f"MNIST subset ({len(Xtr)} train / {len(Xte)} test), equal parameter count")
    fig.tight_layout()
    fig.savefig(out_dir / "mnist_families.png", dpi=90)
    plt.close(fig)
    _write_table(out_dir, "mnist_families", rows, "MNIST accuracy by block family",
                 f"{cfg['epochs']} epochs, Adam lr 2e-3, batch 128, width 32, 6 blocks, T = 3.")
    return {"rows": rows}


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
                      grad_clip: float | None = None) -> None:
    """SGD (momentum 0.9) with StepLR(step_every epochs, 0.1), as published.

    ``grad_clip`` (heatbath's addition) clips the gradient norm: without it the unconstrained
    conv net diverged at lr 0.01 (gradient norm 320 at the first step, NaN by the sixth, on the
    test-made CIFAR-10 files), while the non-expansive one trained.
    """
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_every, 0.1)
    g = torch.Generator().manual_seed(seed + 7919)
    net.train()
    for _ in range(epochs):
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


def _robust_setup(st: dict[str, Any]) -> dict[str, Any]:
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
                              seed=seed, loss_fn=hinge, grad_clip=cfg["grad_clip"])
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
                   make_opt=_adam(2e-3), seed=seed, loss_fn=hinge)
    return dict(Xte=Xte, yte=yte, source=source, arch=arch, build=build, fit=fit,
                bounds=bounds)


def robustness_task(job: Any, ctx: Any) -> dict[str, Any]:
    """Job task: train one network of the comparison and attack it with both attacks.

    Args:
        job: a :class:`heatbath.engine.jobs.Job` whose setting is built by
            :func:`run_robustness` (``constrained`` picks the net).
        ctx: its :class:`heatbath.engine.jobs.JobContext` (unused: the run is short).

    Returns:
        Robust accuracies under both attacks, the certified accuracy (non-expansive net),
        the Lipschitz bound, the parameter count and a description of the run.
    """
    from heatbath.nn import PUBLISHED_PGD, certified_accuracy

    st = dict(job.setting)
    t0 = time.perf_counter()
    setup = _robust_setup(st)
    dev = torch.device(st["device"])
    net = setup["build"](st["constrained"]).to(dev)
    setup["fit"](net)
    net.eval()
    Xte, yte = setup["Xte"].to(dev), setup["yte"].to(dev)
    attacks = {"published": PUBLISHED_PGD, "strong": st["strong"]}
    res: dict[str, Any] = {}
    for name, atk in attacks.items():
        g = torch.Generator(device=dev).manual_seed(st["seed"] + 17)
        res[name] = robust_accuracy(net, Xte, yte, st["eps"], bounds=setup["bounds"],
                                    batch_size=256, generator=g, **atk)
    res["certified"] = (certified_accuracy(net, Xte, yte, st["eps"]) if st["constrained"]
                        else None)
    res.update(lipschitz=float(net.lipschitz_bound()), params=_n_params(net),
               source=setup["source"], arch=setup["arch"], n_test=len(Xte),
               seconds=time.perf_counter() - t0)
    return res


def run_robustness(out_dir: Path, *, quick: bool = False, seed: int = 0, data: str = "mnist",
                   data_dir: str | Path | None = None, eps: list[float] | None = None,
                   attack_steps: int = 50, restarts: int = 5, attack_loss: str = "margin",
                   n_train: int | None = None, n_test: int | None = None,
                   epochs: int | None = None, device: str = "cpu",
                   executor: Any = None) -> dict[str, Any]:
    """Accuracy under L2 PGD of an unconstrained versus a non-expansive net, two attacks.

    Both networks have the same width, depth, parameter count, loss (multi-class hinge, margin
    0.15) and training; they differ only in the constraints. Each network is one job of the
    experiment framework (:mod:`heatbath.engine.jobs`, task :func:`robustness_task`), run by
    ``executor`` (default: in this process) into ``out_dir/jobs/``; the report is
    ``robustness.md`` (table), ``REPORT.md`` (claims) and ``robustness.png``.

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
        executor: a :class:`heatbath.engine.executors.Executor` (default: ``LocalExecutor(1)``,
            in this process).

    Returns:
        The table rows, the data set that ran, the orderings and the overstatement of the
        published attack.

    Raises:
        RuntimeError: a job did not finish (the reason is in the message).
    """
    from heatbath._validate import check_choice, check_int
    from heatbath.engine.executors import LocalExecutor
    from heatbath.engine.jobs import Job
    from heatbath.nn import PUBLISHED_PGD
    from heatbath.output.claims import Claim, Section, verdict_holds, write_report

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = check_choice("data", data, ("mnist", "cifar10"))
    attack_steps = check_int("attack_steps", attack_steps, low=1)
    restarts = check_int("restarts", restarts, low=1)
    attack_loss = check_choice("attack_loss", attack_loss, ("margin", "ce"))
    eps = [float(e) for e in (EPS_GRID if eps is None else eps)]
    if not eps or any((not math.isfinite(e)) or e < 0 for e in eps):
        raise ValueError(f"eps must be a non-empty list of finite radii >= 0, got {eps}")
    if data == "cifar10":
        if data_dir is None:
            raise ValueError("data='cifar10' needs data_dir (the folder with the CIFAR-10 "
                             "batches); heatbath never downloads data")
        from heatbath.data import cifar10

        cifar10(data_dir, split="test")  # fail early with the reader's one-line error
    t_start = time.perf_counter()
    strong = dict(steps=attack_steps, step_size=None, loss=attack_loss, random_start=True,
                  restarts=restarts, best_iterate=True)
    nets = {"unconstrained": False, "non-expansive": True}
    base = dict(data=data, data_dir=None if data_dir is None else str(data_dir), eps=eps,
                quick=bool(quick), n_train=n_train, n_test=n_test, epochs=epochs,
                device=str(device), strong=strong, seed=seed)
    jobs = [Job(label, dict(base, constrained=c), (seed,),
                task="heatbath.papers.structure.experiments:robustness_task")
            for label, c in nets.items()]
    outcome = (executor or LocalExecutor(1)).run(jobs, out_dir / "jobs")
    if outcome.missing:
        raise RuntimeError("robustness jobs did not finish: " + "; ".join(
            f"{k}: {v}" for k, v in outcome.missing.items()))
    res = {label: outcome.value(label) for label in nets}
    acc = {label: {"published": res[label]["published"], "strong": res[label]["strong"]}
           for label in nets}
    certified = res["non-expansive"]["certified"]
    lip = {label: res[label]["lipschitz"] for label in nets}
    params = {label: res[label]["params"] for label in nets}
    source, arch = res["unconstrained"]["source"], res["unconstrained"]["arch"]
    rows = []
    for i, e in enumerate(eps):
        row: dict[str, Any] = {"eps": e}
        for label in nets:
            row[f"{label} (published PGD)"] = acc[label]["published"][i]
            row[f"{label} (strong PGD)"] = acc[label]["strong"][i]
        row["non-expansive certified"] = certified[i]
        rows.append(row)
    overstate = {label: [acc[label]["published"][i] - acc[label]["strong"][i]
                         for i in range(len(eps))] for label in nets}
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    colours = {"unconstrained": "tab:red", "non-expansive": "tab:blue"}
    for label in nets:
        ax.plot(eps, acc[label]["published"], "o--", color=colours[label], alpha=0.6,
                label=f"{label}, published PGD (10 steps)")
        ax.plot(eps, acc[label]["strong"], "o-", color=colours[label],
                label=f"{label}, strong PGD ({attack_steps} x {restarts}, {attack_loss})")
    ax.plot(eps, certified, "k:", marker="s", label="non-expansive, certified")
    ax.set_xlabel("L2 radius eps")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Robustness: {source.split(' (')[0]}", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "robustness.png", dpi=90)
    plt.close(fig)
    clean_ok = acc["unconstrained"]["strong"][0] >= acc["non-expansive"]["strong"][0]
    large_ok = acc["non-expansive"]["strong"][-1] > acc["unconstrained"]["strong"][-1]
    worst = max(max(v) for v in overstate.values())
    note = (f"Data set: {source}. Networks: {arch}; parameters "
            f"{params['unconstrained']:,} / {params['non-expansive']:,}; Lipschitz bounds "
            f"{lip['unconstrained']:.3g} / {lip['non-expansive']:.3g}. Published PGD: foolbox "
            f"L2PGD defaults with 10 steps (relative step 0.025, cross-entropy, random start, "
            f"last iterate). Strong PGD: {attack_loss} loss, random start, {attack_steps} steps "
            f"x {restarts} restarts, best iterate. The published setting overstates robust "
            f"accuracy by up to {100 * worst:.1f} points. Wall time "
            f"{time.perf_counter() - t_start:.0f} s.")
    _write_table(out_dir, "robustness", rows, f"Robust accuracy under L2 PGD ({source})", note)
    ours_clean = (f"{pct(acc['unconstrained']['strong'][0])} vs "
                  f"{pct(acc['non-expansive']['strong'][0])}")
    ours_large = (f"{pct(acc['non-expansive']['strong'][-1])} vs "
                  f"{pct(acc['unconstrained']['strong'][-1])} at eps = {eps[-1]:g}")
    claims = [
        Claim("the unconstrained net is more accurate on clean data", "90.9 % vs 81.1 %",
              ours_clean, *verdict_holds(clean_ok, "the constraint also regularises here")),
        Claim("the non-expansive net is more robust at large eps (strong attack)",
              "47.0 % vs 7.2 % at eps = 1 (10-step PGD)", ours_large,
              *verdict_holds(large_ok, "the non-expansive net is not more robust")),
        Claim("the published 10-step attack measures robust accuracy faithfully", "–",
              f"overstates by up to {100 * worst:.1f} points",
              *verdict_holds(worst <= 0.01, "it under-explores the eps ball")),
    ]
    write_report(out_dir / "REPORT.md", title="Robustness of non-expansive networks",
                 intro=[f"{note}\n", "![robustness](robustness.png)\n"],
                 sections=[Section("robustness", f"Robust accuracy ({source})", claims,
                                   before=[(out_dir / "robustness.md").read_text()])],
                 group_label="experiment")
    return {"rows": rows, "source": source, "data": data, "eps": eps,
            "n_test": res["unconstrained"]["n_test"],
            "ordering_clean": clean_ok, "ordering_large_eps": large_ok,
            "overstatement": overstate, "lipschitz": lip, "params": params,
            "attack": {"published": dict(PUBLISHED_PGD), "strong": strong}}


def pct(x: float) -> str:
    """A fraction as a percentage with one decimal."""
    return f"{100 * x:.1f} %"


# ----------------------------------------------------------------------------- thermodynamic
_THERMO_HP = {"adam": dict(h=5e-3),
              "langevin": dict(h=0.2, gamma=1.0, tau=1e-5),
              "adlala": dict(h=0.2, gamma=1.0, tau1=1e-5, tau2=1e-5, sigma_A=0.01,
                             epsilon=0.05)}


def thermo_task(job: Any, ctx: Any) -> tuple[dict[str, Any], list[float]]:
    """Job task: one (family, method) run of :func:`run_thermo_training`.

    Args:
        job: a :class:`heatbath.engine.jobs.Job` with setting ``{"family", "method", "quick"}``.
        ctx: its :class:`heatbath.engine.jobs.JobContext` (unused: the run is short).

    Returns:
        The table row and the training losses.
    """
    from heatbath.optim import build_optimizer

    fam, method, seed = job.setting["family"], job.setting["method"], job.seeds[0]
    cfg = QUICK["thermo"] if job.setting["quick"] else FULL["thermo"]
    Xtr, ytr = make_shape("swiss_roll", cfg["n"], 0.05, seed=seed)
    Xte, yte = make_shape("swiss_roll", cfg["n"], 0.05, seed=seed + 1)
    torch.manual_seed(seed)
    net = StructuredNet(2, 2, family=fam, width=8, depth=8, T=4.0)

    def make_opt(m: torch.nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(method, m, seed=seed, **_THERMO_HP[method])

    t0 = time.perf_counter()
    losses = _train(net, Xtr, ytr, steps=cfg["steps"], batch=64, make_opt=make_opt, seed=seed)
    row = dict(family=fam, method=method, final_loss=float(np.mean(losses[-20:])),
               train_acc=_accuracy(net, Xtr, ytr), test_acc=_accuracy(net, Xte, yte),
               seconds=time.perf_counter() - t0)
    return row, losses


def run_thermo_training(out_dir: Path, *, quick: bool = False, seed: int = 0,
                        executor: Any = None) -> dict[str, Any]:
    """Hamiltonian (Verlet) and contractive (gradient-flow) nets: AdLaLa / Langevin vs Adam.

    Swiss roll (noise 0.05), linear lift 2 -> 8, 8 blocks, T = 4, minibatch 64. Optimisers from
    :func:`heatbath.optim.build_optimizer`: Adam (h = lr = 5e-3); Langevin BAOAB (h = 0.2,
    gamma = 1, tau = 1e-5); AdLaLa (h = 0.2, gamma = 1, tau1 = tau2 = 1e-5, sigma_A = 0.01,
    epsilon = 0.05) with the lift as its thermostatted first layer. Each (family, method) run is
    one job of the experiment framework (task :func:`thermo_task`).

    Args:
        out_dir: output folder.
        quick: small sizes.
        seed: seed of data, initialisation and noise.
        executor: a :class:`heatbath.engine.executors.Executor` (default ``LocalExecutor(1)``).

    Returns:
        The table rows (or ``{"skipped": why}`` without heatbath.optim).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = QUICK["thermo"] if quick else FULL["thermo"]
    try:
        import heatbath.optim  # noqa: F401
    except ImportError as exc:  # pragma: no cover - optimizers are another helper's work
        msg = f"heatbath.optim is not available ({exc}); experiment skipped"
        (out_dir / "thermo_training.md").write_text(f"# Thermodynamic training\n\n{msg}\n")
        return {"skipped": msg}
    from heatbath.engine.executors import LocalExecutor
    from heatbath.engine.jobs import Job

    fams = cfg["families"]
    jobs = [Job(f"{fam}/{method}", dict(family=fam, method=method, quick=bool(quick)), (seed,),
                task="heatbath.papers.structure.experiments:thermo_task")
            for fam in fams for method in cfg["methods"]]
    outcome = (executor or LocalExecutor(1)).run(jobs, out_dir / "jobs")
    if outcome.missing:
        raise RuntimeError("thermo jobs did not finish: " + "; ".join(
            f"{k}: {v}" for k, v in outcome.missing.items()))
    plt = _plt()
    fig, axes = plt.subplots(1, len(fams), figsize=(5.5 * len(fams), 4), squeeze=False)
    rows = []
    for fi, fam in enumerate(fams):
        for method in cfg["methods"]:
            row, losses = outcome.value(f"{fam}/{method}")
            rows.append(row)
            k = max(1, len(losses) // 25)
            axes[0, fi].plot(np.convolve(losses, np.ones(k) / k, mode="valid"), label=method)
        axes[0, fi].set_title(f"{fam} network, swiss roll")
        axes[0, fi].set_xlabel("step")
        axes[0, fi].set_ylabel("training loss (smoothed)")
        axes[0, fi].set_yscale("log")
        axes[0, fi].legend()
    fig.tight_layout()
    fig.savefig(out_dir / "thermo_training.png", dpi=90)
    plt.close(fig)
    _write_table(out_dir, "thermo_training", rows,
                 "Structure-preserving nets trained with thermodynamic optimisers",
                 f"{cfg['steps']} steps, batch 64; hyperparameters in the function docstring.")
    return {"rows": rows}

r"""The CTLD experiments' training: optimizers, the training loop, and the jobs' task.

Every run of :mod:`heatbath.papers.ctld.recipes` is a :class:`heatbath.engine.jobs.Job` whose
task is :func:`ctld_task`: a learning-rate trial, the full-budget runs of one method over a
block of seeds, or one cell of the sensitivity grid. The setting is plain data (sizes, data
source, method, lr, CTLD keywords), so a job runs the same in this process, in a local worker
process or on a Ray worker (:mod:`heatbath.engine.executors`); the data are loaded once per
process.

The loop (:func:`train_loop`) checkpoints the model, the optimizer (CTLD's alpha, momentum,
bias and generator included), the minibatch generator, torch's global generator (dropout) and
the curves so far every ``steps // 10`` steps, and before stopping on SIGTERM/SIGINT; a new
attempt of the job continues from there bit-identically (tested). A diverging run (non-finite
loss or ``FloatingPointError``) stops and keeps its last good evaluation.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from heatbath.data.text import CharCorpus, load_text
from heatbath.engine import checkpoint as _checkpoint
from heatbath.engine import shutdown
from heatbath.engine.jobs import Job, JobContext, seed_blocks
from heatbath.engine.sweep import Axis, Sweep
from heatbath.models.charlstm import CharLSTM
from heatbath.models.sda import StackedDAE
from heatbath.optim.anneal_sgd import AnnealSGD
from heatbath.optim.ctld import CTLD, ctld_defaults
from heatbath.optim.santa import Santa

__all__ = ["METHODS", "MOMENTUM", "TASK", "JobGrid", "Run", "alpha_step_scale_for",
           "ctld_task", "make_optimizer", "train_loop"]

METHODS = ("ctld", "annealsgd", "santa", "sgdm", "rmsprop", "adam")
MOMENTUM = 0.9  # SGD-M, AnnealSGD and CTLD (the paper tunes it; 0.7 in §5.3)

#: the task of every CTLD job
TASK = "heatbath.papers.ctld.training:ctld_task"


# --------------------------------------------------------------------------- optimizers
def alpha_step_scale_for(lr: float, momentum: float, num_data: int, loss0: float,
                         num_params: int, *, span: float | None = None,
                         temperature: float = 1.0) -> float:
    """The paper-mode alpha step scale kappa <= 1 that moves alpha at most one bias bin per step.

    Under the largest coupling force at the start, with eta = sqrt(lr/N),
    F_0 = 1.5 S/(delta' - delta) (N loss_0 + d T_c/2) and Delta = 2 delta'/K,
    kappa = min(1, sqrt(Delta (1 - mu_alpha)/F_0)/eta), mu_alpha = momentum.

    Args:
        lr: CTLD's lr.
        momentum: CTLD's momentum.
        num_data: N.
        loss0: the mean loss of the first minibatch.
        num_params: d, the number of parameters.
        span: S (default: the optimizer's).
        temperature: T_c.

    Returns:
        kappa in (0, 1].
    """
    c = ctld_defaults("paper")
    s = c["span"] if span is None else span
    dp, de, k = c["delta_prime"], c["delta"], c["num_bins"]
    f0 = 1.5 * s / (dp - de) * (num_data * abs(loss0) + 0.5 * num_params * temperature)
    if f0 <= 0:
        return 1.0
    eta = math.sqrt(lr / num_data)
    eta_a = math.sqrt((2.0 * dp / k) * (1.0 - momentum) / f0)
    return min(1.0, eta_a / eta)


def make_optimizer(method: str, params: Any, lr: float, *, num_data: int, steps: int,
                   seed: int, **ctld_kw: Any) -> torch.optim.Optimizer:
    """One of :data:`METHODS` with heatbath's recipe settings (phase split at steps // 2).

    Args:
        method: one of :data:`METHODS`.
        params: the parameters.
        lr: the learning rate (for Santa: eta * N).
        num_data: N.
        steps: the budget; CTLD samples and Santa explores for the first half.
        seed: the optimizer's seed.
        **ctld_kw: extra CTLD keywords.

    Returns:
        The optimizer.

    Raises:
        ValueError: an unknown method.
    """
    params = list(params)
    if method == "ctld":
        return CTLD(params, lr=lr, momentum=ctld_kw.pop("momentum", MOMENTUM),
                    num_data=num_data, sampling_steps=steps // 2, seed=seed, **ctld_kw)
    if method == "annealsgd":
        return AnnealSGD(params, lr=lr, momentum=MOMENTUM, noise_eta=0.01, seed=seed)
    if method == "santa":
        return Santa(params, lr=lr / num_data, num_data=num_data, burnin=steps // 2, seed=seed)
    if method == "sgdm":
        return torch.optim.SGD(params, lr=lr, momentum=MOMENTUM)
    if method == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    if method == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")


# --------------------------------------------------------------------------- the loop
@dataclass
class Run:
    """One training run: curves, CTLD's tempering diagnostics and the outcome."""

    method: str
    lr: float
    steps: list[int] = field(default_factory=list)
    train: list[float] = field(default_factory=list)
    evals: list[tuple[int, float]] = field(default_factory=list)
    temperature: list[float] = field(default_factory=list)
    cold_fraction: float = float("nan")
    crossings: int = 0
    coupling_scale: float = float("nan")
    alpha_step_scale: float = float("nan")
    max_dalpha: float = float("nan")
    loss_start: float = float("nan")
    loss_handoff: float = float("nan")
    diverged: bool = False
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what a job returns and a checkpoint stores)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Run:
        d = dict(d)
        d["evals"] = [(int(s), float(v)) for s, v in d["evals"]]
        return cls(**d)


@dataclass
class Checkpointing:
    """Where and how often :func:`train_loop` checkpoints, and what it resumes from.

    Attributes:
        path: the checkpoint file (``None``: no checkpoints).
        every: the period in steps.
        resume: the loop state to continue from (``None``: start at step 0).
        wrap: turns the loop's state into the job's whole checkpoint (a job that trains several
            runs adds where it is, e.g. the layer and the runs already done).
        progress: called with the loop's step after every step.
    """

    path: Path | None = None
    every: int = 1
    resume: Mapping[str, Any] | None = None
    wrap: Callable[[dict[str, Any]], dict[str, Any]] = lambda s: {"loop": s}
    progress: Callable[[int], None] = lambda step: None

    def save(self, state: dict[str, Any]) -> None:
        if self.path is not None:
            _checkpoint.save(self.path, self.wrap(state))


def _window_mean(values: list[float], lo: int, hi: int) -> float:
    part = [v for v in values[max(0, lo):max(0, hi)] if math.isfinite(v)]
    return float(np.mean(part)) if part else float("nan")


def train_loop(model: torch.nn.Module, method: str, lr: float, *, steps: int, num_data: int,
               seed: int, gen: torch.Generator, batch_fn: Callable[[int], Any],
               loss_fn: Callable[[Any], torch.Tensor], eval_fn: Callable[[], float] | None,
               log_every: int, step_offset: int = 0, ctld_kw: dict[str, Any] | None = None,
               ckpt: Checkpointing | None = None) -> Run:
    """Train ``model`` for ``steps``; ``loss_fn(batch)`` returns per-example losses.

    Args:
        model: the model (trained in place).
        method: one of :data:`METHODS`.
        lr: the learning rate.
        steps: the budget.
        num_data: N.
        seed: seeds torch's global generator (dropout) and the optimizer.
        gen: the generator ``batch_fn`` draws from (checkpointed).
        batch_fn: ``t -> batch``.
        loss_fn: ``batch -> per-example losses``.
        eval_fn: the evaluation (``None``: none), every ``log_every`` steps and at the end.
        log_every: the evaluation period.
        step_offset: added to the recorded step numbers.
        ctld_kw: CTLD keywords (ignored by the other methods).
        ckpt: checkpoints and resume (``None``: none).

    Returns:
        The :class:`Run`.
    """
    ckpt = ckpt or Checkpointing()
    torch.manual_seed(seed)
    kw = dict(ctld_kw or {})
    first = batch_fn(0)
    if (method == "ctld" and kw.get("tempering") == "paper"
            and "alpha_step_scale" not in kw):
        with torch.no_grad():
            loss0 = float(loss_fn(first).mean())
        kw["alpha_step_scale"] = alpha_step_scale_for(
            lr, kw.get("momentum", MOMENTUM), num_data, loss0,
            sum(p.numel() for p in model.parameters()), span=kw.get("span"),
            temperature=kw.get("temperature", 1.0))
    if method != "ctld":
        kw = {}
    opt = make_optimizer(method, model.parameters(), lr, num_data=num_data, steps=steps,
                         seed=seed, **kw)
    run = Run(method, lr)
    if isinstance(opt, CTLD) and opt.param_groups[0]["tempering"] == "paper":
        run.alpha_step_scale = float(opt.param_groups[0]["alpha_step_scale"])
    good = copy.deepcopy(model.state_dict())
    start, wall0 = 0, 0.0
    if ckpt.resume is not None:
        st = ckpt.resume
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"])
        torch.set_rng_state(st["rng"])
        run = Run.from_dict(st["run"])
        good, start, wall0 = st["good"], int(st["t"]), float(st["wall"])
    t0 = time.perf_counter()

    def state(t: int) -> dict[str, Any]:
        return {"t": t, "model": model.state_dict(), "opt": opt.state_dict(),
                "gen": gen.get_state(), "rng": torch.get_rng_state(), "run": run.to_dict(),
                "good": good, "wall": wall0 + time.perf_counter() - t0}

    model.train()
    for t in range(start, steps):
        if shutdown.requested():  # a stop request: checkpoint at this step boundary, stop
            ckpt.save(state(t))
            raise shutdown.Interrupted(shutdown.requested())
        if t > start and t % ckpt.every == 0:
            ckpt.save(state(t))
        per = loss_fn(first if t == 0 else batch_fn(t))
        loss = per.mean()
        if not torch.isfinite(loss):
            run.diverged = True
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        try:
            if isinstance(opt, CTLD):
                was_sampling = opt.phase == "sampling"
                opt.step(loss=loss.detach())
                if was_sampling:
                    run.temperature.append(float(opt.diagnostics()["temperature_ratio"]))
            else:
                opt.step()
        except FloatingPointError:
            run.diverged = True
            break
        run.steps.append(step_offset + t + 1)
        run.train.append(float(loss.detach()))
        if eval_fn is not None and ((t + 1) % log_every == 0 or t + 1 == steps):
            model.eval()
            val = eval_fn()
            model.train()
            if not math.isfinite(val):
                run.diverged = True
                break
            run.evals.append((step_offset + t + 1, val))
            good = copy.deepcopy(model.state_dict())
        ckpt.progress(t + 1)
    if run.diverged:
        model.load_state_dict(good)  # the last good checkpoint
    # training loss at the start and at the hand-off (mean over 5 % of the budget each)
    win = max(1, steps // 20)
    run.loss_start = _window_mean(run.train, 0, win)
    run.loss_handoff = _window_mean(run.train, steps // 2 - win, steps // 2)
    if isinstance(opt, CTLD):
        d = opt.diagnostics()
        run.cold_fraction = opt.cold_fraction()
        run.crossings = int(d["crossings"])
        run.coupling_scale = float(d["coupling_scale"])
        run.max_dalpha = float(d["max_dalpha"])
    run.wall_s = wall0 + time.perf_counter() - t0
    model.eval()
    return run


def tail_mean(values: list[float], frac: float = 0.2) -> float:
    """The mean of the last ``frac`` of ``values`` (``inf`` when empty or not finite): the
    score of a learning-rate trial."""
    if not values:
        return float("inf")
    k = max(1, int(len(values) * frac))
    v = float(np.mean(values[-k:]))
    return v if math.isfinite(v) else float("inf")


# --------------------------------------------------------------------------- data (per process)
@functools.lru_cache(maxsize=4)
def mnist_images(mnist_dir: str | None, n_train: int | None, n_test: int | None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The SdA's training and test images (loaded once per process)."""
    from heatbath.data import mnist

    x_train, _ = mnist(mnist_dir, split="train")
    x_test, _ = mnist(mnist_dir, split="test")
    if n_train:
        x_train = x_train[:n_train]
    if n_test:
        x_test = x_test[:n_test]
    return x_train, x_test


@functools.lru_cache(maxsize=4)
def corpus(text_path: str | None, max_chars: int, fractions: tuple[float, float, float]
           ) -> tuple[CharCorpus, str]:
    """The char-RNN corpus and its description (loaded once per process)."""
    text, desc = load_text(text_path, max_chars=max_chars)
    return CharCorpus(text, fractions), desc


def _corpus_of(s: Mapping[str, Any]) -> CharCorpus:
    d = s["data"]
    return corpus(d["text_path"], int(d["max_chars"]), tuple(d["fractions"]))[0]


# --------------------------------------------------------------------------- runs
def ctld_keywords(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """CTLD keywords of a recipe's config (kappa "auto" is resolved in :func:`train_loop`)."""
    kw: dict[str, Any] = {"tempering": cfg["tempering"], "temperature": cfg["temperature"]}
    if cfg["tempering"] == "intensive":
        kw["alpha_step"] = cfg["alpha_step"]
    elif cfg["alpha_step_scale"] != "auto":
        kw["alpha_step_scale"] = float(cfg["alpha_step_scale"])
    return kw


def sda_layer_run(cfg: Mapping[str, Any], x_train: torch.Tensor, model: StackedDAE, k: int,
                  method: str, lr: float, steps: int, offset: int, s: int,
                  ckpt: Checkpointing | None = None) -> Run:
    """Train layer ``k`` of ``model`` on the clean codes of the layers below."""
    inputs = model.encode(x_train, k)
    layer = model.layers[k]
    eval_x = inputs[:2000]
    gen = torch.Generator().manual_seed(s + 1)
    bsz = cfg["batch"]

    def batch_fn(_t: int) -> torch.Tensor:
        return inputs[torch.randint(0, inputs.shape[0], (bsz,), generator=gen)]

    def ev() -> float:
        with torch.no_grad():
            return float(((layer(eval_x) - eval_x) ** 2).mean())

    return train_loop(layer, method, lr, steps=steps, num_data=x_train.shape[0], seed=s,
                      gen=gen, batch_fn=batch_fn, loss_fn=layer.per_example_loss, eval_fn=ev,
                      log_every=cfg["log_every"], step_offset=offset,
                      ctld_kw=ctld_keywords(cfg), ckpt=ckpt)


def rnn_run(corp: CharCorpus, method: str, lr: float, steps: int, cfg: Mapping[str, Any],
            seed: int, *, evaluate: bool, ctld_kw: Mapping[str, Any] | None = None,
            log_every: int | None = None, ckpt: Checkpointing | None = None
            ) -> tuple[Run, CharLSTM]:
    """Train a fresh 3 x 64 char-LSTM (seeded by ``seed``) for ``steps``."""
    torch.manual_seed(seed)
    model = CharLSTM(corp.vocab_size)
    gen = torch.Generator().manual_seed(seed + 7)
    bsz, sl = cfg["batch"], cfg["seq_len"]
    test_x, test_y = corp.eval_windows("test", sl, cfg["eval_windows"])

    def batch_fn(_t: int) -> Any:
        return corp.random_batch(bsz, sl, gen)

    def loss_fn(b: Any) -> torch.Tensor:
        return model.per_char_nll(*b)

    ev = (lambda: model.perplexity(test_x, test_y)) if evaluate else None
    kw = {**ctld_keywords(cfg), **(ctld_kw or {})}
    run = train_loop(model, method, lr, steps=steps, num_data=corp.num_chars("train"),
                     seed=seed, gen=gen, batch_fn=batch_fn, loss_fn=loss_fn, eval_fn=ev,
                     log_every=log_every or cfg.get("log_every", steps), ctld_kw=kw, ckpt=ckpt)
    return run, model


# --------------------------------------------------------------------------- the task
def _every(steps: int) -> int:
    return max(1, steps // 10)


def _load(ctx: JobContext) -> dict[str, Any] | None:
    return _checkpoint.load(ctx.checkpoint) if ctx.checkpoint.exists() else None


def _per_seed(job: Job, ctx: JobContext, per_seed_steps: int,
              fn: Callable[[int, Mapping[str, Any] | None,
                            Callable[[dict[str, Any]], dict[str, Any]],
                            Callable[[int], None]], dict[str, Any]]) -> list[dict[str, Any]]:
    """Run ``fn(seed, resume, wrap, progress)`` for every seed of the job's block, resuming
    from the job's checkpoint: the seeds already done and the state of the current one."""
    full = _load(ctx)
    done: list[dict[str, Any]] = list(full["done"]) if full else []
    total = per_seed_steps * len(job.seeds)
    for i, seed in enumerate(job.seeds):
        if i < len(done):
            continue
        inner = full["current"] if full and int(full["i"]) == i else None

        def wrap(cur: dict[str, Any], i: int = i) -> dict[str, Any]:
            return {"done": list(done), "i": i, "current": cur}

        def progress(step: int, i: int = i) -> None:
            ctx.progress(i * per_seed_steps + step, total)

        done.append(fn(seed, inner, wrap, progress))
    return done


def _sda_runs(s: Mapping[str, Any], job: Job, ctx: JobContext) -> list[dict[str, Any]]:
    cfg, method, lr = s["cfg"], s["method"], float(s["lr"])
    x_train, x_test = mnist_images(s["data"]["mnist_dir"], s["data"]["n_train"],
                                   s["data"]["n_test"])
    widths, spl = tuple(cfg["widths"]), int(cfg["steps_per_layer"])
    n_layers = len(widths) - 1

    def one(seed: int, resume: Mapping[str, Any] | None,
            wrap: Callable[[dict[str, Any]], dict[str, Any]],
            progress: Callable[[int], None]) -> dict[str, Any]:
        torch.manual_seed(seed)
        model = StackedDAE(widths)
        runs: list[Run] = []
        k0 = 0
        if resume is not None:
            model.load_state_dict(resume["sda"])
            runs = [Run.from_dict(r) for r in resume["runs"]]
            k0 = int(resume["layer"])
        for k in range(k0, n_layers):
            def wrap_k(loop: dict[str, Any], k: int = k) -> dict[str, Any]:
                return wrap({"sda": model.state_dict(), "runs": [r.to_dict() for r in runs],
                             "layer": k, "loop": loop})

            ck = Checkpointing(ctx.checkpoint, _every(spl),
                               resume["loop"] if resume is not None and k == k0 else None,
                               wrap_k, lambda t, k=k: progress(k * spl + t))
            runs.append(sda_layer_run(cfg, x_train, model, k, method, lr, spl, k * spl,
                                      seed + k, ck))
        with torch.no_grad():
            test = float(((model.reconstruct(x_test) - x_test) ** 2).mean())
        return {"seed": seed, "runs": [r.to_dict() for r in runs], "test_recon_mse": test,
                "last_layer_mse": runs[-1].evals[-1][1] if runs[-1].evals else float("nan"),
                "diverged": any(r.diverged for r in runs)}

    return _per_seed(job, ctx, n_layers * spl, one)


def _sda_search(s: Mapping[str, Any], job: Job, ctx: JobContext) -> dict[str, Any]:
    cfg, method, lr = s["cfg"], s["method"], float(s["lr"])
    x_train, _ = mnist_images(s["data"]["mnist_dir"], s["data"]["n_train"],
                              s["data"]["n_test"])
    seed, steps = job.seeds[0], int(cfg["search_steps"])
    torch.manual_seed(seed)
    trial = StackedDAE(tuple(cfg["widths"]))
    full = _load(ctx)
    ck = Checkpointing(ctx.checkpoint, _every(steps), full["loop"] if full else None,
                       progress=lambda t: ctx.progress(t, steps))
    r = sda_layer_run(cfg, x_train, trial, 0, method, lr, steps, 0, seed, ck)
    return {"lr": lr, "seed": seed, "score": float("inf") if r.diverged else tail_mean(r.train),
            "diverged": r.diverged}


def _rnn_search(s: Mapping[str, Any], job: Job, ctx: JobContext) -> dict[str, Any]:
    cfg, method, lr = s["cfg"], s["method"], float(s["lr"])
    seed, steps = job.seeds[0], int(cfg["search_steps"])
    full = _load(ctx)
    ck = Checkpointing(ctx.checkpoint, _every(steps), full["loop"] if full else None,
                       progress=lambda t: ctx.progress(t, steps))
    r, _ = rnn_run(_corpus_of(s), method, lr, steps, cfg, seed, evaluate=False, ckpt=ck)
    return {"lr": lr, "seed": seed, "score": float("inf") if r.diverged else tail_mean(r.train),
            "diverged": r.diverged}


def _rnn_runs(s: Mapping[str, Any], job: Job, ctx: JobContext) -> list[dict[str, Any]]:
    cfg, method, lr = s["cfg"], s["method"], float(s["lr"])
    corp = _corpus_of(s)
    steps = int(cfg["steps"])
    train_x, train_y = corp.eval_windows("train", cfg["seq_len"], cfg["eval_windows"])

    def one(seed: int, resume: Mapping[str, Any] | None,
            wrap: Callable[[dict[str, Any]], dict[str, Any]],
            progress: Callable[[int], None]) -> dict[str, Any]:
        ck = Checkpointing(ctx.checkpoint, _every(steps), resume, wrap, progress)
        run, model = rnn_run(corp, method, lr, steps, cfg, seed, evaluate=True, ckpt=ck)
        return {"seed": seed, "run": run.to_dict(),
                "train_ppl": model.perplexity(train_x, train_y),
                "test_ppl": run.evals[-1][1] if run.evals else float("nan"),
                "diverged": run.diverged}

    return _per_seed(job, ctx, steps, one)


def _sens_cell(s: Mapping[str, Any], job: Job, ctx: JobContext) -> list[dict[str, Any]]:
    cfg, lr = s["cfg"], float(s["lr"])
    corp = _corpus_of(s)
    steps = int(cfg["steps"])
    kw = {"momentum": 0.7, "hill_height": float(s["w"]) * float(s["w_scale"]),
          "hill_width": float(s["sigma"]), "span": float(s["S"])}

    def one(seed: int, resume: Mapping[str, Any] | None,
            wrap: Callable[[dict[str, Any]], dict[str, Any]],
            progress: Callable[[int], None]) -> dict[str, Any]:
        ck = Checkpointing(ctx.checkpoint, _every(steps), resume, wrap, progress)
        r, _ = rnn_run(corp, "ctld", lr, steps, cfg, seed, evaluate=True, log_every=steps,
                       ctld_kw=kw, ckpt=ck)
        return {"reading": s["reading"], "lr": lr, "w": s["w"], "sigma": s["sigma"],
                "S": s["S"], "seed": seed,
                "test_ppl": r.evals[-1][1] if r.evals else float("nan"),
                "cold_fraction": r.cold_fraction, "crossings": r.crossings,
                "max_dalpha": r.max_dalpha, "loss_handoff": r.loss_handoff,
                "wall_s": r.wall_s}

    return _per_seed(job, ctx, steps, one)


_KINDS: dict[str, Callable[[Mapping[str, Any], Job, JobContext], Any]] = {
    "sda_search": _sda_search, "sda_runs": _sda_runs, "rnn_search": _rnn_search,
    "rnn_runs": _rnn_runs, "sens_cell": _sens_cell}


def ctld_task(job: Job, ctx: JobContext) -> Any:
    """The task of every CTLD job (``job.setting["kind"]`` says which run).

    Kinds: ``sda_search`` / ``rnn_search`` (one learning-rate trial on the block's first seed;
    returns ``{"lr", "seed", "score", "diverged"}``), ``sda_runs`` / ``rnn_runs`` (the full
    budget for every seed of the block; one result dict per seed) and ``sens_cell`` (one cell of
    the sensitivity grid; one row per seed).

    Args:
        job: the job (its setting as built by :class:`JobGrid`).
        ctx: the job's folder, checkpoint and progress hook.

    Returns:
        Plain data (see the kinds).

    Raises:
        ValueError: an unknown kind.
    """
    kind = job.setting.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"job {job.name}: kind must be one of {', '.join(_KINDS)}, got "
                         f"{kind!r}")
    return _KINDS[kind](job.setting, job, ctx)


# --------------------------------------------------------------------------- job grids
def _steps(setting: Mapping[str, Any]) -> float:
    """Training steps of one seed of a job (its scheduling cost: the longest start first)."""
    cfg = setting.get("cfg", {})
    if str(setting.get("kind", "")).endswith("_search"):
        return float(cfg.get("search_steps", 1))
    if "steps_per_layer" in cfg:
        return float(cfg["steps_per_layer"]) * (len(cfg["widths"]) - 1)
    return float(cfg.get("steps", 1))


class JobGrid(Sweep):
    """A grid of CTLD settings × seeds as jobs: :class:`heatbath.engine.sweep.Sweep`'s points,
    names and seed blocks, with :func:`ctld_task` as the task (a learning-rate search is a 1-D
    grid over ``lr``, the sensitivity study a 2-D grid over ``(w, sigma)``)."""

    def point_jobs(self, point: Mapping[str, Any]) -> list[Job]:
        blocks = seed_blocks(self.seeds, self.seeds_per_job)
        base = f"{self.name}/{self.point_name(point)}"
        setting = self.point_setting(point)
        return [Job(base if len(blocks) == 1 else f"{base}/seeds{b[0]}-{b[-1]}", setting, b,
                    task=TASK, cost=_steps(setting) * len(b)) for b in blocks]


def lr_grid(name: str, setting: Mapping[str, Any], lrs: Sequence[float],
            seeds: Sequence[int], seeds_per_job: int | None = 1) -> JobGrid:
    """One job per (lr, block of seeds) of ``setting``."""
    return JobGrid(name, setting, [Axis("lr", ("lr",), tuple(float(v) for v in lrs))],
                   seeds=tuple(seeds), seeds_per_job=seeds_per_job, label=name + " lr={lr:g}")

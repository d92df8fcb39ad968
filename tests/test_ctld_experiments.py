"""CTLD experiments (docs/ctld.md, "Experiments"): the recipes run end to end and write their
outputs; on real networks the default tempering makes alpha explore."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from heatbath.engine import shutdown
from heatbath.engine.executors import LocalExecutor
from heatbath.engine.jobs import Job, JobContext, load_result
from heatbath.papers.ctld.recipes import (
    configure_charrnn,
    make_optimizer,
    run_charrnn,
    run_sda,
    run_sensitivity,
)
from heatbath.papers.ctld.training import TASK, ctld_task

D, DP = 0.4, 1.5

TINY_RNN = {"max_chars": 20_000, "batch": 4, "seq_len": 16, "steps": 8, "search_steps": 2,
            "grid_size": 2, "log_every": 4, "eval_windows": 4}
TINY_SDA = {"widths": (784, 16, 8), "n_train": 64, "n_test": 32, "batch": 8,
            "steps_per_layer": 6, "search_steps": 2, "grid_size": 2, "log_every": 2}


def test_charrnn_tiny_end_to_end(tmp_path):
    """Two methods, minimal sizes: outputs exist, numbers are finite perplexities >= 1."""
    s = run_charrnn(tmp_path, methods=("ctld", "sgdm"), config=TINY_RNN)
    for name in ("charrnn_perplexity.png", "charrnn_table.csv", "charrnn_times.csv",
                 "charrnn_report.md", "charrnn_summary.json"):
        assert (tmp_path / name).stat().st_size > 0
    rows = {r["method"]: r for r in s["table"]}
    assert set(rows) == {"CTLD", "SGD-M"}
    for r in rows.values():
        assert r["diverged"] or (math.isfinite(r["test_ppl"]) and r["test_ppl"] >= 1.0)
    assert 0.0 <= rows["CTLD"]["cold_fraction"] <= 1.0
    report = (tmp_path / "charrnn_report.md").read_text()
    assert "standard-library source text" in report
    assert "| claim | paper | ours | verdict | reason |" in report
    assert "## Missing jobs" not in report and s["missing"] == {}
    assert json.loads((tmp_path / "charrnn_summary.json").read_text())["experiment"] == "charrnn"


def test_jobs_one_per_method_lr_and_seed_block(tmp_path):
    """The lr search is one job per (method, lr) on the first seed; the runs one job per
    (method, chosen lr, block of seeds); every job has its folder with its result."""
    cfg = {**TINY_RNN, "seeds": 3, "seeds_per_job": 2}
    s = run_charrnn(tmp_path, methods=("ctld", "adam"), config=cfg, seed=5)
    search = sorted(p.parent.relative_to(tmp_path).as_posix()
                    for p in (tmp_path / "jobs" / "search").rglob("result.pt"))
    assert search == ["jobs/search/adam/lr=0.003", "jobs/search/adam/lr=0.01",
                      "jobs/search/ctld/lr=1", "jobs/search/ctld/lr=3"]
    runs = sorted(p.parent.relative_to(tmp_path).as_posix()
                  for p in (tmp_path / "jobs" / "runs").rglob("result.pt"))
    lrs = {r["method"]: r["lr"] for r in s["table"]}
    assert runs == [f"jobs/runs/adam/lr={lrs['Adam']:g}/seeds5-6",
                    f"jobs/runs/adam/lr={lrs['Adam']:g}/seeds7-7",
                    f"jobs/runs/ctld/lr={lrs['CTLD']:g}/seeds5-6",
                    f"jobs/runs/ctld/lr={lrs['CTLD']:g}/seeds7-7"]
    assert all(r["seeds"] == 3 for r in s["table"])
    # the search picked the lr with the lowest final training loss
    for m, label in (("ctld", "CTLD"), ("adam", "Adam")):
        scores = s["lr_search"][m]
        assert min(scores, key=lambda k: scores[k]) == f"{lrs[label]:g}"
    times = (tmp_path / "charrnn_times.csv").read_text().splitlines()
    assert len(times) == 1 + 4 + 4  # header, search jobs, run jobs


def test_config_rejects_unknown_keys(tmp_path):
    with pytest.raises(ValueError, match="config key"):
        run_charrnn(tmp_path, config={"epochs": 3})
    with pytest.raises(ValueError, match="seeds_per_job"):
        run_charrnn(tmp_path, config={**TINY_RNN, "seeds_per_job": 0})


class _Drop(LocalExecutor):
    """A local executor on which the named jobs fail (as if their worker kept dying)."""

    def __init__(self, drop):
        super().__init__(1)
        self.drop = drop

    def _run(self, jobs, root, emit, finished, failed):
        for job in jobs:
            if any(job.name.startswith(d) for d in self.drop):
                failed(job, "its worker died 3 times (simulated)")
        super()._run([j for j in jobs if not any(j.name.startswith(d) for d in self.drop)],
                     root, emit, finished, failed)


def test_report_from_finished_jobs_names_the_missing(tmp_path):
    """A method whose run job failed is left out of the table and the report names its job; a
    method whose search failed never starts its runs and is named too."""
    s = run_charrnn(tmp_path, methods=("ctld", "sgdm", "adam"), config=TINY_RNN,
                    executor=_Drop({"jobs/runs/sgdm", "jobs/search/adam/lr=0.01"}))
    assert [r["method"] for r in s["table"]] == ["CTLD"]
    assert any(k.startswith("jobs/runs/sgdm/") for k in s["missing"])
    assert "jobs/search/adam/lr=0.01" in s["missing"] and "jobs/runs/adam" in s["missing"]
    report = (tmp_path / "charrnn_report.md").read_text()
    assert "## Missing jobs" in report and "jobs/runs/adam" in report
    # a later run with resume reuses the finished jobs and completes the others
    before = (tmp_path / "jobs/search/ctld/lr=1/result.pt").stat().st_mtime_ns
    s2 = run_charrnn(tmp_path, methods=("ctld", "sgdm", "adam"), config=TINY_RNN, resume=True)
    assert s2["missing"] == {} and len(s2["table"]) == 3
    assert (tmp_path / "jobs/search/ctld/lr=1/result.pt").stat().st_mtime_ns == before
    assert s2["table"][0] == s["table"][0]  # CTLD's row: the same finished jobs


def _run_task(job, root, stop_at=None):
    """Run ``job``'s task in this process; with ``stop_at``, ask it to stop at that step (as
    SIGTERM does) and return None once it has checkpointed and raised Interrupted."""
    folder = job.folder(root)
    folder.mkdir(parents=True, exist_ok=True)

    def report(step, total):
        if stop_at is not None and step == stop_at:
            shutdown.request()

    ctx = JobContext(folder, folder / "checkpoint.pt", report=report)
    try:
        return ctld_task(job, ctx)
    except shutdown.Interrupted:
        assert (folder / "checkpoint.pt").exists()
        return None
    finally:
        shutdown.reset()


def _setting(kind, cfg, method, lr, data):
    return {"experiment": "t", "kind": kind, "cfg": cfg, "data": data, "method": method,
            "lr": lr}


@pytest.mark.parametrize("kind,method,stop_at", [
    ("rnn_runs", "ctld", 5),     # inside the second seed of the block
    ("rnn_runs", "santa", 3),    # inside the first seed
    ("sda_runs", "ctld", 9),     # inside the second layer
    ("rnn_search", "adam", 1),
])
def test_a_stopped_job_resumes_bit_identically(tmp_path, kind, method, stop_at):
    """A job stopped at a step boundary (the checkpoint written) and run again gives exactly the
    result of an uninterrupted run: model, optimizer (CTLD's alpha, bias, generator), the
    minibatch and dropout generators and the curves are all in the checkpoint."""
    from heatbath.papers.ctld.recipes import RNN_SIZES, SDA_SIZES, _cfg

    torch.set_num_threads(1)
    if kind.startswith("sda"):
        cfg = _cfg(SDA_SIZES, "quick", {**TINY_SDA, "steps_per_layer": 6})
        data = {"mnist_dir": None, "n_train": cfg["n_train"], "n_test": cfg["n_test"]}
        lr = 0.1
    else:
        cfg = _cfg(RNN_SIZES, "quick", {**TINY_RNN, "steps": 4, "search_steps": 3})
        data = {"text_path": None, "max_chars": cfg["max_chars"],
                "fractions": [0.9, 0.05, 0.05]}
        lr = 1e-6 if method == "santa" else (0.003 if method == "adam" else 1.0)
    seeds = (3, 4) if kind == "rnn_runs" and method == "ctld" else (3,)
    job = Job("j", _setting(kind, cfg, method, lr, data), seeds, task=TASK)
    whole = _run_task(job, tmp_path / "whole")
    assert _run_task(job, tmp_path / "split", stop_at=stop_at) is None
    resumed = _run_task(job, tmp_path / "split")

    def strip(v):  # wall times differ
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k != "wall_s"}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v

    # NaN entries (e.g. the paper-mode alpha step scale) compare equal as JSON text
    assert json.dumps(strip(resumed), sort_keys=True) == json.dumps(strip(whole), sort_keys=True)
    assert json.dumps(strip(whole)) != json.dumps(strip(_run_task(
        Job("j", {**job.setting, "lr": job.setting["lr"] * 0.5}, job.seeds, task=TASK),
        tmp_path / "other")))  # the comparison can fail


def test_sensitivity_tiny_cells_are_jobs(tmp_path):
    """One job per (w, sigma) cell and per S of each reading; the heat map and the line are the
    cells' seed means; the claims of one seed per cell are "not tested (too few runs)"."""
    cfg = {"max_chars": 20_000, "batch": 4, "seq_len": 16, "steps": 4, "eval_windows": 4,
           "w": [0.5, 2.0], "sigma": [0.04], "S": [0.5, 0.85]}
    s = run_sensitivity(tmp_path, config=cfg)
    cells = sorted(p.parent.relative_to(tmp_path / "jobs").as_posix()
                   for p in (tmp_path / "jobs").rglob("result.pt"))
    assert len(cells) == 2 * (2 + 2)
    assert "heat/mean-loss/w=0.5,sigma=0.04" in cells and "line/sum-loss/S=0.85" in cells
    assert len(s["table"]) == 8
    assert {c["verdict"] for c in s["claims"]} == {"not tested"}


@pytest.mark.slow
def test_quick_sizes_end_to_end(tmp_path):
    sda = run_sda(tmp_path / "sda", quick=True)
    assert len(sda["table"]) == 6 and (tmp_path / "sda" / "sda_temperature.png").exists()
    rows = {r["method"]: r for r in sda["table"]}
    # Santa overflows at large steps (its grid spans 8 decades, GRIDS_SDA): the grid search
    # must reject diverging values and the final run must stay finite
    assert not rows["Santa"]["diverged"]
    assert math.isfinite(rows["Santa"]["test_recon_mse"])
    assert any("alpha explores" in c["claim"] for c in sda["claims"])
    # --quick judges nothing
    assert {c["verdict"] for c in sda["claims"]} == {"not tested"}
    rnn = run_charrnn(tmp_path / "rnn", quick=True)
    assert len(rnn["table"]) == 6
    sens = run_sensitivity(tmp_path / "sens", quick=True)
    assert (tmp_path / "sens" / "sensitivity.png").exists()
    assert len(sens["table"]) == 2 * (2 * 2 + 3)


# --------------------------------------------------------------------------- alpha explores
def _mlp_setup(seed: int):
    from heatbath.data import mnist

    x, y = mnist(None, split="train")
    x = x.reshape(len(x), -1)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10))
    gen = torch.Generator().manual_seed(seed + 1)

    def loss_fn():
        idx = torch.randint(0, len(x), (64,), generator=gen)
        return torch.nn.functional.cross_entropy(model(x[idx]), y[idx])

    return model, loss_fn, len(x), 0.1


def _sda_layer1_setup(seed: int):
    from heatbath.data import mnist
    from heatbath.models.sda import StackedDAE
    from heatbath.papers.ctld.recipes import SDA_SIZES

    cfg = SDA_SIZES["quick"]
    x, _ = mnist(None, split="train")
    x = x.reshape(len(x), -1)[: cfg["n_train"]]
    torch.manual_seed(seed)
    layer = StackedDAE(cfg["widths"]).layers[0]
    gen = torch.Generator().manual_seed(seed + 1)

    def loss_fn():
        idx = torch.randint(0, len(x), (cfg["batch"],), generator=gen)
        return layer.per_example_loss(x[idx]).mean()

    return layer, loss_fn, len(x), 0.1


def _charlstm_setup(seed: int):
    from heatbath.data.text import CharCorpus, load_text
    from heatbath.models.charlstm import CharLSTM
    from heatbath.papers.ctld.recipes import RNN_SIZES

    cfg = RNN_SIZES["quick"]
    text, _ = load_text(None, max_chars=cfg["max_chars"])
    corpus = CharCorpus(text, (0.9, 0.05, 0.05))
    torch.manual_seed(seed)
    model = CharLSTM(corpus.vocab_size)
    gen = torch.Generator().manual_seed(seed + 7)

    def loss_fn():
        return model.per_char_nll(*corpus.random_batch(cfg["batch"], cfg["seq_len"], gen)).mean()

    return model, loss_fn, corpus.num_chars("train"), 1.0


EXPLORE_STEPS = 2000  # sampling steps; the bias roughens later (docs/ctld.md, "Tempering at scale")


@pytest.mark.slow
@pytest.mark.parametrize("setup", [_mlp_setup, _sda_layer1_setup, _charlstm_setup],
                         ids=["mlp", "sda-layer1", "char-lstm"])
def test_alpha_explores_on_real_networks(setup):
    """The default tempering on real networks (the MLP of docs/ctld.md and the recipes' quick
    SdA layer 1 and char-LSTM), over a 2000-step sampling phase at the recipe's middle lr:
    alpha visits cold and hot in the proportion of a flat alpha (cold fraction in
    [0.20, 0.33] around delta/delta' = 0.267), crosses between T_c and >= 5 T_c at least 10
    times, resolves the ramp (max |step| <= (delta' - delta)/4) and feels an intensive force
    (median |coupling + pre-bias force| on the ramp <= 10 T_c per unit alpha)."""
    torch.set_num_threads(1)
    model, loss_fn, n, lr = setup(0)
    opt = make_optimizer("ctld", model.parameters(), lr, num_data=n,
                         steps=2 * EXPLORE_STEPS, seed=0)
    ramp_forces = []
    for _ in range(EXPLORE_STEPS):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step(loss=loss.detach())
        d = opt.diagnostics()
        if D < abs(d["alpha"]) < DP:
            ramp_forces.append(abs(d["force_coupling"] + d["force_prebias"]))
    assert opt.phase == "optimization"
    d = opt.diagnostics()
    assert 0.20 <= d["cold_fraction"] <= 0.33, d
    assert d["crossings"] >= 10, d
    assert d["max_dalpha"] <= (DP - D) / 4, d
    assert ramp_forces and float(np.median(ramp_forces)) <= 10.0, np.median(ramp_forces)


def test_reports_give_the_handoff_loss_and_exploration(tmp_path):
    """Every CTLD row reports the training loss at the start and at the hand-off, the cold
    fraction and the crossings."""
    s = run_charrnn(tmp_path, methods=("ctld",), config={**TINY_RNN, "seeds": 2})
    row = s["table"][0]
    assert row["seeds"] == 2
    assert math.isfinite(row["loss_start"]) and math.isfinite(row["loss_handoff"])
    assert len(row["crossings"].split("/")) == 2
    assert 0.0 <= row["cold_fraction"] <= 1.0
    csv = (tmp_path / "charrnn_table.csv").read_text().splitlines()[0]
    assert "loss_handoff" in csv and "test_ppl_se" in csv


def test_configure_is_plain_data_for_the_jobs():
    """The jobs' setting is plain data (a job must travel to a Ray worker): the plan's data
    setting names the source, not the tensors."""
    plan = configure_charrnn(config=TINY_RNN)
    assert plan["data"] == {"text_path": None, "max_chars": 20_000,
                            "fractions": [0.9, 0.05, 0.05]}
    Job("x", {"cfg": plan["cfg"], "data": plan["data"]}, (0,), task=TASK)  # no TypeError
    assert load_result(Job("x", {}, (0,), task=TASK), "/nonexistent") is None

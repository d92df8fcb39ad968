"""Training engine: minibatches, evaluation, resume, divergence stop, snapshots."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from heatbath.data import Dataset, make_dataset
from heatbath.engine import ModelSpec, OptimSpec, Trainer, checkpoint, train
from heatbath.engine import trainer as trainer_module

SHLP = ModelSpec("shlp", hidden=10)


@pytest.fixture(scope="module")
def data() -> Dataset:
    return make_dataset("spirals", n_train=100, n_test=150, seed=2, turns=2)


def _params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_minibatches_without_replacement_per_epoch(data: Dataset) -> None:
    # 100 points at 7 %: m = 7, 14 minibatches per epoch, the last 2 points skipped
    t = Trainer(data, SHLP, OptimSpec("sgd", {"h": 0.1}), steps=50, subsample=7.0, seeds=[0, 1])
    assert t.batch_size == 7
    for _epoch in range(2):
        batches = torch.cat([t._next_batch() for _ in range(14)], dim=1)
        for r in range(2):
            assert batches[r].unique().numel() == 98
    assert Trainer(data, SHLP, OptimSpec("sgd", {"h": 0.1}), steps=5, seed=0,
                   batch_size=33).batch_size == 33


def test_evaluation_is_on_the_full_sets(data: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    t = Trainer(data, SHLP, OptimSpec("sgd", {"h": 0.1}), steps=3, seeds=[3, 4])
    t.run(num_threads=1)
    got = t.evaluate()
    for r in range(2):
        m = t.model.replica(r)
        with torch.no_grad():
            z = m(data.X_test).squeeze(-1).double()
        y = data.y_test.double()
        loss = (torch.nn.functional.softplus(z) - y * z).mean()
        acc = ((z > 0).double() == y).double().mean()
        assert math.isclose(float(got["test"][0][r]), float(loss), rel_tol=1e-5)
        assert float(got["test"][1][r]) == float(acc)
    # chunked evaluation (tiny budget: chunks of a few points) gives the same numbers
    monkeypatch.setattr(trainer_module, "_EVAL_BUDGET", 64)
    chunked = t.evaluate()
    for split in ("train", "test"):
        torch.testing.assert_close(chunked[split][0], got[split][0])
        assert torch.equal(chunked[split][1], got[split][1])


def test_rows_schedule_progress_and_snapshots(data: Dataset) -> None:
    calls: list[tuple[int, int, int]] = []
    res = train(data, SHLP, OptimSpec("adam", {"h": 0.01}), steps=25, seeds=[5, 6],
                eval_every=10, snapshot_steps=[0, 25], num_threads=1,
                progress=lambda step, steps, rows: calls.append((step, steps, len(rows))))
    assert [c[0] for c in calls] == [0, 10, 20, 25]
    assert all(c[1] == 25 and c[2] == 4 for c in calls)
    assert len(res.rows) == 4 * 4
    assert set(res.rows[0]) == {"method", "seed", "step", "split", "loss", "accuracy"}
    assert {r["method"] for r in res.rows} == {"adam"}
    assert all(0.0 <= r["accuracy"] <= 1.0 and math.isfinite(r["loss"]) for r in res.rows)
    assert sorted(res.snapshots) == [0, 25]
    assert res.snapshots[25]["layers.0.weight"].shape == (2, 10, 2)
    assert torch.equal(res.snapshots[25]["layers.1.bias"], res.model.layers[1].bias.detach())
    w = "layers.0.weight"
    assert not torch.equal(res.snapshots[0][w], res.snapshots[25][w])
    grid = torch.randn(30, 2)
    p_final = res.predict_proba(grid)
    assert p_final.shape == (2, 30, 2)
    torch.testing.assert_close(p_final.sum(-1), torch.ones(2, 30))
    torch.testing.assert_close(res.predict_proba(grid, step=25), p_final)
    p0 = res.predict_proba(grid, step=0)
    single0 = SHLP.build(2, 2, seed=6)
    torch.testing.assert_close(p0[1, :, 1], torch.sigmoid(single0(grid).squeeze(-1)).detach())
    with pytest.raises(ValueError, match="snapshot"):
        res.predict_proba(grid, step=3)
    # a single run has the same row layout and R = 1 snapshots
    one = train(data, SHLP, OptimSpec("sgd", {"h": 0.1}, label="sgd_h0.1"), steps=4, seed=0,
                eval_steps=[2], snapshot_steps=[4], num_threads=1)
    assert [(r["step"], r["split"]) for r in one.rows] == \
        [(2, "train"), (2, "test"), (4, "train"), (4, "test")]
    assert one.rows[0]["method"] == "sgd_h0.1"
    assert one.snapshots[4]["layers.0.weight"].shape == (1, 10, 2)
    assert one.predict_proba(grid).shape == (1, 30, 2)


@pytest.mark.parametrize("opt", [
    OptimSpec("adam", {"h": 0.01}),
    OptimSpec("langevin", {"h": 0.2, "gamma": 1.0, "tau": 1e-3}),
    OptimSpec("adlala", {"h": 0.25, "gamma": 0.5}),
], ids=lambda o: o.method)
@pytest.mark.parametrize("ensemble", [False, True])
def test_resume_is_bit_identical(data: Dataset, tmp_path: Path, opt: OptimSpec,
                                 ensemble: bool) -> None:
    kw = {"steps": 40, "subsample": 7.0, "eval_every": 10, "snapshot_steps": [15, 40]}
    kw.update({"seeds": [1, 2]} if ensemble else {"seed": 1})
    straight = Trainer(data, SHLP, opt, **kw)
    full = straight.run(num_threads=1)
    ckpt = tmp_path / "ckpt.pt"
    first = Trainer(data, SHLP, opt, **kw)
    first.run(until=17, checkpoint=ckpt, num_threads=1)  # mid-epoch (14 batches per epoch)
    del first
    resumed = Trainer.load(ckpt, data, SHLP, opt, **kw)
    assert resumed.step == 17
    res = resumed.run(num_threads=1)
    assert res.rows == full.rows
    for a, b in zip(res.model.parameters(), full.model.parameters(), strict=True):
        assert torch.equal(a, b)
    for step in (15, 40):
        for name, v in full.snapshots[step].items():
            assert torch.equal(res.snapshots[step][name], v)
    # train(..., resume=True) picks the checkpoint up too, and finishes the same way
    again = tmp_path / "again.pt"
    Trainer(data, SHLP, opt, **kw).run(until=9, checkpoint=again, num_threads=1)
    res2 = train(data, SHLP, opt, checkpoint=again, resume=True, num_threads=1, **kw)
    assert res2.rows == full.rows


def test_resume_refuses_another_run(data: Dataset, tmp_path: Path) -> None:
    ckpt = tmp_path / "c.pt"
    opt = OptimSpec("sgd", {"h": 0.1})
    Trainer(data, SHLP, opt, steps=10, seed=0).run(until=3, checkpoint=ckpt, num_threads=1)
    with pytest.raises(ValueError, match="optimizer"):
        Trainer.load(ckpt, data, SHLP, OptimSpec("sgd", {"h": 0.2}), steps=10, seed=0)
    other = make_dataset("spirals", n_train=100, n_test=150, seed=3, turns=2)
    with pytest.raises(ValueError, match="data"):
        Trainer.load(ckpt, other, SHLP, opt, steps=10, seed=0)


def test_checkpoint_every_writes_atomically(data: Dataset, tmp_path: Path) -> None:
    ckpt = tmp_path / "sub" / "c.pt"
    Trainer(data, SHLP, OptimSpec("sgd", {"h": 0.1}), steps=10, seed=0).run(
        until=6, checkpoint=ckpt, checkpoint_every=4, num_threads=1)
    assert ckpt.is_file()
    assert [p.name for p in ckpt.parent.iterdir()] == ["c.pt"]  # no temporary left behind
    state = checkpoint.load(ckpt)  # the verified file (header, SHA-256, then the payload)
    assert state["step"] == 6


def test_nonfinite_loss_stops_single_run_keeping_last_good_state(data: Dataset) -> None:
    opt = OptimSpec("sgd", {"h": 0.1})
    ref = Trainer(data, SHLP, opt, steps=30, seed=0, eval_every=5)
    ref.run(until=9, num_threads=1)
    t = Trainer(data, SHLP, opt, steps=30, seed=0, eval_every=5)
    t.run(until=10, num_threads=1)
    with torch.no_grad():
        t.model.layers[0].weight[0, 0] = float("nan")  # the parameters at step 10 are broken
    res = t.run(num_threads=1)
    assert res.diverged == {0: 10}
    assert res.steps_done == 10
    assert any("step 10" in m and "step 9" in m for m in res.messages)
    for a, b in zip(res.model.parameters(), ref.model.parameters(), strict=True):
        assert torch.equal(a, b)  # θ_9, the last state with a finite loss
    assert max(r["step"] for r in res.rows) == 9
    assert all(math.isfinite(r["loss"]) for r in res.rows)


def test_divergence_by_a_huge_step_stops_cleanly(data: Dataset) -> None:
    res = train(data, SHLP, OptimSpec("sgd", {"h": 1e30}), steps=50, seed=0, eval_every=1,
                num_threads=1)
    assert list(res.diverged) == [0] and 1 <= res.diverged[0] < 50
    assert all(torch.isfinite(p).all() for p in res.model.parameters())
    assert all(math.isfinite(r["loss"]) for r in res.rows)
    assert res.rows[-1]["step"] == res.diverged[0] - 1


def test_one_diverged_replica_does_not_disturb_the_others(data: Dataset) -> None:
    opt = OptimSpec("sgd", {"h": 0.1, "momentum": 0.5})
    seeds = [0, 1, 2]
    t = Trainer(data, SHLP, opt, steps=30, seeds=seeds, eval_every=5)
    t.run(until=12, num_threads=1)
    with torch.no_grad():
        t.model.layers[1].weight[1] = float("inf")
    res = t.run(num_threads=1)
    assert res.diverged == {1: 12} and res.steps_done == 30
    assert t.alive == [True, False, True]
    ref1 = Trainer(data, SHLP, opt, steps=30, seed=1)
    ref1.run(until=11, num_threads=1)
    for a, b in zip(res.replica_model(1).parameters(), ref1.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)  # frozen at θ_11
    rows1 = [r for r in res.rows if r["seed"] == 1]
    assert max(r["step"] for r in rows1) == 11
    for r in (0, 2):
        single = train(data, SHLP, opt, steps=30, seed=seeds[r], eval_every=5, num_threads=1)
        for a, b in zip(res.replica_model(r).parameters(), single.model.parameters(),
                        strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
        assert [x for x in res.rows if x["seed"] == seeds[r]][-1]["step"] == 30


def test_bad_arguments(data: Dataset) -> None:
    opt = OptimSpec("sgd", {"h": 0.1})
    with pytest.raises(ValueError, match="exactly one"):
        Trainer(data, SHLP, opt, steps=5)
    with pytest.raises(ValueError, match="exactly one"):
        Trainer(data, SHLP, opt, steps=5, seed=0, seeds=[1])
    with pytest.raises(ValueError, match="distinct"):
        Trainer(data, SHLP, opt, steps=5, seeds=[1, 1])
    with pytest.raises(ValueError, match="subsample"):
        Trainer(data, SHLP, opt, steps=5, seed=0, subsample=0.0)
    with pytest.raises(ValueError, match="subsample"):
        Trainer(data, SHLP, opt, steps=5, seed=0, subsample=150.0)
    with pytest.raises(ValueError, match="steps"):
        Trainer(data, SHLP, opt, steps=0, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        Trainer(data, SHLP, opt, steps=5, seed=0, batch_size=1000)
    with pytest.raises(ValueError, match="eval_steps"):
        Trainer(data, SHLP, opt, steps=5, seed=0, eval_steps=[7])
    with pytest.raises(ValueError, match="model"):
        ModelSpec("cnn")
    with pytest.raises(ValueError, match="hidden"):
        ModelSpec("shlp", hidden=(3, 4))
    with pytest.raises(ValueError, match="method"):
        Trainer(data, SHLP, OptimSpec("rmsprop"), steps=5, seed=0)


def test_damaged_checkpoint_is_refused_by_trainer_load(data: Dataset, tmp_path: Path) -> None:
    """Issue 16, case 4 at the engine level: a flipped bit anywhere in the file, a truncated
    file or garbage is a CheckpointError naming the file (before, a flipped bit in a weight
    loaded silently and the run continued from other parameters)."""
    opt = OptimSpec("adam", {"h": 0.01})
    ckpt = tmp_path / "c.pt"
    Trainer(data, SHLP, opt, steps=10, seed=0).run(until=4, checkpoint=ckpt, num_threads=1)
    good = ckpt.read_bytes()
    assert Trainer.load(ckpt, data, SHLP, opt, steps=10, seed=0).step == 4
    n = len(good)
    for bad in (good[:i] + bytes([good[i] ^ 0x10]) + good[i + 1:]
                for i in range(0, n, max(1, n // 40))):
        ckpt.write_bytes(bad)
        with pytest.raises(checkpoint.CheckpointError, match="c.pt") as exc:
            Trainer.load(ckpt, data, SHLP, opt, steps=10, seed=0)
        assert "restart-from-scratch" in str(exc.value)
        assert "weights_only" not in str(exc.value)
    for bad in (good[: n // 2], b"", b"\x80\x02garbage"):
        ckpt.write_bytes(bad)
        with pytest.raises(checkpoint.CheckpointError, match="c.pt"):
            Trainer.load(ckpt, data, SHLP, opt, steps=10, seed=0)


def test_stop_request_saves_the_step_reached_and_raises(data: Dataset, tmp_path: Path) -> None:
    """Issue 16, case 7 at the engine level: a stop request (what SIGTERM/SIGINT set) ends
    training at the next step boundary after writing the checkpoint; resuming from it gives
    exactly the uninterrupted run."""
    from heatbath.engine import shutdown

    opt = OptimSpec("langevin", {"h": 0.2, "gamma": 1.0, "tau": 1e-3})
    kw = {"steps": 30, "seeds": [1, 2], "eval_every": 5}
    full = Trainer(data, SHLP, opt, **kw).run(num_threads=1)
    ckpt = tmp_path / "c.pt"

    def progress(step: int, steps: int, rows: list) -> None:
        if step == 10:
            shutdown.request()

    try:
        with pytest.raises(shutdown.Interrupted):
            Trainer(data, SHLP, opt, **kw).run(progress=progress, checkpoint=ckpt,
                                               num_threads=1)
    finally:
        shutdown.reset()
    resumed = Trainer.load(ckpt, data, SHLP, opt, **kw)
    assert resumed.step == 10
    assert resumed.run(num_threads=1).rows == full.rows

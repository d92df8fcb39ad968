"""Distributed training: seeding rule, DTensor shard offsets, reductions (2-process gloo)."""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from heatbath.optim import _distributed as D


# ------------------------------------------------------------------------- 2-process launcher
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, fn: Callable[..., Any], args: tuple,
            out: Any) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        out.put((rank, "ok", fn(rank, world, *args)))
    except BaseException:  # report every failure to the parent, which raises it
        out.put((rank, "error", traceback.format_exc()))
    finally:
        dist.destroy_process_group()


def run_ranks(fn: Callable[..., Any], *args: Any, world: int = 2) -> list[Any]:
    """Run ``fn(rank, world, *args)`` on ``world`` gloo ranks (127.0.0.1); results by rank."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, world, port, fn, args, q)) for r in range(world)]
    for p in procs:
        p.start()
    results: dict[int, Any] = {}
    errors = []
    for _ in range(world):
        rank, status, value = q.get(timeout=600)
        if status == "error":
            errors.append(f"rank {rank}:\n{value}")
        results[rank] = value
    for p in procs:
        p.join(timeout=60)
    if errors:
        raise AssertionError("\n".join(errors))
    return [results[r] for r in range(world)]


# --------------------------------------------------------------------- single process helpers
def test_without_process_group_helpers_are_local():
    assert not D.is_distributed()
    torch.manual_seed(3)
    a = D.resolve_seed(None)
    torch.manual_seed(3)
    assert D.resolve_seed(None) == a  # drawn from torch's global generator
    assert 0 <= a < 2**62
    assert D.resolve_seed(7) == 7
    p = torch.randn(3, 4)
    assert D.local_view(p) is p
    assert D.global_offset(p) == 0
    t = torch.tensor([1.0, 2.0])
    assert D.all_reduce_sum_(t, like=p) is t and t.tolist() == [1.0, 2.0]
    assert D.all_reduce_mean_(t) is t and t.tolist() == [1.0, 2.0]
    assert not D.is_sharded(p)


@pytest.mark.parametrize("bad", [-1, 2**63, 1.5, "1", True])
def test_resolve_seed_rejects_bad_seed(bad):
    with pytest.raises(ValueError, match="seed"):
        D.resolve_seed(bad)


# ---------------------------------------------------------------------- 2-rank helper checks
def _seeds_and_offsets(rank: int, world: int) -> dict[str, Any]:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    out: dict[str, Any] = {}
    torch.manual_seed(100 + rank)  # the common idiom: a different global seed per rank
    out["drawn"] = D.resolve_seed(None)
    out["explicit"] = D.resolve_seed(5)
    try:
        D.resolve_seed(5 + rank)
        out["mismatch"] = None
    except ValueError as err:
        out["mismatch"] = str(err)
    mesh = init_device_mesh("cpu", (world,))
    offs = []
    for shape in [(7, 3), (5,), (1, 4), (4, 2, 3), (2,)]:  # uneven, and a rank with no rows
        full = torch.arange(math_prod(shape), dtype=torch.float32).reshape(shape)
        d = distribute_tensor(full, mesh, [Shard(0)])
        local = D.local_view(d)
        off = D.global_offset(d)
        # the shard's values are its global flat indices: offset + i
        ok = torch.equal(local.reshape(-1), torch.arange(off, off + local.numel(),
                                                          dtype=torch.float32))
        _, torch_off = compute_local_shape_and_global_offset(d.shape, mesh, d.placements)
        ref = torch_off[0] * math_prod(shape[1:]) if local.numel() else None
        offs.append((off, local.numel(), ok, ref))
    out["offsets"] = offs
    r = distribute_tensor(torch.ones(4, 2), mesh, [Replicate()])
    out["replicate_offset"] = D.global_offset(r)
    s1 = distribute_tensor(torch.ones(4, 4), mesh, [Shard(1)])
    try:
        D.global_offset(s1)
        out["shard1"] = None
    except NotImplementedError as err:
        out["shard1"] = str(err)
    # reductions: the sum of squares of a sharded tensor equals the global one
    full = torch.arange(10.0).reshape(5, 2)
    d = distribute_tensor(full, mesh, [Shard(0)])
    sq = (D.local_view(d) ** 2).sum().reshape(1)
    out["sumsq"] = float(D.all_reduce_sum_(sq, like=d))
    rep = torch.tensor([float(rank + 1)])
    out["no_reduce_replicated"] = float(D.all_reduce_sum_(rep.clone(), like=r))
    out["mean"] = float(D.all_reduce_mean_(torch.tensor([float(rank)])))
    return out


def math_prod(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def test_two_ranks_seed_rule_offsets_and_reductions():
    res = run_ranks(_seeds_and_offsets)
    r0, r1 = res
    # seed=None: rank 0's draw from its own global generator, on every rank
    torch.manual_seed(100)
    expect = int(torch.randint(0, 2**62, (), dtype=torch.int64).item())
    assert r0["drawn"] == r1["drawn"] == expect
    assert r0["explicit"] == r1["explicit"] == 5
    for r in res:
        assert r["mismatch"] is not None and "rank 1: 6" in r["mismatch"]
        assert "rank 0: 5" in r["mismatch"]
        assert r["replicate_offset"] == 0
        assert r["shard1"] is not None and "Shard(dim=1)" in r["shard1"]
        assert r["sumsq"] == float((torch.arange(10.0) ** 2).sum())
        assert r["mean"] == 0.5
    assert r0["no_reduce_replicated"] == 1.0 and r1["no_reduce_replicated"] == 2.0
    for (o0, n0, ok0, ref0), (o1, n1, ok1, ref1), shape in zip(
            r0["offsets"], r1["offsets"], [(7, 3), (5,), (1, 4), (4, 2, 3), (2,)]):
        assert ok0 and ok1
        assert n0 + n1 == math_prod(shape)
        assert o0 == 0 and (n1 == 0 or o1 == n0)
        for o, ref in ((o0, ref0), (o1, ref1)):
            assert ref is None or o == ref

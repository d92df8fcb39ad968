"""Sharded (FSDP2 ``fully_shard``) training with a heatbath optimizer and counter-based noise.

Run on 2 CPU processes, either way:

    torchrun --nproc-per-node 2 examples/fsdp_train.py
    python examples/fsdp_train.py           # spawns 2 local gloo processes itself

Every ``nn.Linear`` and the root are wrapped with ``fully_shard``: each rank holds a block of
rows of every parameter (a DTensor) and the optimizer steps on those local shards only. With
``noise="philox"`` the noise of element ``i`` of a parameter is a pure function of
(seed, step, global index of ``i``), so each rank draws only its own shard's numbers and the
sharded run follows the unsharded one. At the end the same model is trained unsharded on the
same global batches and rank 0 prints the largest difference (float32 rounding: FSDP2 averages the
gradients in a different order than one process computes them; see docs/distributed.md).
"""

from __future__ import annotations

import argparse
import os
import socket

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import fully_shard

from heatbath.optim import Langevin


def make_model(hidden: int) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(20, hidden), nn.ReLU(), nn.Linear(hidden, 2))


def batches(steps: int, batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1234)
    out = []
    for _ in range(steps):
        X = torch.randn(batch, 20, generator=g)
        out.append((X, (X[:, 0] + 0.5 * X[:, 1] > 0).long()))
    return out


def run(model: nn.Module, data: list, rank: int, world: int, seed: int) -> nn.Module:
    opt = Langevin(model.parameters(), h=0.1, gamma=1.0, tau=1e-4, noise="philox", seed=seed)
    for step, (X, y) in enumerate(data):
        n = len(X) // world
        xs, ys = X[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n]
        loss = nn.functional.cross_entropy(model(xs), ys)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if rank == 0 and world > 1 and step % max(1, len(data) // 5) == 0:
            print(f"step {step:4d}  loss {loss.item():.4f}", flush=True)
    return model


def train(rank: int, world: int, steps: int, hidden: int) -> None:
    torch.manual_seed(rank)
    torch.set_num_threads(1)
    model = make_model(hidden)
    for layer in model:
        if isinstance(layer, nn.Linear):
            fully_shard(layer)
    fully_shard(model)
    data = batches(steps, 64)
    run(model, data, rank, world, seed=7)
    full = [p.full_tensor().detach() for p in model.parameters()]  # collective: all ranks
    # the unsharded reference; every rank builds it, since building an optimizer under a
    # process group is a collective call (the seed check)
    ref = run(make_model(hidden), data, 0, 1, seed=7)
    if rank == 0:
        diff = max(float((a - b).abs().max()) for a, b in zip(full, ref.parameters()))
        print(f"sharded on {world} ranks vs unsharded: max |difference| = {diff:.2e}")


def _spawned(rank: int, world: int, port: int, steps: int, hidden: int) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        train(rank, world, steps, hidden)
    finally:
        dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--hidden", type=int, default=33, help="odd: shards are uneven")
    ap.add_argument("--nproc", type=int, default=2, help="processes when not under torchrun")
    args = ap.parse_args()
    if "RANK" in os.environ:  # launched by torchrun
        dist.init_process_group("gloo")
        try:
            train(dist.get_rank(), dist.get_world_size(), args.steps, args.hidden)
        finally:
            dist.destroy_process_group()
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_spawned, args=(args.nproc, port, args.steps, args.hidden),
                                nprocs=args.nproc)


if __name__ == "__main__":
    main()

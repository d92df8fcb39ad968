"""Data-parallel (DDP) training with a heatbath optimizer.

Run on 2 CPU processes, either way:

    torchrun --nproc-per-node 2 examples/ddp_train.py
    python examples/ddp_train.py            # spawns 2 local gloo processes itself

Each rank seeds torch differently (``torch.manual_seed(rank)``, the usual idiom, so dropout and
data order may differ per rank) and builds the optimizer with ``seed=None``: heatbath then takes
rank 0's seed on every rank (see docs/distributed.md, section 'Seeding'), so the Langevin noise is
the same everywhere. DDP averages the gradients, every rank applies the same update with the same
noise, and the replicas stay identical, which the script checks at the end.
"""

from __future__ import annotations

import argparse
import os
import socket

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from heatbath.optim import Langevin


def train(rank: int, world: int, steps: int, hidden: int) -> None:
    torch.manual_seed(rank)  # a different global seed per rank: heatbath still agrees
    torch.set_num_threads(1)
    # the model must start identical: build it from a fixed seed (DDP also broadcasts it)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(20, hidden), nn.ReLU(), nn.Linear(hidden, 2))
    ddp = DDP(model)
    opt = Langevin(ddp.parameters(), h=0.1, gamma=1.0, tau=1e-4)  # seed=None: rank 0's seed
    g = torch.Generator().manual_seed(1234)
    X = torch.randn(512, 20, generator=g)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).long()
    per_rank = 32
    for step in range(steps):
        # each rank takes its own slice of a global batch of per_rank * world samples
        idx = torch.randint(0, len(X), (per_rank * world,), generator=g)
        mine = idx[rank * per_rank:(rank + 1) * per_rank]
        loss = nn.functional.cross_entropy(ddp(X[mine]), y[mine])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if rank == 0 and step % max(1, steps // 5) == 0:
            print(f"step {step:4d}  loss {loss.item():.4f}", flush=True)
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    everyone = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(everyone, flat)
    same = all(torch.equal(everyone[0], x) for x in everyone)
    if rank == 0:
        print(f"seed {opt.seed}; parameters identical on all {world} ranks: {same}")


def _spawned(rank: int, world: int, port: int, steps: int, hidden: int) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        train(rank, world, steps, hidden)
    finally:
        dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--hidden", type=int, default=64)
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

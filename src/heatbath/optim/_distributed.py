r"""Data-parallel and sharded training helpers for heatbath's optimizers.

Seeding rule (data-parallel, DDP)
---------------------------------
Every rank must add the *same* noise, or the replicas drift apart. heatbath guarantees it by
construction, for the common idiom ``torch.manual_seed(rank)`` followed by ``seed=None``:

* ``seed=None`` and a ``torch.distributed`` process group is initialised: every rank draws one
  number from torch's global generator (so each rank's global generator advances the same way),
  and rank 0's draw is broadcast to all ranks. The seed is therefore rank 0's, and
  ``torch.manual_seed(s)`` on rank 0 makes the whole run reproducible.
* an explicit ``seed``: it is checked equal on every rank (one ``all_gather`` at construction);
  a mismatch raises ``ValueError`` naming the ranks whose seed differs from rank 0's.
* no process group: ``seed=None`` draws from torch's global generator, as before.

The check and the broadcast are collective calls: build the optimizer on every rank, in the same
order as the other collectives (as one does with the model wrapper itself).

Sharded parameters (FSDP2 ``fully_shard``, DTensor)
---------------------------------------------------
The optimizer steps on each rank's local shard (:func:`local_view`). Counter-based noise is keyed
by the element's index in the *global* (unsharded) tensor, :func:`global_offset` gives that index
for the first local element, so the sharded run draws exactly the numbers of the unsharded run and
each rank generates only its own 1/world of them. Per-tensor reductions (Adaptive Langevin's
kinetic energy :math:`p^\top p` for ξ, diagnostics) are summed over the shards with
:func:`all_reduce_sum_`. CTLD needs the global mean loss: :func:`all_reduce_mean_`.

See ``docs/distributed.md`` for the launch commands and what is identical across world sizes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .._validate import check_int

__all__ = [
    "is_distributed",
    "resolve_seed",
    "local_view",
    "global_offset",
    "is_sharded",
    "all_reduce_sum_",
    "all_reduce_mean_",
]

_SEED_HIGH = 2**62  # seeds drawn from torch's generator lie in [0, 2**62)


def is_distributed() -> bool:
    """True when ``torch.distributed`` is available and a default process group is initialised."""
    dist = torch.distributed
    return bool(dist.is_available() and dist.is_initialized())


def _collective_device() -> torch.device:
    """A device the default group's backend can communicate on (CPU for gloo, CUDA for nccl)."""
    backend = str(torch.distributed.get_backend()).lower()
    if "nccl" in backend and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def resolve_seed(seed: int | None) -> int:
    """The noise seed of an optimizer, identical on every rank (rule in the module docstring).

    Args:
        seed: an int in ``[0, 2**63 - 1]``, or ``None`` to draw one from torch's global
            generator (rank 0's draw under an initialised process group).

    Returns:
        The seed, the same on every rank.

    Raises:
        ValueError: ``seed`` is not an int in range, or (under a process group) differs between
            ranks; the message names the ranks whose seed differs from rank 0's.
    """
    if seed is not None:
        seed = check_int("seed", seed, low=0, high=2**63 - 1)
    if seed is None:
        drawn = int(torch.randint(0, _SEED_HIGH, (), dtype=torch.int64).item())
        if not is_distributed():
            return drawn
        t = torch.tensor([drawn], dtype=torch.int64, device=_collective_device())
        torch.distributed.broadcast(t, src=0)
        return int(t.item())
    if not is_distributed():
        return seed
    dist = torch.distributed
    world = dist.get_world_size()
    mine = torch.tensor([seed], dtype=torch.int64, device=_collective_device())
    everyone = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(everyone, mine)
    seeds = [int(x.item()) for x in everyone]
    bad = [r for r, s in enumerate(seeds) if s != seeds[0]]
    if bad:
        detail = ", ".join(f"rank {r}: {seeds[r]}" for r in bad)
        raise ValueError(
            f"seed must be the same on every rank (rank 0: {seeds[0]}; differing: {detail}); "
            "pass the same seed everywhere, or seed=None to use rank 0's draw"
        )
    return seed


# --------------------------------------------------------------------------------------------
# DTensor (FSDP2) parameters
# --------------------------------------------------------------------------------------------
_DTENSOR: list[Any] = []  # the DTensor class (or None), looked up once: every step asks


def _dtensor_cls() -> Any:
    if not _DTENSOR:
        try:
            from torch.distributed.tensor import DTensor
        except Exception:  # torch built without distributed
            DTensor = None  # noqa: N806
        _DTENSOR.append(DTensor)
    return _DTENSOR[0]


def _is_dtensor(p: Any) -> bool:
    cls = _DTENSOR[0] if _DTENSOR else _dtensor_cls()
    return cls is not None and isinstance(p, cls)


def local_view(p: Tensor) -> Tensor:
    """The tensor an optimizer updates for ``p``: its local shard for a DTensor, else ``p``.

    The local shard of an FSDP2 parameter shares storage with the DTensor, so in-place updates
    on it update the parameter.
    """
    return p.to_local() if _is_dtensor(p) else p


def _shard_dim(pl: Any) -> int | None:
    """The tensor dimension of a plain ``Shard`` placement, else None."""
    from torch.distributed.tensor import Shard

    if type(pl) is Shard:  # not a subclass such as _StridedShard: its layout differs
        return int(pl.dim)
    return None


def is_sharded(p: Any) -> bool:
    """True for a DTensor with at least one ``Shard`` placement (its reductions need comms)."""
    if not _is_dtensor(p):
        return False
    from torch.distributed.tensor import Replicate

    return any(not isinstance(pl, Replicate) for pl in p.placements)


def global_offset(p: Tensor) -> int:
    """Flat row-major index, in the global tensor, of the first element of ``p``'s local shard.

    For a plain tensor this is 0. For a DTensor with ``Shard(0)`` placements (FSDP2's layout,
    including the uneven last shards of ``torch.chunk``-style splitting, and nested ``Shard(0)``
    over several mesh dimensions) the local shard is a contiguous block of rows, so element ``i``
    of the flattened local shard has global flat index ``global_offset(p) + i``. ``Replicate``
    mesh dimensions contribute nothing.

    Raises:
        NotImplementedError: any other placement (``Shard(d)`` with ``d != 0``, ``Partial``,
            strided shards), whose local elements are not one contiguous run of global indices;
            the message names the placement.
    """
    if not _is_dtensor(p):
        return 0
    from torch.distributed.tensor import Replicate

    mesh = p.device_mesh
    coords = mesh.get_coordinate()
    shape = tuple(p.shape)
    if coords is None:  # this rank is not in the mesh: it holds no elements
        return 0
    start, size = 0, (shape[0] if shape else 1)
    for mesh_dim, pl in enumerate(p.placements):
        if isinstance(pl, Replicate):
            continue
        if _shard_dim(pl) != 0 or not shape:
            raise NotImplementedError(
                f"heatbath optimizers support Shard(0) and Replicate placements of DTensor "
                f"parameters (FSDP2's layout), got {pl!r} on mesh dimension {mesh_dim}")
        world = mesh.size(mesh_dim)
        chunk = -(-size // world) if size else 0  # torch.chunk: ceil(size / world) rows
        first = min(coords[mesh_dim] * chunk, size)
        start += first
        size = max(0, min(chunk, size - first))
    return start * math.prod(shape[1:])


def all_reduce_sum_(t: Tensor, like: Any = None) -> Tensor:
    r"""Sum ``t`` in place over the ranks that hold shards of ``like``; returns ``t``.

    A per-tensor reduction computed on a local shard (e.g. :math:`p^\top p`) becomes the
    global tensor's. No-op when ``like`` is not a sharded DTensor (plain tensors, replicated
    DTensors, or no process group), so callers can use it unconditionally.
    """
    if like is None or not is_sharded(like):
        return t
    from torch.distributed.tensor import Replicate

    mesh = like.device_mesh
    for mesh_dim, pl in enumerate(like.placements):
        if not isinstance(pl, Replicate):
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM,
                                         group=mesh.get_group(mesh_dim))
    return t


def all_reduce_mean_(t: Tensor) -> Tensor:
    """Average ``t`` in place over all ranks of the default process group; returns ``t``.

    No-op without a process group. Used for quantities every replica must agree on, such as
    CTLD's global mean loss.
    """
    if not is_distributed():
        return t
    dist = torch.distributed
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t.div_(dist.get_world_size())
    return t

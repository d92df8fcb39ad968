"""CTLD refuses sharded (FSDP2/DTensor) parameters with a clear error (docs/distributed.md)."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist

from heatbath.optim import CTLD


def _port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(not dist.is_available(), reason="torch without torch.distributed")
def test_sharded_parameters_are_refused():
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    assert not dist.is_initialized()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_port()}", rank=0,
                            world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        sharded = torch.nn.Parameter(distribute_tensor(torch.zeros(4, 2), mesh, [Shard(0)]))
        with pytest.raises(ValueError, match="sharded"):
            CTLD([sharded], lr=0.1, momentum=0.9, num_data=10, sampling_steps=5, seed=0)
    finally:
        dist.destroy_process_group()

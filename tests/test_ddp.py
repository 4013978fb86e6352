"""The 2-process gloo fixture: real collectives, results per rank, failures surfaced."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist


def all_reduce_rank(rank: int, world_size: int, scale: float):
    tensor = torch.tensor([float(rank + 1)]) * scale
    dist.all_reduce(tensor)
    gathered = [torch.zeros(2) for _ in range(world_size)]
    dist.all_gather(gathered, torch.tensor([float(rank), float(dist.get_world_size())]))
    return {"rank": dist.get_rank(), "sum": tensor.item(), "gathered": torch.stack(gathered),
            "backend": dist.get_backend()}


def fail_on_rank_one(rank: int, world_size: int):
    if rank == 1:
        raise ValueError("rank one refuses")
    dist.barrier()
    return rank


def test_two_gloo_processes(ddp):
    results = ddp(all_reduce_rank, world_size=2, args=(2.0,))
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["sum"] == 6.0 for r in results)  # (1 + 2) * 2
    assert all(r["backend"] == "gloo" for r in results)
    assert torch.equal(results[0]["gathered"], torch.tensor([[0.0, 2.0], [1.0, 2.0]]))


def test_a_failing_rank_raises_with_its_traceback(ddp):
    with pytest.raises(RuntimeError, match="rank 1 failed(.|\n)*rank one refuses"):
        ddp(fail_on_rank_one, world_size=2, timeout=120)

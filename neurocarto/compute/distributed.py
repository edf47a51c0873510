"""Several processes, one run: `torchrun … -m neurocarto precompute …` shards pass 1 and the graph stage.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous; here we only join its process group
(gloo on CPU, NCCL on GPUs) and use its collectives. Rank 0 alone opens the store (other nodes need
the model and the data, not the store) and runs the stages that are not sharded; every result is
gathered to it. Without torchrun (WORLD_SIZE unset or 1) everything is one process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

# rank 0 may run unsharded stages (clusters, embedding, patches) while the others wait for its next collective
WAIT = timedelta(hours=12)


@dataclass(frozen=True)
class Group:
    """This process's place among the run's processes, and the collectives they share."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def batch_shard(self, n_items: int, batch_size: int) -> range:
        """This process's contiguous share of the items, cut at batch boundaries, so every batch holds the
        same items as in a one-process run (and gives the same floating-point results)."""
        n_batches = -(-n_items // batch_size)
        first = self.rank * n_batches // self.world
        last = (self.rank + 1) * n_batches // self.world
        return range(min(first * batch_size, n_items), min(last * batch_size, n_items))

    def common_batches(self, n_items: int, batch_size: int) -> int:
        """How many batches every process's shard has (the shards differ by at most one)."""
        return -(-n_items // batch_size) // self.world

    def mine(self, n_items: int) -> list[int]:
        """Items dealt round-robin: item i belongs to process i mod world."""
        return list(range(self.rank, n_items, self.world))

    def gather(self, value) -> list | None:
        """Every process's `value`, in rank order, on rank 0 (None elsewhere)."""
        if self.world == 1:
            return [value]
        gathered = [None] * self.world if self.leader else None
        dist.gather_object(value, gathered, dst=0)
        return gathered

    def scatter(self, values: list | None):
        """Rank 0's `values[rank]`, on each process (`values` is read on rank 0 only)."""
        if self.world == 1:
            return values[0]
        box = [None]
        dist.scatter_object_list(box, values if self.leader else None, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait until every process is here."""
        if self.world > 1:
            dist.barrier()

    def any(self, flag: bool) -> bool:
        """Whether `flag` is set on any process."""
        if self.world == 1:
            return flag
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        value = torch.tensor([int(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def broadcast(self, value):
        """Rank 0's `value`, on every process."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def join(device: str) -> Group:
    """The process group torchrun started this process in, or a group of one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Group()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    on_gpus = device != "cpu" and torch.cuda.is_available()
    if on_gpus:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if on_gpus else "gloo", timeout=WAIT)
    return Group(dist.get_rank(), dist.get_world_size(), local_rank)


def device_for(group: Group, device: str) -> str:
    """Each process of a group on GPUs takes the GPU of its local rank."""
    if group.world > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{group.local_rank}"
    return device


def leave(group: Group) -> None:
    if group.world > 1 and dist.is_initialized():
        dist.destroy_process_group()

"""Scale-out on ``torch.distributed``: which part of the data each process reads, and merging.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) a dissection starts a process group
itself (NCCL when its device is CUDA, gloo otherwise), or uses one the caller already started.
Each rank reads a contiguous block of whole batches, so every batch is the batch a single
process would have formed, and all statistics are merged exactly: pass-1 accumulators are
gathered and merged in rank order on every rank, pass-2 counts are summed with ``all_reduce``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Shard:
    """This process's place in a (possibly one-process) run."""

    rank: int = 0
    world: int = 1
    owns_group: bool = False  # the process group was started here and is ended here

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def batch_range(self, items: int, batch_size: int) -> tuple[int, int]:
        """The ``[first, end)`` batch numbers this rank reads out of ``ceil(items / batch_size)``.

        Ranks get contiguous blocks whose sizes differ by at most one batch (some may be empty).
        """
        batches = -(-items // batch_size)
        return self.rank * batches // self.world, (self.rank + 1) * batches // self.world

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over ranks in place (exact for integers; floats: see callers)."""
        if self.world > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def close(self) -> None:
        """End the process group if this process started it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def join(device: torch.device) -> tuple[Shard, torch.device]:
    """This process's :class:`Shard` and the device it should use.

    Starts the default process group when ``torchrun`` set ``WORLD_SIZE`` > 1 and none is
    running. Under several processes a CUDA device without an index becomes ``cuda:LOCAL_RANK``.
    """
    if not dist.is_available():
        return Shard(), device
    owns = False
    if not dist.is_initialized():
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return Shard(), device
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    elif device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return Shard(dist.get_rank(), dist.get_world_size(), owns), device

"""Under torchrun (or any launcher that sets ``RANK`` and ``WORLD_SIZE``), each process takes one
contiguous share of the file list, so that the parts concatenated in rank order are the list's order.
The processes meet once, after their parts are written, before rank 0 writes the output from them
(the parts must be on a file system every node sees). The meeting is torch.distributed's barrier
over gloo, which needs no GPU; the scheduler that started the processes stays in charge of them."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Sequence

#: how long finished ranks wait for the slowest at the barrier (a share of a large collection takes hours)
BARRIER_TIMEOUT = datetime.timedelta(days=7)


@dataclass
class Shard:
    rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls) -> "Shard":
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
        except ValueError:
            raise ValueError("RANK and WORLD_SIZE must be integers (as torchrun sets them)") from None
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"RANK={rank} is not within WORLD_SIZE={world}")
        return cls(rank, world)

    def take(self, paths: Sequence[str]) -> list[str]:
        n = len(paths)
        return list(paths[n * self.rank // self.world: n * (self.rank + 1) // self.world])

    def start(self) -> None:
        if self.world == 1:
            return
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)

    def wait_for_all(self) -> None:
        if self.world == 1:
            return
        import torch.distributed as dist

        dist.barrier()

    def stop(self) -> None:
        if self.world == 1:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

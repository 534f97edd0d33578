"""Data-parallel training under torchrun: the process group, the device, and the points where
the processes agree so that an error on any of them stops all of them (rank 0 reports it)."""

from __future__ import annotations

import gc
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from convnext_app.errors import one_line  # the command's own one-line form of an error

from .options import TrainingError


class RankError(TrainingError):
    """An error of a torchrun job as one process reports it, naming the rank that failed."""


class StoppedByAnotherRank(RankError):
    """Raised on the processes of a torchrun job that do not report its error: rank 0 reports it,
    naming the rank that failed, and ``convnext train`` exits 1 on the others without a message."""


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over processes (float64)."""
        t = torch.tensor(list(values), dtype=torch.float64)
        if self.enabled:
            t = t.to(self.device) if self.device.type == "cuda" else t
            torch.distributed.all_reduce(t)
        return t.cpu().tolist()

    def all_gather_strings(self, text: str) -> list[str]:
        if not self.enabled:
            return [text]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, text)
        return [str(x) for x in out]

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def agree(self, error: Optional[BaseException]) -> None:
        """Every process calls this at the same point with its error, or None. When any process
        failed, every process raises: rank 0 a :class:`RankError` naming the first rank that
        failed and its message, the others :class:`StoppedByAnotherRank`. Single process: ``error``."""
        if not self.enabled:
            if error is not None:
                raise error
            return
        if not self.all_sum([0.0 if error is None else 1.0])[0]:
            return
        messages = self.all_gather_strings("" if error is None else one_line(error))
        self.barrier()  # gloo: without it, tearing the group down after a gather can abort a peer
        raise self.failure(messages) from error

    def failure(self, messages: Sequence[str]) -> "RankError":
        """The error this rank raises when the ranks whose ``messages`` are not empty failed."""
        failed = [rank for rank, message in enumerate(messages) if message]
        if not self.is_main:
            return StoppedByAnotherRank(f"rank {failed[0]} of {self.world_size} failed (rank 0 reports it)")
        also = f" ({len(failed)} of {self.world_size} ranks failed)" if len(failed) > 1 else ""
        return RankError(f"rank {failed[0]} of {self.world_size}: {messages[failed[0]]}{also}")


def attempt(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, Optional[Exception]]:
    """(``fn(...)``, None), or (None, the exception it raised): for :meth:`Distributed.agree`."""
    try:
        return fn(*args, **kwargs), None
    except Exception as e:  # noqa: BLE001  every process must reach the agreement, whatever failed
        return None, e


def counted_samples(dataset_size: int, rank: int, world_size: int) -> int:
    """How many of a rank's DistributedSampler samples (``drop_last=False``) are distinct images.

    The sampler pads its index list to a multiple of ``world_size`` by repeating its start, and
    rank ``r`` takes positions ``r, r + world_size, ...``: the padding is the tail of each shard,
    after the positions below ``dataset_size``.
    """
    return len(range(rank, dataset_size, world_size))


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TrainingError(f"--device {name!r} is not a torch device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError(f"--device {name}: CUDA is not available")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


def setup_distributed(device_name: str = "auto") -> Distributed:
    """Start the process group when launched by torchrun (WORLD_SIZE > 1); single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name, local_rank)
    if world_size > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world_size)
        if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    return Distributed(rank, world_size, local_rank, device)


def launched() -> Distributed:
    """Rank and world size from torchrun's environment, before any process group exists."""
    return Distributed(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))


def weights_digest(model: nn.Module) -> str:
    """SHA-256 over every parameter and buffer (name, dtype, shape, bytes), in name order."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def run_on_every_rank(validate: Callable[[], Any], body: Callable[[Distributed], Any], device: str = "auto") -> Any:
    """``body(dist)`` on this process, one of torchrun's or alone, after ``validate()``: what
    ``convnext train`` and ``convnext pretrain`` share. Under torchrun an error stops every process:
    rank 0 raises a :class:`RankError` naming the rank that failed, the others
    :class:`StoppedByAnotherRank`, so the error is printed once; an error outside the points where the
    processes agree is raised by the rank that hit it, its rank named."""
    try:
        validate()
        dist = setup_distributed(device)
    except Exception as e:
        job = launched()
        if job.enabled:  # the same options and machine on every rank: every rank fails alike
            raise job.failure([one_line(e)] * job.world_size) from e
        raise
    try:
        result = body(dist)
        dist.barrier()  # gloo: without it, tearing the group down right after an all-reduce can abort a peer
        return result
    except RankError:
        raise
    except Exception as e:
        if dist.enabled:
            raise RankError(f"rank {dist.rank} of {dist.world_size}: {one_line(e)}") from e
        raise
    finally:
        if dist.enabled and torch.distributed.is_initialized():
            # DistributedDataParallel's reducer sits in reference cycles: collected at interpreter
            # exit, gloo's worker threads would outlive the group and abort the process
            # ("terminate called without an active exception"). Free it while all is alive.
            gc.collect()
            torch.distributed.destroy_process_group()


def wrap_for_ddp(model: nn.Module, dist: Distributed) -> nn.Module:
    """The module a training step runs: ``model`` itself alone, DistributedDataParallel under torchrun."""
    if not dist.enabled:
        return model
    import warnings

    # oneDNN returns depthwise-conv gradients in another stride order than DDP's buckets: harmless, noisy.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)

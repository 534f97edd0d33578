"""Batches of decoded images, in input order, from worker processes with bounded prefetch.

The PyTorch twin reads through PyTorch's DataLoader (its workers hand batches over in shared
memory). The Keras twin reads through a pool of spawned processes that import neither TensorFlow
nor JAX nor torch, so it works on every Keras backend, and a process that has started TensorFlow is
never forked. ``workers=0`` decodes in the calling process. Either way at most ``prefetch`` batches
per worker wait decoded, so memory does not grow with the number of images.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Iterator, Sequence

from .decoding import DecodedBatch, collate, decode_batch, decode_item, strict_pil

PREFETCH = 2  # decoded batches waiting per worker


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers() -> int:
    """Half the usable cores, at most 8: on a CPU the model needs the other half; decoding a photo
    costs a fraction of a forward pass."""
    return max(1, min(8, cpu_count() // 2))


def chunks(paths: Sequence[str], batch_size: int) -> Iterator[list[str]]:
    for start in range(0, len(paths), batch_size):
        yield list(paths[start:start + batch_size])


def iter_batches(paths: Sequence[str], processor, batch_size: int, workers: int, engine: str = "pool"
                 ) -> Iterator[DecodedBatch]:
    """Decoded batches of ``paths`` in order. ``engine``: ``"torch"`` (DataLoader) or ``"pool"``."""
    if not paths:
        return iter(())
    if workers <= 0:
        return (decode_batch(chunk, processor) for chunk in chunks(paths, batch_size))
    if engine == "torch":
        return _torch_batches(paths, processor, batch_size, workers)
    return _pool_batches(paths, processor, batch_size, workers)


class _Images:
    """A map-style dataset of the files: item i is ``(pixels or None, error or None)``."""

    def __init__(self, paths: Sequence[str], processor):
        self.paths = paths
        self.processor = processor

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        return index, decode_item(self.paths[index], self.processor)


def _torch_collate(items):
    import torch

    indices = [i for i, _ in items]
    batch = collate([str(i) for i in indices], [item for _, item in items])
    # a tensor crosses from the worker in shared memory (a numpy array would be pickled)
    return indices, torch.from_numpy(batch.pixels), batch.errors


def _torch_worker_init(_: int) -> None:
    strict_pil()


def _torch_batches(paths: Sequence[str], processor, batch_size: int, workers: int) -> Iterator[DecodedBatch]:
    from torch.utils.data import DataLoader

    loader = DataLoader(_Images(paths, processor), batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=_torch_collate, prefetch_factor=PREFETCH, worker_init_fn=_torch_worker_init,
                        persistent_workers=False)
    for indices, pixels, errors in loader:
        yield DecodedBatch([paths[i] for i in indices], pixels.numpy(), errors)


_WORKER_PROCESSOR = None


def _pool_init(processor) -> None:
    global _WORKER_PROCESSOR
    _WORKER_PROCESSOR = processor
    strict_pil()


def _pool_decode(paths: list[str]) -> DecodedBatch:
    return decode_batch(paths, _WORKER_PROCESSOR)


def _pool_batches(paths: Sequence[str], processor, batch_size: int, workers: int) -> Iterator[DecodedBatch]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_pool_init,
                               initargs=(processor,))
    pending: deque = deque()
    todo = chunks(paths, batch_size)
    try:
        for chunk in todo:
            pending.append(pool.submit(_pool_decode, chunk))
            if len(pending) >= workers * PREFETCH:
                break
        while pending:
            batch = pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.submit(_pool_decode, nxt))
            yield batch
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["DecodedBatch", "default_workers", "iter_batches", "decode_item"]

"""Keyed random streams: a draw's seed is a hash of what it belongs to (the run's seed, the epoch,
the step or sample index, the rank), never the state a previous draw left behind. A resumed run
therefore draws exactly what the uninterrupted run drew, without saving generator states."""

from __future__ import annotations

import hashlib


def stream_key(kind: str, *parts: int) -> int:
    """A 63-bit seed for the stream ``kind`` (e.g. "mixup") at ``parts`` (e.g. seed, epoch, step, rank)."""
    text = ":".join([kind, *(str(int(p)) for p in parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def step_seed(seed: int, epoch: int, step: int, rank: int) -> int:
    """The seed of torch's global generator for one training micro-batch (drop path draws from it)."""
    return stream_key("step", seed, epoch, step, rank)

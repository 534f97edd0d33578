"""The learning-rate schedule and weight-decay rule both training paths (and both pre-training paths)
use: linear warmup then half a cosine per optimizer update, and no weight decay on biases, norms,
layer scales and GRN."""

from __future__ import annotations

import math
from typing import Sequence


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, peak_lr: float, min_lr: float = 0.0) -> float:
    """Learning rate at ``step`` (0-based): linear from peak/warmup up to ``peak_lr`` over ``warmup_steps``,
    then half a cosine down to ``min_lr`` at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_steps(warmup_epochs: float, updates_per_epoch: float, total_updates: int) -> int:
    """The updates that warm up: ``warmup_epochs`` worth of them, at most half the run."""
    return min(int(round(warmup_epochs * updates_per_epoch)), total_updates // 2)


def decays(shape: Sequence[int]) -> bool:
    """Whether a parameter of ``shape`` gets weight decay: not biases, norm scales and shifts, layer
    scales (one dimension) nor GRN's (1, 1, 1, C)."""
    shape = tuple(shape)
    return not (len(shape) <= 1 or shape[:-1] == (1, 1, 1))

"""The options both ``convnext train`` paths take (PyTorch and Keras), with the same defaults and checks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional


@dataclass
class SharedTrainOptions:
    """The options both training paths take, with the same defaults; each path's options add its own."""

    data: str
    model: str
    out: str
    epochs: int = 10
    batch_size: int = 32          # per process (PyTorch) or per device (Keras)
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    drop_path: Optional[float] = None
    image_size: Optional[int] = None
    min_scale: float = 0.25
    flip: bool = True
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    overwrite: bool = False
    quiet: bool = False
    # the recipe options both paths run; the defaults leave them off
    ema: Optional[float] = None
    mixup: float = 0.0
    cutmix: float = 0.0
    accum_steps: int = 1
    clip_grad: Optional[float] = None
    head_init_scale: float = 1.0
    freeze_trunk: bool = False


def shared_option_checks(o: Any) -> list[tuple[bool, str]]:
    """(condition, message when it fails) for the options both paths take (``o``: their options)."""
    return [
        (o.epochs >= 1, f"--epochs must be >= 1, got {o.epochs}"),
        (o.batch_size >= 1, f"--batch-size must be >= 1, got {o.batch_size}"),
        (o.lr > 0 and math.isfinite(o.lr), f"--lr must be a positive number, got {o.lr}"),
        (o.weight_decay >= 0, f"--weight-decay must be >= 0, got {o.weight_decay}"),
        (o.warmup_epochs >= 0, f"--warmup-epochs must be >= 0, got {o.warmup_epochs}"),
        (0 <= o.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {o.label_smoothing}"),
        (o.drop_path is None or 0 <= o.drop_path < 1, f"--drop-path must be in [0, 1), got {o.drop_path}"),
        (o.image_size is None or o.image_size >= 32, f"--image-size must be >= 32, got {o.image_size}"),
        (0 < o.min_scale <= 1, f"--min-scale must be in (0, 1], got {o.min_scale}"),
        (0 < o.val_fraction < 1, f"--val-fraction must be between 0 and 1, got {o.val_fraction}"),
        (o.ema is None or 0 < o.ema < 1, f"--ema must be in (0, 1), got {o.ema}"),
        (o.mixup >= 0 and math.isfinite(o.mixup), f"--mixup must be >= 0, got {o.mixup}"),
        (o.cutmix >= 0 and math.isfinite(o.cutmix), f"--cutmix must be >= 0, got {o.cutmix}"),
        (o.accum_steps >= 1, f"--accum-steps must be >= 1, got {o.accum_steps}"),
        (o.clip_grad is None or (o.clip_grad > 0 and math.isfinite(o.clip_grad)),
         f"--clip-grad must be a positive number, got {o.clip_grad}"),
        (o.head_init_scale > 0 and math.isfinite(o.head_init_scale),
         f"--head-init-scale must be a positive number, got {o.head_init_scale}"),
    ]

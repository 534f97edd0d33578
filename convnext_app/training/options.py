"""The options of ``convnext train`` and their checks."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Optional

from .recipe.layer_decay import LAYER_DECAY_TYPES
from .recipe.randaugment import parse_randaugment


class TrainingError(ValueError):
    """Bad training options or data; the message names the option or path."""


@dataclass
class TrainOptions:
    data: str
    model: str
    out: str
    epochs: int = 10
    batch_size: int = 32
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
    workers: int = 0
    device: str = "auto"
    amp: bool = False
    resume: bool = False
    stop_after: Optional[int] = None
    overwrite: bool = False
    quiet: bool = False
    # the fine-tuning recipe (convnext_app.training.recipe); the defaults leave it off
    ema: Optional[float] = None
    mixup: float = 0.0
    cutmix: float = 0.0
    randaugment: Optional[str] = None
    reprob: float = 0.0
    layer_decay: Optional[float] = None
    layer_decay_type: str = "group"
    accum_steps: int = 1
    clip_grad: Optional[float] = None
    head_init_scale: float = 1.0
    freeze_trunk: bool = False

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> "TrainOptions":
        names = set(cls.__dataclass_fields__)
        values = {k: v for k, v in vars(args).items() if k in names}
        if hasattr(args, "no_flip"):
            values["flip"] = not args.no_flip
        return cls(**values)

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.lr > 0 and math.isfinite(self.lr), f"--lr must be a positive number, got {self.lr}"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (self.warmup_epochs >= 0, f"--warmup-epochs must be >= 0, got {self.warmup_epochs}"),
            (0 <= self.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.drop_path is None or 0 <= self.drop_path < 1, f"--drop-path must be in [0, 1), got {self.drop_path}"),
            (self.image_size is None or self.image_size >= 32, f"--image-size must be >= 32, got {self.image_size}"),
            (0 < self.min_scale <= 1, f"--min-scale must be in (0, 1], got {self.min_scale}"),
            (0 < self.val_fraction < 1, f"--val-fraction must be between 0 and 1, got {self.val_fraction}"),
            (self.workers >= 0, f"--workers must be >= 0, got {self.workers}"),
            (self.stop_after is None or self.stop_after >= 1, f"--stop-after must be >= 1, got {self.stop_after}"),
            (not (self.resume and self.overwrite), "--resume and --overwrite exclude each other"),
            (self.ema is None or 0 < self.ema < 1, f"--ema must be in (0, 1), got {self.ema}"),
            (self.mixup >= 0 and math.isfinite(self.mixup), f"--mixup must be >= 0, got {self.mixup}"),
            (self.cutmix >= 0 and math.isfinite(self.cutmix), f"--cutmix must be >= 0, got {self.cutmix}"),
            (0 <= self.reprob <= 1, f"--reprob must be in [0, 1], got {self.reprob}"),
            (self.layer_decay is None or (0 < self.layer_decay and math.isfinite(self.layer_decay)),
             f"--layer-decay must be a positive number, got {self.layer_decay}"),
            (self.layer_decay_type in LAYER_DECAY_TYPES,
             f"--layer-decay-type must be one of {', '.join(LAYER_DECAY_TYPES)}, got {self.layer_decay_type!r}"),
            (self.accum_steps >= 1, f"--accum-steps must be >= 1, got {self.accum_steps}"),
            (self.clip_grad is None or (self.clip_grad > 0 and math.isfinite(self.clip_grad)),
             f"--clip-grad must be a positive number, got {self.clip_grad}"),
            (self.head_init_scale > 0 and math.isfinite(self.head_init_scale),
             f"--head-init-scale must be a positive number, got {self.head_init_scale}"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainingError(message)
        if self.randaugment is not None:
            try:
                parse_randaugment(self.randaugment)
            except ValueError as e:
                raise TrainingError(str(e)) from None

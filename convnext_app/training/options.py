"""The options of ``convnext train`` and their checks."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Optional

from ..fine_tuning import shared_option_checks
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
        checks = shared_option_checks(self) + [
            (self.workers >= 0, f"--workers must be >= 0, got {self.workers}"),
            (self.stop_after is None or self.stop_after >= 1, f"--stop-after must be >= 1, got {self.stop_after}"),
            (not (self.resume and self.overwrite), "--resume and --overwrite exclude each other"),
            (0 <= self.reprob <= 1, f"--reprob must be in [0, 1], got {self.reprob}"),
            (self.layer_decay is None or (0 < self.layer_decay and math.isfinite(self.layer_decay)),
             f"--layer-decay must be a positive number, got {self.layer_decay}"),
            (self.layer_decay_type in LAYER_DECAY_TYPES,
             f"--layer-decay-type must be one of {', '.join(LAYER_DECAY_TYPES)}, got {self.layer_decay_type!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainingError(message)
        if self.randaugment is not None:
            try:
                parse_randaugment(self.randaugment)
            except ValueError as e:
                raise TrainingError(str(e)) from None

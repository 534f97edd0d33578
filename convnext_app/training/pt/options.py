"""The options of ``convnext train`` and their checks."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Optional

from ..common.options import SharedTrainOptions, shared_option_checks
from .recipe.layer_decay import LAYER_DECAY_TYPES
from .recipe.randaugment import parse_randaugment


class TrainingError(ValueError):
    """Bad training options or data; the message names the option or path."""


@dataclass
class TrainOptions(SharedTrainOptions):
    """``convnext train``'s options: the shared ones plus what only the PyTorch path runs."""

    workers: int = 0
    amp: bool = False
    resume: bool = False
    stop_after: Optional[int] = None
    # the rest of the fine-tuning recipe (convnext_app.training.pt.recipe); the defaults leave it off
    randaugment: Optional[str] = None
    reprob: float = 0.0
    layer_decay: Optional[float] = None
    layer_decay_type: str = "group"

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

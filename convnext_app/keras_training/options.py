"""The options of ``convnext train --framework tf``: which recipe options the Keras path runs, and
a one-line refusal naming each one it does not. Framework-free (no torch, no TensorFlow)."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields
from typing import Any, Optional


class KerasTrainingError(ValueError):
    """Bad options or data for the Keras training path; the message names the option or path."""


#: recipe options that Keras cannot run as the PyTorch recipe does -> why (said in the error)
UNSUPPORTED: dict[str, tuple[str, str]] = {
    # attribute of the parsed arguments: (the flag, the reason)
    "randaugment": ("--randaugment", "Keras has no RandAugment with timm's policies (rand-m9-mstd0.5)"),
    "reprob": ("--reprob", "Keras' RandomErasing does not follow timm's random erasing"),
    "layer_decay": ("--layer-decay", "Keras optimizers have no per-layer learning rates"),
    "resume": ("--resume", "Keras runs are not checkpointed; train the whole run in one invocation"),
    "stop_after": ("--stop-after", "it needs --resume, which Keras runs do not have"),
    "amp": ("--amp", "bfloat16 autocast is a PyTorch option"),
    "workers": ("--workers", "the Keras path reads images in the training process"),
}

#: the recipe options Keras runs (an option at its neutral value is the same as not given)
RECIPE = ("ema", "mixup", "cutmix", "accum_steps", "clip_grad", "head_init_scale", "freeze_trunk")

#: the value at which an option does nothing (an option at this value is not refused)
_NEUTRAL: dict[str, Any] = {"layer_decay": 1.0, "workers": 0, "accum_steps": 1, "head_init_scale": 1.0}


def _is_set(name: str, value: Any) -> bool:
    return value is not None and value is not False and value != _NEUTRAL.get(name, 0)


@dataclass
class KerasTrainOptions:
    data: str
    model: str
    out: str
    epochs: int = 10
    batch_size: int = 32          # per device (replica), as --batch-size is per process in PyTorch
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
    # recipe options Keras runs
    ema: Optional[float] = None
    mixup: float = 0.0
    cutmix: float = 0.0
    accum_steps: int = 1
    clip_grad: Optional[float] = None
    head_init_scale: float = 1.0
    freeze_trunk: bool = False

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> "KerasTrainOptions":
        """The options of parsed arguments; refuses (one line) any set option Keras does not run.
        Options the parser does not define keep their defaults."""
        for name, (flag, why) in UNSUPPORTED.items():
            if _is_set(name, getattr(args, name, None)):
                raise KerasTrainingError(f"{flag} is not supported with --framework tf ({why}); "
                                         f"use --framework pt")
        values = {}
        for f in fields(cls):
            value = getattr(args, f.name, None)
            if value is not None and (f.name not in RECIPE or _is_set(f.name, value)):
                values[f.name] = value
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
            (self.ema is None or 0 < self.ema < 1, f"--ema must be in (0, 1), got {self.ema}"),
            (self.mixup >= 0, f"--mixup must be >= 0, got {self.mixup}"),
            (self.cutmix >= 0, f"--cutmix must be >= 0, got {self.cutmix}"),
            (self.accum_steps >= 1, f"--accum-steps must be >= 1, got {self.accum_steps}"),
            (self.clip_grad is None or self.clip_grad > 0, f"--clip-grad must be > 0, got {self.clip_grad}"),
            (self.head_init_scale > 0, f"--head-init-scale must be > 0, got {self.head_init_scale}"),
            # Keras updates the average at every accumulation step, not once per update as the recipe does
            (self.ema is None or self.accum_steps == 1,
             "--ema with --accum-steps is not supported with --framework tf (Keras averages the weights at every "
             "accumulation step); use --framework pt"),
        ]
        for ok, message in checks:
            if not ok:
                raise KerasTrainingError(message)

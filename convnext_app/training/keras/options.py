"""The options of ``convnext train --framework tf``: which recipe options the Keras path runs, and
a one-line refusal naming each one it does not. Framework-free (no torch, no TensorFlow)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from typing import Any

from ..common.options import SharedTrainOptions, shared_option_checks


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
class KerasTrainOptions(SharedTrainOptions):
    """``convnext train --framework tf``'s options: the shared ones (``--batch-size`` per device)."""

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
        checks = shared_option_checks(self) + [
            # Keras updates the average at every accumulation step, not once per update as the recipe does
            (self.ema is None or self.accum_steps == 1,
             "--ema with --accum-steps is not supported with --framework tf (Keras averages the weights at every "
             "accumulation step); use --framework pt"),
        ]
        for ok, message in checks:
            if not ok:
                raise KerasTrainingError(message)

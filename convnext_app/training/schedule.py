"""The optimizer and its learning-rate schedule: AdamW, linear warmup then cosine decay per step."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .recipe import layer_decay_groups


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, peak_lr: float, min_lr: float = 0.0) -> float:
    """Learning rate at ``step`` (0-based): linear from peak/warmup up to ``peak_lr`` over ``warmup_steps``,
    then half a cosine down to ``min_lr`` at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def no_weight_decay(name: str, param: nn.Parameter) -> bool:
    """Biases, norm scales, layer scales (one dimension) and GRN's (1, 1, 1, C) get no weight decay."""
    return param.ndim <= 1 or param.shape[:-1] == (1, 1, 1)


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, layer_decay: Optional[float] = None,
                    layer_decay_type: str = "group") -> torch.optim.AdamW:
    """AdamW over the trainable parameters (:func:`no_weight_decay` says which get none). With
    ``layer_decay`` one group per (official layer id, weight decay or not), each with its ``lr_scale``
    (:func:`convnext_app.training.recipe.layer_decay_groups`)."""
    if layer_decay is not None:
        return torch.optim.AdamW(layer_decay_groups(model, layer_decay, weight_decay, no_weight_decay,
                                                    layer_decay_type), lr=lr)
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if no_weight_decay(name, param) else decay).append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)

"""The optimizer: AdamW with the weight-decay rule of :func:`convnext_app.training.common.schedule.decays`
(its learning rate per step: :func:`~convnext_app.training.common.schedule.warmup_cosine`)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..common.schedule import decays
from .recipe import layer_decay_groups


def no_weight_decay(name: str, param: nn.Parameter) -> bool:
    """Biases, norm scales, layer scales (one dimension) and GRN's (1, 1, 1, C) get no weight decay."""
    return not decays(param.shape)


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, layer_decay: Optional[float] = None,
                    layer_decay_type: str = "group") -> torch.optim.AdamW:
    """AdamW over the trainable parameters (:func:`no_weight_decay` says which get none). With
    ``layer_decay`` one group per (official layer id, weight decay or not), each with its ``lr_scale``
    (:func:`convnext_app.training.pt.recipe.layer_decay_groups`)."""
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

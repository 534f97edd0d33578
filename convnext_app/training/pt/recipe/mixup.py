"""Mixup and CutMix per batch, with soft targets (timm's ``Mixup`` in its default "batch" mode, as the
official ConvNeXt training uses it): each batch is mixed with itself reversed; with both enabled one of
them is picked with probability 0.5; lambda ~ Beta(alpha, alpha); a cutmix box of area ``1 - lambda``
centred anywhere and clipped to the image, lambda then corrected to the area actually pasted. The draws
and the box are :mod:`convnext_app.training.common.augment`'s (the Keras path's too)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...common.augment import box_lambda, cutmix_box, draw_mix


def mixup_targets(labels: torch.Tensor, num_classes: int, lam: float, smoothing: float) -> torch.Tensor:
    """``lam * smooth(y) + (1 - lam) * smooth(y reversed)`` with smooth(y) = one-hot ``1 - s + s/K``
    on the label and ``s/K`` elsewhere."""
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    one_hot = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    one_hot.scatter_(1, labels.long().view(-1, 1), on)
    return one_hot * lam + one_hot.flip(0) * (1.0 - lam)


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample ``-sum(target * log_softmax(logits))``."""
    return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1)


@dataclass
class Mixup:
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    label_smoothing: float = 0.1
    num_classes: int = 1000
    switch_prob: float = 0.5

    @property
    def enabled(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def draw(self, rng: np.random.Generator) -> tuple[float, bool]:
        """(lambda, use cutmix) of one batch."""
        return draw_mix(self.mixup_alpha, self.cutmix_alpha, rng, self.switch_prob)

    def __call__(self, pixels: torch.Tensor, labels: torch.Tensor,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(mixed pixels (a new tensor), soft targets, the lambda the targets use)."""
        lam, use_cutmix = self.draw(rng)
        if use_cutmix:
            box = cutmix_box(pixels.shape[-2], pixels.shape[-1], lam, rng)
            top, bottom, left, right = box
            mixed = pixels.clone()
            mixed[:, :, top:bottom, left:right] = pixels.flip(0)[:, :, top:bottom, left:right]
            lam = box_lambda(box, pixels.shape[-2], pixels.shape[-1])
        else:
            mixed = pixels * lam + pixels.flip(0) * (1.0 - lam)
        return mixed, mixup_targets(labels, self.num_classes, lam, self.label_smoothing), lam

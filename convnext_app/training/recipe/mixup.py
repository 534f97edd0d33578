"""Mixup and CutMix per batch, with soft targets (timm's ``Mixup`` in its default "batch" mode, as the
official ConvNeXt training uses it): each batch is mixed with itself reversed; with both enabled one of
them is picked with probability 0.5; lambda ~ Beta(alpha, alpha); a cutmix box of area ``1 - lambda``
centred anywhere and clipped to the image, lambda then corrected to the area actually pasted."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a box of side ``sqrt(1 - lam)`` of the image's, centred uniformly
    over the image and clipped to it."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    top, bottom = min(max(cy - cut_h // 2, 0), height), min(max(cy + cut_h // 2, 0), height)
    left, right = min(max(cx - cut_w // 2, 0), width), min(max(cx + cut_w // 2, 0), width)
    return top, bottom, left, right


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
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or rng.random() < self.switch_prob)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        return float(rng.beta(alpha, alpha)), use_cutmix

    def __call__(self, pixels: torch.Tensor, labels: torch.Tensor,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(mixed pixels (a new tensor), soft targets, the lambda the targets use)."""
        lam, use_cutmix = self.draw(rng)
        if use_cutmix:
            top, bottom, left, right = cutmix_box(pixels.shape[-2], pixels.shape[-1], lam, rng)
            mixed = pixels.clone()
            mixed[:, :, top:bottom, left:right] = pixels.flip(0)[:, :, top:bottom, left:right]
            lam = 1.0 - (bottom - top) * (right - left) / float(pixels.shape[-2] * pixels.shape[-1])
        else:
            mixed = pixels * lam + pixels.flip(0) * (1.0 - lam)
        return mixed, mixup_targets(labels, self.num_classes, lam, self.label_smoothing), lam

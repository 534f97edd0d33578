"""The random geometry both training paths draw alike: the random-resized-crop box, and the mixup /
cutmix choice and box of timm's ``Mixup`` in batch mode (the official ConvNeXt recipe). numpy only:
each path draws from its own keyed generator and applies the result to its own arrays."""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np


def crop_box(height: int, width: int, uniforms: Callable[[], Sequence[float]], min_scale: float = 0.25,
             ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random resized crop, torchvision's rule: area uniform in
    ``[min_scale, 1]`` of the image, aspect log-uniform in ``ratio``; ``uniforms()`` gives four
    numbers in [0, 1) per try (area, aspect, top, left); after 10 misses, the largest centred crop
    within ``ratio``. Each path draws the uniforms from its own keyed generator."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        u = list(uniforms())
        target = area * (min_scale + (1.0 - min_scale) * u[0])
        aspect = math.exp(log_lo + (log_hi - log_lo) * u[1])
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(u[2] * (height - h + 1))
            left = int(u[3] * (width - w + 1))
            return min(top, height - h), min(left, width - w), h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def draw_mix(mixup_alpha: float, cutmix_alpha: float, rng: np.random.Generator,
             switch_prob: float = 0.5) -> tuple[float, bool]:
    """(lambda, use cutmix) of one batch: with both alphas, cutmix with probability ``switch_prob``;
    lambda ~ Beta(alpha, alpha) of the one chosen."""
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or rng.random() < switch_prob)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    return float(rng.beta(alpha, alpha)), use_cutmix


def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a box of side ``sqrt(1 - lam)`` of the image's, centred uniformly
    over the image and clipped to it."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    top, bottom = min(max(cy - cut_h // 2, 0), height), min(max(cy + cut_h // 2, 0), height)
    left, right = min(max(cx - cut_w // 2, 0), width), min(max(cx + cut_w // 2, 0), width)
    return top, bottom, left, right


def box_lambda(box: tuple[int, int, int, int], height: int, width: int) -> float:
    """The lambda the targets use after a cutmix: 1 less the share of the image the box pasted."""
    top, bottom, left, right = box
    return 1.0 - (bottom - top) * (right - left) / float(height * width)

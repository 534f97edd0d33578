"""Random erasing (timm's ``RandomErasing``, mode "pixel", one box), on the normalised image: with
probability ``p`` a box of area 2% to 1/3 of the image and log-uniform aspect ratio in [0.3, 1/0.3]
is filled with standard-normal noise per pixel and channel; 10 tries to fit, else nothing."""

from __future__ import annotations

import math
import random

import torch


class RandomErasing:
    def __init__(self, probability: float, min_area: float = 0.02, max_area: float = 1 / 3,
                 min_aspect: float = 0.3):
        self.probability = probability
        self.min_area, self.max_area = min_area, max_area
        self.log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))

    def box(self, height: int, width: int, rng: random.Random) -> tuple[int, int, int, int] | None:
        """(top, left, h, w) of the erased box, or None (no erasing this time)."""
        if rng.random() > self.probability:
            return None
        area = height * width
        for _ in range(10):
            target = rng.uniform(self.min_area, self.max_area) * area
            aspect = math.exp(rng.uniform(*self.log_aspect))
            h = int(round(math.sqrt(target * aspect)))
            w = int(round(math.sqrt(target / aspect)))
            if w < width and h < height:
                return rng.randint(0, height - h), rng.randint(0, width - w), h, w
        return None

    def __call__(self, image: torch.Tensor, rng: random.Random, noise: torch.Generator) -> torch.Tensor:
        """``image`` (C, H, W), erased in place and returned."""
        found = self.box(image.shape[-2], image.shape[-1], rng)
        if found is not None:
            top, left, h, w = found
            image[:, top:top + h, left:left + w] = torch.randn((image.shape[0], h, w), generator=noise,
                                                               dtype=image.dtype)
        return image

"""The data of the Keras path, in numpy and PIL (no framework): the same folders and held-out split
as ``convnext train``, the same augmentation (random resized crop with the same parameters, flip,
the processor's normalisation), mixup/cutmix as timm's ``Mixup`` (batch mode), and the batches of
every epoch. Each random draw comes from a numpy generator keyed by (seed, epoch, index or step)."""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from convnext_app.imagefolder import ImageFolder, load_image
from convnext_common.processing import ConvNextImageProcessor

from ..common.augment import box_lambda, crop_box, cutmix_box, draw_mix

# stream names inside a key, so the sample, shuffle and mix streams of one epoch never coincide
_SAMPLE, _SHUFFLE, _MIX = 0, 1, 2


def keyed_rng(seed: int, epoch: int, stream: int, index: int = 0) -> np.random.Generator:
    """The generator of one (seed, epoch, stream, index): independent of batch size and device count."""
    return np.random.default_rng([seed, epoch, stream, index])


class Augment:
    """PIL RGB image -> (3, size, size) float32: random resized crop, flip, the processor's normalisation.
    The resize is PIL's bilinear filter, antialiased as ``convnext train``'s (torch's antialias follows PIL)."""

    def __init__(self, processor: ConvNextImageProcessor, image_size: int, min_scale: float = 0.25,
                 flip: bool = True):
        self.image_size = image_size
        self.min_scale = min_scale
        self.flip = flip
        self.rescale = float(processor.rescale_factor) if processor.do_rescale else 1.0
        self.mean = np.asarray(processor.image_mean if processor.do_normalize else [0.0] * 3, np.float32)[:, None, None]
        self.std = np.asarray(processor.image_std if processor.do_normalize else [1.0] * 3, np.float32)[:, None, None]

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> np.ndarray:
        top, left, h, w = crop_box(image.height, image.width, lambda: rng.random(4), self.min_scale)
        crop = image.resize((self.image_size, self.image_size), Image.Resampling.BILINEAR,
                            box=(left, top, left + w, top + h))
        pixels = np.asarray(crop, dtype=np.float32).transpose(2, 0, 1)
        if self.flip and rng.random() < 0.5:
            pixels = pixels[:, :, ::-1]
        return np.ascontiguousarray((pixels * self.rescale - self.mean) / self.std, dtype=np.float32)


def mix_batch(pixels: np.ndarray, targets: np.ndarray, mixup: float, cutmix: float,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """timm's ``Mixup`` in batch mode (the official ConvNeXt recipe: probability 1, switch 0.5): each
    sample is mixed with the batch reversed. With both alphas, cutmix is drawn with probability 1/2.
    lambda ~ Beta(alpha, alpha); mixup blends the pixels, cutmix pastes a box of side ``sqrt(1 - lambda)``
    around a uniform centre (clipped at the border) and corrects lambda to the pasted area (the draws
    and the box: :mod:`convnext_app.training.common.augment`, as the PyTorch path's).
    ``pixels`` (B, C, H, W), ``targets`` (B, classes) -> (pixels, targets, lambda)."""
    lam, use_cutmix = draw_mix(mixup, cutmix, rng)
    flipped = pixels[::-1]
    if use_cutmix:
        height, width = pixels.shape[-2:]
        box = cutmix_box(height, width, lam, rng)
        y0, y1, x0, x1 = box
        pixels = pixels.copy()
        pixels[:, :, y0:y1, x0:x1] = flipped[:, :, y0:y1, x0:x1]
        lam = box_lambda(box, height, width)
    else:
        pixels = pixels * lam + flipped * (1.0 - lam)
    return pixels.astype(np.float32, copy=False), (targets * lam + targets[::-1] * (1.0 - lam)), lam


def one_hot(labels: Sequence[int], classes: int) -> np.ndarray:
    out = np.zeros((len(labels), classes), np.float32)
    out[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)] = 1.0
    return out


def epoch_order(size: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled order of the training images in one epoch."""
    return keyed_rng(seed, epoch, _SHUFFLE).permutation(size)


def train_batches(folder: ImageFolder, augment: Augment, batch_size: int, seed: int, epochs: range,
                  mixup: float = 0.0, cutmix: float = 0.0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(pixels (B, 3, S, S), soft targets (B, classes)) of every step of ``epochs``, in order; a
    batch never spans two epochs (the last one of an epoch may be smaller)."""
    classes = len(folder.classes)
    for epoch in epochs:
        order = epoch_order(len(folder), seed, epoch)
        for step, start in enumerate(range(0, len(order), batch_size)):
            indices = order[start:start + batch_size]
            pixels = np.stack([augment(load_image(folder.samples[i][0]), keyed_rng(seed, epoch, _SAMPLE, int(i)))
                               for i in indices])
            targets = one_hot([folder.samples[i][1] for i in indices], classes)
            if mixup > 0 or cutmix > 0:
                pixels, targets, _ = mix_batch(pixels, targets, mixup, cutmix, keyed_rng(seed, epoch, _MIX, step))
            yield pixels, targets


def eval_batches(folder: ImageFolder, processor: ConvNextImageProcessor, batch_size: int
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(pixels, integer labels) of ``folder`` through the model's image processor (what inference uses)."""
    for start in range(0, len(folder), batch_size):
        chunk = folder.samples[start:start + batch_size]
        images = [load_image(path) for path, _ in chunk]
        pixels = np.asarray(processor(images, return_tensors="np")["pixel_values"], dtype=np.float32)
        yield pixels, np.asarray([label for _, label in chunk], dtype=np.int64)


def steps_per_epoch(size: int, batch_size: int) -> int:
    return -(-size // batch_size)

"""The training data: the ImageFolder splits and the datasets over them, with the training
augmentation (torch only, no torchvision). Each sample's randomness comes from ``(seed, epoch,
index)``, so a run is reproducible for any number of processes and data-loading workers."""

from __future__ import annotations

import random
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from convnext_app.imagefolder import ImageFolder, load_image
from convnext_common.processing import ConvNextImageProcessor

from ..common.augment import crop_box
from ..common.data import load_folders

from .options import TrainOptions
from .recipe import RandAugment, RandomErasing, parse_randaugment


def random_resized_crop_box(height: int, width: int, generator: torch.Generator, min_scale: float = 0.25,
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(top, left, h, w) of the random resized crop (:func:`convnext_app.training.common.augment.crop_box`), its
    uniforms drawn from ``generator``."""
    return crop_box(height, width, lambda: torch.rand(4, generator=generator).tolist(), min_scale, ratio)


class TrainTransform:
    """PIL RGB image -> (3, size, size) float32: random resized crop, flip, [RandAugment], the
    processor's normalisation, [random erasing] (timm's order)."""

    def __init__(self, processor: ConvNextImageProcessor, image_size: int, min_scale: float = 0.25,
                 flip: bool = True, randaugment: Optional[str] = None, reprob: float = 0.0):
        self.image_size = image_size
        self.min_scale = min_scale
        self.flip = flip
        self.rescale = float(processor.rescale_factor) if processor.do_rescale else 1.0
        mean = processor.image_mean if processor.do_normalize else [0.0, 0.0, 0.0]
        std = processor.image_std if processor.do_normalize else [1.0, 1.0, 1.0]
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        # RandAugment fills with the dataset mean in pixels, as timm's hparams["img_mean"]
        fill = tuple(min(255, round(255 * m)) for m in (processor.image_mean or [0.5, 0.5, 0.5]))
        self.randaugment = RandAugment(parse_randaugment(randaugment), fill) if randaugment else None
        self.erasing = RandomErasing(reprob) if reprob > 0 else None

    def __call__(self, image, generator: torch.Generator) -> torch.Tensor:
        pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)  # (3, H, W)
        _, height, width = pixels.shape
        top, left, h, w = random_resized_crop_box(height, width, generator, self.min_scale)
        crop = pixels[:, top:top + h, left:left + w].float().unsqueeze(0)
        crop = F.interpolate(crop, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                             antialias=True)[0]
        if self.flip and torch.rand(1, generator=generator).item() < 0.5:
            crop = crop.flip(-1)
        crop = crop.clamp(0, 255).round()  # the processor also sees uint8 pixels
        rng = None
        if self.randaugment is not None or self.erasing is not None:
            # the recipe's draws continue the sample's own stream (so they are keyed alike)
            rng = random.Random(int(torch.randint(0, 2 ** 62, (1,), generator=generator)))
        if self.randaugment is not None:
            image = Image.fromarray(crop.to(torch.uint8).permute(1, 2, 0).numpy())
            crop = torch.from_numpy(np.asarray(self.randaugment(image, rng), dtype=np.uint8).copy()) \
                .permute(2, 0, 1).float()
        pixels = (crop * self.rescale - self.mean) / self.std
        if self.erasing is not None:
            pixels = self.erasing(pixels, rng, generator)
        return pixels


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The random stream of one sample in one epoch, independent of process and worker layout."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 10_000_019 + index)


class ImageFolderDataset(torch.utils.data.Dataset):
    """Samples of an :class:`ImageFolder`: ``train=True`` augments, else the processor transforms."""

    def __init__(self, folder: ImageFolder, processor: ConvNextImageProcessor, image_size: int, train: bool,
                 seed: int = 0, min_scale: float = 0.25, flip: bool = True, randaugment: Optional[str] = None,
                 reprob: float = 0.0):
        self.folder = folder
        self.processor = processor
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.augment = TrainTransform(processor, image_size, min_scale, flip, randaugment, reprob) if train else None

    def __len__(self) -> int:
        return len(self.folder.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.folder.samples[index]
        image = load_image(path)
        if self.augment is not None:
            return self.augment(image, sample_generator(self.seed, self.epoch, index)), label
        pixels = self.processor(image, return_tensors="np")["pixel_values"][0]
        return torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)), label


def load_data(options: TrainOptions) -> tuple[ImageFolder, ImageFolder]:
    """(train, val) folders of ``--data`` (:func:`convnext_app.training.common.data.load_folders`)."""
    return load_folders(options.data, options.val_fraction, options.seed)

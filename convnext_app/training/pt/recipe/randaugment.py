"""RandAugment on PIL images with timm's op set and magnitude semantics (``rand_augment_transform``),
configured by the same strings: ``rand-m9-mstd0.5-inc1`` = magnitude 9 of 10, gaussian noise of std
0.5 on the magnitude each time an op applies, the "increasing" variants of the ops whose strength
grows with the magnitude. ``n`` ops per image (default 2, drawn with replacement), each applied with
probability 0.5 (``p``); signed ops get a random sign. Geometric ops fill with the dataset mean
and resample bicubic (the official recipe's interpolation)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from PIL import Image, ImageEnhance, ImageOps

LEVEL_MAX = 10.0
TRANSLATE_PCT = 0.45

# timm's op names: _RAND_TRANSFORMS and _RAND_INCREASING_TRANSFORMS
OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
       "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
INCREASING_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
                  "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
                  "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")


class RandAugmentError(ValueError):
    """A RandAugment string that cannot be read."""


@dataclass(frozen=True)
class RandAugmentConfig:
    magnitude: float = 10.0
    num_ops: int = 2
    magnitude_std: float = 0.0
    magnitude_max: Optional[float] = None
    increasing: bool = False
    prob: float = 0.5


def parse_randaugment(text: str) -> RandAugmentConfig:
    """``rand-m9-n2-mstd0.5-mmax10-inc1-p0.5`` (every part after ``rand`` optional, any order)."""
    parts = text.split("-")
    if parts[0] != "rand":
        raise RandAugmentError(f"--randaugment {text!r}: expected a string like rand-m9-mstd0.5-inc1")
    values: dict = {}
    keys = (("mstd", "magnitude_std", float), ("mmax", "magnitude_max", float), ("inc", "increasing", int),
            ("m", "magnitude", float), ("n", "num_ops", int), ("p", "prob", float))
    for part in parts[1:]:
        for prefix, field, kind in keys:
            if part.startswith(prefix):
                try:
                    values[field] = kind(part[len(prefix):])
                except ValueError:
                    raise RandAugmentError(f"--randaugment {text!r}: {part!r} is not {prefix}<number>") from None
                break
        else:
            raise RandAugmentError(f"--randaugment {text!r}: unknown part {part!r} (m, n, mstd, mmax, inc, p)")
    values["increasing"] = bool(values.get("increasing", 0))
    config = RandAugmentConfig(**values)
    if config.num_ops < 1 or not 0 <= config.prob <= 1 or config.magnitude < 0 or config.magnitude_std < 0:
        raise RandAugmentError(f"--randaugment {text!r}: n >= 1, 0 <= p <= 1, m >= 0, mstd >= 0")
    return config


def _signed(value: float, rng: random.Random) -> float:
    return -value if rng.random() > 0.5 else value


# magnitude (0..10) -> the op's arguments; timm's *_level_to_arg functions
def _level_args(name: str, m: float, rng: random.Random) -> tuple:
    f = m / LEVEL_MAX
    base = name.removesuffix("Increasing")
    if base in ("AutoContrast", "Equalize", "Invert"):
        return ()
    if base == "Rotate":
        return (_signed(f * 30.0, rng),)
    if base in ("ShearX", "ShearY"):
        return (_signed(f * 0.3, rng),)
    if base in ("TranslateXRel", "TranslateYRel"):
        return (_signed(f * TRANSLATE_PCT, rng),)
    if base == "Posterize":
        bits = int(f * 4)
        return (4 - bits,) if name.endswith("Increasing") else (bits,)
    if base == "Solarize":
        threshold = int(f * 256)
        return (256 - threshold,) if name.endswith("Increasing") else (threshold,)
    if base == "SolarizeAdd":
        return (int(f * 110),)
    if name.endswith("Increasing"):  # Color, Contrast, Brightness, Sharpness
        return (max(0.1, 1.0 + _signed(f * 0.9, rng)),)
    return (f * 1.8 + 0.1,)


def _affine(image: Image.Image, matrix: Sequence[float], fill: tuple[int, ...]) -> Image.Image:
    return image.transform(image.size, Image.AFFINE, tuple(matrix), resample=Image.BICUBIC, fillcolor=fill)


def _solarize_add(image: Image.Image, add: int, threshold: int = 128) -> Image.Image:
    lut = [min(255, i + add) if i < threshold else i for i in range(256)]
    return image.point(lut * len(image.getbands()))


def _posterize(image: Image.Image, bits: int) -> Image.Image:
    return image if bits >= 8 else ImageOps.posterize(image, bits)


def _apply(name: str, image: Image.Image, args: tuple, fill: tuple[int, ...]) -> Image.Image:
    base = name.removesuffix("Increasing")
    ops: dict[str, Callable[[], Image.Image]] = {
        "AutoContrast": lambda: ImageOps.autocontrast(image),
        "Equalize": lambda: ImageOps.equalize(image),
        "Invert": lambda: ImageOps.invert(image),
        "Rotate": lambda: image.rotate(args[0], resample=Image.BICUBIC, fillcolor=fill),
        "Posterize": lambda: _posterize(image, args[0]),
        "Solarize": lambda: ImageOps.solarize(image, args[0]),
        "SolarizeAdd": lambda: _solarize_add(image, args[0]),
        "Color": lambda: ImageEnhance.Color(image).enhance(args[0]),
        "Contrast": lambda: ImageEnhance.Contrast(image).enhance(args[0]),
        "Brightness": lambda: ImageEnhance.Brightness(image).enhance(args[0]),
        "Sharpness": lambda: ImageEnhance.Sharpness(image).enhance(args[0]),
        "ShearX": lambda: _affine(image, (1, args[0], 0, 0, 1, 0), fill),
        "ShearY": lambda: _affine(image, (1, 0, 0, args[0], 1, 0), fill),
        "TranslateXRel": lambda: _affine(image, (1, 0, args[0] * image.size[0], 0, 1, 0), fill),
        "TranslateYRel": lambda: _affine(image, (1, 0, 0, 0, 1, args[0] * image.size[1]), fill),
    }
    return ops[base]()


class RandAugment:
    """``config.num_ops`` ops drawn with replacement, each applied with probability ``config.prob``."""

    def __init__(self, config: RandAugmentConfig, fill: tuple[int, int, int] = (128, 128, 128)):
        self.config = config
        self.fill = tuple(int(v) for v in fill)
        self.ops = INCREASING_OPS if config.increasing else OPS

    def magnitude(self, rng: random.Random) -> float:
        """The magnitude of one application: gaussian noise of std ``mstd`` (uniform in [0, m] for an
        infinite std), clipped to [0, mmax or 10]."""
        c = self.config
        m = c.magnitude
        if c.magnitude_std == float("inf"):
            m = rng.uniform(0, m)
        elif c.magnitude_std > 0:
            m = rng.gauss(m, c.magnitude_std)
        return max(0.0, min(m, c.magnitude_max or LEVEL_MAX))

    def __call__(self, image: Image.Image, rng: random.Random) -> Image.Image:
        for _ in range(self.config.num_ops):
            name = self.ops[rng.randrange(len(self.ops))]
            if self.config.prob < 1.0 and rng.random() > self.config.prob:
                continue
            image = _apply(name, image, _level_args(name, self.magnitude(rng), rng), self.fill)
        return image

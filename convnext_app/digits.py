"""How the embedded default model sees digits: scikit-learn's 8x8 handwritten digits written to images.

The source is ``sklearn.datasets.load_digits()`` (1797 images, 8 x 8, values 0..16, larger = more
ink). An 8x8 digit becomes an 8-bit grayscale image with ``round(value * 255 / 16)``: a **white digit
on a black background**, as sklearn's own ``plt.imshow(..., cmap="gray")`` shows it. It is then
upscaled to any size (nearest, bilinear, ...) and saved as grayscale or RGB. The model was trained
on all of these (scripts/train_default_model.py); black-on-white (inverted) digits are out of its
training distribution.

Only numpy and PIL here: the held-out split ships as an .npz, so checking the model needs no sklearn.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

LABELS = [str(d) for d in range(10)]

RESAMPLE = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS, "box": Image.Resampling.BOX}


class Rendering(NamedTuple):
    """One way of writing an 8x8 digit to an image file."""

    resample: str   # a key of RESAMPLE
    size: int       # output width = height in pixels
    mode: str       # "L" (grayscale) or "RGB"

    @property
    def tag(self) -> str:
        return f"{self.resample}_{self.size}px_{self.mode.lower() if self.mode == 'RGB' else 'gray'}"


#: the renderings the held-out accuracy is measured on: both upscalers, both ends of 32..128 px and a
#: size that is not a multiple of 8, grayscale and RGB.
EVAL_RENDERINGS = (
    Rendering("nearest", 32, "L"), Rendering("bilinear", 32, "RGB"),
    Rendering("nearest", 77, "RGB"), Rendering("bilinear", 77, "L"),
    Rendering("nearest", 128, "L"), Rendering("bilinear", 128, "RGB"),
)


def to_uint8(digits16: np.ndarray) -> np.ndarray:
    """sklearn's 0..16 values to 0..255 grayscale (white ink on black)."""
    a = np.asarray(digits16, dtype=np.float64)
    if a.min() < 0 or a.max() > 16:
        raise ValueError(f"digit values must lie in 0..16, got {a.min()}..{a.max()}")
    return np.round(a * (255.0 / 16.0)).astype(np.uint8)


def render(digit8: np.ndarray, rendering: Rendering, gain: float = 1.0) -> Image.Image:
    """An 8x8 uint8 digit upscaled to ``rendering.size`` with its filter, in its mode.

    ``gain`` (<= 1) scales the ink intensity (fainter strokes), used as training variety.
    """
    a = np.asarray(digit8)
    if a.shape != (8, 8) or a.dtype != np.uint8:
        raise ValueError(f"expected an (8, 8) uint8 digit, got {a.shape} {a.dtype}")
    if gain != 1.0:
        a = np.clip(np.round(a.astype(np.float64) * gain), 0, 255).astype(np.uint8)
    if rendering.resample not in RESAMPLE:
        raise ValueError(f"resample must be one of {', '.join(RESAMPLE)}, got {rendering.resample!r}")
    img = Image.fromarray(a, "L").resize((rendering.size, rendering.size), RESAMPLE[rendering.resample])
    return img.convert(rendering.mode)


class HeldOut(NamedTuple):
    images: np.ndarray   # (N, 8, 8) uint8, white on black
    labels: np.ndarray   # (N,) int64, 0..9
    indices: np.ndarray  # (N,) positions in sklearn's load_digits() order


def save_heldout(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray, indices: np.ndarray) -> None:
    from convnext_common.fileio import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, images=images.astype(np.uint8), labels=labels.astype(np.uint8),
                                indices=indices.astype(np.int32))


def load_heldout(path: str | os.PathLike) -> HeldOut:
    path = Path(path)
    with np.load(path, allow_pickle=False) as z:
        missing = {"images", "labels", "indices"} - set(z.files)
        if missing:
            raise ValueError(f"{path}: missing arrays {sorted(missing)}")
        return HeldOut(z["images"], z["labels"].astype(np.int64), z["indices"].astype(np.int64))


def heldout_batch(heldout: HeldOut, processor) -> tuple[np.ndarray, np.ndarray]:
    """Each held-out digit in every evaluation rendering, through ``processor`` (the model's own
    preprocessing): (pixels (N, 3, H, W) float32, labels (N,)), N = len(EVAL_RENDERINGS) * digits."""
    images = [render(d, r) for r in EVAL_RENDERINGS for d in heldout.images]
    pixels = np.asarray(processor(images, return_tensors="np")["pixel_values"], dtype=np.float32)
    return pixels, np.tile(heldout.labels, len(EVAL_RENDERINGS))

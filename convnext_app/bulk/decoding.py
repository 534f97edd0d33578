"""One image file to its model input (C, H, W) float32, or a one-line reason why not.

Runs in the loading workers. The image is decoded completely (a truncated JPEG is an error, never
padded: PIL's ``LOAD_TRUNCATED_IMAGES`` stays False in the workers) and preprocessed alone with the
model's processor, which processes every image of a batch independently: the same pixels as
:func:`convnext_app.inference.preprocess_files`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np


@dataclass
class DecodedBatch:
    """Consecutive images of the input: ``pixels`` stacks the ones that decoded (in order), ``errors[i]``
    is None for those and the reason for the others."""

    paths: list[str]
    pixels: np.ndarray
    errors: list[Optional[str]]

    @property
    def ok(self) -> list[int]:
        return [i for i, e in enumerate(self.errors) if e is None]


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def strict_pil() -> None:
    """Make PIL refuse truncated files in this (worker) process."""
    from PIL import ImageFile

    ImageFile.LOAD_TRUNCATED_IMAGES = False


def decode(path: str, processor) -> np.ndarray:
    """``path``'s pixel values (C, H, W) float32; OSError/ValueError naming the file when it cannot be used."""
    import os

    from convnext_app.imagefolder import ImageReadError, load_image

    if os.path.getsize(path) == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    image = load_image(path)
    try:
        return np.asarray(processor([image], return_tensors="np")["pixel_values"][0], dtype=np.float32)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: {one_line(e)}") from None


def decode_item(path: str, processor) -> tuple[Optional[np.ndarray], Optional[str]]:
    """``(pixels, None)`` or ``(None, reason)``: a bad file never raises."""
    try:
        return decode(path, processor), None
    except (OSError, ValueError, MemoryError) as e:
        return None, one_line(e)
    except Exception as e:  # noqa: BLE001  any other failure of a decoder is still this image's failure
        return None, f"{path}: {type(e).__name__}: {one_line(e)}"


def collate(paths: Sequence[str], items: Sequence[tuple[Optional[np.ndarray], Optional[str]]],
            shape: Optional[tuple[int, ...]] = None) -> DecodedBatch:
    arrays = [a for a, _ in items if a is not None]
    if arrays:
        pixels = np.stack(arrays)
    else:
        pixels = np.zeros((0, *(shape or (3, 1, 1))), np.float32)
    return DecodedBatch(list(paths), pixels, [e for _, e in items])


def decode_batch(paths: Sequence[str], processor) -> DecodedBatch:
    return collate(paths, [decode_item(p, processor) for p in paths])

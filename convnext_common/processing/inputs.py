"""Turning what a user passes (PIL images, arrays, tensors, lists, batches) into single RGB images.

Tensors of any framework are read through the protocols they share with numpy, never by name:
``detach()``/``cpu()`` (a tensor that may carry gradients or live on an accelerator), then
``numpy()`` or ``__array__``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from PIL import Image

from .options import CHANNELS_FIRST


def to_numpy(x: Any, where: str = "image") -> np.ndarray:
    """An array or tensor as a numpy array (a view where the type allows)."""
    if isinstance(x, np.ndarray):
        return x
    if callable(getattr(x, "detach", None)) and callable(getattr(x, "cpu", None)):
        x = x.detach().cpu()
    if callable(getattr(x, "numpy", None)):
        try:
            return np.asarray(x.numpy())
        except TypeError:  # a dtype numpy lacks (bfloat16, the float8 types, some builds' wide unsigned ints)
            return np.asarray(_widened(x).numpy())
    if hasattr(x, "__array__"):
        return np.asarray(x)
    raise ValueError(f"{where}: unsupported image type {type(x).__module__}.{type(x).__name__}; expected a PIL "
                     "image, a numpy array, a tensor (anything with .numpy() or __array__), or a list of them")


def _widened(tensor: Any) -> Any:
    """A tensor's values in a type numpy has: float32 for floats, int64 for integers (both exact)."""
    dtype = tensor.dtype
    return tensor.float() if getattr(dtype, "is_floating_point", False) else tensor.long()


def flatten_images(images: Any, as_array: Callable[[Any, str], Any] | None = None) -> list:
    """One image, a list (possibly nested) of images, or a 4-D batch -> a flat list of single images.

    Single images are PIL images or 2-D/3-D arrays. ``as_array(x, where)`` turns anything else into
    an array with ``ndim``/``shape`` and row indexing (default: a numpy array; a tensor processor
    keeps its tensors).
    """
    as_array = as_array or to_numpy
    flat: list = []

    def visit(x: Any, where: str) -> None:
        if isinstance(x, Image.Image):
            flat.append(x)
            return
        if isinstance(x, (list, tuple)):
            if len(x) == 0:
                raise ValueError(f"{where}: empty list of images")
            for i, item in enumerate(x):
                visit(item, f"{where}[{i}]")
            return
        arr = as_array(x, where)
        if arr.ndim == 4:
            if arr.shape[0] == 0:
                raise ValueError(f"{where}: empty batch (shape {tuple(arr.shape)})")
            flat.extend(arr[i] for i in range(arr.shape[0]))
        elif arr.ndim in (2, 3):
            flat.append(arr)
        else:
            raise ValueError(f"{where}: an image array must be 2-D (H, W), 3-D (H, W, C) / (C, H, W) or a 4-D "
                             f"batch, got shape {tuple(arr.shape)}")

    if images is None:
        raise ValueError("images: got None")
    visit(images, "images")
    return flat


def channel_layout(shape: tuple[int, ...], input_data_format: str | None, where: str = "image") -> str:
    """"hw", "chw" or "hwc" for an image of ``shape``.

    Without ``input_data_format`` the channel axis is inferred as transformers infers it: the first
    axis if it has 1 or 3 entries, else the last if it has 1 or 3, else ValueError (pass
    ``input_data_format``). With it, any number of channels is taken.
    """
    if len(shape) == 2:
        layout = "hw"
    elif len(shape) != 3:
        raise ValueError(f"{where}: expected a 2-D or 3-D image array, got shape {tuple(shape)}")
    elif input_data_format == CHANNELS_FIRST or (input_data_format is None and shape[0] in (1, 3)):
        layout = "chw"
    elif input_data_format is None and shape[-1] not in (1, 3):
        raise ValueError(f"{where}: cannot tell the channel axis of shape {tuple(shape)}: expected 1 (grayscale) "
                         "or 3 (RGB) channels in the first or last axis; pass input_data_format='channels_first' "
                         "or 'channels_last' for other channel counts, or convert RGBA images to RGB")
    else:
        layout = "hwc"
    if 0 in tuple(shape):
        raise ValueError(f"{where}: empty image (shape {tuple(shape)})")
    return layout


def image_channels(shape: tuple[int, ...], layout: str) -> int:
    """Channel count of an image array of ``shape`` laid out as ``layout`` (see :func:`channel_layout`)."""
    return 1 if layout == "hw" else shape[0] if layout == "chw" else shape[-1]


def to_hwc(arr: np.ndarray, input_data_format: str | None, where: str = "image") -> np.ndarray:
    """A 2-D or 3-D image array as (H, W, C) (a view); see :func:`channel_layout`."""
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{where}: unsupported dtype {arr.dtype} (expected uint8, another integer type or float)")
    layout = channel_layout(arr.shape, input_data_format, where)
    if layout == "hw":
        return arr[:, :, None]
    return arr.transpose(1, 2, 0) if layout == "chw" else arr


def pil_to_rgb(img: Image.Image) -> Image.Image:
    """RGB (or L, which stands for R = G = B) version of any PIL image, as ``img.convert("RGB")``."""
    if img.mode in ("RGB", "L"):
        return img
    return img.convert("RGB")


def check_pil_size(img: Image.Image, where: str) -> None:
    """An empty PIL image has nothing to resize: say so, naming the input."""
    if img.size[0] == 0 or img.size[1] == 0:
        raise ValueError(f"{where}: empty image (size {img.size})")


def to_uint8_for_pil(arr: np.ndarray, where: str = "image") -> tuple[np.ndarray, float]:
    """Make an (H, W, C) array uint8 the way transformers does before a PIL resize.

    Returns (uint8 array, value_scale): multiply the resized pixels by value_scale to get back to
    the input's units. Mirrors ``transformers.image_transforms._rescale_for_pil_conversion``.
    """
    if arr.dtype == np.uint8:
        return arr, 1.0
    check_finite(arr, where)
    if arr.dtype.kind in "biu" or np.allclose(arr, arr.astype(np.int64)):
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi > 255:
            raise ValueError(f"{where}: integer-valued pixels must lie in [0, 255] to be resized, got [{lo}, {hi}]")
        return arr.astype(np.uint8), 1.0
    lo, hi = arr.min(), arr.max()
    if lo < 0 or hi > 1:
        raise ValueError(f"{where}: float pixels must lie in [0, 1] (or be integers in [0, 255]) to be resized, "
                         f"got [{lo}, {hi}]")
    # transformers: rescale(image, 255) = (float64 * 255) -> float32, then astype(uint8) truncates
    return (arr.astype(np.float64) * 255).astype(np.float32).astype(np.uint8), 1 / 255


def check_finite(arr: np.ndarray, where: str) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{where}: contains NaN or infinite values")


PRESCALED_WARNING = ("The images look already rescaled to [0, 1] but do_rescale is True: they will be scaled by "
                     "rescale_factor again (as transformers does). Pass do_rescale=False for images in [0, 1].")

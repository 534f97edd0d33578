"""ConvNeXt image preprocessing with PIL and numpy: transformers' ``ConvNextImageProcessor``, faster.

Importing this module imports neither torch nor TensorFlow; they are imported only when an input
is one of their tensors or ``return_tensors`` asks for one.

What happens to each image (the semantics of transformers' slow ``ConvNextImageProcessor``):

1. **To RGB.** A PIL image in any mode is converted with ``Image.convert("RGB")`` (``L`` is kept
   as one channel and repeated at the end, which gives the same numbers). Alpha is *dropped*, not
   composited: the colour channels of an RGBA/LA/P-with-transparency image are used as they are,
   exactly as ``image.convert("RGB")`` does, which is what transformers' users feed it. Composite
   onto a background yourself first if transparent areas matter. Arrays and tensors may be HW,
   HWC or CHW (1 or 3 channels; the channel axis is inferred as transformers does, or given by
   ``input_data_format``), and a 4-D array or tensor is a batch.
2. **Resize** (``do_resize``), through PIL exactly as transformers does, so results agree to the
   last bit: if ``size["shortest_edge"] < 384`` the short side goes to
   ``int(shortest_edge / crop_pct)`` (the long side as transformers' ``get_resize_output_image_size``
   computes it), then a centre crop of ``shortest_edge`` x ``shortest_edge`` (zero padded when the
   resized image is smaller, as transformers' ``center_crop`` does); otherwise the image is warped
   to ``shortest_edge`` x ``shortest_edge``. PIL resizes uint8 data, so a non-uint8 array is first
   converted as transformers converts it: integer-valued data in [0, 255] is cast to uint8; float
   data in [0, 1] is multiplied by 255 and truncated, and the resized result divided by 255 again
   (so a [0, 1] float image that is also rescaled by ``rescale_factor`` ends up ~255x too small,
   as in transformers: such inputs trigger a warning, pass ``do_rescale=False`` for them). Other
   ranges are refused.
3. **Rescale and normalise** (``do_rescale``, ``do_normalize``): ``(x * rescale_factor - mean) / std``,
   in one pass through a per-channel table of the 256 possible uint8 values, each computed with
   transformers' float32 operations, so the output equals transformers' bit for bit.
4. **Layout**: ``data_format`` ``"channels_first"`` (C, H, W, the default) or ``"channels_last"``.

Speed (about 2x transformers' slow processor on one core, more with threads): the data stay
uint8 until the single table lookup; the resize runs as PIL's two passes called one at a time,
so the second pass covers only the kept columns (or rows), and along an axis whose scale is a
power-of-two fraction (e.g. a short side resized to 256) PIL is asked, through its ``box``
argument, for the kept outputs only -- bit-identical, since every quantity in PIL's weight
computation is then exact (see ``_exact_subrange``); a batch is spread over a thread pool (PIL
releases the GIL while resizing). JPEG draft decoding is not used: it changes the pixels.
"""

from __future__ import annotations

import copy
import json
import math
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from .constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD
from .fileio import atomic_write_text, read_json_file

PREPROCESSOR_CONFIG_NAME = "preprocessor_config.json"


#: shortest_edge at and above which images are warped to a square instead of resized + cropped.
WARP_THRESHOLD = 384

#: PIL filter numbers (``PIL.Image.Resampling``) and their names.
RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
for _f in getattr(Image, "Resampling", []):
    RESAMPLE_NAMES.setdefault(int(_f), _f.name.lower())

CHANNELS_FIRST, CHANNELS_LAST = "channels_first", "channels_last"
RETURN_TENSORS = (None, "np", "pt", "tf")

#: option names (the keys of preprocessor_config.json that this processor reads).
OPTION_NAMES = ("do_resize", "size", "crop_pct", "resample", "do_rescale", "rescale_factor",
                "do_normalize", "image_mean", "image_std")
#: per-call options that are not part of the saved config.
CALL_OPTION_NAMES = ("return_tensors", "data_format", "input_data_format")

_CONFIG_TYPES = ("ConvNextImageProcessor", "ConvNextImageProcessorFast", "ConvNextFeatureExtractor")


# --------------------------------------------------------------------------------------------------
# Output container
# --------------------------------------------------------------------------------------------------
class BatchFeature(dict):
    """The processor's output: a dict (``out["pixel_values"]``) that also reads as attributes
    (``out.pixel_values``), like transformers' ``BatchFeature``.

    ``pixel_values`` is a list of (C, H, W) float32 arrays when ``return_tensors`` is None, else one
    (N, C, H, W) array / torch tensor / tf tensor (channels last: (N, H, W, C)).
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchFeature has no key {name!r}") from None

    def to(self, *args: Any, **kwargs: Any) -> "BatchFeature":
        """Move torch tensors with ``tensor.to(*args, **kwargs)`` (device and/or dtype); others stay."""
        return BatchFeature({k: v.to(*args, **kwargs) if _is_torch(v) else v for k, v in self.items()})


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _is_tf(x: Any) -> bool:
    return type(x).__module__.split(".")[0] in ("tensorflow", "keras", "tf_keras")


# --------------------------------------------------------------------------------------------------
# Option validation
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcessorOptions:
    """Validated options of one call. ``size`` is always ``{"shortest_edge": n}``-like (a dict)."""

    do_resize: bool
    size: dict
    crop_pct: float
    resample: int
    do_rescale: bool
    rescale_factor: float
    do_normalize: bool
    image_mean: tuple
    image_std: tuple
    data_format: str = CHANNELS_FIRST
    input_data_format: str | None = None
    return_tensors: str | None = None

    @property
    def shortest_edge(self) -> int:
        return self.size["shortest_edge"]

    def affine(self, value_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-channel (scale, offset), float64, such that output = pixel * scale + offset.

        ``value_scale`` is what a stored pixel must be multiplied by to be in the input's units
        (1/255 for [0, 1] float images that went through PIL as uint8). None: nothing to apply.
        """
        if not self.do_rescale and not self.do_normalize:
            return None
        scale = np.full(3, float(value_scale))
        if self.do_rescale:
            scale = scale * self.rescale_factor
        offset = np.zeros(3)
        if self.do_normalize:
            std, mean = np.asarray(self.image_std, dtype=np.float64), np.asarray(self.image_mean, dtype=np.float64)
            scale, offset = scale / std, -mean / std
        return scale, offset


def _check_bool(name: str, value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"{name} must be True or False, got {value!r}")


def _check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def normalize_size(size: Any) -> dict:
    """``{"shortest_edge": n}`` from a dict or a bare int (old configs); ValueError otherwise."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = {"shortest_edge": int(size)}
    if not isinstance(size, dict):
        raise ValueError(f"size must be {{'shortest_edge': int}} or an int, got {size!r}")
    if "shortest_edge" not in size:
        raise ValueError(f"size must contain 'shortest_edge' (ConvNeXt resizes by the short side), got {size!r}")
    extra = set(size) - {"shortest_edge", "longest_edge"}
    if extra:
        raise ValueError(f"size has unsupported keys {sorted(extra)}; expected {{'shortest_edge': int}}, got {size!r}")
    s = size["shortest_edge"]
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s <= 0:
        raise ValueError(f"size['shortest_edge'] must be a positive int, got {s!r}")
    out = {"shortest_edge": int(s)}
    if size.get("longest_edge") is not None:  # accepted like transformers does, and ignored by ConvNeXt
        out["longest_edge"] = size["longest_edge"]
    return out


def normalize_resample(resample: Any) -> int:
    """A PIL filter number from an int, a ``PIL.Image.Resampling`` member or a name ("bicubic")."""
    if isinstance(resample, str):
        names = {v: k for k, v in RESAMPLE_NAMES.items()}
        if resample.lower() not in names:
            raise ValueError(f"resample {resample!r} is not one of {sorted(names)}")
        return names[resample.lower()]
    if isinstance(resample, bool) or not isinstance(resample, (int, np.integer)):
        raise ValueError(f"resample must be a PIL filter number {sorted(RESAMPLE_NAMES)}, got {resample!r}")
    if int(resample) not in RESAMPLE_NAMES:
        raise ValueError(f"resample {int(resample)} is not a PIL filter; expected one of {RESAMPLE_NAMES}")
    return int(resample)


def _check_channels_stat(name: str, value: Any) -> tuple:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        value = [value] * 3
    try:
        values = [_check_number(f"{name}[{i}]", v) for i, v in enumerate(value)]
    except TypeError:
        raise ValueError(f"{name} must be a number or a list of 3 numbers, got {value!r}") from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise ValueError(f"{name} must have 3 values (one per RGB channel), got {len(values)}: {value!r}")
    return tuple(values)


def _check_format(name: str, value: Any, allow_none: bool) -> str | None:
    value = getattr(value, "value", value)  # transformers' ChannelDimension enum
    if value is None and allow_none:
        return None
    aliases = {"channels_first": CHANNELS_FIRST, "first": CHANNELS_FIRST, "chw": CHANNELS_FIRST,
               "channels_last": CHANNELS_LAST, "last": CHANNELS_LAST, "hwc": CHANNELS_LAST}
    if isinstance(value, str) and value.lower() in aliases:
        return aliases[value.lower()]
    raise ValueError(f"{name} must be 'channels_first' or 'channels_last'{' or None' if allow_none else ''}, "
                     f"got {value!r}")


def _check_return_tensors(value: Any) -> str | None:
    value = getattr(value, "value", value)  # transformers' TensorType enum
    if value in RETURN_TENSORS:
        return value
    raise ValueError(f"return_tensors must be one of {RETURN_TENSORS}, got {value!r}")


def validate_options(**raw: Any) -> ProcessorOptions:
    """Check every option and return them frozen; a ValueError names the offending argument."""
    std = _check_channels_stat("image_std", raw["image_std"])
    if any(s == 0 for s in std):
        raise ValueError(f"image_std must not contain 0, got {std}")
    crop_pct = raw["crop_pct"]
    crop_pct = 224 / 256 if crop_pct is None else _check_number("crop_pct", crop_pct)
    if crop_pct <= 0:
        raise ValueError(f"crop_pct must be > 0, got {crop_pct}")
    return ProcessorOptions(
        do_resize=_check_bool("do_resize", raw["do_resize"]),
        size=normalize_size(raw["size"]),
        crop_pct=crop_pct,
        resample=normalize_resample(raw["resample"]),
        do_rescale=_check_bool("do_rescale", raw["do_rescale"]),
        rescale_factor=_check_number("rescale_factor", raw["rescale_factor"]),
        do_normalize=_check_bool("do_normalize", raw["do_normalize"]),
        image_mean=_check_channels_stat("image_mean", raw["image_mean"]),
        image_std=std,
        data_format=_check_format("data_format", raw.get("data_format", CHANNELS_FIRST), allow_none=False),
        input_data_format=_check_format("input_data_format", raw.get("input_data_format"), allow_none=True),
        return_tensors=_check_return_tensors(raw.get("return_tensors")),
    )


# --------------------------------------------------------------------------------------------------
# Geometry: exactly transformers' integer arithmetic
# --------------------------------------------------------------------------------------------------
def resize_output_size(height: int, width: int, shortest_edge: int, crop_pct: float) -> tuple[int, int]:
    """(H, W) that transformers' ConvNeXt resize produces for an input of (height, width)."""
    if shortest_edge >= WARP_THRESHOLD:
        return shortest_edge, shortest_edge
    short_target = int(shortest_edge / crop_pct)
    if short_target < 1:
        raise ValueError(f"crop_pct {crop_pct} is too large for shortest_edge {shortest_edge}: "
                         f"int(shortest_edge / crop_pct) = {short_target}")
    # get_resize_output_image_size(default_to_square=False): the long side is int(new_short * long / short)
    if width <= height:
        return int(short_target * height / width), short_target
    return short_target, int(short_target * width / height)


@dataclass(frozen=True)
class CropPlan:
    """Where a centre crop of (size x size) takes and puts pixels (transformers' ``center_crop``).

    Source rows ``[src_y, src_y + h)`` and columns ``[src_x, src_x + w)`` go to destination rows
    ``[dst_y, dst_y + h)`` / columns ``[dst_x, dst_x + w)``; the rest of the destination is padding
    (zero before rescaling), present only when the source is smaller than the crop.
    """

    src_y: int
    src_x: int
    dst_y: int
    dst_x: int
    h: int
    w: int

    @property
    def padded(self) -> bool:
        return self.dst_y > 0 or self.dst_x > 0


def center_crop_plan(height: int, width: int, crop_h: int, crop_w: int) -> CropPlan:
    def axis(n: int, c: int) -> tuple[int, int, int]:
        if n >= c:
            return (n - c) // 2, 0, c
        return 0, math.ceil((c - n) / 2), n

    sy, dy, h = axis(height, crop_h)
    sx, dx, w = axis(width, crop_w)
    return CropPlan(sy, sx, dy, dx, h, w)


# --------------------------------------------------------------------------------------------------
# Turning inputs into RGB uint8 (or float) HWC arrays / PIL images
# --------------------------------------------------------------------------------------------------
def _as_numpy(x: Any, what: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if _is_torch(x):
        import torch

        t = x.detach().cpu()
        if t.dtype in (torch.uint16, torch.uint32, torch.uint64):
            t = t.long()  # not every torch build converts these to numpy
        elif t.dtype.is_floating_point and t.dtype not in (torch.float16, torch.float32, torch.float64):
            t = t.float()  # bfloat16 and the float8 types have no numpy dtype
        return t.numpy()
    if _is_tf(x) and hasattr(x, "numpy"):
        return np.asarray(x.numpy())
    if hasattr(x, "__array__"):
        return np.asarray(x)
    raise ValueError(f"{what}: unsupported image type {type(x).__module__}.{type(x).__name__}; expected a PIL "
                     "image, a numpy array, a torch or TensorFlow tensor, or a list of them")


def flatten_images(images: Any, as_array: Callable[[Any, str], Any] | None = None) -> list:
    """One image, a list (possibly nested) of images, or a 4-D batch -> a flat list of single images.

    Single images are PIL images or 2-D/3-D arrays. ``as_array(x, where)`` turns anything else into
    an array with ``ndim``/``shape`` and row indexing (default: a numpy array; the torch processor
    keeps torch tensors).
    """
    as_array = as_array or _as_numpy
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


def check_stackable(shapes: list, return_tensors: str) -> None:
    """Processed images become one batch tensor only when they share a shape."""
    distinct = {tuple(s) for s in shapes}
    if len(distinct) > 1:
        raise ValueError(f"images have different sizes {sorted(distinct)} after processing, so they cannot be "
                         f"stacked for return_tensors={return_tensors!r}; resize them (do_resize=True) or "
                         "use return_tensors=None for a list")


def channel_layout(shape: tuple[int, ...], input_data_format: str | None, where: str = "image") -> str:
    """"hw", "chw" or "hwc" for an image of ``shape``; ValueError when the channels are not 1 or 3.

    The channel axis is inferred as transformers infers it (the first axis if it has 1 or 3
    entries, else the last) unless ``input_data_format`` says which.
    """
    if len(shape) == 2:
        layout = "hw"
    elif len(shape) != 3:
        raise ValueError(f"{where}: expected a 2-D or 3-D image array, got shape {tuple(shape)}")
    elif input_data_format == CHANNELS_FIRST or (input_data_format is None and shape[0] in (1, 3)):
        layout = "chw"
    elif input_data_format is None and shape[-1] not in (1, 3):
        raise ValueError(f"{where}: cannot tell the channel axis of shape {tuple(shape)}: expected 1 (grayscale) "
                         "or 3 (RGB) channels in the first or last axis; convert RGBA and other images to RGB "
                         "first, or pass input_data_format")
    else:
        layout = "hwc"
    channels = 1 if layout == "hw" else shape[0] if layout == "chw" else shape[-1]
    if channels not in (1, 3):
        raise ValueError(f"{where}: {channels} channels in shape {tuple(shape)}; expected 1 (grayscale) or 3 (RGB)")
    spatial = shape if layout == "hw" else shape[1:] if layout == "chw" else shape[:2]
    if 0 in spatial:
        raise ValueError(f"{where}: empty image (shape {tuple(shape)})")
    return layout


def to_hwc(arr: np.ndarray, input_data_format: str | None, where: str = "image") -> np.ndarray:
    """A 2-D or 3-D image array as (H, W, C) with C in (1, 3) (a view); see :func:`channel_layout`."""
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


def to_uint8_for_pil(arr: np.ndarray, where: str = "image") -> tuple[np.ndarray, float]:
    """Make an (H, W, C) array uint8 the way transformers does before a PIL resize.

    Returns (uint8 array, value_scale): multiply the resized pixels by value_scale to get back to
    the input's units. Mirrors ``transformers.image_transforms._rescale_for_pil_conversion``.
    """
    if arr.dtype == np.uint8:
        return arr, 1.0
    _check_finite(arr, where)
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


def _check_finite(arr: np.ndarray, where: str) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{where}: contains NaN or infinite values")


# --------------------------------------------------------------------------------------------------
# Resize + crop through PIL, computing only what the crop keeps when that is exact
# --------------------------------------------------------------------------------------------------
#: above this many pixels, a full resize before the crop is replaced by a boxed resize (see below).
MAX_INTERMEDIATE_PIXELS = 1 << 26
_FILTER_SUPPORT = {1: 3.0, 2: 1.0, 3: 2.0, 4: 0.5, 5: 1.0, 6: 2.5, 7: 4.5}


def _pil_bounds(in_size: int, out_size: int, support: float) -> tuple[np.ndarray, np.ndarray]:
    """First source index and count of each output's window, as PIL's ``precompute_coeffs``."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    sup = support * filterscale
    center = (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum(np.trunc(center - sup + 0.5).astype(np.int64), 0)
    xmax = np.minimum(np.trunc(center + sup + 0.5).astype(np.int64), in_size)
    return xmin, xmax


def _exact_subrange(in_size: int, out_size: int, start: int, count: int, support: float):
    """How to let PIL compute only outputs ``[start, start + count)`` of an axis, bit for bit.

    PIL computes the output of a box ``(b0, b1)`` with a ``float`` box and ``double`` weights; the
    weights equal those of the full resize only when every quantity involved is exact: the scale
    ``in_size / out_size`` must be a dyadic rational (e.g. out_size 256) and the box ends exactly
    representable as float32. Returns (src_lo, src_hi, b0, b1) -- crop the source to
    ``[src_lo, src_hi)`` and resize it with box ``(b0, b1)`` -- or None when not exact.
    """
    if count == out_size and start == 0:
        return 0, in_size, 0.0, float(in_size)
    scale = Fraction(in_size, out_size)
    if scale.denominator & (scale.denominator - 1):  # not a power of two: the double scale is rounded
        return None
    xmin, xmax = _pil_bounds(in_size, out_size, support)
    lo, hi = int(xmin[start:start + count].min()), int(xmax[start:start + count].max())
    b0 = scale * start - lo
    b1 = b0 + scale * count
    # PIL refuses a box reaching past the cropped source; when upscaling with a narrow filter
    # (box) the kept outputs' windows can end before the box does: keep those source pixels too
    # (they get no weight, so the bits do not change).
    hi = max(hi, min(in_size, math.ceil(lo + b1)))
    if lo + b1 > hi:
        return None
    for b in (b0, b1, b1 - b0):
        # exact in float32: numerator fits 24 bits with a power-of-two denominator
        if b < 0 or b.numerator >= 1 << 24 or b.denominator >= 1 << 24:
            return None
    if float(np.float32(float(b0))) != b0 or float(np.float32(float(b1))) != b1:
        return None
    return lo, hi, float(b0), float(b1)


def _horizontal_first(w: int, h: int, out_w: int, out_h: int) -> bool | None:
    """Order of PIL's two passes, or None where Pillow versions disagree (then do not split)."""
    # Pillow >= 13 runs the vertical pass first when the height shrinks more than twice as much as
    # the width; older versions always go horizontal first. Split only where both agree.
    dh, dw = h - out_h, w - out_w
    if dh > 0 and dh > 2 * dw:
        return None
    if h > 100 * w:  # some releases special-case very tall images in Python
        return None
    return True


@lru_cache(maxsize=256)
def _split_plan(w: int, h: int, out_w: int, out_h: int, crop: tuple[int, int, int, int], resample: int):
    """Steps that compute the crop (x, y, cw, ch) of a (w, h) -> (out_w, out_h) resize exactly, or None."""
    support = _FILTER_SUPPORT.get(resample)
    if support is None or _horizontal_first(w, h, out_w, out_h) is None:
        return None
    x, y, cw, ch = crop
    need_h, need_v = out_w != w, out_h != h
    # horizontal pass: which columns it must produce (box on x) and which rows it must cover
    xs = _exact_subrange(w, out_w, x, cw, support) if need_h else (x, x + cw, 0.0, float(cw))
    ys = _exact_subrange(h, out_h, y, ch, support) if need_v else (y, y + ch, 0.0, float(ch))
    if xs is None and ys is None:
        return None
    return xs, ys


def resize_and_crop(img: Image.Image, out_h: int, out_w: int, crop: CropPlan | None, resample: int) -> np.ndarray:
    """``np.asarray(img.resize((out_w, out_h), resample))[crop]`` with the same bits, computing less.

    Returns the kept region (crop.h, crop.w[, C]) as uint8 (always 3-D, (H, W, C)).
    """
    w, h = img.size
    region = (0, 0, out_w, out_h) if crop is None else (crop.src_x, crop.src_y, crop.w, crop.h)
    plan = None
    if crop is not None and (region[2] < out_w or region[3] < out_h) and resample != Image.Resampling.NEAREST:
        plan = _split_plan(w, h, out_w, out_h, region, resample)
    if plan is None and crop is not None and out_w * out_h > MAX_INTERMEDIATE_PIXELS:
        # A degenerate aspect ratio (e.g. 1 x 10000) would need a gigapixel intermediate: resize
        # only the kept box. PIL's float box makes this agree to rounding, not bit for bit.
        x, y, cw, ch = region
        sx, sy = w / out_w, h / out_h
        box = (x * sx, y * sy, (x + cw) * sx, (y + ch) * sy)
        return _pil_to_hwc(img.resize((cw, ch), resample, box=box))
    if plan is None:
        out = img.resize((out_w, out_h), resample)
        if region != (0, 0, out_w, out_h):
            x, y, cw, ch = region
            out = out.crop((x, y, x + cw, y + ch))
        return _pil_to_hwc(out)
    xs, ys = plan
    x, y, cw, ch = region
    # Horizontal pass (PIL's first, see _horizontal_first) on only the rows the vertical pass reads.
    if ys is not None:
        row_lo, row_hi = ys[0], ys[1]
    else:
        row_lo, row_hi = 0, h
    tmp = img.crop((0, row_lo, w, row_hi)) if (row_lo, row_hi) != (0, h) else img
    if out_w != w:
        if xs is not None:
            col_lo, col_hi, b0, b1 = xs
            tmp = tmp.crop((col_lo, 0, col_hi, tmp.size[1])).resize(
                (cw, tmp.size[1]), resample, box=(b0, 0, b1, tmp.size[1]))
        else:
            tmp = tmp.resize((out_w, tmp.size[1]), resample).crop((x, 0, x + cw, tmp.size[1]))
    else:
        tmp = tmp.crop((x, 0, x + cw, tmp.size[1]))
    # Vertical pass.
    if out_h != h:
        if ys is not None:
            _, _, b0, b1 = ys
            tmp = tmp.resize((cw, ch), resample, box=(0, b0, cw, b1))
        else:
            tmp = tmp.resize((cw, out_h), resample).crop((0, y, cw, y + ch))
    else:
        tmp = tmp.crop((0, y - row_lo, cw, y - row_lo + ch)) if (row_lo, ch) != (y, tmp.size[1]) else tmp
    return _pil_to_hwc(tmp)


def _pil_to_hwc(img: Image.Image) -> np.ndarray:
    arr = np.asarray(img)
    return arr[:, :, None] if arr.ndim == 2 else arr


# --------------------------------------------------------------------------------------------------
# The processor
# --------------------------------------------------------------------------------------------------
_POOL_LOCK = threading.Lock()
_POOLS: dict[tuple[int, int], ThreadPoolExecutor] = {}


def thread_pool(n: int) -> ThreadPoolExecutor:
    """A shared pool of ``n`` threads, per process: a forked child (e.g. a DataLoader worker)
    inherits the parent's pool objects without their threads, so it makes its own."""
    key = (os.getpid(), n)
    with _POOL_LOCK:
        if key not in _POOLS:
            _POOLS[key] = ThreadPoolExecutor(n, thread_name_prefix="convnext-preprocess")
        return _POOLS[key]


def _default_threads() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(8, n))


class ConvNextImageProcessor:
    """transformers' ``ConvNextImageProcessor`` with PIL and numpy only (module docstring: the steps).

    Args (the keys of preprocessor_config.json; each can be overridden per call):
        do_resize: resize (and crop) as described above. Default True.
        size: ``{"shortest_edge": n}`` or a bare int (old configs). Default ``{"shortest_edge": 384}``.
        crop_pct: short side is resized to ``int(shortest_edge / crop_pct)`` before the crop when
            ``shortest_edge < 384``. Default 224 / 256. Must be > 0 (> 1 pads the crop).
        resample: PIL filter number (``PIL.Image.Resampling``) or name. Default 3 (bicubic, as the
            hub configs and transformers 5 use; transformers 4 defaults to bilinear).
        do_rescale, rescale_factor: multiply by ``rescale_factor`` (default 1/255).
        do_normalize, image_mean, image_std: ``(x - mean) / std`` per channel. Defaults are
            transformers' ``IMAGENET_STANDARD_*`` = 0.5; the hub's ConvNeXt configs use the ImageNet
            statistics ``IMAGENET_DEFAULT_*``.
        data_format: ``"channels_first"`` (default) or ``"channels_last"`` output.
        num_threads: threads for a batch (not saved; default: usable CPUs, at most 8).
    Unknown keyword arguments (other keys of a loaded config) are kept and saved back.
    """

    model_input_names = ["pixel_values"]
    config_type_name = "ConvNextImageProcessor"

    def __init__(
        self,
        do_resize: bool = True,
        size: dict | int | None = None,
        crop_pct: float | None = None,
        resample: int = 3,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: float | Sequence[float] | None = None,
        image_std: float | Sequence[float] | None = None,
        data_format: str = CHANNELS_FIRST,
        num_threads: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.do_resize = do_resize
        self.size = {"shortest_edge": 384} if size is None else size
        self.crop_pct = 224 / 256 if crop_pct is None else crop_pct
        self.resample = resample
        self.do_rescale = do_rescale
        self.rescale_factor = rescale_factor
        self.do_normalize = do_normalize
        self.image_mean = list(IMAGENET_STANDARD_MEAN) if image_mean is None else image_mean
        self.image_std = list(IMAGENET_STANDARD_STD) if image_std is None else image_std
        self.data_format = data_format
        if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, int)
                                        or num_threads < 1):
            raise ValueError(f"num_threads must be a positive int or None, got {num_threads!r}")
        self.num_threads = num_threads
        kwargs.pop("image_processor_type", None)  # always written as our own type
        self.extra: dict[str, Any] = kwargs
        opts = self._options({})  # validate now: a bad config fails at load time, naming the field
        self.size, self.crop_pct, self.resample = opts.size, opts.crop_pct, opts.resample
        self.image_mean, self.image_std = list(opts.image_mean), list(opts.image_std)
        self.data_format = opts.data_format

    # ---- options ----------------------------------------------------------------------------------
    def _options(self, overrides: dict[str, Any]) -> ProcessorOptions:
        unknown = set(overrides) - set(OPTION_NAMES) - set(CALL_OPTION_NAMES) - set(self._extra_call_options)
        if unknown:
            warnings.warn(f"{type(self).__name__}: ignoring unknown argument(s) {sorted(unknown)}", stacklevel=3)
        raw = {name: getattr(self, name) for name in OPTION_NAMES}
        raw["data_format"] = self.data_format
        for name in OPTION_NAMES + CALL_OPTION_NAMES:
            if overrides.get(name) is not None:
                raw[name] = overrides[name]
        if "crop_pct" in overrides and overrides["crop_pct"] is None:
            raw["crop_pct"] = self.crop_pct
        return validate_options(**raw)

    _extra_call_options: tuple[str, ...] = ()

    # ---- the work ---------------------------------------------------------------------------------
    def __call__(self, images: Any, **kwargs: Any) -> BatchFeature:
        """Same as :meth:`preprocess`."""
        return self.preprocess(images, **kwargs)

    def preprocess(self, images: Any, **kwargs: Any) -> BatchFeature:
        """Process one image or a batch; keyword arguments override the stored options for this call.

        Returns a BatchFeature with ``pixel_values``: a list of (3, H, W) float32 arrays, or with
        ``return_tensors`` ("np", "pt", "tf") one (N, 3, H, W) array/tensor (H = W = shortest_edge
        when resizing). ``return_tensors`` needs all images of one size (always true when resizing).
        """
        opts = self._options(kwargs)
        items = flatten_images(images)
        self._warn_if_prescaled(items, opts)
        n = len(items)
        out = None
        if opts.do_resize and (opts.do_rescale or opts.do_normalize):  # one size, float32: one buffer
            s = opts.shortest_edge
            shape = (n, 3, s, s) if opts.data_format == CHANNELS_FIRST else (n, s, s, 3)
            out = np.empty(shape, dtype=np.float32)

        def work(i: int) -> np.ndarray:
            return self._process_one(items[i], f"images[{i}]" if n > 1 else "image", opts,
                                     None if out is None else out[i])

        threads = min(self.num_threads or _default_threads(), n)
        results = list(thread_pool(threads).map(work, range(n))) if threads > 1 else [work(i) for i in range(n)]
        if out is not None:
            results = list(out)
        return BatchFeature({"pixel_values": self._to_tensors(results, opts.return_tensors, out)})

    @staticmethod
    def _warn_if_prescaled(items: list, opts: ProcessorOptions) -> None:
        # transformers' is_scaled_image check on the first image
        first = items[0]
        if opts.do_rescale and isinstance(first, np.ndarray) and first.dtype != np.uint8 and first.size:
            if first.dtype.kind == "f" and np.isfinite(first).all() and first.min() >= 0 and first.max() <= 1:
                warnings.warn("The images look already rescaled to [0, 1] but do_rescale is True: they will be "
                              "scaled by rescale_factor again (as transformers does). Pass do_rescale=False for "
                              "images in [0, 1].", UserWarning, stacklevel=4)

    def _process_one(self, image: Any, where: str, opts: ProcessorOptions, out: np.ndarray | None) -> np.ndarray:
        """One image -> its (3, H, W) (or (H, W, 3)) result, written into ``out`` when given."""
        if isinstance(image, Image.Image):
            pil = pil_to_rgb(image)
            if pil.size[0] == 0 or pil.size[1] == 0:
                raise ValueError(f"{where}: empty image (size {pil.size})")
            arr = None
            value_scale = 1.0
        else:
            arr = to_hwc(image, opts.input_data_format, where)
            pil = None
            if opts.do_resize:
                arr, value_scale = to_uint8_for_pil(arr, where)
                pil = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
            else:
                _check_finite(arr, where)
                value_scale = 1.0
        if opts.do_resize:
            w, h = pil.size
            out_h, out_w = resize_output_size(h, w, opts.shortest_edge, opts.crop_pct)
            crop = None
            if opts.shortest_edge < WARP_THRESHOLD:
                crop = center_crop_plan(out_h, out_w, opts.shortest_edge, opts.shortest_edge)
            region = resize_and_crop(pil, out_h, out_w, crop, opts.resample)
            size = (opts.shortest_edge, opts.shortest_edge)
        else:
            region = np.asarray(pil) if arr is None else arr
            if region.ndim == 2:
                region = region[:, :, None]
            crop = None
            size = region.shape[:2]
        return _write_output(region, crop, size, opts, value_scale, out)

    @staticmethod
    def _to_tensors(results: list, return_tensors: str | None, batch: np.ndarray | None) -> Any:
        if return_tensors is None:
            return results
        if batch is None:
            check_stackable([r.shape for r in results], return_tensors)
            batch = np.stack(results)
        if return_tensors == "np":
            return batch
        if return_tensors == "pt":
            import torch

            return torch.from_numpy(batch)
        import tensorflow as tf

        return tf.convert_to_tensor(batch)

    # ---- config files -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The preprocessor_config.json content (transformers' keys and layout)."""
        d = copy.deepcopy(self.extra)
        d.update(
            crop_pct=self.crop_pct, do_normalize=self.do_normalize, do_rescale=self.do_rescale,
            do_resize=self.do_resize, image_mean=list(self.image_mean), image_processor_type=self.config_type_name,
            image_std=list(self.image_std), resample=self.resample, rescale_factor=self.rescale_factor,
            size=dict(self.size),
        )
        if self.data_format != CHANNELS_FIRST:
            d["data_format"] = self.data_format
        return dict(sorted(d.items()))

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, config: dict[str, Any], **kwargs: Any) -> "ConvNextImageProcessor":
        if not isinstance(config, dict):
            raise ValueError(f"an image processor config must be a JSON object, got {type(config).__name__}")
        config = copy.deepcopy(config)
        config.update(kwargs)
        kind = config.get("image_processor_type") or config.get("feature_extractor_type")
        if kind is not None and kind not in _CONFIG_TYPES:
            warnings.warn(f"loading a {kind} config into {cls.__name__}: only its ConvNeXt options are used",
                          stacklevel=3)
        if config.get("data_format") is None:
            config.pop("data_format", None)
        return cls(**config)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **kwargs: Any) -> "ConvNextImageProcessor":
        path = Path(path)
        config = read_json_file(path, "preprocessor config file")
        try:
            return cls.from_dict(config, **kwargs)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: {e}") from None

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs: Any) -> "ConvNextImageProcessor":
        """Read preprocessor_config.json from a folder, the file itself, or a hub id.

        Keyword arguments override the file's values. Legacy files (``feature_extractor_type``,
        a bare-int ``size``) are read too. ``revision``, ``cache_dir``, ``local_files_only`` and
        ``token`` are passed to the hub as in transformers. A timm folder or hub id (no
        preprocessor_config.json) gives the settings of timm's evaluation transform.
        """
        from .hub import HubOptions
        from .pretrained import preprocessor_source

        source = preprocessor_source(path, HubOptions.pop_from(kwargs))
        if isinstance(source, dict):
            return cls.from_dict(source, **kwargs)
        return cls.from_json_file(source, **kwargs)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``directory/preprocessor_config.json`` (atomically); returns its path."""

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / PREPROCESSOR_CONFIG_NAME
        atomic_write_text(path, self.to_json_string())
        return path

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConvNextImageProcessor) and self.to_dict() == other.to_dict()

    def __getattr__(self, name: str) -> Any:
        extra = self.__dict__.get("extra", {})
        if name in extra:  # unknown config keys read back as attributes, as in transformers
            return extra[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")


@lru_cache(maxsize=64)
def pixel_lut(do_rescale: bool, rescale_factor: float, do_normalize: bool, image_mean: tuple, image_std: tuple,
              value_scale: float) -> np.ndarray | None:
    """(3, 256) float32: the output value of each uint8 pixel value, per channel, computed with
    transformers' exact sequence of operations (so a table lookup reproduces it bit for bit):
    ``rescale(resized, value_scale)`` (float [0, 1] inputs only), ``rescale(x, rescale_factor)``
    (float64 product cast to float32), then ``(x - mean) / std`` in float32. None: the output is
    the uint8 pixels themselves (no rescale, no normalise)."""
    v: np.ndarray = np.arange(256, dtype=np.uint8)
    if value_scale != 1.0:
        v = (v.astype(np.float64) * value_scale).astype(np.float32)
    v = _transformers_rescale_normalize(v[None, :], do_rescale, rescale_factor, do_normalize, image_mean, image_std,
                                        channel_axis=0)
    if v.dtype == np.uint8:
        return None
    return np.ascontiguousarray(np.broadcast_to(v, (3, 256)), dtype=np.float32)


def _transformers_rescale_normalize(x: np.ndarray, do_rescale: bool, rescale_factor: float, do_normalize: bool,
                                    mean: tuple, std: tuple, channel_axis: int) -> np.ndarray:
    """transformers' ``rescale`` then ``normalize``, operation for operation. ``x`` has its channel
    axis (1 or 3 entries, 1 broadcasting to 3) at ``channel_axis``."""
    if do_rescale:
        x = (x.astype(np.float64) * rescale_factor).astype(np.float32)
    if do_normalize:
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float32)
        shape = [1] * x.ndim
        shape[channel_axis] = 3
        x = (x - np.asarray(mean, dtype=x.dtype).reshape(shape)) / np.asarray(std, dtype=x.dtype).reshape(shape)
    return x


def _write_output(region: np.ndarray, crop: CropPlan | None, size: tuple[int, int], opts: ProcessorOptions,
                  value_scale: float, out: np.ndarray | None) -> np.ndarray:
    """Rescale + normalise ``region`` (H, W, 1|3) into a (3, H, W) / (H, W, 3) result.

    uint8 pixels (the usual case) go through a per-channel lookup table: one pass, and exactly
    transformers' float32 values. Padding (crop larger than the image) gets the value of a zero
    pixel, as in transformers.
    """
    first = opts.data_format == CHANNELS_FIRST
    if region.dtype == np.uint8:
        lut = pixel_lut(opts.do_rescale, opts.rescale_factor, opts.do_normalize, opts.image_mean, opts.image_std,
                        value_scale)
        if lut is None:
            lut = np.broadcast_to(np.arange(256, dtype=np.uint8), (3, 256))
        values = None
    else:  # float or wide-integer arrays that were not resized: transformers' operations as they are
        lut = None
        values = _transformers_rescale_normalize(region, opts.do_rescale, opts.rescale_factor, opts.do_normalize,
                                                 opts.image_mean, opts.image_std, channel_axis=2)
        if not np.issubdtype(values.dtype, np.floating):
            values = values.astype(np.float32)
    if out is None:
        dtype = lut.dtype if lut is not None else np.float32
        out = np.empty((3, *size) if first else (*size, 3), dtype=dtype)
    dst = out
    if crop is not None and crop.padded:
        out[...] = (lut[:, 0][:, None, None] if first else lut[:, 0]) if lut is not None else 0
        dst = out[:, crop.dst_y:crop.dst_y + crop.h, crop.dst_x:crop.dst_x + crop.w] if first else \
            out[crop.dst_y:crop.dst_y + crop.h, crop.dst_x:crop.dst_x + crop.w]
    if values is not None:
        dst[...] = values.transpose(2, 0, 1) if first else values
        return out
    channels = region.shape[2]
    for c in range(3):
        src = region[:, :, c if channels == 3 else 0]
        target = dst[c] if first else dst[:, :, c]
        if target.flags.c_contiguous:
            np.take(lut[c], src, out=target)
        else:
            target[...] = lut[c][src]
    return out


class ConvNextFeatureExtractor(ConvNextImageProcessor):
    """Deprecated name of :class:`ConvNextImageProcessor` (as in transformers); warns on construction."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        warnings.warn("ConvNextFeatureExtractor is deprecated; use ConvNextImageProcessor (same arguments, same "
                      "results).", FutureWarning, stacklevel=2)
        super().__init__(*args, **kwargs)


__all__ = ["ConvNextImageProcessor", "ConvNextFeatureExtractor", "BatchFeature", "ProcessorOptions",
           "PREPROCESSOR_CONFIG_NAME", "IMAGENET_STANDARD_MEAN", "IMAGENET_STANDARD_STD", "IMAGENET_DEFAULT_MEAN",
           "IMAGENET_DEFAULT_STD", "validate_options", "resize_output_size", "center_crop_plan", "flatten_images",
           "to_hwc", "channel_layout", "to_uint8_for_pil", "pil_to_rgb", "resize_and_crop"]

"""Resize + centre crop through PIL, asking PIL for only the pixels the crop keeps where that is exact.

PIL's two passes are called one at a time, so the second pass covers only the kept columns (or
rows), and along an axis whose scale is a power-of-two fraction (e.g. a short side resized to
256) PIL is asked, through its ``box`` argument, for the kept outputs only: bit-identical to the
full resize, since every quantity in PIL's weight computation is then exact (``_exact_subrange``).
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

import numpy as np
from PIL import Image

from .geometry import CropPlan
from .resampling import FILTERS, pil_axis_bounds, pil_horizontal_first

#: above this many pixels, a full resize before the crop is replaced by a boxed resize (see below).
MAX_INTERMEDIATE_PIXELS = 1 << 26

Subrange = tuple[int, int, float, float]  # (src_lo, src_hi, box_start, box_end)


def _exact_subrange(in_size: int, out_size: int, start: int, count: int, resample: int) -> Subrange | None:
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
    xmin, xmax = pil_axis_bounds(in_size, out_size, resample)
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


@lru_cache(maxsize=256)
def _split_plan(w: int, h: int, out_w: int, out_h: int, crop: tuple[int, int, int, int], resample: int
                ) -> tuple[Subrange | None, Subrange | None] | None:
    """Steps that compute the crop (x, y, cw, ch) of a (w, h) -> (out_w, out_h) resize exactly, or None."""
    # The steps below run PIL's horizontal pass first; where PIL would start vertically, the
    # rounding in between differs, so do not split.
    if resample not in FILTERS or not pil_horizontal_first(w, h, out_w, out_h):
        return None
    x, y, cw, ch = crop
    need_h, need_v = out_w != w, out_h != h
    # horizontal pass: which columns it must produce (box on x) and which rows it must cover
    xs = _exact_subrange(w, out_w, x, cw, resample) if need_h else (x, x + cw, 0.0, float(cw))
    ys = _exact_subrange(h, out_h, y, ch, resample) if need_v else (y, y + ch, 0.0, float(ch))
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
    # PIL resizes LA and RGBA in premultiplied form, converting around each resize call: split
    # into two calls, the rounding in between would differ, so those modes are resized whole.
    if crop is not None and (region[2] < out_w or region[3] < out_h) and resample != Image.Resampling.NEAREST \
            and img.mode not in ("LA", "RGBA"):
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
    return _pil_to_hwc(_run_split(img, out_h, out_w, region, resample, *plan))


def _run_split(img: Image.Image, out_h: int, out_w: int, region: tuple[int, int, int, int], resample: int,
               xs: Subrange | None, ys: Subrange | None) -> Image.Image:
    """PIL's horizontal pass on only the rows the vertical pass reads, then the vertical pass on
    only the kept columns; each pass boxed to the kept outputs where ``xs`` / ``ys`` allow."""
    w, h = img.size
    x, y, cw, ch = region
    row_lo, row_hi = (ys[0], ys[1]) if ys is not None else (0, h)
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
    if out_h != h:
        if ys is not None:
            _, _, b0, b1 = ys
            return tmp.resize((cw, ch), resample, box=(0, b0, cw, b1))
        return tmp.resize((cw, out_h), resample).crop((0, y, cw, y + ch))
    return tmp.crop((0, y - row_lo, cw, y - row_lo + ch)) if (row_lo, ch) != (y, tmp.size[1]) else tmp


def _pil_to_hwc(img: Image.Image) -> np.ndarray:
    arr = np.asarray(img)
    return arr[:, :, None] if arr.ndim == 2 else arr

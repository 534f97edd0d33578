"""PIL's resampling arithmetic (``libImaging/Resample.c``), in numpy float64 as the C code computes it.

The one copy of it in the project: the PIL processor asks it which source pixels an output reads
(to let PIL compute only what the crop keeps), the batched tensor processor builds its resize matrices
from it. For 8-bit images PIL resizes one axis at a time ("pass"); each output of a pass is

    clip8((2**21 + sum_k kk[j, k] * in[xmin[j] + k]) >> 22)

with ``kk`` the filter weights, normalised per output and quantised to 22-bit fixed point, and
the result of the first pass rounded to uint8 before the second pass reads it.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Callable

import numpy as np
import PIL

#: PIL's fixed point for 8-bit images: 32 bits less 8 for the pixel and 2 for the filters' overshoot.
PRECISION_BITS = 32 - 8 - 2

NEAREST, LANCZOS, BILINEAR, BICUBIC, BOX, HAMMING = 0, 1, 2, 3, 4, 5


def _box(x: np.ndarray) -> np.ndarray:
    return np.where((x > -0.5) & (x <= 0.5), 1.0, 0.0)


def _bilinear(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


def _hamming(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        px = x * math.pi
        # the C code's constants are float literals (0.54f, 0.46f), widened to double
        v = np.sin(px) / px * (float(np.float32(0.54)) + float(np.float32(0.46)) * np.cos(px))
    return np.where(x == 0.0, 1.0, np.where(x >= 1.0, 0.0, v))


def _bicubic(x: np.ndarray) -> np.ndarray:
    a = -0.5
    x = np.abs(x)
    return np.where(x < 1.0, ((a + 2.0) * x - (a + 3.0)) * x * x + 1,
                    np.where(x < 2.0, (((x - 5) * x + 8) * x - 4) * a, 0.0))


def _sinc(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        px = x * math.pi
        return np.where(x == 0.0, 1.0, np.sin(px) / px)


def _lanczos(x: np.ndarray) -> np.ndarray:
    return np.where((-3.0 <= x) & (x < 3.0), _sinc(x) * _sinc(x / 3), 0.0)


def _mks2013(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 0.5, 17.0 / 16.0 - 7.0 / 4.0 * x ** 2,
                    np.where(x < 1.5, (1.0 - x) * (7.0 / 4.0 - x),
                             np.where(x < 2.5, -1.0 / 8.0 * (x - 5.0 / 2.0) ** 2, 0.0)))


def _mks2021(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 0.5, 577.0 / 576.0 - 239.0 / 144.0 * x ** 2,
                    np.where(x < 1.5, 35.0 / 36.0 * (x - 1.0) * (x - 239.0 / 140.0),
                             np.where(x < 2.5, 1.0 / 6.0 * (x - 2.0) * (65.0 / 24.0 - x),
                                      np.where(x < 3.5, 1.0 / 36.0 * (x - 3.0) * (x - 15.0 / 4.0),
                                               np.where(x < 4.5, -1.0 / 288.0 * (x - 9.0 / 2.0) ** 2, 0.0)))))


#: PIL filter number -> (filter function, support in source pixels at scale 1). MKS2013 (6) and
#: MKS2021 (7) exist in Pillow >= 12 only.
FILTERS: dict[int, tuple[Callable[[np.ndarray], np.ndarray], float]] = {
    BOX: (_box, 0.5), BILINEAR: (_bilinear, 1.0), HAMMING: (_hamming, 1.0), BICUBIC: (_bicubic, 2.0),
    LANCZOS: (_lanczos, 3.0), 6: (_mks2013, 2.5), 7: (_mks2021, 4.5),
}


def _axis_geometry(in_size: int, out_size: int, resample: int) -> tuple[float, int, np.ndarray, np.ndarray, np.ndarray]:
    """(filterscale, ksize, centre, xmin, count) of every output of one axis (``precompute_coeffs``)."""
    support = FILTERS[resample][1]
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = support * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    center = (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum(np.trunc(center - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size)
    return filterscale, ksize, center, xmin, xmax - xmin


def pil_axis_bounds(in_size: int, out_size: int, resample: int) -> tuple[np.ndarray, np.ndarray]:
    """First source index and end (exclusive) of the window each output of an axis reads."""
    _, _, _, xmin, count = _axis_geometry(in_size, out_size, resample)
    return xmin, xmin + count


@lru_cache(maxsize=512)
def pil_axis_weights(in_size: int, out_size: int, resample: int) -> tuple[np.ndarray, np.ndarray]:
    """PIL's per-output window start and fixed-point weights for one axis.

    Returns (xmin (out_size,), kk (out_size, ksize)) with kk integer-valued float64 (see the module
    docstring for how an output is computed from them).
    """
    filt = FILTERS[resample][0]
    filterscale, ksize, center, xmin, count = _axis_geometry(in_size, out_size, resample)
    taps = np.arange(ksize)
    w = filt((taps[None, :] + xmin[:, None] - center[:, None] + 0.5) * (1.0 / filterscale))
    w = np.where(taps[None, :] < count[:, None], w, 0.0)
    # PIL sums in tap order; a cumulative sum adds in that order too (np.sum would pair them)
    total = np.add.accumulate(w, axis=1)[:, -1:]
    w = np.where(total != 0.0, w / np.where(total != 0.0, total, 1.0), w)
    kk = np.where(w < 0, np.trunc(-0.5 + w * (1 << PRECISION_BITS)), np.trunc(0.5 + w * (1 << PRECISION_BITS)))
    return xmin, kk


@lru_cache(maxsize=512)
def pil_window_matrix(in_size: int, out_size: int, start: int, count: int, resample: int
                      ) -> tuple[int, int, np.ndarray]:
    """Outputs ``[start, start + count)`` of an axis as a matrix over the source window they read.

    Returns (lo, hi, M) with M (hi - lo, count) float64 such that ``src[lo:hi] @ M`` are the sums
    that :func:`round_fixed_point` turns into pixels.
    """
    xmin, kk = pil_axis_weights(in_size, out_size, resample)
    xmin, kk = xmin[start:start + count], kk[start:start + count]
    ksize = kk.shape[1]
    lo = int(xmin.min())
    hi = int(min(in_size, (xmin + ksize).max()))
    m = np.zeros((hi - lo, count))
    for j in range(count):
        n = min(ksize, hi - xmin[j])
        m[xmin[j] - lo:xmin[j] - lo + n, j] = kk[j, :n]
    return lo, hi, m


def round_fixed_point(sums: Any, floor: Callable[[Any], Any] = np.floor) -> Any:
    """PIL's ``clip8((2**21 + sum) >> 22)`` on float sums of one pass, as floats in [0, 255].

    ``sums`` is a numpy array, or a tensor with ``floor`` its framework's floor function. In float64
    the integer sums are exact, and so are scaling by 2**-22, adding 0.5 and flooring: the result is
    PIL's pixel. In float32 (devices without float64) a pixel may be one level off.
    """
    return floor(sums * 2.0 ** -PRECISION_BITS + 0.5).clip(0, 255)


@lru_cache(maxsize=512)
def pil_nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """Source index of each output for PIL's NEAREST resize (``ImagingScaleAffine``: a running sum)."""
    step = float(np.float32(in_size)) / out_size
    pos = np.add.accumulate(np.concatenate([[step * 0.5], np.full(out_size - 1, step)]))
    return np.clip(np.trunc(pos).astype(np.int64), 0, in_size - 1)


def _version(text: str) -> tuple[int, int]:
    major, minor = (text.split(".") + ["0"])[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


PIL_VERSION = _version(PIL.__version__)


def pil_horizontal_first(w: int, h: int, out_w: int, out_h: int, pil_version: tuple[int, int] = PIL_VERSION) -> bool:
    """Whether PIL resizes a (w, h) image to (out_w, out_h) horizontal pass first.

    The order matters because the first pass is rounded to uint8. Pillow chose it three ways:
    before 12.2 always horizontal first; 12.2 and 12.3 vertical first for an image more than 100
    times taller than wide whose height shrinks (in ``Image.resize``); from 13 vertical first when
    the height loses more than twice as many pixels as the width (in the C code). Each rule is on
    the image's size, also when a ``box`` selects part of it.
    """
    if pil_version >= (13, 0):
        dh, dw = h - out_h, w - out_w
        return not (dh > 0 and dh > 2 * dw)
    if pil_version >= (12, 2):
        return not (h > 100 * w and out_h < h)
    return True

"""The processor's output: pixels rescaled and normalised as transformers computes them, laid out
and batched, in the container transformers returns."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from .. import tensor_types
from .geometry import CropPlan
from .options import CHANNELS_FIRST, ProcessorOptions


class BatchFeature(dict):
    """The processor's output: a dict (``out["pixel_values"]``) that also reads as attributes
    (``out.pixel_values``), like transformers' ``BatchFeature``.

    ``pixel_values`` is a list of (C, H, W) float32 arrays when ``return_tensors`` is None, else one
    (N, C, H, W) batch of the requested type (channels last: (N, H, W, C)).
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchFeature has no key {name!r}") from None

    def to(self, *args: Any, **kwargs: Any) -> "BatchFeature":
        """Move the values that have a ``to`` method (tensors) with ``value.to(*args, **kwargs)``
        (device and/or dtype); arrays and lists stay as they are."""
        return BatchFeature({k: v.to(*args, **kwargs) if callable(getattr(v, "to", None)) else v
                             for k, v in self.items()})


def check_stackable(shapes: list, return_tensors: str) -> None:
    """Processed images become one batch tensor only when they share a shape."""
    distinct = {tuple(s) for s in shapes}
    if len(distinct) > 1:
        raise ValueError(f"images have different sizes {sorted(distinct)} after processing, so they cannot be "
                         f"stacked for return_tensors={return_tensors!r}; resize them (do_resize=True) or "
                         "use return_tensors=None for a list")


def batch_as(results: list[np.ndarray], return_tensors: str | None, batch: np.ndarray | None) -> Any:
    """The images' results as ``pixel_values``: the list itself, or one batch of the requested type
    (``batch``, when the results already live in one array, else stacked)."""
    if return_tensors is None:
        return results
    if batch is None:
        check_stackable([r.shape for r in results], return_tensors)
        batch = np.stack(results)
    return tensor_types.tensor_converter(return_tensors)(batch)


@lru_cache(maxsize=64)
def pixel_lut(do_rescale: bool, rescale_factor: float, do_normalize: bool, image_mean: tuple, image_std: tuple,
              value_scale: float, channels: int = 3) -> np.ndarray | None:
    """(channels, 256) float32: the output value of each uint8 pixel value, per channel, computed
    with transformers' exact sequence of operations (so a table lookup reproduces it bit for bit):
    ``rescale(resized, value_scale)`` (float [0, 1] inputs only), ``rescale(x, rescale_factor)``
    (float64 product cast to float32), then ``(x - mean) / std`` in float32. None: the output is
    the uint8 pixels themselves (no rescale, no normalise)."""
    v: np.ndarray = np.arange(256, dtype=np.uint8)
    if value_scale != 1.0:
        v = (v.astype(np.float64) * value_scale).astype(np.float32)
    v = transformers_rescale_normalize(v[None, :], do_rescale, rescale_factor, do_normalize, image_mean, image_std,
                                       channel_axis=0)
    if v.dtype == np.uint8:
        return None
    return np.ascontiguousarray(np.broadcast_to(v, (channels, 256)), dtype=np.float32)


def transformers_rescale_normalize(x: np.ndarray, do_rescale: bool, rescale_factor: float, do_normalize: bool,
                                   mean: tuple, std: tuple, channel_axis: int) -> np.ndarray:
    """transformers' ``rescale`` then ``normalize``, operation for operation. ``x``'s channel axis
    (at ``channel_axis``) and the statistics broadcast against each other (1 entry, or one per channel)."""
    if do_rescale:
        x = (x.astype(np.float64) * rescale_factor).astype(np.float32)
    if do_normalize:
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float32)
        shape = [1] * x.ndim
        shape[channel_axis] = -1
        x = (x - np.asarray(mean, dtype=x.dtype).reshape(shape)) / np.asarray(std, dtype=x.dtype).reshape(shape)
    return x


def write_output(region: np.ndarray, crop: CropPlan | None, size: tuple[int, int], opts: ProcessorOptions,
                 value_scale: float, out: np.ndarray | None) -> np.ndarray:
    """Rescale + normalise ``region`` (H, W, C) into a (C', H, W) / (H, W, C') result, C' =
    ``opts.output_channels(C)`` (a grayscale region gives three equal channels).

    uint8 pixels (the usual case) go through a per-channel lookup table: one pass, and exactly
    transformers' float32 values. Padding (crop larger than the image) gets the value of a zero
    pixel, as in transformers.
    """
    first = opts.data_format == CHANNELS_FIRST
    channels = region.shape[2]
    n_out = opts.output_channels(channels)
    if region.dtype == np.uint8:
        lut = pixel_lut(opts.do_rescale, opts.rescale_factor, opts.do_normalize, opts.image_mean, opts.image_std,
                        value_scale, n_out)
        if lut is None:
            lut = np.broadcast_to(np.arange(256, dtype=np.uint8), (n_out, 256))
        values = None
    else:  # float or wide-integer arrays that were not resized: transformers' operations as they are
        lut = None
        values = transformers_rescale_normalize(region, opts.do_rescale, opts.rescale_factor, opts.do_normalize,
                                                opts.image_mean, opts.image_std, channel_axis=2)
        if not np.issubdtype(values.dtype, np.floating):
            values = values.astype(np.float32)
    if out is None:
        dtype = lut.dtype if lut is not None else np.float32
        out = np.empty((n_out, *size) if first else (*size, n_out), dtype=dtype)
    dst = out
    if crop is not None and crop.padded:
        out[...] = (lut[:, 0][:, None, None] if first else lut[:, 0]) if lut is not None else 0
        dst = out[:, crop.dst_y:crop.dst_y + crop.h, crop.dst_x:crop.dst_x + crop.w] if first else \
            out[crop.dst_y:crop.dst_y + crop.h, crop.dst_x:crop.dst_x + crop.w]
    if values is not None:
        dst[...] = values.transpose(2, 0, 1) if first else values
        return out
    for c in range(n_out):
        src = region[:, :, c if channels > 1 else 0]
        target = dst[c] if first else dst[:, :, c]
        if target.flags.c_contiguous:
            np.take(lut[c], src, out=target)
        else:
            target[...] = lut[c][src]
    return out

"""ConvNextImageProcessorFast: the ConvNeXt preprocessing in torch, batched, on any device.

Same options, same config files and same steps as :class:`convnext_common.ConvNextImageProcessor`
(the PIL one; :mod:`convnext_common.processing` describes them), but images of one size are stacked and
processed as one tensor on the input tensor's device (or ``device=``). Needs torch only.

How close it is to the PIL processor: the resize reproduces PIL's resampling rather than
``torch.nn.functional.interpolate``'s own conventions, so the two differ by rounding at most.

- On CUDA (and any non-CPU device), and on the CPU for the filters torch has no uint8 kernel for
  (box, hamming, lanczos, MKS), the resize is PIL's algorithm re-implemented: PIL's filter
  weights, quantised to PIL's 22-bit fixed point, applied per axis as a matrix product in float64
  (exact for these integers), rounded and clamped to uint8 after each pass, in PIL's pass order
  (all of it from :mod:`convnext_common.processing.resampling`, which the PIL processor uses too).
  The resized pixels equal PIL's bit for bit, so outputs agree with the PIL processor to float32
  rounding (< 1e-6). On devices without float64 (e.g. MPS) float32 is used and a pixel may be one
  level off.
- On the CPU, bilinear and bicubic use torch's uint8 antialiased ``interpolate`` kernel (much
  faster than the matrix product), called in PIL's pass order: pixels differ from PIL's by at
  most one level (two for strong upscaling), measured on the shared fixture images at every
  setting: max 0.035, mean < 0.0001 in normalised units, within docs/DESIGN.md's bound (max 0.05,
  mean 0.005).
- Nearest neighbour reproduces PIL's index arithmetic exactly on every device.

Only the pixels that survive the centre crop are computed where that is cheaper (the matrix path's
second pass runs on the kept columns/rows only; torch's uint8 kernel is faster called once on
both axes). On the CPU, images of different sizes (each its own group) are processed in parallel
threads, each running torch single-threaded: ``num_threads`` (default ``torch.get_num_threads()``).
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from convnext_common.processing.geometry import CropPlan, size_plan
from convnext_common.processing.inputs import (
    PRESCALED_WARNING, channel_layout, check_pil_size, flatten_images, pil_to_rgb, to_numpy,
)
from convnext_common.processing.options import CHANNELS_FIRST, ProcessorOptions
from convnext_common.processing.output import BatchFeature, check_stackable
from convnext_common.processing.processor import ConvNextImageProcessor
from convnext_common.processing.threads import thread_pool
from convnext_common.processing.resampling import (
    BICUBIC, BILINEAR, NEAREST, pil_horizontal_first, pil_nearest_indices, pil_window_matrix, round_fixed_point,
)
from convnext_common.tensor_types import tensor_converter


# --------------------------------------------------------------------------------------------------
# Resize + crop of a (B, C, H, W) uint8 tensor
# --------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _cpu_uint8_antialias() -> bool:
    try:
        x = torch.zeros(1, 1, 4, 4, dtype=torch.uint8)
        F.interpolate(x, size=(2, 3), mode="bicubic", antialias=True)
        F.interpolate(x, size=(2, 3), mode="bilinear", antialias=True)
        return True
    except (RuntimeError, NotImplementedError):
        return False


def _matmul_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _pass_matmul(x: torch.Tensor, axis: int, in_size: int, out_size: int, start: int, count: int,
                 resample: int, dtype: torch.dtype) -> torch.Tensor:
    """One PIL pass over ``axis`` (-1: width, -2: height) producing outputs [start, start+count)."""
    lo, hi, m = pil_window_matrix(in_size, out_size, start, count, resample)
    m = torch.as_tensor(m, dtype=dtype, device=x.device)
    if axis == -1:
        t = x[..., lo:hi].to(dtype) @ m
    else:
        t = m.T @ x[..., lo:hi, :].to(dtype)
    return round_fixed_point(t, torch.floor)


def resize_crop_tensor(x: torch.Tensor, out_h: int, out_w: int, crop: CropPlan | None, resample: int) -> torch.Tensor:
    """Resize a (B, C, H, W) uint8 batch to (out_h, out_w) like PIL and keep the crop region.

    Returns (B, C, crop.h, crop.w) uint8 (the whole (out_h, out_w) when crop is None).
    """
    h, w = x.shape[-2:]
    cy, cx, ch, cw = (0, 0, out_h, out_w) if crop is None else (crop.src_y, crop.src_x, crop.h, crop.w)
    if resample == NEAREST:
        rows = torch.as_tensor(pil_nearest_indices(h, out_h)[cy:cy + ch], device=x.device)
        cols = torch.as_tensor(pil_nearest_indices(w, out_w)[cx:cx + cw], device=x.device)
        return x.index_select(-2, rows).index_select(-1, cols)
    horizontal_first = pil_horizontal_first(w, h, out_w, out_h)
    if x.device.type == "cpu" and resample in (BILINEAR, BICUBIC) and _cpu_uint8_antialias():
        mode = "bilinear" if resample == BILINEAR else "bicubic"
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        if horizontal_first and out_w != w and out_h != h:
            # one call: torch's kernel also runs the horizontal pass first and rounds in between, and
            # one call unpacks/repacks the pixels once (faster than two calls, although the
            # vertical pass then also computes the columns the crop drops)
            x = F.interpolate(x.contiguous(memory_format=layout), size=(out_h, out_w), mode=mode, antialias=True)
            return x[..., cy:cy + ch, cx:cx + cw]
        if horizontal_first:
            if out_w != w:
                x = F.interpolate(x.contiguous(memory_format=layout), size=(h, out_w), mode=mode, antialias=True)
            x = x[..., cx:cx + cw]
            if out_h != h:
                x = F.interpolate(x.contiguous(memory_format=layout), size=(out_h, cw), mode=mode, antialias=True)
            return x[..., cy:cy + ch, :]
        if out_h != h:
            x = F.interpolate(x.contiguous(memory_format=layout), size=(out_h, w), mode=mode, antialias=True)
        x = x[..., cy:cy + ch, :]
        if out_w != w:
            x = F.interpolate(x.contiguous(memory_format=layout), size=(ch, out_w), mode=mode, antialias=True)
        return x[..., cx:cx + cw]
    dtype = _matmul_dtype(x.device)
    if horizontal_first:
        if out_h != h:  # the horizontal pass only needs the rows the vertical pass reads
            row_lo, row_hi, _ = pil_window_matrix(h, out_h, cy, ch, resample)
        else:
            row_lo, row_hi = cy, cy + ch
        t = x[..., row_lo:row_hi, :]
        t = _pass_matmul(t, -1, w, out_w, cx, cw, resample, dtype) if out_w != w else t[..., cx:cx + cw]
        if out_h != h:
            lo, hi, m = pil_window_matrix(h, out_h, cy, ch, resample)
            t = round_fixed_point(torch.as_tensor(m.T, dtype=dtype, device=x.device) @ t.to(dtype), torch.floor)
    else:
        if out_w != w:
            col_lo, col_hi, _ = pil_window_matrix(w, out_w, cx, cw, resample)
        else:
            col_lo, col_hi = cx, cx + cw
        t = x[..., col_lo:col_hi]
        t = _pass_matmul(t, -2, h, out_h, cy, ch, resample, dtype) if out_h != h else t[..., cy:cy + ch, :]
        if out_w != w:
            lo, hi, m = pil_window_matrix(w, out_w, cx, cw, resample)
            t = round_fixed_point(t.to(dtype) @ torch.as_tensor(m, dtype=dtype, device=x.device), torch.floor)
    return t.to(torch.uint8)


# --------------------------------------------------------------------------------------------------
# Inputs -> (C, H, W) tensors
# --------------------------------------------------------------------------------------------------
def _as_tensor(x: Any, where: str) -> torch.Tensor:
    """A single image or batch that is not a PIL image, as a torch tensor (tensors stay as they are)."""
    return x if isinstance(x, torch.Tensor) else _array_to_tensor(x, where)


def _array_to_tensor(x: Any, where: str) -> torch.Tensor:
    arr = to_numpy(x, where)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{where}: unsupported dtype {arr.dtype}")
    if arr.dtype == np.uint16 or arr.dtype == np.uint32 or arr.dtype == np.uint64:
        arr = arr.astype(np.int64)
    if any(stride < 0 for stride in arr.strides):  # e.g. cv2's BGR flipped to RGB: torch has no negative strides
        arr = np.ascontiguousarray(arr)
    with warnings.catch_warnings():  # a read-only array (e.g. a TensorFlow tensor's) is only read
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(arr)


def _to_chw(x: Any, input_data_format: str | None, where: str) -> torch.Tensor:
    """One image as a (C, H, W) tensor (a view where possible), by the PIL processor's rules."""
    if isinstance(x, Image.Image):
        img = pil_to_rgb(x)
        check_pil_size(img, where)
        arr = np.asarray(img)
        with warnings.catch_warnings():  # a read-only buffer, never written to
            warnings.simplefilter("ignore", UserWarning)
            t = torch.from_numpy(arr)
        return t.unsqueeze(0) if t.ndim == 2 else t.permute(2, 0, 1)
    if x.dtype.is_complex:
        raise ValueError(f"{where}: unsupported dtype {x.dtype}")
    layout = channel_layout(tuple(x.shape), input_data_format, where)
    if layout == "hw":
        return x.unsqueeze(0)
    return x.permute(2, 0, 1) if layout == "hwc" else x


def _to_uint8(x: torch.Tensor, where: str) -> tuple[torch.Tensor, float]:
    """(C, H, W) -> uint8 for resizing and the factor back to the input's units (PIL processor's rules)."""
    if x.dtype == torch.uint8:
        return x, 1.0
    if x.dtype == torch.bool:
        return x.to(torch.uint8), 1.0
    if x.is_floating_point():
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{where}: contains NaN or infinite values")
        xd = x.double()
        integral = bool(torch.allclose(xd, xd.trunc(), rtol=1e-5, atol=1e-8))
    else:
        xd, integral = x.long(), True  # torch has no min/max for uint16/32/64
    lo, hi = xd.min().item(), xd.max().item()
    if integral:
        if lo < 0 or hi > 255:
            raise ValueError(f"{where}: integer-valued pixels must lie in [0, 255] to be resized, got [{lo}, {hi}]")
        return x.to(torch.uint8), 1.0
    if lo < 0 or hi > 1:
        raise ValueError(f"{where}: float pixels must lie in [0, 1] (or be integers in [0, 255]) to be resized, "
                         f"got [{lo}, {hi}]")
    return (xd * 255).float().to(torch.uint8), 1 / 255


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """(B, C, H, W) batch of same-shape (C, H, W) images. Images that are channels-last in memory
    (PIL images, HWC arrays) are stacked as such: a plain copy, and the layout torch's uint8 resize
    kernel is fastest on."""
    if len(tensors) == 1:
        return tensors[0].unsqueeze(0)
    if all(t.permute(1, 2, 0).is_contiguous() for t in tensors):
        return torch.stack([t.permute(1, 2, 0) for t in tensors]).permute(0, 3, 1, 2)
    return torch.stack(tensors)


# --------------------------------------------------------------------------------------------------
# The processor
# --------------------------------------------------------------------------------------------------
def _single_threaded(fn):
    """``fn`` run with one torch intra-op thread (a per-thread setting: the caller's is untouched)."""
    def run(*args):
        torch.set_num_threads(1)
        return fn(*args)
    return run


class ConvNextImageProcessorFast(ConvNextImageProcessor):
    """Batched torch version of :class:`convnext_common.ConvNextImageProcessor` (same arguments).

    Extra argument ``device`` (constructor or per call; not saved): where to compute. Default: the
    device of the first input tensor, else the CPU. ``pixel_values`` comes back on that device:
    a list of (C, H, W) float32 tensors when ``return_tensors`` is None, else one (N, C, H, W)
    tensor ("pt"), numpy array ("np") or TensorFlow tensor ("tf"). Images of any channel count
    (given ``input_data_format``) are resized channel by channel, as transformers' torchvision
    processor does: unlike the PIL processor, a 2- or 4-channel image's last channel is not
    treated as alpha.
    """

    _extra_call_options = ("device",)
    #: saved under this type, so that transformers' AutoImageProcessor reloads it as its fast processor
    config_type_name = "ConvNextImageProcessorFast"
    is_fast = True

    def __init__(self, *args: Any, device: str | torch.device | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.device = device

    def preprocess(self, images: Any, **kwargs: Any) -> BatchFeature:
        device = kwargs.pop("device", None) or self.device
        opts = self._options(kwargs)
        raw = flatten_images(images, _as_tensor)
        n = len(raw)
        if device is None:
            device = next((x.device for x in raw if isinstance(x, torch.Tensor)), torch.device("cpu"))
        device = torch.device(device)
        chw = [_to_chw(x, opts.input_data_format, f"images[{i}]" if n > 1 else "image") for i, x in enumerate(raw)]
        for i, t in enumerate(chw):  # statistics that do not fit an image's channels: refused before any work
            opts.output_channels(t.shape[0], f"images[{i}]" if n > 1 else "image")
        self._warn_if_prescaled_tensor(chw[0], opts)

        groups: dict[tuple, list[int]] = {}
        for i, t in enumerate(chw):
            groups.setdefault((tuple(t.shape), t.dtype, t.device), []).append(i)

        def work(idx: list[int]) -> torch.Tensor:
            return self._process_group([chw[i] for i in idx], idx, opts, device, n)

        # Groups of a few small images gain nothing from torch's intra-op threads (per-op overhead
        # exceeds the work), so on the CPU the groups
        # are spread over our own threads, each running torch single-threaded.
        threads = min(self.num_threads or torch.get_num_threads(), len(groups)) if device.type == "cpu" else 1
        if threads > 1:
            outs = list(thread_pool(threads).map(_single_threaded(work), groups.values()))
        else:
            outs = [work(idx) for idx in groups.values()]
        items: list = [None] * n
        stacked = outs[0] if len(groups) == 1 else None  # one group: its rows are the images in order
        for idx, out in zip(groups.values(), outs):
            for j, i in enumerate(idx):
                items[i] = out[j]
        if opts.data_format != CHANNELS_FIRST:
            items = [t.permute(1, 2, 0) for t in items]
            stacked = None if stacked is None else stacked.permute(0, 2, 3, 1).contiguous()
        return BatchFeature({"pixel_values": self._tensors_out(items, stacked, opts.return_tensors)})

    @staticmethod
    def _warn_if_prescaled_tensor(first: torch.Tensor, opts: ProcessorOptions) -> None:
        if opts.do_rescale and first.is_floating_point() and first.numel():
            if bool(torch.isfinite(first).all()) and first.min().item() >= 0 and first.max().item() <= 1:
                warnings.warn(PRESCALED_WARNING, UserWarning, stacklevel=4)

    def _process_group(self, tensors: list[torch.Tensor], idx: list[int], opts: ProcessorOptions,
                       device: torch.device, n: int) -> torch.Tensor:
        """Images of one shape and dtype -> (B, C, H', W') results."""
        where = [f"images[{i}]" if n > 1 else "image" for i in idx]
        scales = [1.0] * len(tensors)
        if opts.do_resize:
            converted = [_to_uint8(t, w) for t, w in zip(tensors, where)]
            tensors = [c[0] for c in converted]
            scales = [c[1] for c in converted]
        x = _stack(tensors).to(device, non_blocking=True)
        crop = None
        if opts.do_resize:
            h, w = x.shape[-2:]
            out_h, out_w, crop = size_plan(h, w, opts.size, opts.crop_pct)
            x = resize_crop_tensor(x, out_h, out_w, crop, opts.resample)
            size = opts.output_size
        else:
            size = tuple(x.shape[-2:])
        return _normalise(x, scales, crop, size, opts)

    @staticmethod
    def _tensors_out(items: list, stacked: torch.Tensor | None, return_tensors: str | None) -> Any:
        if return_tensors is None:
            return items
        if stacked is None:
            check_stackable([t.shape for t in items], return_tensors)
            stacked = torch.stack(items)
        if return_tensors == "pt":
            return stacked
        return tensor_converter(return_tensors)(stacked.cpu().numpy())


def _normalise(x: torch.Tensor, value_scales: list[float], crop: CropPlan | None, size: tuple[int, int],
               opts: ProcessorOptions) -> torch.Tensor:
    """(B, C, h, w) pixels -> (B, C', *size), C' = ``opts.output_channels(C)`` (a grayscale image gives
    three channels): rescaled/normalised float32 in one pass, padded as the PIL processor pads (a
    zero pixel's value)."""
    b = x.shape[0]
    c = opts.output_channels(x.shape[1])
    affine = [opts.affine(s, c) for s in value_scales]
    if affine[0] is not None:
        scale = torch.tensor(np.stack([a[0] for a in affine]), dtype=torch.float32).view(b, c, 1, 1).to(x.device)
        pad = torch.tensor(np.stack([a[1] for a in affine]), dtype=torch.float32).view(b, c, 1, 1).to(x.device)
        y = torch.empty((b, c, *x.shape[-2:]), dtype=torch.float32, device=x.device)
        torch.mul(x if x.dtype == torch.uint8 else x.to(torch.float32), scale, out=y)  # x * scale + offset,
        # in float32, written in the output's layout
        y.add_(pad)
    elif all(s == 1.0 for s in value_scales) and not x.is_floating_point():
        y = x.expand(b, c, *x.shape[-2:])  # neither rescale nor normalise: pixels as they are
        pad = torch.zeros(b, c, 1, 1, dtype=x.dtype, device=x.device)
    else:
        s = torch.tensor(value_scales, dtype=torch.float64).view(b, 1, 1, 1).to(x.device)
        y = (x.double() * s).float().expand(b, c, *x.shape[-2:])
        pad = torch.zeros(b, c, 1, 1, dtype=torch.float32, device=x.device)
    if crop is None or not crop.padded:
        return y.contiguous()
    out = pad.expand(b, c, *size).clone()
    out[..., crop.dst_y:crop.dst_y + crop.h, crop.dst_x:crop.dst_x + crop.w] = y
    return out


__all__ = ["ConvNextImageProcessorFast", "resize_crop_tensor"]

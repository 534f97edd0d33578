"""Where the pixels go: the resize's output size and the centre crop, in transformers' integer arithmetic."""

from __future__ import annotations

import math
from dataclasses import dataclass

#: shortest_edge at and above which images are warped to a square instead of resized + cropped.
WARP_THRESHOLD = 384


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
    """The :class:`CropPlan` of a (crop_h, crop_w) centre crop of a (height, width) image."""
    def axis(n: int, c: int) -> tuple[int, int, int]:
        if n >= c:
            return (n - c) // 2, 0, c
        return 0, math.ceil((c - n) / 2), n

    sy, dy, h = axis(height, crop_h)
    sx, dx, w = axis(width, crop_w)
    return CropPlan(sy, sx, dy, dx, h, w)


def resize_plan(height: int, width: int, shortest_edge: int, crop_pct: float) -> tuple[int, int, CropPlan | None]:
    """(out_h, out_w, crop): the resize of a (height, width) image and the crop that follows it
    (None when the image is warped to a square, which keeps everything)."""
    out_h, out_w = resize_output_size(height, width, shortest_edge, crop_pct)
    if shortest_edge >= WARP_THRESHOLD:
        return out_h, out_w, None
    return out_h, out_w, center_crop_plan(out_h, out_w, shortest_edge, shortest_edge)


def size_plan(height: int, width: int, size: dict, crop_pct: float) -> tuple[int, int, CropPlan | None]:
    """:func:`resize_plan` for a processor's ``size``: ``{"height", "width"}`` resizes to exactly that
    (no crop, the aspect ratio is not kept: DINOv3's processor), ``{"shortest_edge"}`` as ConvNeXt's."""
    if "height" in size:
        return size["height"], size["width"], None
    return resize_plan(height, width, size["shortest_edge"], crop_pct)

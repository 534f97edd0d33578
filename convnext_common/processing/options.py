"""The processor's options: their names, their checks, and one call's validated set."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .. import tensor_types
from .resampling import BICUBIC, BILINEAR, BOX, HAMMING, LANCZOS, NEAREST

PREPROCESSOR_CONFIG_NAME = "preprocessor_config.json"

#: PIL filter numbers (``PIL.Image.Resampling``) and their names.
RESAMPLE_NAMES = {NEAREST: "nearest", LANCZOS: "lanczos", BILINEAR: "bilinear", BICUBIC: "bicubic", BOX: "box",
                  HAMMING: "hamming"}
for _f in getattr(Image, "Resampling", []):
    RESAMPLE_NAMES.setdefault(int(_f), _f.name.lower())

CHANNELS_FIRST, CHANNELS_LAST = "channels_first", "channels_last"

#: option names (the keys of preprocessor_config.json that this processor reads).
OPTION_NAMES = ("do_resize", "size", "crop_pct", "resample", "do_rescale", "rescale_factor",
                "do_normalize", "image_mean", "image_std")
#: per-call options that are not part of the saved config.
CALL_OPTION_NAMES = ("return_tensors", "data_format", "input_data_format")

#: transformers' default crop_pct (the 224 crop of a 256 resize).
DEFAULT_CROP_PCT = 224 / 256


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

    @property
    def output_size(self) -> tuple[int, int]:
        """(H, W) of a resized image: ``shortest_edge`` squared, or ``size``'s height and width."""
        if "height" in self.size:
            return self.size["height"], self.size["width"]
        return self.shortest_edge, self.shortest_edge

    def output_channels(self, channels: int, where: str = "image") -> int:
        """Channels of the result for an image of ``channels`` channels; ValueError (naming the field)
        when ``image_mean`` / ``image_std`` cannot apply to them.

        A statistic applies to an image when it has one value (or was given as a number) or one per
        channel, as transformers' ``normalize`` requires. A grayscale image stands for RGB: it gives
        three equal channels, normalised by a statistic of 1 or 3 values.
        """
        out = 3 if channels == 1 else channels
        if self.do_normalize:
            for name, values in (("image_mean", self.image_mean), ("image_std", self.image_std)):
                if len(values) not in (1, out):
                    raise ValueError(f"{where} has {channels} channel{'s' if channels > 1 else ''} but {name} has "
                                     f"{len(values)} values; give one value per channel or a single number")
        return out

    def affine(self, value_scale: float = 1.0, channels: int = 3) -> tuple[np.ndarray, np.ndarray] | None:
        """Per-channel (scale, offset), float64, of length ``channels`` (the result's channels, see
        :meth:`output_channels`), such that output = pixel * scale + offset.

        ``value_scale`` is what a stored pixel must be multiplied by to be in the input's units
        (1/255 for [0, 1] float images that went through PIL as uint8). None: nothing to apply.
        """
        if not self.do_rescale and not self.do_normalize:
            return None
        scale = np.full(channels, float(value_scale))
        if self.do_rescale:
            scale = scale * self.rescale_factor
        offset = np.zeros(channels)
        if self.do_normalize:
            std = np.broadcast_to(np.asarray(self.image_std, dtype=np.float64), (channels,))
            mean = np.broadcast_to(np.asarray(self.image_mean, dtype=np.float64), (channels,))
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
    """``{"shortest_edge": n}`` from a dict or a bare int (old configs), or ``{"height": h, "width": w}``
    (a resize to that size, no crop: DINOv3's processor); ValueError otherwise."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = {"shortest_edge": int(size)}
    if not isinstance(size, dict):
        raise ValueError(f"size must be {{'shortest_edge': int}} or an int, got {size!r}")
    if set(size) == {"height", "width"}:
        for key in ("height", "width"):
            v = size[key]
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"size[{key!r}] must be a positive int, got {v!r}")
        return {"height": int(size["height"]), "width": int(size["width"])}
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
    """A number -> one value (it applies to every channel); a list -> its values, one per channel
    (how many channels is checked against each image, :meth:`ProcessorOptions.output_channels`)."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return (_check_number(name, value),)
    try:
        values = [_check_number(f"{name}[{i}]", v) for i, v in enumerate(value)]
    except TypeError:
        raise ValueError(f"{name} must be a number or a list of numbers (one per channel), got {value!r}") from None
    if not values:
        raise ValueError(f"{name} must not be empty")
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
    """None, or a tensor type name whose converter can be loaded (so a missing one fails before the work)."""
    value = getattr(value, "value", value)  # transformers' TensorType enum
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"return_tensors must be None or a tensor type name such as 'np', got {value!r}")
    tensor_types.tensor_converter(value)
    return value


def validate_options(**raw: Any) -> ProcessorOptions:
    """Check every option and return them frozen; a ValueError names the offending argument."""
    std = _check_channels_stat("image_std", raw["image_std"])
    if any(s == 0 for s in std):
        raise ValueError(f"image_std must not contain 0, got {std}")
    crop_pct = raw["crop_pct"]
    crop_pct = DEFAULT_CROP_PCT if crop_pct is None else _check_number("crop_pct", crop_pct)
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

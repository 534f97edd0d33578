"""The ``preprocessor_config.json`` a converted folder gets: transformers' ConvNextImageProcessor
settings for the source's normalisation, with one mean and std per input channel."""

from __future__ import annotations

from typing import Optional, Sequence

from ..constants import IMAGENET_DEFAULT_MEAN as IMAGENET_MEAN, IMAGENET_DEFAULT_STD as IMAGENET_STD


def imagenet_preprocessor_config(mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> dict:
    """transformers' ConvNextImageProcessor settings of the hub's ImageNet ConvNeXt checkpoints."""
    return {"crop_pct": 0.875, "do_normalize": True, "do_rescale": True, "do_resize": True,
            "image_mean": list(mean), "image_processor_type": "ConvNextImageProcessor", "image_std": list(std),
            "resample": 3, "rescale_factor": 1 / 255, "size": {"shortest_edge": 224}}


def default_preprocessor_config(image_size: int = 224) -> dict:
    """The preprocessing of a model folder without a preprocessor_config.json, the one decision every
    command uses (predict, evaluate, train, export): the hub's ImageNet ConvNeXt settings, with the
    short side to ``image_size / crop_pct`` and a centre crop of ``image_size``."""
    return dict(imagenet_preprocessor_config(), size={"shortest_edge": int(image_size)})


def per_channel(values: Sequence[float], channels: int) -> Optional[list[float]]:
    """``values`` (RGB statistics) for a model with ``channels`` inputs, or None when they already fit.

    One channel is grey: the mean of the RGB values. More than three keep RGB first and give each
    extra channel (alpha, infrared, ...) the RGB mean. Two channels get the RGB mean twice.
    """
    values = [float(v) for v in values]
    if len(values) == channels:
        return None
    grey = round(sum(values) / len(values), 6)
    if channels > 3 and len(values) == 3:
        return values + [grey] * (channels - 3)
    return [grey] * channels


def fit_to_channels(pre: dict, channels: int, notes: list[str]) -> dict:
    """``pre`` with ``image_mean`` / ``image_std`` of ``channels`` values each (a note says when they
    were derived from RGB statistics)."""
    mean, std = per_channel(pre["image_mean"], channels), per_channel(pre["image_std"], channels)
    if mean is None and std is None:
        return pre
    pre = dict(pre, image_mean=mean or pre["image_mean"], image_std=std or pre["image_std"])
    notes.append(f"the model takes {channels} input channels: image_mean/image_std {pre['image_mean']} / "
                 f"{pre['image_std']} derived from the RGB statistics; set your data's in preprocessor_config.json")
    return pre

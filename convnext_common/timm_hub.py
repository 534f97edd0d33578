"""What a timm hub folder's ``config.json`` says besides the weights, for the loaders of hub ids and
folders (pretrained.py, config.py). The reading itself is ``checkpoints/timm_config.py``'s, shared
with the converter: one reader of timm's config.json.
"""

from __future__ import annotations

from pathlib import Path

from .checkpoints.preprocessing import fit_to_channels
from .checkpoints.timm_config import is_timm_config, timm_hub_config_from_dict

__all__ = ["is_timm_config", "is_timm_convnext", "timm_architecture", "timm_preprocessor_config"]


def timm_architecture(d: dict) -> str:
    """``convnext_tiny`` for ``convnext_tiny`` or ``convnext_tiny.fb_in1k`` (the tag is not the model)."""
    return str(d.get("architecture") or "").split(".")[0]


def is_timm_convnext(d: dict) -> bool:
    """timm's ConvNeXt family: convnext_*, convnextv2_* (all built by timm's ConvNeXt class)."""
    return timm_architecture(d).startswith("convnext")


def timm_preprocessor_config(d: dict, path: Path = Path("config.json")) -> dict:
    """transformers' ``preprocessor_config.json`` for timm's default evaluation transform of ``d``,
    with one mean and std per input channel (``model_args.in_chans``, else ``input_size[0]``), as
    the converter writes it for the same folder."""
    timm = timm_hub_config_from_dict(d, path)
    channels = timm.model_args.get("in_chans") or (timm.pretrained_cfg.get("input_size") or (3,))[0]
    return fit_to_channels(timm.preprocessor, int(channels), notes=[])

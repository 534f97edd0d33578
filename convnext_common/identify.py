"""What kind of model a ``config.json`` describes: a ConvNeXt (transformers' or timm's layout) or
something else, which is refused by name before any weights are read or downloaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import ConfigError
from .fileio import read_json_file
from .checkpoints.sources.timm import is_timm_config, is_timm_convnext, timm_architecture

CONVNEXT_MODEL_TYPES = ("convnext", "convnextv2", "dinov3_convnext")


class NotAConvNextError(ConfigError):
    """The source holds another kind of model; the message says which."""


def read_config_dict(path: Path) -> Any:
    return read_json_file(path, "config file", ConfigError)


def check_convnext_config(config_path: Path, name: str) -> None:
    """Refuse a config.json that describes anything but a ConvNeXt (transformers' or timm's);
    ``name`` (the hub id, or the local file) starts the message."""
    d = read_config_dict(config_path)
    if not isinstance(d, dict):
        return  # the config reader names this problem
    if is_timm_config(d):
        if not is_timm_convnext(d):
            raise NotAConvNextError(f"{name}: is a timm {timm_architecture(d)} model, not a ConvNeXt")
        return
    model_type = d.get("model_type")
    if model_type is not None and model_type not in CONVNEXT_MODEL_TYPES:
        arch = d.get("architectures")
        what = f" ({arch[0]})" if isinstance(arch, list) and arch and isinstance(arch[0], str) else ""
        raise NotAConvNextError(f"{name}: is a {model_type!r} model{what}, not a ConvNeXt "
                                f"(model_type {', '.join(CONVNEXT_MODEL_TYPES)})")

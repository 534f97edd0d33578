"""transformers' ConvNeXt checkpoints (source ``hf``): already in the canonical names.

A hub folder (``config.json``, ``model.safetensors`` / ``pytorch_model.bin`` / ``tf_model.h5``,
``preprocessor_config.json``) is kept as it is: its config is already in hub terms and its
preprocessor config is copied verbatim. Its ``tf_model.h5`` is read by formats/tf_h5.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional

from ...config import ConvNextConfig, load_config
from ...hub import PREPROCESSOR_NAME
from ..errors import CheckpointError
from ..formats.tf_h5 import is_transformers_tf_h5, load_h5_state_dict
from .base import Source, SourceCheckpoint


def _is_tf_h5(path: Path, layer_names: list[str]) -> bool:
    return is_transformers_tf_h5(path)


def _read_h5(file: Path, hub_dir: Optional[Path], config: Optional[ConvNextConfig]) -> SourceCheckpoint:
    if config is None and hub_dir is not None and (hub_dir / "config.json").is_file():
        config = load_config(hub_dir)
    return SourceCheckpoint(dict(load_h5_state_dict(file, config=config)), "hf", file, hub_dir)


def config_in_hub_terms(inp: SourceCheckpoint, state: Mapping, stated: Any) -> None:
    return None  # its config.json is already in hub terms


def folder_preprocessor(inp: SourceCheckpoint, channels: int, notes: list[str]) -> Optional[dict]:
    """A hub folder's own preprocessor config, verbatim."""
    if inp.hub_dir is None or not (inp.hub_dir / PREPROCESSOR_NAME).is_file():
        return None
    text = (inp.hub_dir / PREPROCESSOR_NAME).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{inp.hub_dir / PREPROCESSOR_NAME}: not valid JSON ({e.msg})") from None


SOURCE = Source(
    "hf", "transformers",
    signature=(r"(?:convnext(?:v2)?\.)?embeddings\.patch_embeddings\.weight",
               r"(?:convnext(?:v2)?\.)?encoder\.stages\.\d+\.layers\.\d+\.dwconv\.weight"),
    h5_layout=_is_tf_h5, read_h5=_read_h5, computation=config_in_hub_terms, preprocessor=folder_preprocessor)

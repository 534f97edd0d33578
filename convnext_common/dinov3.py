"""DINOv3's ConvNeXt: its config and its checkpoint names, for both twins.

DINOv3 (Meta, 2025) distils a 7B ViT into ConvNeXt V1 trunks (tiny ... large). transformers holds
them as ``DINOv3ConvNextModel`` (``model_type`` ``"dinov3_convnext"``): the same blocks as a ConvNeXt
V1, with three differences this module records so that the twins can reuse their ConvNeXt modules:

- every LayerNorm (stem, blocks, downsampling, final) uses ``layer_norm_eps`` (1e-6 by default);
- the final LayerNorm runs over every token: ``last_hidden_state`` is (B, 1 + H*W, C), the mean of the
  last map first (the "pooled token"), then the map's positions row by row; ``pooler_output`` is its
  first token; ``hidden_states`` are the input pixels and then each stage's map (NCHW);
- the checkpoint names differ (:func:`to_dinov3_name`, :func:`from_dinov3_name`): the stem is stage
  0's ``downsample_layers`` (``stages.0.downsample_layers.{0,1}``), the block's modules are called
  ``depthwise_conv``, ``layer_norm``, ``pointwise_conv1/2`` and ``gamma``, the final norm
  ``layer_norm``. Files hold these names without prefix, as the hub repos and transformers 4.x write
  them; transformers 5 keeps the stages under ``model.`` in memory and drops that prefix when it
  saves, and so do we (:func:`file_names` reads either).

The twins build a DINOv3 model from the ConvNeXt stem, stage and block classes; the names here map
between those modules' names (a ``ConvNextModel`` without prefix) and transformers' DINOv3 names,
which are the checkpoint format.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from .config import ConfigError, ConvNextConfig, _as_list, register_config_class

MODEL_TYPE = "dinov3_convnext"
#: the stem's patch size, fixed in transformers' DINOv3 ConvNeXt (not a config field there)
PATCH_SIZE = 4


class DINOv3ConvNextConfig(ConvNextConfig):
    """transformers' ``DINOv3ConvNextConfig``: its fields and defaults (``layer_norm_eps`` 1e-6 for
    every norm, layer scale 1e-6), read and written as its ``config.json``. The fields a ConvNeXt
    config has and DINOv3's has not (``patch_size``, ``num_stages``) are derived, not written."""

    model_type = MODEL_TYPE

    def __init__(self, num_channels: int = 3, hidden_sizes: list[int] | None = None,
                 depths: list[int] | None = None, hidden_act: str = "gelu", initializer_range: float = 0.02,
                 layer_norm_eps: float = 1e-6, layer_scale_init_value: float = 1e-6,
                 drop_path_rate: float = 0.0, image_size: int = 224, out_features: list[str] | None = None,
                 out_indices: list[int] | None = None, **kwargs: Any):
        patch_size = kwargs.pop("patch_size", PATCH_SIZE)
        if patch_size != PATCH_SIZE:
            raise ConfigError(f"patch_size must be {PATCH_SIZE} for a DINOv3 ConvNeXt, got {patch_size!r}")
        depths = _as_list(depths, [3, 3, 9, 3])
        num_stages = kwargs.pop("num_stages", None)
        super().__init__(num_channels=num_channels, patch_size=PATCH_SIZE,
                         num_stages=len(depths) if num_stages is None and isinstance(depths, list) else num_stages,
                         hidden_sizes=hidden_sizes, depths=depths, hidden_act=hidden_act,
                         initializer_range=initializer_range, layer_norm_eps=layer_norm_eps,
                         layer_scale_init_value=layer_scale_init_value, drop_path_rate=drop_path_rate,
                         image_size=image_size, out_features=out_features, out_indices=out_indices, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        # transformers' DINOv3 config has num_stages as a read-only property and no patch_size
        d.pop("num_stages", None)
        d.pop("patch_size", None)
        return d


register_config_class(DINOv3ConvNextConfig)


def is_dinov3(config: Any) -> bool:
    return getattr(config, "model_type", None) == MODEL_TYPE


# --- checkpoint names -------------------------------------------------------------------------------
# (ConvNeXt module name without prefix, transformers' DINOv3 name); each pattern matches a whole
# name and its template rebuilds the other side. Applied in order, first match wins.
_BLOCK_LEAVES = {"dwconv": "depthwise_conv", "layernorm": "layer_norm", "pwconv1": "pointwise_conv1",
                 "pwconv2": "pointwise_conv2"}
_OURS_TO_THEIRS: list[tuple[re.Pattern, Callable[[re.Match], str]]] = [
    (re.compile(r"embeddings\.patch_embeddings\.(weight|bias)"),
     lambda m: f"stages.0.downsample_layers.0.{m[1]}"),
    (re.compile(r"embeddings\.layernorm\.(weight|bias)"), lambda m: f"stages.0.downsample_layers.1.{m[1]}"),
    (re.compile(r"encoder\.stages\.(\d+)\.downsampling_layer\.([01])\.(weight|bias)"),
     lambda m: f"stages.{m[1]}.downsample_layers.{m[2]}.{m[3]}"),
    (re.compile(r"encoder\.stages\.(\d+)\.layers\.(\d+)\.(dwconv|layernorm|pwconv1|pwconv2)\.(weight|bias)"),
     lambda m: f"stages.{m[1]}.layers.{m[2]}.{_BLOCK_LEAVES[m[3]]}.{m[4]}"),
    (re.compile(r"encoder\.stages\.(\d+)\.layers\.(\d+)\.layer_scale_parameter"),
     lambda m: f"stages.{m[1]}.layers.{m[2]}.gamma"),
    (re.compile(r"layernorm\.(weight|bias)"), lambda m: f"layer_norm.{m[1]}"),
]
_THEIR_LEAVES = {v: k for k, v in _BLOCK_LEAVES.items()}
_THEIRS_TO_OURS: list[tuple[re.Pattern, Callable[[re.Match], str]]] = [
    (re.compile(r"(?:model\.)?stages\.0\.downsample_layers\.0\.(weight|bias)"),
     lambda m: f"embeddings.patch_embeddings.{m[1]}"),
    (re.compile(r"(?:model\.)?stages\.0\.downsample_layers\.1\.(weight|bias)"),
     lambda m: f"embeddings.layernorm.{m[1]}"),
    (re.compile(r"(?:model\.)?stages\.(\d+)\.downsample_layers\.([01])\.(weight|bias)"),
     lambda m: f"encoder.stages.{m[1]}.downsampling_layer.{m[2]}.{m[3]}"),
    (re.compile(r"(?:model\.)?stages\.(\d+)\.layers\.(\d+)\."
                r"(depthwise_conv|layer_norm|pointwise_conv1|pointwise_conv2)\.(weight|bias)"),
     lambda m: f"encoder.stages.{m[1]}.layers.{m[2]}.{_THEIR_LEAVES[m[3]]}.{m[4]}"),
    (re.compile(r"(?:model\.)?stages\.(\d+)\.layers\.(\d+)\.gamma"),
     lambda m: f"encoder.stages.{m[1]}.layers.{m[2]}.layer_scale_parameter"),
    (re.compile(r"layer_norm\.(weight|bias)"), lambda m: f"layernorm.{m[1]}"),
]


def _rename(name: str, rules: list[tuple[re.Pattern, Callable[[re.Match], str]]]) -> str | None:
    for pattern, build in rules:
        m = pattern.fullmatch(name)
        if m is not None:
            return build(m)
    return None


def to_dinov3_name(name: str) -> str:
    """A ConvNeXt module's parameter name (``encoder.stages.1.layers.0.dwconv.weight``, no prefix) as
    transformers' DINOv3 file name (``stages.1.layers.0.depthwise_conv.weight``); other names stay."""
    renamed = _rename(name, _OURS_TO_THEIRS)
    return name if renamed is None else renamed


def from_dinov3_name(name: str) -> str:
    """The inverse of :func:`to_dinov3_name` (transformers 5's in-memory ``model.stages...`` too);
    names that are not DINOv3's stay as they are."""
    renamed = _rename(name, _THEIRS_TO_OURS)
    return name if renamed is None else renamed


def file_names(state: Mapping[str, Any]) -> dict[str, Any]:
    """A DINOv3 state dict under the file names: transformers 5's in-memory ``model.stages.*`` (a
    ``torch.save(model.state_dict())``) read as ``stages.*``; values are passed through untouched
    (lazy ones stay lazy)."""
    return {(k[len("model."):] if k.startswith("model.stages.") else k): v for k, v in state.items()}


def block_layer_scale(config: DINOv3ConvNextConfig) -> float:
    """The layer scale the reused ConvNeXt blocks are built with. transformers' DINOv3 block always
    has ``gamma`` (filled with ``layer_scale_init_value``, zero included), while a ConvNeXt block
    has none for a value <= 0: such a config builds the blocks with 1.0 and the model's init sets
    ``gamma`` to the configured value."""
    return config.layer_scale_init_value if config.layer_scale_init_value > 0 else 1.0


__all__ = ["DINOv3ConvNextConfig", "MODEL_TYPE", "PATCH_SIZE", "is_dinov3", "to_dinov3_name", "from_dinov3_name",
           "file_names", "block_layer_scale"]

"""DINOv3's ConvNeXt in the converter: its two checkpoint layouts as sources, and the output family.

Sources (``{s}`` stage, ``{j}`` block):

- ``dinov3``: transformers' DINOv3 ConvNeXt folders (``model_type`` ``dinov3_convnext``):
  ``stages.{s}.downsample_layers.{0,1}`` (stage 0: the stem), ``stages.{s}.layers.{j}.depthwise_conv|
  layer_norm|pointwise_conv1|pointwise_conv2|gamma``, ``layer_norm``; transformers 5's in-memory
  ``model.`` prefix is read too. Its config.json is read as it is.
- ``dinov3-official``: facebookresearch/dinov3's ``.pth`` state dicts: the ConvNeXt official layout
  (``downsample_layers``, ``stages.{s}.{j}``, ``norm``) plus ``norms.{i}``, the list of per-stage
  output norms in which only the last is a LayerNorm, the final ``norm`` itself (the state dict holds
  it under both names; they must be equal).

The family of the written folder (:func:`to_family`): ``dinov3`` writes transformers' DINOv3 names and a
``DINOv3ConvNextConfig``; ``convnext`` a ConvNeXt V1 base model. A DINOv3 ConvNeXt is a ConvNeXt V1
trunk whose final norm runs over every token; on the mean token (``pooler_output``) it is the
ConvNeXt final pooled norm, so both families compute DINOv3's pooled embedding. One epsilon serves
every norm in DINOv3, while a ConvNeXt's inner norms use 1e-6: a model whose epsilons differ is
refused in the other family. The default family follows the source (a DINOv3 source, a timm
``dinov3``/``eupe`` tag: ``dinov3``).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ...architecture import NORM_EPS
from ...config import ConvNextConfig
from ...dinov3 import DINOv3ConvNextConfig, is_dinov3, to_dinov3_name
from ..errors import CheckpointError
from ..formats.torch_pickle import TorchCheckpoint
from ..preprocessing import fit_to_channels
from . import official
from .base import Source, SourceCheckpoint
from .rules import BLOCK as _BLOCK, DOWN as _DOWN, STEM as _STEM, J as _J, P as _P, S as _S, Rule
from .timm import is_timm_dinov3
from .transformers import config_in_hub_terms, folder_preprocessor

FAMILIES = ("convnext", "dinov3")
#: source formats whose checkpoints are DINOv3 models
DINOV3_FORMATS = ("dinov3", "dinov3-official")

_S1 = r"(?P<s>[1-9]\d*)"
_M = r"(?:model\.)?"

TRANSFORMERS_RULES = (
    Rule(rf"{_M}stages\.0\.downsample_layers\.0\.{_P}", _STEM + "patch_embeddings.{p}"),
    Rule(rf"{_M}stages\.0\.downsample_layers\.1\.{_P}", _STEM + "layernorm.{p}", "vector"),
    Rule(rf"{_M}stages\.{_S1}\.downsample_layers\.0\.{_P}", _DOWN + "0.{p}", "vector"),
    Rule(rf"{_M}stages\.{_S1}\.downsample_layers\.1\.{_P}", _DOWN + "1.{p}"),
    Rule(rf"{_M}stages\.{_S}\.layers\.{_J}\.depthwise_conv\.{_P}", _BLOCK + "dwconv.{p}"),
    Rule(rf"{_M}stages\.{_S}\.layers\.{_J}\.layer_norm\.{_P}", _BLOCK + "layernorm.{p}", "vector"),
    Rule(rf"{_M}stages\.{_S}\.layers\.{_J}\.pointwise_conv1\.weight", _BLOCK + "pwconv1.weight", "linear"),
    Rule(rf"{_M}stages\.{_S}\.layers\.{_J}\.pointwise_conv1\.bias", _BLOCK + "pwconv1.bias", "vector"),
    Rule(rf"{_M}stages\.{_S}\.layers\.{_J}\.pointwise_conv2\.weight", _BLOCK + "pwconv2.weight", "linear"),
    Rule(rf"{_M}stages\.{_S}\.layers\.{_J}\.pointwise_conv2\.bias", _BLOCK + "pwconv2.bias", "vector"),
    Rule(rf"{_M}stages\.{_S}\.layers\.{_J}\.gamma", _BLOCK + "layer_scale_parameter", "vector"),
    Rule(rf"layer_norm\.{_P}", "{trunk}layernorm.{p}", "vector"),
)
TRANSFORMERS_SIGNATURE = (rf"{_M}stages\.0\.downsample_layers\.0\.weight",
                          rf"{_M}stages\.\d+\.layers\.\d+\.depthwise_conv\.weight")
#: the official ConvNeXt layout's signature and the list of output norms only DINOv3's model has
OFFICIAL_SIGNATURE = (r"downsample_layers\.0\.0\.weight", r"stages\.\d+\.\d+\.dwconv\.weight", r"norms\.\d+\.weight")


def drop_duplicate_output_norms(state: dict, source: str) -> None:
    """facebookresearch/dinov3's state dict holds its final ``norm`` also as ``norms.{last}``: drop
    those copies after checking that they are the same tensors (anything else under ``norms.`` is
    refused: the hub layout has one final norm)."""
    for name in [k for k in state if k.startswith("norms.")]:
        leaf = name.rsplit(".", 1)[-1]
        final = state.get(f"norm.{leaf}")
        if final is None or np.shape(final) != np.shape(state[name]) or not np.array_equal(
                np.asarray(final), np.asarray(state[name])):
            raise CheckpointError(f"{source}: {name} is not a copy of the final norm.{leaf}; a hub-layout model has "
                                  f"one final norm")
        del state[name]


def default_family(source_format: str, config: ConvNextConfig, timm_pretrained_cfg: Optional[dict]) -> str:
    if source_format in DINOV3_FORMATS or is_dinov3(config):
        return "dinov3"
    if source_format == "timm" and timm_pretrained_cfg and is_timm_dinov3(timm_pretrained_cfg):
        return "dinov3"
    return "convnext"


def to_family(state: dict, config: ConvNextConfig, head: str, family: str, source: str,
              notes: list[str]) -> tuple[dict, ConvNextConfig, str]:
    """The converted checkpoint (canonical ConvNeXt names) as a ``family`` model: its state under the
    names that family's folders use, its config and head. Raises CheckpointError for what the other
    family cannot express (see the module docstring)."""
    if family not in FAMILIES:
        raise ValueError(f"family={family!r} is not one of {', '.join(FAMILIES)}")
    if family == "dinov3":
        return _as_dinov3(state, config, head, source, notes)
    if not is_dinov3(config):
        return state, config, head
    if config.layer_norm_eps != NORM_EPS:
        raise CheckpointError(f"{source}: layer_norm_eps {config.layer_norm_eps:g} in every norm; a ConvNeXt's inner "
                              f"norms use {NORM_EPS:g}: convert with family=\"dinov3\"")
    fields = {k: v for k, v in config.to_dict().items() if k not in ("model_type", "architectures", "_name_or_path")}
    convnext = ConvNextConfig.from_dict({**fields, "patch_size": config.patch_size, "num_stages": len(config.depths)})
    convnext.architectures = ["ConvNextModel"]
    notes.append("written as a ConvNeXt V1 base model: pooler_output is DINOv3's pooled (first) token; "
                 "last_hidden_state is the map before the final norm")
    return state, convnext, "base"


def _as_dinov3(state: dict, config: ConvNextConfig, head: str, source: str,
               notes: list[str]) -> tuple[dict, ConvNextConfig, str]:
    if config.model_type not in ("convnext", "dinov3_convnext"):
        raise CheckpointError(f"{source}: a {config.model_type} model; a DINOv3 ConvNeXt has a ConvNeXt V1 trunk")
    if head == "backbone":
        raise CheckpointError(f"{source}: a backbone with per-stage norms; a DINOv3 ConvNeXt backbone has none: "
                              f"convert with family=\"convnext\"")
    if config.patch_size != 4:
        raise CheckpointError(f"{source}: patch_size {config.patch_size}; a DINOv3 ConvNeXt's stem is 4x4")
    if not is_dinov3(config) and config.layer_norm_eps != NORM_EPS:
        raise CheckpointError(f"{source}: its final norm's epsilon is {config.layer_norm_eps:g} and its inner norms' "
                              f"{NORM_EPS:g}; a DINOv3 ConvNeXt uses one epsilon: convert with family=\"convnext\"")
    trunk = next((p for p in ("convnext.", "convnextv2.") if any(k.startswith(p) for k in state)), "")
    out: dict[str, Any] = {}
    for name, value in state.items():
        if name.startswith("classifier."):
            continue
        out[to_dinov3_name(name[len(trunk):] if name.startswith(trunk) else name)] = value
    if head == "classification":
        notes.append("the classifier is not part of a DINOv3 ConvNeXt (transformers has no such head): dropped")
    if config.layer_scale_init_value <= 0:  # no layer scale in the source: gamma = 1 computes the same
        for s, depth in enumerate(config.depths):
            for j in range(depth):
                out[f"stages.{s}.layers.{j}.gamma"] = np.ones((config.hidden_sizes[s],), np.float32)
        notes.append("the source has no layer scale: written as gamma = 1 (the same computation)")
    if is_dinov3(config):
        dinov3 = config
    else:
        notes.append("written as transformers' DINOv3 ConvNeXt (family=\"dinov3\"; family=\"convnext\" writes a "
                     "ConvNeXt folder)")
        dinov3 = DINOv3ConvNextConfig(
            num_channels=config.num_channels, hidden_sizes=list(config.hidden_sizes), depths=list(config.depths),
            hidden_act=config.hidden_act, layer_norm_eps=NORM_EPS, image_size=config.image_size,
            layer_scale_init_value=config.layer_scale_init_value if config.layer_scale_init_value > 0 else 1.0)
    dinov3.architectures = ["DINOv3ConvNextModel"]
    return out, dinov3, "base"


DINOV3_PREPROCESSOR = {
    "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.485, 0.456, 0.406],
    "image_processor_type": "DINOv3ViTImageProcessorFast", "image_std": [0.229, 0.224, 0.225], "resample": 2,
    "rescale_factor": 1 / 255, "size": {"height": 224, "width": 224},
}
"""The preprocessor_config.json of the DINOv3 hub repos (what their models were evaluated with)."""


# --- the sources ------------------------------------------------------------------------------------
def _official_metadata(inp: SourceCheckpoint, ckpt: Optional[TorchCheckpoint]) -> None:
    drop_duplicate_output_norms(inp.state, str(inp.weights_file))


def _preprocessor(inp: SourceCheckpoint, channels: int, notes: list[str]) -> Optional[dict]:
    return fit_to_channels(dict(DINOV3_PREPROCESSOR), channels, notes)


SOURCE = Source("dinov3", "transformers (DINOv3 ConvNeXt)", signature=TRANSFORMERS_SIGNATURE,
                rules=TRANSFORMERS_RULES, norms_have_bias=True, computation=config_in_hub_terms,
                preprocessor=folder_preprocessor)
OFFICIAL_SOURCE = Source("dinov3-official", "facebookresearch/dinov3 ConvNeXt", signature=OFFICIAL_SIGNATURE,
                         rules=official.RULES, refusals=official.REFUSALS, norms_have_bias=True,
                         metadata=_official_metadata, preprocessor=_preprocessor)

"""facebookresearch's ConvNeXt / ConvNeXt-V2 checkpoints (source ``official``) and ConvNeXt-V2's
FCMAE pre-training checkpoints (source ``fcmae``).

- ``official``: ``downsample_layers.0`` is the stem, ``downsample_layers.{s}`` (s >= 1) the
  downsampling, ``stages.{s}.{j}.dwconv|norm|pwconv1|pwconv2|gamma|grn.gamma|grn.beta``, ``norm``,
  ``head`` (``{s}`` stage, ``{j}`` block). A main.py training checkpoint keeps them under ``model``
  (``model_ema`` with ``ema``). GELU, LayerNorm eps 1e-6 and average pooling are fixed in its code.
- ``fcmae``: the official ConvNeXt-V2 pre-training checkpoints (``convnextv2_*_1k_224_fcmae.pt``,
  models/fcmae.py): the encoder is SparseConvNeXtV2 on MinkowskiEngine, ``encoder.`` + the official
  names with MinkowskiEngine kernels (``.kernel`` (k*k, in, out) or (k*k, C)), ``.ln.`` / ``.linear.``
  wrappers and (1, C) biases and GRN parameters; ``proj``, ``mask_token``, ``decoder.{j}`` (dense V2
  blocks) and ``pred`` are the decoder -> ``decoder.*`` of ConvNextV2ForMaskedImageModeling.
"""

from __future__ import annotations

from .base import Source
from .rules import BLOCK, DOWN, OVERLAP_STEM, STEM, J, P, Refusal, Rule, S, is_conv

RULES = (
        Rule(rf"downsample_layers\.0\.0\.{P}", STEM + "patch_embeddings.{p}"),
        Rule(rf"downsample_layers\.0\.1\.{P}", STEM + "layernorm.{p}", "vector"),
        Rule(rf"downsample_layers\.{S}\.0\.{P}", DOWN + "0.{p}", "vector"),
        Rule(rf"downsample_layers\.{S}\.1\.{P}", DOWN + "1.{p}"),
        Rule(rf"stages\.{S}\.{J}\.dwconv\.{P}", BLOCK + "dwconv.{p}"),
        Rule(rf"stages\.{S}\.{J}\.norm\.{P}", BLOCK + "layernorm.{p}", "vector"),
        Rule(rf"stages\.{S}\.{J}\.pwconv1\.weight", BLOCK + "pwconv1.weight", "linear"),
        Rule(rf"stages\.{S}\.{J}\.pwconv1\.bias", BLOCK + "pwconv1.bias", "vector"),
        Rule(rf"stages\.{S}\.{J}\.pwconv2\.weight", BLOCK + "pwconv2.weight", "linear"),
        Rule(rf"stages\.{S}\.{J}\.pwconv2\.bias", BLOCK + "pwconv2.bias", "vector"),
        Rule(rf"stages\.{S}\.{J}\.grn\.gamma", BLOCK + "grn.weight", "grn"),
        Rule(rf"stages\.{S}\.{J}\.grn\.beta", BLOCK + "grn.bias", "grn"),
        Rule(rf"stages\.{S}\.{J}\.gamma", BLOCK + "layer_scale_parameter", "vector"),
        Rule(rf"norm\.{P}", "{trunk}layernorm.{p}", "vector"),
        Rule(r"head\.weight", "classifier.weight", "linear"),
        Rule(r"head\.bias", "classifier.bias", "vector"),
)

REFUSALS = (
        Refusal(r"downsample_layers\.0\.[2-9]\.weight", OVERLAP_STEM, is_conv),
)

_FCMAE_BLOCK = "convnextv2.encoder.stages.{s}.layers.{j}."
_FCMAE_DOWN = "convnextv2.encoder.stages.{s}.downsampling_layer."
_FCMAE_DECODER = "decoder.layers.{j}."
_FCMAE_RULES = (
        Rule(rf"encoder\.downsample_layers\.0\.0\.{P}", "convnextv2.embeddings.patch_embeddings.{p}"),
        Rule(rf"encoder\.downsample_layers\.0\.1\.{P}", "convnextv2.embeddings.layernorm.{p}", "vector"),
        Rule(rf"encoder\.downsample_layers\.{S}\.0\.ln\.{P}", _FCMAE_DOWN + "0.{p}", "vector"),
        Rule(rf"encoder\.downsample_layers\.{S}\.1\.kernel", _FCMAE_DOWN + "1.weight", "me_conv"),
        Rule(rf"encoder\.downsample_layers\.{S}\.1\.bias", _FCMAE_DOWN + "1.bias", "vector"),
        Rule(rf"encoder\.stages\.{S}\.{J}\.dwconv\.kernel", _FCMAE_BLOCK + "dwconv.weight", "me_depthwise"),
        Rule(rf"encoder\.stages\.{S}\.{J}\.dwconv\.bias", _FCMAE_BLOCK + "dwconv.bias", "vector"),
        Rule(rf"encoder\.stages\.{S}\.{J}\.norm\.ln\.{P}", _FCMAE_BLOCK + "layernorm.{p}", "vector"),
        Rule(rf"encoder\.stages\.{S}\.{J}\.pwconv(?P<n>[12])\.linear\.weight", _FCMAE_BLOCK + "pwconv{n}.weight",
             "linear"),
        Rule(rf"encoder\.stages\.{S}\.{J}\.pwconv(?P<n>[12])\.linear\.bias", _FCMAE_BLOCK + "pwconv{n}.bias",
             "vector"),
        Rule(rf"encoder\.stages\.{S}\.{J}\.grn\.gamma", _FCMAE_BLOCK + "grn.weight", "grn"),
        Rule(rf"encoder\.stages\.{S}\.{J}\.grn\.beta", _FCMAE_BLOCK + "grn.bias", "grn"),
        Rule(rf"proj\.{P}", "decoder.proj.{p}"),
        Rule(r"mask_token", "decoder.mask_token"),
        Rule(rf"decoder\.{J}\.dwconv\.{P}", _FCMAE_DECODER + "dwconv.{p}"),
        Rule(rf"decoder\.{J}\.norm\.{P}", _FCMAE_DECODER + "layernorm.{p}", "vector"),
        Rule(rf"decoder\.{J}\.pwconv(?P<n>[12])\.weight", _FCMAE_DECODER + "pwconv{n}.weight", "linear"),
        Rule(rf"decoder\.{J}\.pwconv(?P<n>[12])\.bias", _FCMAE_DECODER + "pwconv{n}.bias", "vector"),
        Rule(rf"decoder\.{J}\.grn\.gamma", _FCMAE_DECODER + "grn.weight", "grn"),
        Rule(rf"decoder\.{J}\.grn\.beta", _FCMAE_DECODER + "grn.bias", "grn"),
        Rule(rf"pred\.{P}", "decoder.pred.{p}"),
)

_FCMAE_REFUSALS = (
        Refusal(r"encoder\.fpn\..*", "a feature pyramid on the sparse encoder (use_fpn); the official FCMAE "
                "decoder reads the last stage only"),
        Refusal(r"encoder\.downsample_layers\.0\.[2-9]\.weight", OVERLAP_STEM, is_conv),
)

SOURCE = Source("official", "facebookresearch ConvNeXt / ConvNeXt-V2",
                signature=(r"downsample_layers\.0\.0\.weight", r"stages\.\d+\.\d+\.dwconv\.weight"),
                rules=RULES, refusals=REFUSALS, norms_have_bias=True)

FCMAE_SOURCE = Source("fcmae", "facebookresearch ConvNeXt-V2 FCMAE pre-training (MinkowskiEngine)",
                      signature=(r"encoder\.downsample_layers\.0\.0\.weight",
                                 r"encoder\.stages\.\d+\.\d+\.dwconv\.kernel", r"mask_token"),
                      rules=_FCMAE_RULES, refusals=_FCMAE_REFUSALS, norms_have_bias=True)

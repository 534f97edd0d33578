"""torchvision's ConvNeXt checkpoints (source ``torchvision``): ``convnext_*.pth`` state dicts and
``references/classification/train.py`` checkpoints (``model``, ``model_ema``).

Names: ``features.0`` is the stem, ``features.{2s+1}.{j}.block.{0,2,3,5}`` and ``layer_scale``
(C, 1, 1) the blocks of stage s, ``features.{2s}`` (s >= 1) its downsampling, ``classifier.0`` the
final norm, ``classifier.2`` the head. Any ``CNBlockConfig`` list; GELU, LayerNorm eps 1e-6 and
average pooling are fixed in its code.
"""

from __future__ import annotations

from .base import Source
from .rules import BLOCK, DOWN, OVERLAP_STEM, STEM, J, P, Refusal, Rule, is_conv

#: odd features are stages (s = f // 2), even ones downsample (s = f // 2)
_STAGE = {"s": ("f", 2, 0)}

RULES = (
        Rule(rf"features\.0\.0\.{P}", STEM + "patch_embeddings.{p}"),
        Rule(rf"features\.0\.1\.{P}", STEM + "layernorm.{p}", "vector"),
        Rule(rf"features\.(?P<f>\d*[02468])\.0\.{P}", DOWN + "0.{p}", "vector", _STAGE),
        Rule(rf"features\.(?P<f>\d*[02468])\.1\.{P}", DOWN + "1.{p}", index=_STAGE),
        Rule(rf"features\.(?P<f>\d*[13579])\.{J}\.block\.0\.{P}", BLOCK + "dwconv.{p}", index=_STAGE),
        Rule(rf"features\.(?P<f>\d*[13579])\.{J}\.block\.2\.{P}", BLOCK + "layernorm.{p}", "vector", _STAGE),
        Rule(rf"features\.(?P<f>\d*[13579])\.{J}\.block\.3\.weight", BLOCK + "pwconv1.weight", "linear", _STAGE),
        Rule(rf"features\.(?P<f>\d*[13579])\.{J}\.block\.3\.bias", BLOCK + "pwconv1.bias", "vector", _STAGE),
        Rule(rf"features\.(?P<f>\d*[13579])\.{J}\.block\.5\.weight", BLOCK + "pwconv2.weight", "linear", _STAGE),
        Rule(rf"features\.(?P<f>\d*[13579])\.{J}\.block\.5\.bias", BLOCK + "pwconv2.bias", "vector", _STAGE),
        Rule(rf"features\.(?P<f>\d*[13579])\.{J}\.layer_scale", BLOCK + "layer_scale_parameter", "vector", _STAGE),
        Rule(rf"classifier\.0\.{P}", "{trunk}layernorm.{p}", "vector"),
        Rule(r"classifier\.2\.weight", "classifier.weight", "linear"),
        Rule(r"classifier\.2\.bias", "classifier.bias", "vector"),
)

REFUSALS = (
        Refusal(r"features\.0\.[2-9]\.weight", OVERLAP_STEM, is_conv),
)

SOURCE = Source("torchvision", "torchvision",
                signature=(r"features\.0\.0\.weight", r"features\.\d+\.\d+\.block\.0\.weight"),
                rules=RULES, refusals=REFUSALS, norms_have_bias=True)

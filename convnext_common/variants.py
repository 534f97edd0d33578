"""Published ConvNeXt sizes: their configs, and the parameter counts their sources state.

The sizes themselves (depths and widths per named variant) are data in variant_sizes.py, re-exported
here.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .config import ConvNextConfig, ConvNextV2Config
from .variant_sizes import V1_VARIANTS, V2_VARIANTS, Variant, parse_variant, variant_names

__all__ = ["Variant", "V1_VARIANTS", "V2_VARIANTS", "parse_variant", "variant_names", "config_for_variant",
           "PublishedCount", "PUBLISHED_PARAMS"]


class PublishedCount(NamedTuple):
    """A parameter count as its source states it: ``params`` rounded to ``precision``.

    ``head``: ``"classification"`` (with a 1000-class classifier) or ``"base"`` (no classifier,
    final norm kept, as timm lists its head-less pretraining checkpoints).
    """

    params: int
    precision: int
    head: str
    source: str


_TV = "torchvision.models ConvNeXt docs (num_params)"
_TIMM = "timm model card (Params (M))"

#: published parameter counts that could be confirmed against their source; sizes missing here have
#: no count we could confirm (the twins' counts are still checked against count_parameters()).
PUBLISHED_PARAMS: dict[str, PublishedCount] = {
    "convnext-tiny": PublishedCount(28_589_128, 1, "classification", _TV),
    "convnext-small": PublishedCount(50_223_688, 1, "classification", _TV),
    "convnext-base": PublishedCount(88_591_464, 1, "classification", _TV),
    "convnext-large": PublishedCount(197_767_336, 1, "classification", _TV),
    "convnext-atto": PublishedCount(3_700_000, 100_000, "classification", _TIMM + ", convnext_atto.d2_in1k"),
    "convnext-femto": PublishedCount(5_200_000, 100_000, "classification", _TIMM + ", convnext_femto.d1_in1k"),
    "convnextv2-huge": PublishedCount(657_500_000, 100_000, "base", _TIMM + ", convnextv2_huge.fcmae (no head)"),
}


def config_for_variant(name: str, version: int | None = None, **overrides: Any) -> ConvNextConfig:
    """A ConvNextConfig (V1) or ConvNextV2Config (V2) with the variant's depths and widths."""
    v, _ = parse_variant(name, version)
    return (ConvNextV2Config if v == 2 else ConvNextConfig).from_variant(name, **overrides)

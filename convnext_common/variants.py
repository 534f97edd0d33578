"""Published ConvNeXt sizes as data: depths and widths per named variant.

V1 sizes are those of "A ConvNet for the 2020s" (tiny ... xlarge) and timm's small models
(atto ... nano) and xxlarge; V2 sizes are those of "ConvNeXt V2" (atto ... huge).
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Variant(NamedTuple):
    depths: tuple[int, ...]
    hidden_sizes: tuple[int, ...]


_SMALL_DEPTHS = (2, 2, 6, 2)
_DEEP = (3, 3, 27, 3)

V1_VARIANTS: dict[str, Variant] = {
    "atto": Variant(_SMALL_DEPTHS, (40, 80, 160, 320)),
    "femto": Variant(_SMALL_DEPTHS, (48, 96, 192, 384)),
    "pico": Variant(_SMALL_DEPTHS, (64, 128, 256, 512)),
    "nano": Variant((2, 2, 8, 2), (80, 160, 320, 640)),
    "tiny": Variant((3, 3, 9, 3), (96, 192, 384, 768)),
    "small": Variant(_DEEP, (96, 192, 384, 768)),
    "base": Variant(_DEEP, (128, 256, 512, 1024)),
    "large": Variant(_DEEP, (192, 384, 768, 1536)),
    "xlarge": Variant(_DEEP, (256, 512, 1024, 2048)),
    "xxlarge": Variant((3, 4, 30, 3), (384, 768, 1536, 3072)),
}

V2_VARIANTS: dict[str, Variant] = {
    "atto": V1_VARIANTS["atto"],
    "femto": V1_VARIANTS["femto"],
    "pico": V1_VARIANTS["pico"],
    "nano": V1_VARIANTS["nano"],
    "tiny": V1_VARIANTS["tiny"],
    "base": V1_VARIANTS["base"],
    "large": V1_VARIANTS["large"],
    "huge": Variant(_DEEP, (352, 704, 1408, 2816)),
}

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
#: the exact ones, as {name: count} with a 1000-class head.
PUBLISHED_PARAMS_1K: dict[str, int] = {k: v.params for k, v in PUBLISHED_PARAMS.items()
                                       if v.precision == 1 and v.head == "classification"}


def parse_variant(name: str, version: int | None = None) -> tuple[int, str]:
    """``"convnext-tiny"``, ``"convnextv2_base"``, ``"tiny"`` -> (version, size)."""
    key = name.strip().lower().replace("_", "-")
    v = version
    for prefix, ver in (("convnextv2-", 2), ("convnext-v2-", 2), ("convnext-", 1)):
        if key.startswith(prefix):
            if version is not None and version != ver:
                raise ValueError(f"variant {name!r} is ConvNeXt V{ver}, not V{version}")
            key, v = key[len(prefix):], ver
            break
    v = v or 1
    table = V2_VARIANTS if v == 2 else V1_VARIANTS
    if key not in table:
        known = ", ".join(variant_names())
        raise ValueError(f"unknown variant {name!r}; known: {known}")
    return v, key


def variant_names() -> list[str]:
    return [f"convnext-{k}" for k in V1_VARIANTS] + [f"convnextv2-{k}" for k in V2_VARIANTS]


def config_for_variant(name: str, version: int | None = None, **overrides: Any):
    """A ConvNextConfig (V1) or ConvNextV2Config (V2) with the variant's depths and widths."""
    from .config import ConvNextConfig, ConvNextV2Config

    v, size = parse_variant(name, version)
    spec = (V2_VARIANTS if v == 2 else V1_VARIANTS)[size]
    cls = ConvNextV2Config if v == 2 else ConvNextConfig
    kwargs: dict[str, Any] = dict(depths=list(spec.depths), hidden_sizes=list(spec.hidden_sizes),
                                  num_stages=len(spec.depths))
    kwargs.update(overrides)
    return cls(**kwargs)

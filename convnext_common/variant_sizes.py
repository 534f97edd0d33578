"""Published ConvNeXt sizes as data: depths and widths per named variant.

V1 sizes are those of "A ConvNet for the 2020s" (tiny ... xlarge) and timm's small models
(atto ... nano) and xxlarge; V2 sizes are those of "ConvNeXt V2" (atto ... huge). Configs of these
sizes: ``ConvNextConfig.from_variant`` / ``variants.config_for_variant``.
"""

from __future__ import annotations

from typing import NamedTuple


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

"""A source checkpoint -> canonical (transformers PyTorch) names, by its source's rules (sources.py).

``to_canonical`` checks the source's refusals, renames every tensor by the rules and applies their
layout transforms, refusing names that no rule covers or that two tensors would share.
"""

from __future__ import annotations

import re
from typing import Mapping, MutableMapping

import numpy as np

from .errors import CheckpointError, UnsupportedCheckpointError
from .rules import LAYOUTS, apply_rules
from .sources import FORMATS, Source, get_source

__all__ = ["FORMATS", "canonical_name", "to_canonical", "fill_bias_free_convs"]


def _check_refusals(state: Mapping[str, np.ndarray], src: Source, source: str) -> None:
    for refusal in src.refusals:
        regex = re.compile(refusal.pattern)
        for name, array in state.items():
            if regex.fullmatch(name) and (refusal.when is None or refusal.when(array)):
                raise UnsupportedCheckpointError(f"{source}: cannot convert: {name} means {refusal.reason}")
    # RMSNorm and friends: a norm with a scale but no shift.
    for name in state:
        if src.norms_have_bias and name.endswith("norm.weight"):
            if name[: -len("weight")] + "bias" not in state:
                raise UnsupportedCheckpointError(
                    f"{source}: cannot convert: {name} has no bias (an RMSNorm or a bias-free LayerNorm); "
                    f"a hub-layout ConvNeXt uses LayerNorm with a bias")


def canonical_name(name: str, fmt: str, trunk: str) -> tuple[str, str] | None:
    """(canonical name, layout) for a source name, or None when no rule of ``fmt`` matches it."""
    return apply_rules(get_source(fmt).rules, name, trunk)


def _uses_grn(state: Mapping[str, np.ndarray]) -> bool:
    return any(".grn." in k or "_grn/" in k for k in state)


def _has_head(state: Mapping[str, np.ndarray], fmt: str) -> bool:
    """Whether some tensor maps to ``classifier.weight`` under the rules of ``fmt``."""
    return any((canonical_name(k, fmt, "") or ("",))[0] == "classifier.weight" for k in state)


def to_canonical(state: MutableMapping[str, np.ndarray], fmt: str, source: str = "checkpoint",
                 consume: bool = False) -> dict[str, np.ndarray]:
    """Rename and re-lay-out a ``fmt`` checkpoint into canonical names.

    A checkpoint with a classifier becomes ``convnext.*`` / ``convnextv2.*`` (V2 when it has GRN)
    plus ``classifier.*``; one without keeps the trunk unprefixed, like transformers' base
    ``ConvNextModel``. With ``consume``, source arrays are removed from ``state`` as they are
    converted, so a transposed copy never coexists with its original (peak memory stays near
    one checkpoint). Raises CheckpointError listing the names no rule covers.
    """
    src = get_source(fmt)
    if not src.rules:
        return dict(state)  # already canonical
    _check_refusals(state, src, source)
    trunk = ("convnextv2." if _uses_grn(state) else "convnext.") if _has_head(state, fmt) else ""
    plan: list[tuple[str, str, str]] = []
    unknown: list[str] = []
    for name in list(state):
        target = canonical_name(name, fmt, trunk)
        if target is None:
            unknown.append(name)
        else:
            plan.append((name, *target))
    if unknown:
        shown = ", ".join(unknown[:8]) + (f", ... ({len(unknown) - 8} more)" if len(unknown) > 8 else "")
        raise CheckpointError(f"{source}: {len(unknown)} tensors are not part of a ConvNeXt in {fmt} layout: {shown}")
    seen: dict[str, str] = {}
    for name, target, _ in plan:
        if target in seen:
            raise CheckpointError(f"{source}: {seen[target]} and {name} both map to {target}")
        seen[target] = name
    out: dict[str, np.ndarray] = {}
    for name, target, layout in plan:
        array = state.pop(name) if consume else state[name]
        try:
            out[target] = LAYOUTS[layout](np.asarray(array))
        except ValueError as e:
            raise CheckpointError(f"{source}: {name}: {e}") from None
    return out


#: canonical names of the spatial convolutions (stem, downsampling, depthwise): the ones timm builds
#: without bias when ``conv_bias=False`` (its MLPs keep theirs).
_SPATIAL_CONV_SUFFIXES = ("embeddings.patch_embeddings.weight", "downsampling_layer.1.weight", "dwconv.weight")


def fill_bias_free_convs(state: MutableMapping[str, np.ndarray]) -> int:
    """Give zero biases to the spatial convolutions of a model built without them (timm's
    ``conv_bias=False``): the same outputs in a layout where every conv has a bias. Only when *every*
    spatial conv lacks its bias; a file missing some of them is left for the config check to report.
    Returns the number of biases written."""
    convs = [k for k in state if k.endswith(_SPATIAL_CONV_SUFFIXES)]
    missing = [k for k in convs if k[: -len("weight")] + "bias" not in state]
    if not missing or len(missing) != len(convs):
        return 0
    for k in missing:
        state[k[: -len("weight")] + "bias"] = np.zeros(np.shape(state[k])[0], np.asarray(state[k]).dtype)
    return len(missing)

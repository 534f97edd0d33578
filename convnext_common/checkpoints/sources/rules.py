"""The vocabulary of a checkpoint source's key mapping: ``Rule`` (a source name -> a canonical
name and a layout transform) and ``Refusal`` (a source name that marks a part the hub layout cannot
express). No per-layer code: a new block, stage or model size is covered by the same rules. The
tables themselves are in each source's module; the templates below name the canonical modules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np


# --- layout transforms: source array -> canonical array (views where numpy allows) -------------
def _same(a: np.ndarray) -> np.ndarray:
    return a


def _vector(a: np.ndarray) -> np.ndarray:
    """(C,), (C, 1, 1) or (1, 1, 1, C) -> (C,)."""
    if sum(d != 1 for d in a.shape) > 1:
        raise ValueError(f"expected a vector, got shape {list(a.shape)}")
    return a.reshape(-1)


def _linear(a: np.ndarray) -> np.ndarray:
    """A Linear weight (O, I), or a 1x1 conv weight (O, I, 1, 1) used as one -> (O, I)."""
    if a.ndim == 4 and a.shape[2:] == (1, 1):
        return a.reshape(a.shape[:2])
    if a.ndim != 2:
        raise ValueError(f"expected a (out, in) or (out, in, 1, 1) weight, got shape {list(a.shape)}")
    return a


def _grn(a: np.ndarray) -> np.ndarray:
    """GRN gamma/beta (C,) or (1, 1, 1, C) -> (1, 1, 1, C)."""
    return _vector(a).reshape(1, 1, 1, -1)


def _conv_hwio(a: np.ndarray) -> np.ndarray:
    """Keras conv kernel (kh, kw, in, out), depthwise (kh, kw, 1, C) -> PyTorch (out, in, kh, kw)."""
    if a.ndim != 4:
        raise ValueError(f"expected a 4-D conv kernel, got shape {list(a.shape)}")
    return np.ascontiguousarray(a.transpose(3, 2, 0, 1))


def _dense_io(a: np.ndarray) -> np.ndarray:
    """Keras Dense kernel (in, out) or a 1x1 conv kernel (1, 1, in, out) -> PyTorch (out, in)."""
    if a.ndim == 4 and a.shape[:2] == (1, 1):
        a = a.reshape(a.shape[2:])
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D dense kernel, got shape {list(a.shape)}")
    return np.ascontiguousarray(a.T)


def _kernel_side(volume: int) -> int:
    side = int(round(volume ** 0.5))
    if side * side != volume:
        raise ValueError(f"a kernel volume of {volume} is not a square 2-D kernel")
    return side


def _me_conv(a: np.ndarray) -> np.ndarray:
    """A MinkowskiEngine 2-D conv kernel (k*k, in, out) -> PyTorch (out, in, k, k), read as the official
    ConvNeXt-V2 fine-tuning remap reads it (utils.remap_checkpoint_keys): entry ``x * k + y`` holds row
    offset y, column offset x."""
    if a.ndim != 3:
        raise ValueError(f"expected a (kernel_volume, in, out) kernel, got shape {list(a.shape)}")
    volume, cin, cout = a.shape
    k = _kernel_side(volume)
    return np.ascontiguousarray(a.transpose(2, 1, 0).reshape(cout, cin, k, k).transpose(0, 1, 3, 2))


def _me_depthwise(a: np.ndarray) -> np.ndarray:
    """A MinkowskiEngine depthwise kernel (k*k, C) -> PyTorch (C, 1, k, k), as :func:`_me_conv` reads offsets."""
    if a.ndim != 2:
        raise ValueError(f"expected a (kernel_volume, channels) kernel, got shape {list(a.shape)}")
    volume, c = a.shape
    k = _kernel_side(volume)
    return np.ascontiguousarray(a.transpose(1, 0).reshape(c, 1, k, k).transpose(0, 1, 3, 2))


LAYOUTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "same": _same, "vector": _vector, "linear": _linear, "grn": _grn, "conv_hwio": _conv_hwio, "dense_io": _dense_io,
    "me_conv": _me_conv, "me_depthwise": _me_depthwise,
}


@dataclass(frozen=True)
class Rule:
    """``pattern`` (full match on the source name) -> ``template`` (str.format with the named groups).

    ``index`` derives integer fields from a group: ``{"s": ("f", 2, 0)}`` sets ``s = int(f) // 2 + 0``
    (torchvision numbers stages and downsamplings together in ``features``). ``{trunk}`` is
    ``convnext`` or ``convnextv2`` (or empty for a base model) and is filled in by the converter.
    """

    pattern: str
    template: str
    layout: str = "same"
    index: Mapping[str, tuple[str, int, int]] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "regex", re.compile(self.pattern))
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r}")


@dataclass(frozen=True)
class Refusal:
    """A name that marks a model part the hub layout cannot express; ``when`` tests the array too."""

    pattern: str
    reason: str
    when: Callable[[np.ndarray], bool] | None = None


def apply_rules(rules: tuple[Rule, ...], name: str, trunk: str) -> tuple[str, str] | None:
    """(canonical name, layout) for a source name, or None when no rule matches it."""
    for rule in rules:
        m = rule.regex.fullmatch(name)  # type: ignore[attr-defined]
        if m is None:
            continue
        fields: dict[str, object] = {k: v for k, v in m.groupdict().items() if v is not None}
        for key, (group, div, offset) in rule.index.items():
            fields[key] = int(m.group(group)) // div + offset
        return rule.template.format(trunk=trunk, **fields), rule.layout
    return None


# --- the pieces the sources' tables are written with ----------------------------------------------
#: a ``weight`` or ``bias`` leaf, and a stage / block index, as regex groups of a rule's pattern
P = r"(?P<p>weight|bias)"
S, J = r"(?P<s>\d+)", r"(?P<j>\d+)"
#: canonical module names (``{trunk}``: ``convnext.``, ``convnextv2.`` or empty)
BLOCK = "{trunk}encoder.stages.{s}.layers.{j}."
DOWN = "{trunk}encoder.stages.{s}.downsampling_layer."
STEM = "{trunk}embeddings."


def is_conv(a: np.ndarray) -> bool:
    """A 4-D weight: a convolution (a refusal's ``when``)."""
    return np.ndim(a) == 4


#: the reason every source gives for an overlapping stem (several strided convs before stage 0)
OVERLAP_STEM = ("an overlapping stem (several strided 3x3 convs); a hub-layout ConvNeXt has a single "
                "patchify conv (kernel = stride) followed by LayerNorm")

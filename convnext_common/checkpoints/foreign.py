"""Foreign ConvNeXt checkpoints -> canonical (transformers PyTorch) names, by tables of rules.

Each format is a list of ``Rule``s: a regular expression over the source name, a template for
the canonical name, and a layout transform for the array. No per-layer code: a new block,
stage or model size is covered by the same rules. Each format also has ``Refusal``s: names that
mean the model has a part the hub layout cannot express, with the reason given to the user.

Formats (source names, with ``{s}`` stage, ``{j}`` block):
- ``timm``: ``stem.0/1``, ``stages.{s}.downsample.0/1``, ``stages.{s}.blocks.{j}.conv_dw|norm|mlp.fc1|
  mlp.fc2|mlp.grn|gamma``, ``head.norm``, ``head.fc``; with ``conv_mlp`` the fc weights are
  1x1 convs (O, I, 1, 1); V2 GRN weights are (C,).
- ``official``: facebookresearch ConvNeXt / ConvNeXt-V2: ``downsample_layers.0`` is the stem,
  ``downsample_layers.{s}`` (s >= 1) the downsampling, ``stages.{s}.{j}.dwconv|norm|pwconv1|
  pwconv2|gamma|grn.gamma|grn.beta``, ``norm``, ``head``.
- ``torchvision``: ``features.0`` stem, ``features.{2s+1}.{j}.block.{0,2,3,5}`` and
  ``layer_scale`` (C, 1, 1), ``features.{2s}`` downsampling, ``classifier.0`` norm, ``classifier.2``.
- ``keras``: keras-applications h5 weight names with the model-name prefix removed
  (see keras_applications.py): ``stem_conv/kernel``, ``stage_{s}_block_{j}_depthwise_conv/kernel``,
  ``downsampling_conv_{i}`` (stage i + 1), ``head_dense/kernel``; conv kernels HWIO, dense (in, out).
- ``hf``: already canonical.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, MutableMapping

import numpy as np

from .infer import UnsupportedCheckpointError
from .io import CheckpointError

FORMATS = ("hf", "timm", "official", "torchvision", "keras")


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


LAYOUTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "same": _same, "vector": _vector, "linear": _linear, "grn": _grn, "conv_hwio": _conv_hwio, "dense_io": _dense_io,
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


_P = r"(?P<p>weight|bias)"
_S, _J = r"(?P<s>\d+)", r"(?P<j>\d+)"
_BLOCK = "{trunk}encoder.stages.{s}.layers.{j}."
_DOWN = "{trunk}encoder.stages.{s}.downsampling_layer."
_STEM = "{trunk}embeddings."

RULES: dict[str, list[Rule]] = {
    "timm": [
        Rule(rf"stem\.0\.{_P}", _STEM + "patch_embeddings.{p}"),
        Rule(rf"stem\.1\.{_P}", _STEM + "layernorm.{p}", "vector"),
        Rule(rf"stages\.{_S}\.downsample\.0\.{_P}", _DOWN + "0.{p}", "vector"),
        Rule(rf"stages\.{_S}\.downsample\.1\.{_P}", _DOWN + "1.{p}"),
        Rule(rf"stages\.{_S}\.blocks\.{_J}\.conv_dw\.{_P}", _BLOCK + "dwconv.{p}"),
        Rule(rf"stages\.{_S}\.blocks\.{_J}\.norm\.{_P}", _BLOCK + "layernorm.{p}", "vector"),
        Rule(rf"stages\.{_S}\.blocks\.{_J}\.mlp\.fc1\.weight", _BLOCK + "pwconv1.weight", "linear"),
        Rule(rf"stages\.{_S}\.blocks\.{_J}\.mlp\.fc1\.bias", _BLOCK + "pwconv1.bias", "vector"),
        Rule(rf"stages\.{_S}\.blocks\.{_J}\.mlp\.fc2\.weight", _BLOCK + "pwconv2.weight", "linear"),
        Rule(rf"stages\.{_S}\.blocks\.{_J}\.mlp\.fc2\.bias", _BLOCK + "pwconv2.bias", "vector"),
        Rule(rf"stages\.{_S}\.blocks\.{_J}\.mlp\.grn\.(?:weight|gamma)", _BLOCK + "grn.weight", "grn"),
        Rule(rf"stages\.{_S}\.blocks\.{_J}\.mlp\.grn\.(?:bias|beta)", _BLOCK + "grn.bias", "grn"),
        Rule(rf"stages\.{_S}\.blocks\.{_J}\.gamma", _BLOCK + "layer_scale_parameter", "vector"),
        Rule(rf"head\.norm\.{_P}", "{trunk}layernorm.{p}", "vector"),
        Rule(r"head\.fc\.weight", "classifier.weight", "linear"),
        Rule(r"head\.fc\.bias", "classifier.bias", "vector"),
    ],
    "official": [
        Rule(rf"downsample_layers\.0\.0\.{_P}", _STEM + "patch_embeddings.{p}"),
        Rule(rf"downsample_layers\.0\.1\.{_P}", _STEM + "layernorm.{p}", "vector"),
        Rule(rf"downsample_layers\.{_S}\.0\.{_P}", _DOWN + "0.{p}", "vector"),
        Rule(rf"downsample_layers\.{_S}\.1\.{_P}", _DOWN + "1.{p}"),
        Rule(rf"stages\.{_S}\.{_J}\.dwconv\.{_P}", _BLOCK + "dwconv.{p}"),
        Rule(rf"stages\.{_S}\.{_J}\.norm\.{_P}", _BLOCK + "layernorm.{p}", "vector"),
        Rule(rf"stages\.{_S}\.{_J}\.pwconv1\.weight", _BLOCK + "pwconv1.weight", "linear"),
        Rule(rf"stages\.{_S}\.{_J}\.pwconv1\.bias", _BLOCK + "pwconv1.bias", "vector"),
        Rule(rf"stages\.{_S}\.{_J}\.pwconv2\.weight", _BLOCK + "pwconv2.weight", "linear"),
        Rule(rf"stages\.{_S}\.{_J}\.pwconv2\.bias", _BLOCK + "pwconv2.bias", "vector"),
        Rule(rf"stages\.{_S}\.{_J}\.grn\.gamma", _BLOCK + "grn.weight", "grn"),
        Rule(rf"stages\.{_S}\.{_J}\.grn\.beta", _BLOCK + "grn.bias", "grn"),
        Rule(rf"stages\.{_S}\.{_J}\.gamma", _BLOCK + "layer_scale_parameter", "vector"),
        Rule(rf"norm\.{_P}", "{trunk}layernorm.{p}", "vector"),
        Rule(r"head\.weight", "classifier.weight", "linear"),
        Rule(r"head\.bias", "classifier.bias", "vector"),
    ],
    "torchvision": [
        # features.0 is the stem, odd features are stages (s = f // 2), even ones downsample (s = f // 2).
        Rule(rf"features\.0\.0\.{_P}", _STEM + "patch_embeddings.{p}"),
        Rule(rf"features\.0\.1\.{_P}", _STEM + "layernorm.{p}", "vector"),
        Rule(rf"features\.(?P<f>\d*[02468])\.0\.{_P}", _DOWN + "0.{p}", "vector", {"s": ("f", 2, 0)}),
        Rule(rf"features\.(?P<f>\d*[02468])\.1\.{_P}", _DOWN + "1.{p}", index={"s": ("f", 2, 0)}),
        Rule(rf"features\.(?P<f>\d*[13579])\.{_J}\.block\.0\.{_P}", _BLOCK + "dwconv.{p}", index={"s": ("f", 2, 0)}),
        Rule(rf"features\.(?P<f>\d*[13579])\.{_J}\.block\.2\.{_P}", _BLOCK + "layernorm.{p}", "vector",
             {"s": ("f", 2, 0)}),
        Rule(rf"features\.(?P<f>\d*[13579])\.{_J}\.block\.3\.weight", _BLOCK + "pwconv1.weight", "linear",
             {"s": ("f", 2, 0)}),
        Rule(rf"features\.(?P<f>\d*[13579])\.{_J}\.block\.3\.bias", _BLOCK + "pwconv1.bias", "vector",
             {"s": ("f", 2, 0)}),
        Rule(rf"features\.(?P<f>\d*[13579])\.{_J}\.block\.5\.weight", _BLOCK + "pwconv2.weight", "linear",
             {"s": ("f", 2, 0)}),
        Rule(rf"features\.(?P<f>\d*[13579])\.{_J}\.block\.5\.bias", _BLOCK + "pwconv2.bias", "vector",
             {"s": ("f", 2, 0)}),
        Rule(rf"features\.(?P<f>\d*[13579])\.{_J}\.layer_scale", _BLOCK + "layer_scale_parameter", "vector",
             {"s": ("f", 2, 0)}),
        Rule(rf"classifier\.0\.{_P}", "{trunk}layernorm.{p}", "vector"),
        Rule(r"classifier\.2\.weight", "classifier.weight", "linear"),
        Rule(r"classifier\.2\.bias", "classifier.bias", "vector"),
    ],
    "keras": [
        Rule(r"stem_conv/kernel", _STEM + "patch_embeddings.weight", "conv_hwio"),
        Rule(r"stem_conv/bias", _STEM + "patch_embeddings.bias", "vector"),
        Rule(r"stem_layernorm/gamma", _STEM + "layernorm.weight", "vector"),
        Rule(r"stem_layernorm/beta", _STEM + "layernorm.bias", "vector"),
        Rule(r"downsampling_layernorm_(?P<i>\d+)/gamma", _DOWN + "0.weight", "vector", {"s": ("i", 1, 1)}),
        Rule(r"downsampling_layernorm_(?P<i>\d+)/beta", _DOWN + "0.bias", "vector", {"s": ("i", 1, 1)}),
        Rule(r"downsampling_conv_(?P<i>\d+)/kernel", _DOWN + "1.weight", "conv_hwio", {"s": ("i", 1, 1)}),
        Rule(r"downsampling_conv_(?P<i>\d+)/bias", _DOWN + "1.bias", "vector", {"s": ("i", 1, 1)}),
        Rule(rf"stage_{_S}_block_{_J}_depthwise_conv/kernel", _BLOCK + "dwconv.weight", "conv_hwio"),
        Rule(rf"stage_{_S}_block_{_J}_depthwise_conv/bias", _BLOCK + "dwconv.bias", "vector"),
        Rule(rf"stage_{_S}_block_{_J}_layernorm/gamma", _BLOCK + "layernorm.weight", "vector"),
        Rule(rf"stage_{_S}_block_{_J}_layernorm/beta", _BLOCK + "layernorm.bias", "vector"),
        Rule(rf"stage_{_S}_block_{_J}_pointwise_conv_1/kernel", _BLOCK + "pwconv1.weight", "dense_io"),
        Rule(rf"stage_{_S}_block_{_J}_pointwise_conv_1/bias", _BLOCK + "pwconv1.bias", "vector"),
        Rule(rf"stage_{_S}_block_{_J}_pointwise_conv_2/kernel", _BLOCK + "pwconv2.weight", "dense_io"),
        Rule(rf"stage_{_S}_block_{_J}_pointwise_conv_2/bias", _BLOCK + "pwconv2.bias", "vector"),
        # tf-keras names the LayerScale variable gamma; Keras 3 leaves it unnamed (variable, variable_N)
        Rule(rf"stage_{_S}_block_{_J}_layer_scale/(?:gamma|variable(?:_\d+)?)", _BLOCK + "layer_scale_parameter", "vector"),
        Rule(rf"stage_{_S}_block_{_J}_grn/gamma", _BLOCK + "grn.weight", "grn"),
        Rule(rf"stage_{_S}_block_{_J}_grn/beta", _BLOCK + "grn.bias", "grn"),
        Rule(r"head_layernorm/gamma", "{trunk}layernorm.weight", "vector"),
        Rule(r"head_layernorm/beta", "{trunk}layernorm.bias", "vector"),
        Rule(r"head_dense/kernel", "classifier.weight", "dense_io"),
        Rule(r"head_dense/bias", "classifier.bias", "vector"),
    ],
}


def _is_conv(a: np.ndarray) -> bool:
    return np.ndim(a) == 4


_OVERLAP_STEM = ("an overlapping stem (several strided 3x3 convs); a hub-layout ConvNeXt has a single "
                 "patchify conv (kernel = stride) followed by LayerNorm")
_HEAD_NORM_FIRST = ("head_norm_first=True: the final LayerNorm runs on the feature map before pooling; a hub-layout "
                    "ConvNeXt pools first and then normalises")
_HEAD_MLP = ("a head MLP (head.pre_logits.fc, timm's head_hidden_size); a hub-layout ConvNeXt's head is "
             "LayerNorm -> Linear only")

REFUSALS: dict[str, list[Refusal]] = {
    "timm": [
        Refusal(r"stem\.[1-9]\d*\.weight", _OVERLAP_STEM, _is_conv),
        Refusal(r"norm_pre\.(weight|bias)", _HEAD_NORM_FIRST),
        Refusal(r"head\.pre_logits\..*", _HEAD_MLP),
        Refusal(r"stages\.\d+\.blocks\.\d+\.shortcut\..*",
                "blocks with a projection shortcut (conv_mlp stages that change width); hub-layout blocks add the "
                "input unchanged"),
    ],
    "official": [
        Refusal(r"downsample_layers\.0\.[2-9]\.weight", _OVERLAP_STEM, _is_conv),
    ],
    "torchvision": [
        Refusal(r"features\.0\.[2-9]\.weight", _OVERLAP_STEM, _is_conv),
    ],
    "keras": [],
}


def _check_refusals(state: Mapping[str, np.ndarray], fmt: str, source: str) -> None:
    for refusal in REFUSALS.get(fmt, []):
        regex = re.compile(refusal.pattern)
        for name, array in state.items():
            if regex.fullmatch(name) and (refusal.when is None or refusal.when(array)):
                raise UnsupportedCheckpointError(f"{source}: cannot convert: {name} means {refusal.reason}")
    # RMSNorm and friends: a norm with a scale but no shift.
    for name in state:
        if fmt in ("timm", "official", "torchvision") and name.endswith("norm.weight"):
            if name[: -len("weight")] + "bias" not in state:
                raise UnsupportedCheckpointError(
                    f"{source}: cannot convert: {name} has no bias (an RMSNorm or a bias-free LayerNorm); "
                    f"a hub-layout ConvNeXt uses LayerNorm with a bias")


def canonical_name(name: str, fmt: str, trunk: str) -> tuple[str, str] | None:
    """(canonical name, layout) for a source name, or None when no rule of ``fmt`` matches it."""
    for rule in RULES[fmt]:
        m = rule.regex.fullmatch(name)  # type: ignore[attr-defined]
        if m is None:
            continue
        fields: dict[str, object] = {k: v for k, v in m.groupdict().items() if v is not None}
        for key, (group, div, offset) in rule.index.items():
            fields[key] = int(m.group(group)) // div + offset
        return rule.template.format(trunk=trunk, **fields), rule.layout
    return None


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
    if fmt == "hf":
        return dict(state)
    if fmt not in RULES:
        raise ValueError(f"unknown checkpoint format {fmt!r}; known: {', '.join(FORMATS)}")
    _check_refusals(state, fmt, source)
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

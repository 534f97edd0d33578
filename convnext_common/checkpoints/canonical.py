"""The config a canonical checkpoint implies, and the tensors a config implies.

``infer_config`` reads depths, widths, classes, V1/V2, layer scale on/off, input channels and
patch size from the shapes of canonical (transformers PyTorch) names, and refuses what the hub
layout cannot express (a 5x5 depthwise conv, an MLP ratio other than 4, ...) with a message
that says why. ``expected_shapes`` is the inverse: every canonical name and shape of a model
built from a config, used to check a converted checkpoint and to count parameters without
building a model.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from typing import Mapping

import numpy as np

from ..architecture import DWCONV_KERNEL, MLP_RATIO, backbone_channels, stage_specs
from ..config import ConvNextConfig, ConvNextV2Config
from ..heads import MASKED_IMAGE_MODELING, V2_HEADS, class_name
from ..masked_image import total_stride
from .errors import CheckpointError, UnsupportedCheckpointError
from .matching import require_finite

TRUNK_PREFIXES = ("convnext", "convnextv2")
#: which model class a checkpoint holds, by the tensors beside the trunk.
_LAYER = re.compile(r"encoder\.stages\.(\d+)\.layers\.(\d+)\.")
_STAGE = re.compile(r"encoder\.stages\.(\d+)\.")


@lru_cache(maxsize=1)
def imagenet1k_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k (ILSVRC-2012) class names in class-index order, as in the hub's configs."""
    text = resources.files("convnext_common").joinpath("data/imagenet1k_labels.txt").read_text(encoding="utf-8")
    labels = tuple(text.splitlines())
    if len(labels) != 1000:  # pragma: no cover - a broken install
        raise OSError(f"convnext_common/data/imagenet1k_labels.txt has {len(labels)} lines, expected 1000")
    return labels


def trunk_prefix_of(state: Mapping[str, np.ndarray]) -> str:
    """``"convnext."``, ``"convnextv2."`` or ``""`` (a base model or backbone checkpoint)."""
    for p in TRUNK_PREFIXES:
        if any(k.startswith(p + ".encoder.") or k.startswith(p + ".embeddings.") for k in state):
            return p + "."
    return ""


def head_of_state(state: Mapping[str, np.ndarray]) -> str:
    if any(k.startswith("decoder.") for k in state):
        return MASKED_IMAGE_MODELING
    if any(k.startswith("classifier.") for k in state):
        return "classification"
    if any(k.startswith("hidden_states_norms.") for k in state):
        return "backbone"
    return "base"


def _shape(state, name, source) -> tuple[int, ...]:
    if name not in state:
        raise CheckpointError(f"{source}: missing tensor {name}")
    return tuple(int(d) for d in np.shape(state[name]))


def infer_config(state: Mapping[str, np.ndarray], source: str = "checkpoint", layer_norm_eps: float = 1e-12,
                 imagenet_labels: bool = True) -> ConvNextConfig:
    """The config of the model that ``state`` (canonical names) belongs to.

    ``layer_norm_eps`` is the final pooled norm's epsilon: 1e-12 is transformers' default, foreign
    models (timm, official, torchvision, keras) use 1e-6. With ``imagenet_labels`` a 1000-class
    head gets the ImageNet-1k names as ``id2label``. Raises UnsupportedCheckpointError naming
    ``source`` and the reason when the hub layout cannot express the weights.
    """
    p = trunk_prefix_of(state)
    head = head_of_state(state)
    trunk = {k[len(p):]: v for k, v in state.items() if k.startswith(p)} if p else dict(state)

    out_c, in_c, kh, kw = _expect_ndim(trunk, "embeddings.patch_embeddings.weight", 4, source)
    if kh != kw:
        raise UnsupportedCheckpointError(
            f"{source}: the stem conv kernel is {kh}x{kw}; a hub-layout ConvNeXt has a square patchify stem "
            f"(kernel = stride = patch_size)")

    stages: set[int] = set()
    layers: dict[int, set[int]] = {}
    for k in trunk:
        m = _STAGE.match(k)
        if m:
            stages.add(int(m.group(1)))
        m = _LAYER.match(k)
        if m:
            layers.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    if not layers:
        raise CheckpointError(f"{source}: no encoder.stages.*.layers.* tensors: not a ConvNeXt checkpoint")
    num_stages = max(stages) + 1
    depths, widths = [], []
    for s in range(num_stages):
        # a stage may have no blocks (timm depths=(1, 0, 1, 1)); it still downsamples, and stage 0 is the stem's
        js = sorted(layers.get(s, ()))
        if js != list(range(len(js))):
            raise CheckpointError(f"{source}: stage {s} has blocks {js}, not numbered 0..{len(js) - 1}")
        depths.append(len(js))
        if js:
            widths.append(_expect_ndim(trunk, f"encoder.stages.{s}.layers.0.dwconv.weight", 4, source)[0])
        elif s == 0:
            widths.append(out_c)
        elif f"encoder.stages.{s}.downsampling_layer.1.weight" in trunk:
            widths.append(_expect_ndim(trunk, f"encoder.stages.{s}.downsampling_layer.1.weight", 4, source)[0])
        else:
            raise CheckpointError(f"{source}: stage {s} has neither blocks nor a downsampling layer (stages "
                                  f"{sorted(stages)} found)")
    if widths[0] != out_c:
        raise CheckpointError(f"{source}: the stem makes {out_c} channels but stage 0 has {widths[0]}")

    has_grn = any(".grn." in k for k in trunk)
    has_ls = any(k.endswith(".layer_scale_parameter") for k in trunk)
    if has_grn and has_ls:
        raise UnsupportedCheckpointError(
            f"{source}: blocks have both GRN and layer scale; a hub-layout ConvNeXt V2 has no layer scale")
    for s, depth in enumerate(depths):
        for j in range(depth):
            _check_block(trunk, s, j, widths[s], has_grn, has_ls, source)
        if s > 0:
            w = _expect_ndim(trunk, f"encoder.stages.{s}.downsampling_layer.1.weight", 4, source)
            if w != (widths[s], widths[s - 1], 2, 2):
                raise UnsupportedCheckpointError(
                    f"{source}: stage {s} downsamples with a conv of shape {list(w)}; a hub-layout ConvNeXt uses "
                    f"a 2x2 stride-2 conv ({widths[s]}, {widths[s - 1]}, 2, 2)")
    if any(k.startswith("encoder.stages.0.downsampling_layer.") for k in trunk):
        raise UnsupportedCheckpointError(
            f"{source}: stage 0 has a downsampling layer; in a hub-layout ConvNeXt only the stem reduces the "
            f"resolution before stage 0")

    kwargs: dict = dict(num_channels=in_c, patch_size=kh, num_stages=num_stages, depths=depths,
                        hidden_sizes=widths, layer_norm_eps=layer_norm_eps)
    if head == "classification":
        n, c = _expect_ndim(state, "classifier.weight", 2, source)
        if c != widths[-1]:
            raise CheckpointError(f"{source}: classifier.weight takes {c} features, the last stage has {widths[-1]}")
        kwargs["num_labels"] = n
        if n == 1000 and imagenet_labels:
            kwargs["id2label"] = dict(enumerate(imagenet1k_labels()))
    elif head == "backbone":
        stages = sorted({k.split(".")[1] for k in state if k.startswith("hidden_states_norms.")},
                        key=lambda name: (len(name), name))
        kwargs["out_features"] = stages
    elif head == MASKED_IMAGE_MODELING:
        kwargs.update(_decoder_fields(state, widths[-1], in_c, kh * 2 ** (num_stages - 1), has_grn, source))
    if has_grn:
        config: ConvNextConfig = ConvNextV2Config(**kwargs)
    else:
        config = ConvNextConfig(layer_scale_init_value=1e-6 if has_ls else 0.0, **kwargs)
    if p and p.rstrip(".") != config.model_type:
        raise CheckpointError(f"{source}: weights under '{p}' but the blocks are "
                              f"{'V2 (GRN)' if has_grn else 'V1 (no GRN)'}")
    config.architectures = [class_name(config, head)]
    return config


def _decoder_fields(state, last_width: int, channels: int, patch: int, has_grn: bool, source: str) -> dict:
    """The masked-image model's (FCMAE) decoder fields, from its tensors; refused where its shapes are
    not the official decoder's."""
    if not has_grn:
        raise UnsupportedCheckpointError(f"{source}: a masked-image decoder on a ConvNeXt V1 trunk; FCMAE "
                                         f"pre-trains ConvNeXt V2")
    dim, cin = _expect_ndim(state, "decoder.proj.weight", 4, source)[:2]
    if cin != last_width:
        raise CheckpointError(f"{source}: decoder.proj takes {cin} channels, the last stage has {last_width}")
    out = _expect_ndim(state, "decoder.pred.weight", 4, source)[0]
    if out != patch * patch * channels:
        raise UnsupportedCheckpointError(
            f"{source}: decoder.pred predicts {out} values per patch; the masked-image model reconstructs "
            f"patches of the trunk's stride ({patch}x{patch}x{channels} = {patch * patch * channels})")
    layers = sorted({int(k.split(".")[2]) for k in state if k.startswith("decoder.layers.")})
    if layers != list(range(len(layers))):
        raise CheckpointError(f"{source}: decoder blocks {layers}, not numbered 0..{len(layers) - 1}")
    return {"decoder_hidden_size": dim, "decoder_num_hidden_layers": len(layers)}


def _expect_ndim(state, name, ndim, source) -> tuple[int, ...]:
    shape = _shape(state, name, source)
    if len(shape) != ndim:
        raise CheckpointError(f"{source}: {name} has shape {list(shape)}, expected {ndim} dimensions")
    return shape


def _check_block(trunk, s, j, c, has_grn, has_ls, source) -> None:
    base = f"encoder.stages.{s}.layers.{j}."
    k = _expect_ndim(trunk, base + "dwconv.weight", 4, source)
    if k != (c, 1, DWCONV_KERNEL, DWCONV_KERNEL):
        raise UnsupportedCheckpointError(
            f"{source}: {base}dwconv.weight has shape {list(k)}; a hub-layout ConvNeXt uses a "
            f"{DWCONV_KERNEL}x{DWCONV_KERNEL} depthwise conv ({c}, 1, {DWCONV_KERNEL}, {DWCONV_KERNEL})")
    hidden = _expect_ndim(trunk, base + "pwconv1.weight", 2, source)[0]
    if hidden != MLP_RATIO * c:
        raise UnsupportedCheckpointError(
            f"{source}: block {s}.{j} has an MLP of {hidden} channels for {c}; a hub-layout ConvNeXt fixes the "
            f"MLP ratio at {MLP_RATIO}")
    if has_ls and base + "layer_scale_parameter" not in trunk:
        raise UnsupportedCheckpointError(
            f"{source}: block {s}.{j} has no layer scale while others do; the hub layout has it in all or none")
    if has_grn and base + "grn.weight" not in trunk:
        raise CheckpointError(f"{source}: block {s}.{j} has no GRN while others do")


def expected_shapes(config: ConvNextConfig, head: str = "classification") -> dict[str, tuple[int, ...]]:
    """Every canonical tensor name and shape of a model built from ``config``.

    ``head``: ``"classification"`` (trunk under ``convnext.``/``convnextv2.`` plus ``classifier``),
    ``"base"`` (trunk only, no prefix) or ``"backbone"`` (trunk plus ``hidden_states_norms``, no
    final norm).
    """
    if head not in V2_HEADS:
        raise ValueError(f"head must be one of {V2_HEADS}, got {head!r}")
    p = config.model_type + "." if head in ("classification", MASKED_IMAGE_MODELING) else ""
    c0 = config.hidden_sizes[0]
    shapes: dict[str, tuple[int, ...]] = {
        f"{p}embeddings.patch_embeddings.weight": (c0, config.num_channels, config.patch_size, config.patch_size),
        f"{p}embeddings.patch_embeddings.bias": (c0,),
        f"{p}embeddings.layernorm.weight": (c0,),
        f"{p}embeddings.layernorm.bias": (c0,),
    }
    v2 = config.model_type == "convnextv2"
    for s, spec in enumerate(stage_specs(config)):
        stage = f"{p}encoder.stages.{s}."
        if spec.downsamples:
            cin, cout, k = spec.in_channels, spec.out_channels, spec.stride
            shapes.update({stage + "downsampling_layer.0.weight": (cin,), stage + "downsampling_layer.0.bias": (cin,),
                           stage + "downsampling_layer.1.weight": (cout, cin, k, k),
                           stage + "downsampling_layer.1.bias": (cout,)})
        c, h = spec.out_channels, MLP_RATIO * spec.out_channels
        for j in range(spec.depth):
            b = f"{stage}layers.{j}."
            shapes.update({b + "dwconv.weight": (c, 1, DWCONV_KERNEL, DWCONV_KERNEL), b + "dwconv.bias": (c,),
                           b + "layernorm.weight": (c,), b + "layernorm.bias": (c,),
                           b + "pwconv1.weight": (h, c), b + "pwconv1.bias": (h,)})
            if v2:
                shapes.update({b + "grn.weight": (1, 1, 1, h), b + "grn.bias": (1, 1, 1, h)})
            shapes.update({b + "pwconv2.weight": (c, h), b + "pwconv2.bias": (c,)})
            if not v2 and config.layer_scale_init_value > 0:
                shapes[b + "layer_scale_parameter"] = (c,)
    last = config.hidden_sizes[-1]
    if head == "backbone":
        for stage, ch in zip(config.out_features, backbone_channels(config)):
            shapes[f"hidden_states_norms.{stage}.weight"] = (ch,)
            shapes[f"hidden_states_norms.{stage}.bias"] = (ch,)
    else:
        shapes[f"{p}layernorm.weight"] = (last,)
        shapes[f"{p}layernorm.bias"] = (last,)
    if head == "classification" and config.num_labels > 0:
        shapes["classifier.weight"] = (config.num_labels, last)
        shapes["classifier.bias"] = (config.num_labels,)
    if head == MASKED_IMAGE_MODELING:
        shapes.update(_decoder_shapes(config))
    return shapes


def _decoder_shapes(config: ConvNextConfig) -> dict[str, tuple[int, ...]]:
    d, h = config.decoder_hidden_size, MLP_RATIO * config.decoder_hidden_size
    out = total_stride(config) ** 2 * config.num_channels
    shapes = {"decoder.mask_token": (1, d, 1, 1), "decoder.proj.weight": (d, config.hidden_sizes[-1], 1, 1),
              "decoder.proj.bias": (d,)}
    for j in range(config.decoder_num_hidden_layers):
        b = f"decoder.layers.{j}."
        shapes.update({b + "dwconv.weight": (d, 1, DWCONV_KERNEL, DWCONV_KERNEL), b + "dwconv.bias": (d,),
                       b + "layernorm.weight": (d,), b + "layernorm.bias": (d,),
                       b + "pwconv1.weight": (h, d), b + "pwconv1.bias": (h,),
                       b + "grn.weight": (1, 1, 1, h), b + "grn.bias": (1, 1, 1, h),
                       b + "pwconv2.weight": (d, h), b + "pwconv2.bias": (d,)})
    shapes.update({"decoder.pred.weight": (out, d, 1, 1), "decoder.pred.bias": (out,)})
    return shapes


def count_parameters(config: ConvNextConfig, head: str = "classification") -> int:
    """Number of parameters of the model ``config`` describes, from the shapes alone."""
    return int(sum(int(np.prod(s)) for s in expected_shapes(config, head).values()))


def check_state_fits(state: Mapping[str, np.ndarray], config: ConvNextConfig, source: str = "checkpoint") -> str:
    """Raise CheckpointError unless ``state`` holds exactly the tensors of ``config``'s model, all finite;
    returns the head."""
    head = head_of_state(state)
    want = expected_shapes(config, head)
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    wrong = [f"{k} {list(np.shape(state[k]))} (config wants {list(want[k])})"
             for k in want if k in state and tuple(np.shape(state[k])) != want[k]]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
    if extra:
        problems.append(f"not in the model {len(extra)}: {', '.join(extra[:6])}{' ...' if len(extra) > 6 else ''}")
    if wrong:
        problems.append(f"wrong shape {len(wrong)}: {', '.join(wrong[:4])}{' ...' if len(wrong) > 4 else ''}")
    if problems:
        raise CheckpointError(f"{source}: the weights do not match the config: " + "; ".join(problems))
    require_finite(state, source)
    return head

"""timm's ConvNeXt checkpoints (source ``timm``): everything this project knows of timm, in one place.

- Names (``RULES``, ``REFUSALS``): ``stem.0/1``, ``stages.{s}.downsample.0/1``,
  ``stages.{s}.blocks.{j}.conv_dw|norm|mlp.fc1|mlp.fc2|mlp.grn|gamma``, ``head.norm``, ``head.fc``
  (``{s}`` stage, ``{j}`` block); with ``conv_mlp`` the fc weights are 1x1 convs (O, I, 1, 1); V2
  GRN weights are (C,); ``conv_bias=False`` leaves the spatial convs without bias
  (:func:`fill_bias_free_convs`).
- What timm says beside the tensors: a timm hub folder's ``config.json`` (:func:`read_timm_hub_config`,
  the one reader of such a file, also for hub ids and folders loaded with ``from_pretrained``) or a
  train.py checkpoint's ``arch`` and ``args`` (:func:`timm_train_config`); its labels and input size
  go into the converted config (:func:`apply_hub_config`), its evaluation transform into the
  preprocessor config (:func:`eval_transform_config`; :func:`timm_preprocessor_config` for the
  loaders of folders without a preprocessor_config.json).
- What timm computes that the tensors do not show (:func:`timm_computation`).

A folder written by timm (``save_for_hf`` / ``push_to_hf_hub``) has a ``config.json`` like::

    {"architecture": "convnext_tiny", "num_classes": 1000, "global_pool": "avg",
     "model_args": {"act_layer": "relu", ...}, "pretrained_cfg": {"mean": [...], "crop_pct": 0.95, ...},
     "label_names": [...], "label_descriptions": {...}}

timm builds the model as ``<architecture>(**model_args)``, where the architecture's own factory
function may set more (``test_convnext``: ``act_layer="gelu_tanh"``, ``norm_eps=1e-5``). So the
computation is the merge of ``TIMM_ARCHITECTURES[architecture]`` and ``model_args``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, MutableMapping, Optional

import numpy as np

from ...config import ConvNextConfig
from ..canonical import trunk_prefix_of
from ..computation import Computation
from ..errors import CheckpointError
from ..formats.torch_pickle import TorchCheckpoint
from ..preprocessing import IMAGENET_MEAN, IMAGENET_STD, fit_to_channels, imagenet_preprocessor_config
from .base import Source, SourceCheckpoint, imagenet_preprocessor
from .rules import BLOCK, DOWN, OVERLAP_STEM, STEM, J, P, Refusal, Rule, S, is_conv

#: timm's ConvNeXt architectures (timm 1.0), with the arguments their factory functions set that the
#: weights do not show (depths, widths, conv_mlp, GRN, layer scale, stems and heads show in the tensors).
TIMM_ARCHITECTURES: dict[str, dict[str, Any]] = {
    **{f"convnext_{size}": {} for size in (
        "atto", "atto_ols", "femto", "femto_ols", "pico", "pico_ols", "nano", "nano_ols", "tiny_hnf", "tiny",
        "small", "base", "large", "large_mlp", "xlarge")},
    "convnext_xxlarge": {"norm_eps": 1e-5},
    "convnext_zepto_rms": {"norm_layer": "simplenorm"},
    "convnext_zepto_rms_ols": {"norm_layer": "simplenorm"},
    "convnext_atto_rms": {"norm_layer": "rmsnorm2d"},
    **{f"convnextv2_{size}": {} for size in ("atto", "femto", "pico", "nano", "tiny", "small", "base", "large",
                                             "huge")},
    "test_convnext": {"norm_eps": 1e-5, "act_layer": "gelu_tanh"},
    "test_convnext2": {"norm_eps": 1e-5, "act_layer": "gelu_tanh"},
    "test_convnext3": {"norm_eps": 1e-5, "act_layer": "silu"},
}

#: timm's activation names (timm.layers.create_act) -> transformers' hidden_act for the same function;
#: names not here (elu, selu, prelu, hard_swish, ...) stay as they are, and hub_fields refuses them.
TIMM_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "quick_gelu": "quick_gelu", "relu": "relu",
                    "relu6": "relu6", "silu": "silu", "swish": "silu", "mish": "mish", "sigmoid": "sigmoid",
                    "tanh": "tanh", "leaky_relu": "leaky_relu", "identity": "linear"}
#: timm's norm_layer names that build LayerNorm.
TIMM_LAYER_NORMS = ("layernorm", "layernorm2d")

#: ConvNeXt arguments that the tensors show (checked by canonical.py / the pipeline) or that only matter in
#: training; the others (act_layer, norm_layer, norm_eps, global_pool, output_stride, patch_size,
#: stem_type) go into the Computation. Anything else is refused, not ignored.
SHOWN_BY_TENSORS = ("in_chans", "num_classes", "depths", "dims", "kernel_sizes", "ls_init_value", "head_norm_first",
                    "head_hidden_size", "conv_mlp", "conv_bias", "use_grn")
TRAINING_ONLY = ("drop_rate", "drop_path_rate", "head_init_scale")
COMPUTATION_ARGS = ("act_layer", "norm_layer", "norm_eps", "global_pool", "output_stride", "patch_size", "stem_type")

#: PIL resample codes of timm's interpolation names.
_RESAMPLE = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}


@dataclass
class TimmHubConfig:
    """A timm hub folder's ``config.json``: the facts that build the model, and its preprocessing."""

    path: Path
    architecture: Optional[str]
    num_classes: Optional[int]
    model_args: dict[str, Any] = field(default_factory=dict)  # global_pool folded in
    label_names: Optional[list[str]] = None      # per class index, descriptions where the file has them
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)
    preprocessor: Optional[dict] = None          # transformers' ConvNextImageProcessor settings (timm's eval transform)


def is_timm_config(d: Any) -> bool:
    """Whether a parsed config.json is timm's (transformers' has ``model_type`` instead)."""
    return isinstance(d, dict) and "model_type" not in d and any(
        k in d for k in ("architecture", "model_args", "pretrained_cfg"))


def read_timm_hub_config(path: str | Path) -> TimmHubConfig:
    """Read timm's ``config.json`` (a file or the folder holding it); CheckpointError naming the file
    and field when it is not one."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: cannot be read ({e})") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not is_timm_config(d):
        raise CheckpointError(f"{path}: not a timm config.json (no 'architecture', 'model_args' or 'pretrained_cfg')")
    return timm_hub_config_from_dict(d, path)


def timm_hub_config_from_dict(d: dict, path: Path) -> TimmHubConfig:
    def expect(name: str, value, kind, what: str):
        if value is not None and not isinstance(value, kind):
            raise CheckpointError(f"{path}: {name} must be {what}, got {value!r}")
        return value

    legacy = "pretrained_cfg" not in d and "model_args" not in d  # timm's old single-dict layout
    pretrained_cfg = expect("pretrained_cfg", d if legacy else d.get("pretrained_cfg"), dict, "an object") or {}
    architecture = expect("architecture", d.get("architecture"), str, "a string")
    if architecture is not None:
        architecture = timm_architecture(d)
    num_classes = d.get("num_classes", pretrained_cfg.get("num_classes"))
    if num_classes is not None and (not isinstance(num_classes, int) or isinstance(num_classes, bool)
                                    or num_classes < 0):
        raise CheckpointError(f"{path}: num_classes must be a non-negative int, got {num_classes!r}")
    model_args = dict(expect("model_args", d.get("model_args"), dict, "an object") or {})
    if "global_pool" in d and "global_pool" not in model_args:  # informational in timm, but what it trained with
        model_args["global_pool"] = d["global_pool"]
    labels = _label_names(d.get("label_names", pretrained_cfg.get("label_names")),
                          d.get("label_descriptions", pretrained_cfg.get("label_descriptions")), path)
    return TimmHubConfig(path, architecture, num_classes, model_args, labels, pretrained_cfg,
                         eval_transform_config(pretrained_cfg))


def timm_train_config(ckpt: TorchCheckpoint, path: Path) -> TimmHubConfig:
    """What a timm train.py checkpoint says of its model: ``arch`` and the command line's
    ``model_kwargs`` and ``gp`` (global pool), which train.py passed to ``create_model``."""
    args = ckpt.args
    model_args = dict(args.get("model_kwargs") or {}) if isinstance(args.get("model_kwargs") or {}, dict) else {}
    if args.get("gp"):
        model_args["global_pool"] = args["gp"]
    num_classes = args.get("num_classes") if isinstance(args.get("num_classes"), int) else None
    return TimmHubConfig(Path(f"{path} (its arch and args)"), train_architecture(ckpt).split(".", 1)[0],
                         num_classes, model_args)


def train_architecture(ckpt: TorchCheckpoint) -> Optional[str]:
    """timm train.py's ``arch`` entry of a training checkpoint (None when it has none)."""
    arch = ckpt.fields.get("arch")
    return arch if isinstance(arch, str) else None


def _label_names(names, descriptions, path: Path) -> Optional[list[str]]:
    if names is None:
        return None
    if isinstance(names, dict):
        try:
            by_index = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise CheckpointError(f"{path}: label_names keys must be class indices") from None
        names = [by_index.get(i, f"LABEL_{i}") for i in range(max(by_index, default=-1) + 1)]
    if not isinstance(names, (list, tuple)):
        raise CheckpointError(f"{path}: label_names must be a list or an object, got {type(names).__name__}")
    descriptions = descriptions if isinstance(descriptions, dict) else {}
    return [str(descriptions.get(n, n)) for n in names]


#: timm's defaults (timm.data.constants) for what a pretrained_cfg leaves out.
TIMM_DEFAULT_INPUT_SIZE = (3, 224, 224)
TIMM_DEFAULT_CROP_PCT = 0.875


def eval_transform_config(cfg: dict) -> dict:
    """transformers' ConvNextImageProcessor settings for timm's evaluation transform of a model with
    ``pretrained_cfg`` ``cfg``: what ``timm.data.resolve_model_data_config`` + ``create_transform``
    give a timm user by default (``input_size``, ``crop_pct``, ``interpolation``, ``mean``, ``std``;
    timm's defaults for fields left out). ``test_input_size`` is only used by timm's validate.py.

    Limits of ConvNextImageProcessor (it is transformers' processor): a non-square input size uses
    its last side; from 384 px up it warps the image to a square instead of resizing and cropping;
    its centre crop rounds an odd margin down where torchvision rounds half to even (one pixel of
    shift on such images); timm's ``crop_mode`` other than ``center`` is not expressed.
    """
    cfg = cfg if isinstance(cfg, dict) else {}

    def floats(key: str, default) -> list[float]:
        try:
            return [float(v) for v in cfg[key]]
        except (KeyError, TypeError, ValueError):
            return list(default)

    pre = imagenet_preprocessor_config(floats("mean", IMAGENET_MEAN), floats("std", IMAGENET_STD))
    size, crop = cfg.get("input_size"), cfg.get("crop_pct")
    valid_size = isinstance(size, (list, tuple)) and size and isinstance(size[-1], int) and size[-1] > 0
    pre["size"] = {"shortest_edge": int(size[-1]) if valid_size else TIMM_DEFAULT_INPUT_SIZE[-1]}
    valid_crop = isinstance(crop, (int, float)) and not isinstance(crop, bool) and crop > 0
    pre["crop_pct"] = float(crop) if valid_crop else TIMM_DEFAULT_CROP_PCT
    pre["resample"] = _RESAMPLE.get(cfg.get("interpolation"), 3)
    return pre


def timm_computation(architecture: Optional[str], model_args: dict, patch_size: int, origin: str) -> Computation:
    """What timm computes for ``architecture(**model_args)`` whose stem kernel is ``patch_size``.

    ``architecture`` None: a bare state dict, built with timm's defaults. ``origin`` names the
    file the arguments come from, for messages.
    """
    comp = Computation()
    if architecture is not None and architecture not in TIMM_ARCHITECTURES:
        comp.unknown.append((f"{origin} architecture", f"timm architecture {architecture!r} is not one whose "
                             f"activation and norms this converter knows; pass config=... to state them"))
    args = {**TIMM_ARCHITECTURES.get(architecture or "", {}), **model_args}
    where = {k: f"{origin} model_args.{k}" if k in model_args else f"timm's {architecture}" for k in args}
    for key in args:
        if key not in SHOWN_BY_TENSORS + TRAINING_ONLY + COMPUTATION_ARGS:
            comp.unknown.append((where[key], f"timm argument {key}={args[key]!r} is not one this converter knows; "
                                 f"it may change the computation"))
    act = args.get("act_layer", "gelu")
    if not isinstance(act, str):
        comp.unknown.append((where["act_layer"], f"act_layer {act!r} is not a timm activation name"))
    else:
        comp.state("activation", TIMM_ACTIVATIONS.get(act.lower(), act), where.get("act_layer", origin))
    norm = args.get("norm_layer") or "layernorm"
    comp.state("norm", "layernorm" if norm in TIMM_LAYER_NORMS else str(norm), where.get("norm_layer", origin))
    eps = args.get("norm_eps")
    if eps is not None:
        comp.state("norm_eps", float(eps), where["norm_eps"])
        comp.state("final_norm_eps", float(eps), where["norm_eps"])  # timm's head norm is the same layer
    pool = args.get("global_pool", "avg")
    comp.state("pooling", pool if pool else None, where.get("global_pool", origin))
    output_stride = args.get("output_stride", 32)
    stem_stride = patch_size if args.get("stem_type", "patch") == "patch" else 4
    stride0, dilations = timm_stage_schedule(stem_stride, output_stride)
    comp.state("first_stage_stride", stride0, where.get("patch_size", f"{origin} (stem patch size {patch_size})"))
    comp.state("stage_dilations", dilations,
               where.get("output_stride", where.get("patch_size", f"{origin} (stem patch size {patch_size})")))
    return comp


def timm_stage_schedule(stem_stride: int, output_stride: int = 32, num_stages: int = 4) -> tuple[int, tuple[int, ...]]:
    """(stage 0's stride, per-stage dilation) of timm's ConvNeXt: each stage after the first strides
    by 2 until the total stride reaches ``output_stride``; from then on timm dilates instead. A
    patch-8 stem reaches 32 after stage 2, so stage 3 is dilated."""
    curr, dilation, stride0, dilations = stem_stride, 1, 1, []
    for i in range(num_stages):
        stride = 2 if curr == 2 or i > 0 else 1
        if curr >= output_stride and stride > 1:
            dilation *= stride
            stride = 1
        if i == 0:
            stride0 = stride
        curr *= stride
        dilations.append(dilation)
    return stride0, tuple(dilations)


# --- timm's config.json where the hub loaders meet it (identify.py, pretrained.py) ----------------
def timm_architecture(d: dict) -> str:
    """``convnext_tiny`` for ``convnext_tiny`` or ``convnext_tiny.fb_in1k`` (the tag is not the model)."""
    return str(d.get("architecture") or "").split(".")[0]


def is_timm_convnext(d: dict) -> bool:
    """timm's ConvNeXt family: convnext_*, convnextv2_* (all built by timm's ConvNeXt class)."""
    return timm_architecture(d).startswith("convnext")


def is_timm_config_file(path: Path) -> bool:
    try:
        return path.is_file() and is_timm_config(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False


def timm_preprocessor_config(d: dict, path: Path = Path("config.json")) -> dict:
    """transformers' ``preprocessor_config.json`` for timm's default evaluation transform of the
    config.json ``d``, with one mean and std per input channel (``model_args.in_chans``, else
    ``input_size[0]``), as the converter writes it for the same folder."""
    timm = timm_hub_config_from_dict(d, path)
    channels = timm.model_args.get("in_chans") or (timm.pretrained_cfg.get("input_size") or (3,))[0]
    return fit_to_channels(timm.preprocessor, int(channels), notes=[])


#: timm pretrained tags of the DINOv3-distilled ConvNeXts (``convnext_tiny.dinov3_lvd1689m``, ``.eupe_lvd1689m``)
TIMM_DINOV3_TAGS = ("dinov3", "eupe")


def is_timm_dinov3(pretrained_cfg: dict) -> bool:
    """Whether a timm folder's pretrained_cfg names a DINOv3-distilled tag."""
    names = " ".join(str(pretrained_cfg.get(k) or "") for k in ("tag", "hf_hub_id", "architecture"))
    return any(tag in names for tag in TIMM_DINOV3_TAGS)


# --- what the converted config takes from timm ------------------------------------------------------
def apply_hub_config(config: ConvNextConfig, head: str, timm: Optional[TimmHubConfig], notes: list[str]) -> None:
    """A timm config's num_classes must agree with the weights; its label names become id2label and
    its evaluation input size the config's image_size."""
    if timm is None:
        return
    if timm.preprocessor is not None:
        config.image_size = timm.preprocessor["size"]["shortest_edge"]
    classes = config.num_labels if head == "classification" else 0
    if timm.num_classes is not None and timm.num_classes != classes:
        raise CheckpointError(f"{timm.path}: num_classes is {timm.num_classes} but the weights have "
                              f"{classes} classes")
    if timm.label_names is not None and classes:
        if len(timm.label_names) != config.num_labels:
            notes.append(f"{timm.path}: {len(timm.label_names)} label_names for {config.num_labels} classes; ignored")
            return
        config.id2label = dict(enumerate(timm.label_names))
        config.label2id = {name: i for i, name in config.id2label.items()}


#: canonical names of the spatial convolutions (stem, downsampling, depthwise): the ones timm builds
#: without bias when ``conv_bias=False`` (its MLPs keep theirs).
_SPATIAL_CONV_SUFFIXES = ("embeddings.patch_embeddings.weight", "downsampling_layer.1.weight", "dwconv.weight")


def fill_bias_free_convs(state: MutableMapping[str, np.ndarray]) -> int:
    """Give zero biases to the spatial convolutions of a model built without them (timm's
    ``conv_bias=False``): the same outputs in a layout where every conv has a bias. Only when *every*
    spatial conv lacks its bias; a file missing some of them is left for the config check to report.
    Canonical names, whichever source they came from. Returns the number of biases written."""
    convs = [k for k in state if k.endswith(_SPATIAL_CONV_SUFFIXES)]
    missing = [k for k in convs if k[: -len("weight")] + "bias" not in state]
    if not missing or len(missing) != len(convs):
        return 0
    for k in missing:
        state[k[: -len("weight")] + "bias"] = np.zeros(np.shape(state[k])[0], np.asarray(state[k]).dtype)
    return len(missing)


# --- the source -------------------------------------------------------------------------------------
RULES = (
        Rule(rf"stem\.0\.{P}", STEM + "patch_embeddings.{p}"),
        Rule(rf"stem\.1\.{P}", STEM + "layernorm.{p}", "vector"),
        Rule(rf"stages\.{S}\.downsample\.0\.{P}", DOWN + "0.{p}", "vector"),
        Rule(rf"stages\.{S}\.downsample\.1\.{P}", DOWN + "1.{p}"),
        Rule(rf"stages\.{S}\.blocks\.{J}\.conv_dw\.{P}", BLOCK + "dwconv.{p}"),
        Rule(rf"stages\.{S}\.blocks\.{J}\.norm\.{P}", BLOCK + "layernorm.{p}", "vector"),
        Rule(rf"stages\.{S}\.blocks\.{J}\.mlp\.fc1\.weight", BLOCK + "pwconv1.weight", "linear"),
        Rule(rf"stages\.{S}\.blocks\.{J}\.mlp\.fc1\.bias", BLOCK + "pwconv1.bias", "vector"),
        Rule(rf"stages\.{S}\.blocks\.{J}\.mlp\.fc2\.weight", BLOCK + "pwconv2.weight", "linear"),
        Rule(rf"stages\.{S}\.blocks\.{J}\.mlp\.fc2\.bias", BLOCK + "pwconv2.bias", "vector"),
        Rule(rf"stages\.{S}\.blocks\.{J}\.mlp\.grn\.(?:weight|gamma)", BLOCK + "grn.weight", "grn"),
        Rule(rf"stages\.{S}\.blocks\.{J}\.mlp\.grn\.(?:bias|beta)", BLOCK + "grn.bias", "grn"),
        Rule(rf"stages\.{S}\.blocks\.{J}\.gamma", BLOCK + "layer_scale_parameter", "vector"),
        Rule(rf"head\.norm\.{P}", "{trunk}layernorm.{p}", "vector"),
        Rule(r"head\.fc\.weight", "classifier.weight", "linear"),
        Rule(r"head\.fc\.bias", "classifier.bias", "vector"),
)

REFUSALS = (
        Refusal(r"stem\.[1-9]\d*\.weight", OVERLAP_STEM, is_conv),
        Refusal(r"norm_pre\.(weight|bias)", "head_norm_first=True: the final LayerNorm runs on the feature map "
                "before pooling; a hub-layout ConvNeXt pools first and then normalises"),
        Refusal(r"head\.pre_logits\..*", "a head MLP (head.pre_logits.fc, timm's head_hidden_size); a hub-layout "
                "ConvNeXt's head is LayerNorm -> Linear only"),
        Refusal(r"stages\.\d+\.blocks\.\d+\.shortcut\..*",
                "blocks with a projection shortcut (conv_mlp stages that change width); hub-layout blocks add the "
                "input unchanged"),
)


def _metadata(inp: SourceCheckpoint, ckpt: Optional[TorchCheckpoint]) -> None:
    """A timm hub folder's config.json, or what a timm train.py checkpoint says of its model."""
    if inp.hub_dir is not None and is_timm_config_file(inp.hub_dir / "config.json"):
        inp.timm = read_timm_hub_config(inp.hub_dir / "config.json")
    elif ckpt is not None and train_architecture(ckpt) is not None:
        inp.timm = timm_train_config(ckpt, inp.weights_file)


def _computation(inp: SourceCheckpoint, state: Mapping, stated: Optional[TimmHubConfig]) -> Computation:
    stated = stated or inp.timm
    stem = trunk_prefix_of(state) + "embeddings.patch_embeddings.weight"
    patch = int(np.shape(state[stem])[-1]) if stem in state else 4
    if stated is None:
        return timm_computation(None, {}, patch, str(inp.weights_file))
    return timm_computation(stated.architecture, stated.model_args, patch, str(stated.path))


def _preprocessor(inp: SourceCheckpoint, channels: int, notes: list[str]) -> Optional[dict]:
    if inp.timm is not None and inp.timm.preprocessor is not None:
        return fit_to_channels(inp.timm.preprocessor, channels, notes)
    return imagenet_preprocessor(inp, channels, notes)


SOURCE = Source("timm", "timm", signature=(r"stem\.0\.weight", r"stages\.\d+\.blocks\.\d+\.conv_dw\.weight"),
                rules=RULES, refusals=REFUSALS, norms_have_bias=True, metadata=_metadata,
                computation=_computation, preprocessor=_preprocessor)

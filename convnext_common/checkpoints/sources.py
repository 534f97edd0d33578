"""Every checkpoint source the converter reads, as one table: ``SOURCES``.

A ``Source`` says everything that is particular to one library's checkpoints:

- ``name``: what ``--from`` takes, and the format name in results and messages;
- ``signature``: tensor names only that library writes (``detect.detect_format`` scores every
  source's signature; the best match wins);
- ``rules`` / ``refusals``: its names -> canonical (transformers PyTorch) names and layouts, and the
  names that mean a part the hub layout cannot express (rules.py); no rules: already canonical;
- ``norms_have_bias``: its norms are LayerNorms with a bias, so a scale without a shift is another
  kind of norm (RMSNorm) and is refused;
- ``read_h5``: how an HDF5 file in its layout is read (``detect.h5_kind`` tells the layout);
- ``metadata``: what is read beside the tensors (a timm folder's config.json, a training
  checkpoint's ``arch``);
- ``computation``: what the source computes beyond its tensors (computation.py), None when the
  config is already in hub terms;
- ``preprocessor``: the preprocessor_config.json the converted folder gets.

Adding a source: write its rules (and refusals) below, a reader for whatever it stores beside the
tensors when the defaults (nothing; LayerNorm eps 1e-6, GELU, average pooling; ImageNet statistics)
do not hold, and add one ``Source(...)`` entry to ``SOURCES``. Detection, ``--from``, the mapping,
the config and the preprocessing then follow from the entry; a test that converts a small file
written by the library itself (tests/fixtures, with the script that wrote it) shows it works.

Sources (source names, with ``{s}`` stage, ``{j}`` block):

- ``hf``: transformers; already canonical (``tf_model.h5``: h5.py).
- ``timm``: ``stem.0/1``, ``stages.{s}.downsample.0/1``, ``stages.{s}.blocks.{j}.conv_dw|norm|mlp.fc1|
  mlp.fc2|mlp.grn|gamma``, ``head.norm``, ``head.fc``; with ``conv_mlp`` the fc weights are
  1x1 convs (O, I, 1, 1); V2 GRN weights are (C,).
- ``official``: facebookresearch ConvNeXt / ConvNeXt-V2: ``downsample_layers.0`` is the stem,
  ``downsample_layers.{s}`` (s >= 1) the downsampling, ``stages.{s}.{j}.dwconv|norm|pwconv1|
  pwconv2|gamma|grn.gamma|grn.beta``, ``norm``, ``head``.
- ``fcmae``: the official ConvNeXt-V2 pre-training checkpoints (``convnextv2_*_1k_224_fcmae.pt``):
  ``encoder.`` + the official names with MinkowskiEngine kernels (``.kernel`` (k*k, in, out) or
  (k*k, C)), ``.ln.``/``.linear.`` wrappers and (1, C) biases; ``proj``, ``mask_token``,
  ``decoder.{j}``, ``pred`` -> ``decoder.*`` of ConvNextV2ForMaskedImageModeling.
- ``torchvision``: ``features.0`` stem, ``features.{2s+1}.{j}.block.{0,2,3,5}`` and
  ``layer_scale`` (C, 1, 1), ``features.{2s}`` downsampling, ``classifier.0`` norm, ``classifier.2``.
- ``dinov3``, ``dinov3-official``: transformers' DINOv3 ConvNeXt folders and facebookresearch/dinov3's
  ``.pth`` files (dinov3_checkpoints.py).
- ``keras``: keras-applications h5 weight names with the model-name prefix removed
  (see keras_applications.py): ``stem_conv/kernel``, ``stage_{s}_block_{j}_depthwise_conv/kernel``,
  ``downsampling_conv_{i}`` (stage i + 1), ``head_dense/kernel``; conv kernels HWIO, dense (in, out).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional

import numpy as np

from ..config import ConvNextConfig, load_config
from ..hub import PREPROCESSOR_NAME
from .computation import Computation
from .dinov3_checkpoints import (
    DINOV3_PREPROCESSOR, OFFICIAL_SIGNATURE, TRANSFORMERS_RULES, TRANSFORMERS_SIGNATURE, drop_duplicate_output_norms,
)
from .errors import CheckpointError
from .h5 import load_h5_state_dict
from .infer import trunk_prefix_of
from .io import TorchCheckpoint
from .keras_applications import KerasWeights, normalization_stats, read_keras_h5
from .preprocessing import fit_to_channels, imagenet_preprocessor_config
from .rules import Refusal, Rule
from .timm_config import TimmHubConfig, is_timm_config, read_timm_hub_config, timm_computation, timm_train_config


@dataclass
class SourceCheckpoint:
    """A checkpoint as read, in its source's names, with what was read beside it."""

    state: dict
    fmt: str
    weights_file: Path
    hub_dir: Optional[Path] = None          # a hub-layout folder: its config.json and preprocessor config
    keras: Optional[KerasWeights] = None    # a keras-applications file: the roles of its other layers
    timm: Optional[TimmHubConfig] = None    # a timm folder's config.json or train.py's arch and args
    entry: Optional[str] = None             # the training checkpoint's entry the weights came from
    other_entries: list[str] = field(default_factory=list)


# --- what each source stores beside its tensors ---------------------------------------------------
def _no_metadata(inp: SourceCheckpoint, ckpt: Optional[TorchCheckpoint]) -> None:
    return None


def _fixed_computation(inp: SourceCheckpoint, state: Mapping, stated: Optional[TimmHubConfig]) -> Computation:
    return Computation()  # GELU, LayerNorm eps 1e-6, average pooling: fixed in the library's code


def _imagenet_preprocessor(inp: SourceCheckpoint, channels: int, notes: list[str]) -> Optional[dict]:
    # the ImageNet ConvNeXts of these libraries use it
    return fit_to_channels(imagenet_preprocessor_config(), channels, notes)


def is_timm_config_file(path: Path) -> bool:
    try:
        return path.is_file() and is_timm_config(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False


def _hf_read_h5(file: Path, hub_dir: Optional[Path], config: Optional[ConvNextConfig]) -> SourceCheckpoint:
    if config is None and hub_dir is not None and (hub_dir / "config.json").is_file():
        config = load_config(hub_dir)
    return SourceCheckpoint(dict(load_h5_state_dict(file, config=config)), "hf", file, hub_dir)


def _hf_computation(inp: SourceCheckpoint, state: Mapping, stated: Optional[TimmHubConfig]) -> None:
    return None  # its config.json is already in hub terms


def _hf_preprocessor(inp: SourceCheckpoint, channels: int, notes: list[str]) -> Optional[dict]:
    """A hub folder's own preprocessor config, verbatim."""
    if inp.hub_dir is None or not (inp.hub_dir / PREPROCESSOR_NAME).is_file():
        return None
    text = (inp.hub_dir / PREPROCESSOR_NAME).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{inp.hub_dir / PREPROCESSOR_NAME}: not valid JSON ({e.msg})") from None


def _timm_metadata(inp: SourceCheckpoint, ckpt: Optional[TorchCheckpoint]) -> None:
    """A timm hub folder's config.json, or what a timm train.py checkpoint says of its model."""
    if inp.hub_dir is not None and is_timm_config_file(inp.hub_dir / "config.json"):
        inp.timm = read_timm_hub_config(inp.hub_dir / "config.json")
    elif ckpt is not None and ckpt.architecture is not None:
        inp.timm = timm_train_config(ckpt, inp.weights_file)


def _timm_computation(inp: SourceCheckpoint, state: Mapping, stated: Optional[TimmHubConfig]) -> Computation:
    stated = stated or inp.timm
    stem = trunk_prefix_of(state) + "embeddings.patch_embeddings.weight"
    patch = int(np.shape(state[stem])[-1]) if stem in state else 4
    if stated is None:
        return timm_computation(None, {}, patch, str(inp.weights_file))
    return timm_computation(stated.architecture, stated.model_args, patch, str(stated.path))


def _timm_preprocessor(inp: SourceCheckpoint, channels: int, notes: list[str]) -> Optional[dict]:
    if inp.timm is not None and inp.timm.preprocessor is not None:
        return fit_to_channels(inp.timm.preprocessor, channels, notes)
    return _imagenet_preprocessor(inp, channels, notes)


def _keras_read_h5(file: Path, hub_dir: Optional[Path], config: Optional[ConvNextConfig]) -> SourceCheckpoint:
    keras = read_keras_h5(file)
    return SourceCheckpoint(keras.weights, "keras", file, None, keras)


def _keras_computation(inp: SourceCheckpoint, state: Mapping, stated: Optional[TimmHubConfig]) -> Computation:
    comp = Computation()
    if inp.keras is not None and not inp.keras.top:
        comp.state("pooling", inp.keras.pooling, f"{inp.weights_file} (include_top=False, pooling="
                                                 f"{inp.keras.pooling!r} from its layers)")
    return comp


def _keras_preprocessor(inp: SourceCheckpoint, channels: int, notes: list[str]) -> Optional[dict]:
    """The model's own input Normalization layer, as image_mean / image_std."""
    if inp.keras is None:
        return _imagenet_preprocessor(inp, channels, notes)
    if not inp.keras.preprocessing:
        notes.append("the keras model has no input Normalization layer (include_preprocessing=False): no "
                     "preprocessor_config.json written; it takes the inputs its training pipeline made")
        return None
    return fit_to_channels(imagenet_preprocessor_config(*normalization_stats(inp.keras.normalization)), channels,
                           notes)


@dataclass(frozen=True)
class Source:
    """One library's checkpoints: see the module docstring."""

    name: str
    library: str
    signature: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    refusals: tuple[Refusal, ...] = ()
    norms_have_bias: bool = False
    read_h5: Optional[Callable[[Path, Optional[Path], Optional[ConvNextConfig]], SourceCheckpoint]] = None
    metadata: Callable[[SourceCheckpoint, Optional[TorchCheckpoint]], None] = _no_metadata
    computation: Callable[[SourceCheckpoint, Mapping, Optional[TimmHubConfig]], Optional[Computation]] = \
        _fixed_computation
    preprocessor: Callable[[SourceCheckpoint, int, list[str]], Optional[dict]] = _imagenet_preprocessor


# --- key mappings -----------------------------------------------------------------------------------
_P = r"(?P<p>weight|bias)"
_S, _J = r"(?P<s>\d+)", r"(?P<j>\d+)"
_BLOCK = "{trunk}encoder.stages.{s}.layers.{j}."
_DOWN = "{trunk}encoder.stages.{s}.downsampling_layer."
_STEM = "{trunk}embeddings."

_TIMM_RULES = (
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
)

_OFFICIAL_RULES = (
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
)

# The official FCMAE pre-training checkpoints (models/fcmae.py): the encoder is SparseConvNeXtV2 on
# MinkowskiEngine (kernels (k*k, in, out) / (k*k, C), ``.ln.`` / ``.linear.`` wrappers, (1, C) biases
# and GRN parameters); proj, mask_token, decoder.{j} (dense V2 blocks) and pred are the decoder.
_FCMAE_BLOCK = "convnextv2.encoder.stages.{s}.layers.{j}."
_FCMAE_DOWN = "convnextv2.encoder.stages.{s}.downsampling_layer."
_FCMAE_DECODER = "decoder.layers.{j}."
_FCMAE_RULES = (
        Rule(rf"encoder\.downsample_layers\.0\.0\.{_P}", "convnextv2.embeddings.patch_embeddings.{p}"),
        Rule(rf"encoder\.downsample_layers\.0\.1\.{_P}", "convnextv2.embeddings.layernorm.{p}", "vector"),
        Rule(rf"encoder\.downsample_layers\.{_S}\.0\.ln\.{_P}", _FCMAE_DOWN + "0.{p}", "vector"),
        Rule(rf"encoder\.downsample_layers\.{_S}\.1\.kernel", _FCMAE_DOWN + "1.weight", "me_conv"),
        Rule(rf"encoder\.downsample_layers\.{_S}\.1\.bias", _FCMAE_DOWN + "1.bias", "vector"),
        Rule(rf"encoder\.stages\.{_S}\.{_J}\.dwconv\.kernel", _FCMAE_BLOCK + "dwconv.weight", "me_depthwise"),
        Rule(rf"encoder\.stages\.{_S}\.{_J}\.dwconv\.bias", _FCMAE_BLOCK + "dwconv.bias", "vector"),
        Rule(rf"encoder\.stages\.{_S}\.{_J}\.norm\.ln\.{_P}", _FCMAE_BLOCK + "layernorm.{p}", "vector"),
        Rule(rf"encoder\.stages\.{_S}\.{_J}\.pwconv(?P<n>[12])\.linear\.weight", _FCMAE_BLOCK + "pwconv{n}.weight",
             "linear"),
        Rule(rf"encoder\.stages\.{_S}\.{_J}\.pwconv(?P<n>[12])\.linear\.bias", _FCMAE_BLOCK + "pwconv{n}.bias",
             "vector"),
        Rule(rf"encoder\.stages\.{_S}\.{_J}\.grn\.gamma", _FCMAE_BLOCK + "grn.weight", "grn"),
        Rule(rf"encoder\.stages\.{_S}\.{_J}\.grn\.beta", _FCMAE_BLOCK + "grn.bias", "grn"),
        Rule(rf"proj\.{_P}", "decoder.proj.{p}"),
        Rule(r"mask_token", "decoder.mask_token"),
        Rule(rf"decoder\.{_J}\.dwconv\.{_P}", _FCMAE_DECODER + "dwconv.{p}"),
        Rule(rf"decoder\.{_J}\.norm\.{_P}", _FCMAE_DECODER + "layernorm.{p}", "vector"),
        Rule(rf"decoder\.{_J}\.pwconv(?P<n>[12])\.weight", _FCMAE_DECODER + "pwconv{n}.weight", "linear"),
        Rule(rf"decoder\.{_J}\.pwconv(?P<n>[12])\.bias", _FCMAE_DECODER + "pwconv{n}.bias", "vector"),
        Rule(rf"decoder\.{_J}\.grn\.gamma", _FCMAE_DECODER + "grn.weight", "grn"),
        Rule(rf"decoder\.{_J}\.grn\.beta", _FCMAE_DECODER + "grn.bias", "grn"),
        Rule(rf"pred\.{_P}", "decoder.pred.{p}"),
)

_TORCHVISION_RULES = (
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
)

_KERAS_RULES = (
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
)


def _is_conv(a: np.ndarray) -> bool:
    return np.ndim(a) == 4


_OVERLAP_STEM = ("an overlapping stem (several strided 3x3 convs); a hub-layout ConvNeXt has a single "
                 "patchify conv (kernel = stride) followed by LayerNorm")
_HEAD_NORM_FIRST = ("head_norm_first=True: the final LayerNorm runs on the feature map before pooling; a hub-layout "
                    "ConvNeXt pools first and then normalises")
_HEAD_MLP = ("a head MLP (head.pre_logits.fc, timm's head_hidden_size); a hub-layout ConvNeXt's head is "
             "LayerNorm -> Linear only")

_TIMM_REFUSALS = (
        Refusal(r"stem\.[1-9]\d*\.weight", _OVERLAP_STEM, _is_conv),
        Refusal(r"norm_pre\.(weight|bias)", _HEAD_NORM_FIRST),
        Refusal(r"head\.pre_logits\..*", _HEAD_MLP),
        Refusal(r"stages\.\d+\.blocks\.\d+\.shortcut\..*",
                "blocks with a projection shortcut (conv_mlp stages that change width); hub-layout blocks add the "
                "input unchanged"),
)

_OFFICIAL_REFUSALS = (
        Refusal(r"downsample_layers\.0\.[2-9]\.weight", _OVERLAP_STEM, _is_conv),
)

_FCMAE_REFUSALS = (
        Refusal(r"encoder\.fpn\..*", "a feature pyramid on the sparse encoder (use_fpn); the official FCMAE "
                "decoder reads the last stage only"),
        Refusal(r"encoder\.downsample_layers\.0\.[2-9]\.weight", _OVERLAP_STEM, _is_conv),
)

_TORCHVISION_REFUSALS = (
        Refusal(r"features\.0\.[2-9]\.weight", _OVERLAP_STEM, _is_conv),
)


SOURCES: tuple[Source, ...] = (
    Source("hf", "transformers",
           signature=(r"(?:convnext(?:v2)?\.)?embeddings\.patch_embeddings\.weight",
                      r"(?:convnext(?:v2)?\.)?encoder\.stages\.\d+\.layers\.\d+\.dwconv\.weight"),
           read_h5=_hf_read_h5, computation=_hf_computation, preprocessor=_hf_preprocessor),
    Source("timm", "timm", signature=(r"stem\.0\.weight", r"stages\.\d+\.blocks\.\d+\.conv_dw\.weight"),
           rules=_TIMM_RULES, refusals=_TIMM_REFUSALS, norms_have_bias=True, metadata=_timm_metadata,
           computation=_timm_computation, preprocessor=_timm_preprocessor),
    Source("official", "facebookresearch ConvNeXt / ConvNeXt-V2",
           signature=(r"downsample_layers\.0\.0\.weight", r"stages\.\d+\.\d+\.dwconv\.weight"),
           rules=_OFFICIAL_RULES, refusals=_OFFICIAL_REFUSALS, norms_have_bias=True),
    Source("fcmae", "facebookresearch ConvNeXt-V2 FCMAE pre-training (MinkowskiEngine)",
           signature=(r"encoder\.downsample_layers\.0\.0\.weight", r"encoder\.stages\.\d+\.\d+\.dwconv\.kernel",
                      r"mask_token"),
           rules=_FCMAE_RULES, refusals=_FCMAE_REFUSALS, norms_have_bias=True),
    Source("torchvision", "torchvision",
           signature=(r"features\.0\.0\.weight", r"features\.\d+\.\d+\.block\.0\.weight"),
           rules=_TORCHVISION_RULES, refusals=_TORCHVISION_REFUSALS, norms_have_bias=True),
    Source("keras", "keras-applications",
           signature=(r"stem_conv/kernel", r"stage_\d+_block_\d+_depthwise_conv/kernel"),
           rules=_KERAS_RULES, read_h5=_keras_read_h5, computation=_keras_computation,
           preprocessor=_keras_preprocessor),
)
def _dinov3_official_metadata(inp: SourceCheckpoint, ckpt: Optional[TorchCheckpoint]) -> None:
    drop_duplicate_output_norms(inp.state, str(inp.weights_file))


def _dinov3_preprocessor(inp: SourceCheckpoint, channels: int, notes: list[str]) -> Optional[dict]:
    return fit_to_channels(dict(DINOV3_PREPROCESSOR), channels, notes)


SOURCES += (
    Source("dinov3", "transformers (DINOv3 ConvNeXt)", signature=TRANSFORMERS_SIGNATURE, rules=TRANSFORMERS_RULES,
           norms_have_bias=True, computation=_hf_computation, preprocessor=_hf_preprocessor),
    Source("dinov3-official", "facebookresearch/dinov3 ConvNeXt", signature=OFFICIAL_SIGNATURE,
           rules=_OFFICIAL_RULES, refusals=_OFFICIAL_REFUSALS, norms_have_bias=True,
           metadata=_dinov3_official_metadata, preprocessor=_dinov3_preprocessor),
)
#: the names ``--from`` takes.
FORMATS: tuple[str, ...] = tuple(s.name for s in SOURCES)


def get_source(name: str) -> Source:
    """The entry of ``SOURCES`` called ``name``; ValueError listing the known ones."""
    for source in SOURCES:
        if source.name == name:
            return source
    raise ValueError(f"--from {name!r} is not one of {', '.join(FORMATS)}")

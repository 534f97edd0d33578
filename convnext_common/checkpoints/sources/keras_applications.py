"""keras-applications' ConvNeXt (source ``keras``): its h5 files, its names, and what the layers
around the trunk say (input normalisation, pooling without top).

Two files have this layout: tf-keras' (Keras 2) ``save_weights("x.h5")`` and a whole-model
``save("x.h5")`` of tf-keras or Keras 3 (the same layout under a ``model_weights`` group). One
top-level group per layer, named ``<model>_<layer>`` (``convnext_tiny_stem``,
``convnext_tiny_stage_0_block_0_depthwise_conv``, ...), listed in order in ``layer_names``; each
lists its variables in ``weight_names``: ``<model>_<sublayer>/<weight>:0`` (tf-keras) or
``<layer>/<model>_<sublayer>/<weight>`` (Keras 3). ``read_keras_h5`` keeps the last two parts with
the model prefix removed (``stem_conv/kernel``), the names ``RULES`` below expect:
``stem_conv/kernel``, ``stage_{s}_block_{j}_depthwise_conv/kernel``, ``downsampling_conv_{i}`` (stage
i + 1), ``head_dense/kernel``; conv kernels HWIO, dense kernels (in, out).

Layers are told apart by role, not by a name Keras numbers per session: a layer whose variables
are under the model prefix is part of the ConvNeXt; one holding ``mean``/``variance``/``count`` is
an input ``Normalization``; one with ``gamma``/``beta`` outside the prefix, after the last stage,
is the ``LayerNormalization`` that keras-applications puts after the trunk of a model built with
``include_top=False`` (after the pooling layer when ``pooling`` is "avg" or "max", on every pixel
when it is None). The pooling layer has no variables: it is known by its class's layer name
(``global_average_pooling2d``, ``global_max_pooling2d``, with any counter).

The keras-applications model takes NHWC pixels in [0, 255] and normalises them inside with a
``Normalization`` layer (``<model>_prestem_normalization``, present with ``include_preprocessing``):
mean ``255 * (0.485, 0.456, 0.406)``, variance ``(255 * (0.229, 0.224, 0.225))**2``. Those are
constructor arguments and usually not stored; when the file does store them (an adapted layer),
``normalization_stats`` returns them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from ...config import ConvNextConfig
from ..computation import Computation
from ..errors import CheckpointError
from ..formats.keras_h5 import str_list_attr, weights_root
from ..preprocessing import IMAGENET_MEAN, IMAGENET_STD  # keras-applications' built-in normalisation
from ..preprocessing import fit_to_channels, imagenet_preprocessor_config
from .base import Source, SourceCheckpoint, imagenet_preprocessor
from .rules import BLOCK, DOWN, STEM, J, Rule, S

_STEM_GROUP = re.compile(r"(?P<prefix>.*)_stem$")


@dataclass
class KerasWeights:
    """A keras-applications ConvNeXt read from its h5 file, by the role of each layer."""

    weights: dict[str, np.ndarray]                   # ``<sublayer>/<weight>``, model prefix removed
    normalization: dict[str, np.ndarray] = field(default_factory=dict)  # stored Normalization weights
    preprocessing: bool = True                       # the model normalises its [0, 255] input itself
    top: bool = True                                 # the classification head is there
    pooling: Optional[str] = "avg"                   # without top: "avg", "max", or None (no pooling)


_NORMALIZATION_VARIABLES = {"mean", "variance", "count"}
_NORM_VARIABLES = {"gamma", "beta"}
#: keras' default names of its global pooling layers (``_N`` is the per-session counter).
_POOLING_LAYERS = {"avg": re.compile(r"global_average_pooling2d(?:_\d+)?"),
                   "max": re.compile(r"global_max_pooling2d(?:_\d+)?")}
#: the final norm of a model without top is stored under the name of the top's own norm.
NOTOP_NORM = "head_layernorm"


def _model_prefix(layer_names: list[str], path: Path) -> str:
    for name in layer_names:
        m = _STEM_GROUP.fullmatch(name)
        if m:
            return m.group("prefix") + "_"
    raise CheckpointError(f"{path}: no '<model>_stem' layer: not a keras-applications ConvNeXt weights file")


def _variable_key(weight_name: str) -> str:
    """``cx_stem_conv/kernel:0`` or ``cx_stem/cx_stem_conv/kernel`` -> ``cx_stem_conv/kernel``."""
    name = weight_name[:-2] if weight_name.endswith(":0") else weight_name
    return "/".join(name.split("/")[-2:])


def read_keras_h5(path: str | Path) -> KerasWeights:
    """The ConvNeXt's weights and the roles of the other layers; CheckpointError naming the file
    and the layer when a layer has no role in a keras-applications ConvNeXt."""
    import h5py

    path = Path(path)
    weights: dict[str, np.ndarray] = {}
    norm: dict[str, np.ndarray] = {}
    final_norm: Optional[str] = None
    after_trunk: list[str] = []   # variable-less layers after the last ConvNeXt layer
    pooled: list[str] = []
    try:
        with h5py.File(path, "r") as f:
            root = weights_root(f)
            layer_names = str_list_attr(root, "layer_names") or []
            prefix = _model_prefix(layer_names, path)
            preprocessing = any(n == prefix + "prestem_normalization" for n in layer_names)
            for layer in layer_names:
                group = root[layer]
                variables = {_variable_key(w): np.asarray(group[w]) for w in str_list_attr(group, "weight_names") or []}
                leaves = {k.rsplit("/", 1)[-1] for k in variables}
                if not variables:
                    after_trunk.append(layer)
                elif all(k.startswith(prefix) for k in variables) and final_norm is None:
                    weights.update({k[len(prefix):]: v for k, v in variables.items()})
                    after_trunk = []
                elif leaves <= _NORMALIZATION_VARIABLES and not weights:
                    norm.update({k.rsplit("/", 1)[-1]: v for k, v in variables.items()})
                elif leaves == _NORM_VARIABLES and weights and final_norm is None:
                    final_norm = layer
                    pooled = [role for role, regex in _POOLING_LAYERS.items()
                              if any(regex.fullmatch(n) for n in after_trunk)]
                    for k, v in variables.items():
                        weights[f"{NOTOP_NORM}/{k.rsplit('/', 1)[-1]}"] = v
                else:
                    raise CheckpointError(f"{path}: layer {layer} (variables {', '.join(sorted(variables))}) has no "
                                          f"place in a keras-applications ConvNeXt")
    except OSError as e:
        raise CheckpointError(f"{path}: not a readable HDF5 file ({e})") from None
    except KeyError as e:
        raise CheckpointError(f"{path}: a layer or variable listed in the file is missing ({e})") from None
    if not weights:
        raise CheckpointError(f"{path}: holds no weights")
    top = "head_dense/kernel" in weights
    if top and final_norm is not None:
        raise CheckpointError(f"{path}: layer {final_norm} follows the classification head; not a keras-applications "
                              f"ConvNeXt")
    pooling: Optional[str] = "avg"
    if not top:
        if final_norm is None:
            raise CheckpointError(f"{path}: neither a classification head nor the final LayerNormalization of a "
                                  f"model without top: not a keras-applications ConvNeXt save")
        pooling = pooled[0] if len(pooled) == 1 else None
    return KerasWeights(weights, norm, preprocessing, top, pooling)


def normalization_stats(norm: dict[str, np.ndarray]) -> tuple[list[float], list[float]]:
    """image_mean and image_std for pixels rescaled to [0, 1], from the Normalization layer's weights
    (or keras-applications' ImageNet constants when the file does not store them)."""
    if "mean" in norm and "variance" in norm:
        mean = np.asarray(norm["mean"], dtype=np.float64).reshape(-1) / 255.0
        std = np.sqrt(np.asarray(norm["variance"], dtype=np.float64).reshape(-1)) / 255.0
        return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]
    return list(IMAGENET_MEAN), list(IMAGENET_STD)


# --- the source -------------------------------------------------------------------------------------
#: a layer name only keras-applications' ConvNeXt has (``<model>_stage_0_block_0_depthwise_conv``)
_BLOCK_LAYER = re.compile(r"_stage_\d+_block_\d+_depthwise_conv$")

RULES = (
        Rule(r"stem_conv/kernel", STEM + "patch_embeddings.weight", "conv_hwio"),
        Rule(r"stem_conv/bias", STEM + "patch_embeddings.bias", "vector"),
        Rule(r"stem_layernorm/gamma", STEM + "layernorm.weight", "vector"),
        Rule(r"stem_layernorm/beta", STEM + "layernorm.bias", "vector"),
        Rule(r"downsampling_layernorm_(?P<i>\d+)/gamma", DOWN + "0.weight", "vector", {"s": ("i", 1, 1)}),
        Rule(r"downsampling_layernorm_(?P<i>\d+)/beta", DOWN + "0.bias", "vector", {"s": ("i", 1, 1)}),
        Rule(r"downsampling_conv_(?P<i>\d+)/kernel", DOWN + "1.weight", "conv_hwio", {"s": ("i", 1, 1)}),
        Rule(r"downsampling_conv_(?P<i>\d+)/bias", DOWN + "1.bias", "vector", {"s": ("i", 1, 1)}),
        Rule(rf"stage_{S}_block_{J}_depthwise_conv/kernel", BLOCK + "dwconv.weight", "conv_hwio"),
        Rule(rf"stage_{S}_block_{J}_depthwise_conv/bias", BLOCK + "dwconv.bias", "vector"),
        Rule(rf"stage_{S}_block_{J}_layernorm/gamma", BLOCK + "layernorm.weight", "vector"),
        Rule(rf"stage_{S}_block_{J}_layernorm/beta", BLOCK + "layernorm.bias", "vector"),
        Rule(rf"stage_{S}_block_{J}_pointwise_conv_1/kernel", BLOCK + "pwconv1.weight", "dense_io"),
        Rule(rf"stage_{S}_block_{J}_pointwise_conv_1/bias", BLOCK + "pwconv1.bias", "vector"),
        Rule(rf"stage_{S}_block_{J}_pointwise_conv_2/kernel", BLOCK + "pwconv2.weight", "dense_io"),
        Rule(rf"stage_{S}_block_{J}_pointwise_conv_2/bias", BLOCK + "pwconv2.bias", "vector"),
        # tf-keras names the LayerScale variable gamma; Keras 3 leaves it unnamed (variable, variable_N)
        Rule(rf"stage_{S}_block_{J}_layer_scale/(?:gamma|variable(?:_\d+)?)", BLOCK + "layer_scale_parameter", "vector"),
        Rule(rf"stage_{S}_block_{J}_grn/gamma", BLOCK + "grn.weight", "grn"),
        Rule(rf"stage_{S}_block_{J}_grn/beta", BLOCK + "grn.bias", "grn"),
        Rule(r"head_layernorm/gamma", "{trunk}layernorm.weight", "vector"),
        Rule(r"head_layernorm/beta", "{trunk}layernorm.bias", "vector"),
        Rule(r"head_dense/kernel", "classifier.weight", "dense_io"),
        Rule(r"head_dense/bias", "classifier.bias", "vector"),
)


def _is_keras_h5(path: Path, layer_names: list[str]) -> bool:
    """One group per layer, named ``<model>_<layer>`` (transformers nests every weight under its
    model's main layer instead)."""
    return any(_BLOCK_LAYER.search(n) for n in layer_names)


def _read_h5(file: Path, hub_dir: Optional[Path], config: Optional[ConvNextConfig]) -> SourceCheckpoint:
    keras = read_keras_h5(file)
    return SourceCheckpoint(keras.weights, "keras", file, None, keras)


def _computation(inp: SourceCheckpoint, state: Mapping, stated: Any) -> Computation:
    comp = Computation()
    if inp.keras is not None and not inp.keras.top:
        comp.state("pooling", inp.keras.pooling, f"{inp.weights_file} (include_top=False, pooling="
                                                 f"{inp.keras.pooling!r} from its layers)")
    return comp


def _preprocessor(inp: SourceCheckpoint, channels: int, notes: list[str]) -> Optional[dict]:
    """The model's own input Normalization layer, as image_mean / image_std."""
    if inp.keras is None:
        return imagenet_preprocessor(inp, channels, notes)
    if not inp.keras.preprocessing:
        notes.append("the keras model has no input Normalization layer (include_preprocessing=False): no "
                     "preprocessor_config.json written; it takes the inputs its training pipeline made")
        return None
    return fit_to_channels(imagenet_preprocessor_config(*normalization_stats(inp.keras.normalization)), channels,
                           notes)


SOURCE = Source("keras", "keras-applications",
                signature=(r"stem_conv/kernel", r"stage_\d+_block_\d+_depthwise_conv/kernel"),
                rules=RULES, h5_layout=_is_keras_h5, read_h5=_read_h5, computation=_computation,
                preprocessor=_preprocessor)

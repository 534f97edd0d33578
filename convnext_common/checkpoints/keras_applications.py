"""Read keras-applications ConvNeXt weights from a Keras legacy HDF5 file.

Two files have this layout: tf-keras' (Keras 2) ``save_weights("x.h5")`` and a whole-model
``save("x.h5")`` of tf-keras or Keras 3 (the same layout under a ``model_weights`` group). One
top-level group per layer, named ``<model>_<layer>`` (``convnext_tiny_stem``,
``convnext_tiny_stage_0_block_0_depthwise_conv``, ...), listed in order in ``layer_names``; each
lists its variables in ``weight_names``: ``<model>_<sublayer>/<weight>:0`` (tf-keras) or
``<layer>/<model>_<sublayer>/<weight>`` (Keras 3). ``read_keras_h5`` keeps the last two parts with
the model prefix removed (``stem_conv/kernel``), the names the ``keras`` rules in foreign.py expect.

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
from typing import Optional

import numpy as np

from .errors import CheckpointError
from .preprocessing import IMAGENET_MEAN, IMAGENET_STD  # keras-applications' built-in normalisation

_STEM_GROUP = re.compile(r"(?P<prefix>.*)_stem$")


def str_list_attr(obj, name: str) -> list[str] | None:
    """A list-of-strings HDF5 attribute; Keras splits long ones into ``name0``, ``name1``, ..."""
    if name in obj.attrs:
        values = list(obj.attrs[name])
    elif f"{name}0" in obj.attrs:
        values, i = [], 0
        while f"{name}{i}" in obj.attrs:
            values.extend(obj.attrs[f"{name}{i}"])
            i += 1
    else:
        return None
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def weights_root(f):
    """The group holding ``layer_names``: the file itself (``save_weights``) or its ``model_weights``
    group (a whole-model ``save``)."""
    group = f.get("model_weights")
    if group is not None and str_list_attr(group, "layer_names") is not None:
        return group
    return f


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

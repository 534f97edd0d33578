"""Read keras-applications ConvNeXt weights (the legacy ``save_weights`` h5 of tf-keras / Keras 2).

Layout: one top-level group per layer, named ``<model>_<layer>`` (``convnext_tiny_stem``,
``convnext_tiny_stage_0_block_0_depthwise_conv``, ``convnext_tiny_downsampling_block_0``, ...);
inside, datasets ``<model>_<sublayer>/<weight>:0``. ``read_keras_h5`` returns them under
``<sublayer>/<weight>`` with the model prefix removed (``stem_conv/kernel``), the names the
``keras`` rules in foreign.py expect.

The keras-applications model takes NHWC pixels in [0, 255] and normalises them inside with a
``Normalization`` layer: mean ``255 * (0.485, 0.456, 0.406)``, variance ``(255 * (0.229, 0.224,
0.225))**2``. Those are constructor arguments and usually not stored; when the file does store
them (an adapted layer), ``normalization_stats`` returns them.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .io import CheckpointError

#: keras-applications' built-in normalisation, as transformers' image_mean / image_std.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

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


def _model_prefix(layer_names: list[str], path: Path) -> str:
    for name in layer_names:
        m = _STEM_GROUP.fullmatch(name)
        if m:
            return m.group("prefix") + "_"
    raise CheckpointError(f"{path}: no '<model>_stem' layer: not a keras-applications ConvNeXt weights file")


def read_keras_h5(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(weights by ``<sublayer>/<weight>``, normalisation layer weights by name, possibly empty)."""
    import h5py

    path = Path(path)
    weights: dict[str, np.ndarray] = {}
    norm: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:
            layer_names = str_list_attr(f, "layer_names") or []
            prefix = _model_prefix(layer_names, path)
            for layer in layer_names:
                group = f[layer]
                weight_names = str_list_attr(group, "weight_names") or []
                for wname in weight_names:
                    array = np.asarray(group[wname])
                    key = wname[:-2] if wname.endswith(":0") else wname
                    if layer.endswith("_normalization"):
                        norm[key.rsplit("/", 1)[-1]] = array
                        continue
                    if not key.startswith(prefix):
                        raise CheckpointError(f"{path}: weight {wname} of layer {layer} lacks the model prefix "
                                              f"{prefix!r}")
                    weights[key[len(prefix):]] = array
    except OSError as e:
        raise CheckpointError(f"{path}: not a readable HDF5 file ({e})") from None
    except KeyError as e:
        raise CheckpointError(f"{path}: a layer listed in layer_names is missing ({e})") from None
    if not weights:
        raise CheckpointError(f"{path}: holds no weights")
    return weights, norm


def normalization_stats(norm: dict[str, np.ndarray]) -> tuple[list[float], list[float]]:
    """image_mean and image_std for pixels rescaled to [0, 1], from the Normalization layer's weights
    (or keras-applications' ImageNet constants when the file does not store them)."""
    if "mean" in norm and "variance" in norm:
        mean = np.asarray(norm["mean"], dtype=np.float64).reshape(-1) / 255.0
        std = np.sqrt(np.asarray(norm["variance"], dtype=np.float64).reshape(-1)) / 255.0
        return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]
    return list(IMAGENET_MEAN), list(IMAGENET_STD)

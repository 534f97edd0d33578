"""Canonical weights of a hub folder for loading into a model: tensor by tensor, never all at once.

:func:`open_canonical` answers what ``io.read_canonical`` answers (the same names, layouts, checks
and messages) but returns :class:`~.lazy.LazyArray` values for the formats that can be read one
tensor at a time: safetensors (one file or the shards of an index) and transformers'
``tf_model.h5`` (h5py reads one dataset at a time). A ``from_pretrained`` then holds the model and
one tensor, not the model and a second copy of the checkpoint. Pickled torch files cannot be read
in parts and come whole, from ``io.read_canonical``.
"""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from .io import CheckpointError, find_weights_file, read_canonical
from .lazy import LazyArray
from .safetensors_io import stream_safetensors


def open_canonical(path: str | os.PathLike, candidates: tuple[str, ...],
                   config: Any = None) -> tuple[Mapping[str, Any], Path]:
    """Canonical (PyTorch-layout) weights of a hub folder or file, trying ``candidates`` in order:
    lazily where the format allows it, else read whole. Returns the tensors and the file read."""
    file = find_weights_file(path, candidates)
    name = file.name
    if name.endswith(".safetensors"):
        return stream_safetensors(file), file
    if name.endswith(".safetensors.index.json"):
        return _stream_index(file), file
    if name.endswith((".h5", ".hdf5")):
        return stream_h5_state_dict(file, config=config), file
    return read_canonical(path, candidates, config=config)


def _stream_index(path: Path) -> dict[str, Any]:
    """The tensors of a sharded checkpoint (``model.safetensors.index.json``), shard by shard."""
    from .io import load_state_dict

    try:
        weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a valid shard index ({type(e).__name__}: {e})") from None
    out: dict[str, Any] = {}
    for shard in shards:
        shard_path = path.parent / shard
        if not shard_path.is_file():
            raise CheckpointError(f"{path}: shard {shard} is missing")
        out.update(stream_safetensors(shard_path) if shard.endswith(".safetensors") else load_state_dict(shard_path))
    missing = sorted(set(weight_map) - set(out))
    if missing:
        raise CheckpointError(f"{path}: tensors listed in the index but absent from the shards: {missing[:5]}")
    return out


def stream_h5_state_dict(path: str | os.PathLike, config: Any = None) -> dict[str, LazyArray]:
    """``h5.load_h5_state_dict``'s names and checks, with each dataset read only when used."""
    from .h5 import MAIN_LAYERS, _open_h5, _parse_weight_name, tf_name_to_canonical
    from .keras_applications import str_list_attr

    path = Path(path)
    state: dict[str, LazyArray] = {}
    with _open_h5(path) as f:
        layer_names = str_list_attr(f, "layer_names")
        if not layer_names:
            raise CheckpointError(
                f"{path}: not a transformers TF checkpoint (no 'layer_names' attribute; a Keras 3 .weights.h5 "
                "or another kind of HDF5 file)")
        # A base model (TFConvNextModel) holds only its main layer; its names lose that prefix.
        strip_main = len(layer_names) == 1 and layer_names[0] in MAIN_LAYERS
        for layer in layer_names:
            group = f.get(layer)
            if group is None:
                raise CheckpointError(f"{path}: layer {layer!r} is listed in layer_names but has no group")
            for weight in str_list_attr(group, "weight_names") or []:
                try:
                    _, rel = _parse_weight_name(weight)
                except KeyError:
                    raise CheckpointError(
                        f"{path}: not a transformers TF ConvNeXt checkpoint ({weight!r} is not a ConvNeXt "
                        "variable of transformers' TFConvNext*/TFConvNextV2* classes)") from None
                if weight not in group:
                    raise CheckpointError(f"{path}: variable {weight} is listed but not stored")
                if strip_main:
                    rel = rel.split("/", 1)[1]
                name, axes = tf_name_to_canonical(rel)
                dataset = group[weight]
                shape = tuple(dataset.shape)
                if axes is not None:
                    if len(shape) != len(axes):
                        raise CheckpointError(f"{path}: {rel}: expected a {len(axes)}-d array, got shape {shape}")
                    shape = tuple(shape[a] for a in axes)
                state[name] = LazyArray(shape, dataset.dtype, partial(_read_dataset, path, f"{layer}/{weight}", axes))
    if not state:
        raise CheckpointError(f"{path}: holds no variables")
    if config is not None:
        found = {k.split(".", 1)[0] for k in state} & set(MAIN_LAYERS)
        if strip_main:
            found = {layer_names[0]}
        if found and found != {config.model_type}:
            raise CheckpointError(f"{path}: holds a {found.pop()} checkpoint but the config's model_type is "
                                  f"{config.model_type!r}")
    return state


def _read_dataset(path: Path, key: str, axes: Optional[tuple[int, ...]]) -> np.ndarray:
    from .h5 import _open_h5

    with _open_h5(path) as f:
        array = f[key][()]
    return array if axes is None else np.ascontiguousarray(array.transpose(axes))

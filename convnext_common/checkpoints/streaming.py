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
from pathlib import Path
from typing import Any, Mapping

from .h5 import stream_h5_state_dict
from .io import CheckpointError, find_weights_file, read_canonical
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



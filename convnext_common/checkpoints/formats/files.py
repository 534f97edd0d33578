"""Weights files of the hub's formats as ``{name: numpy array}``: which file of a folder, which reader.

Each format has its own module in this package: safetensors (memory-mapped or streamed,
safetensors.py), pickled torch files (read without torch by an allow-list unpickler,
torch_pickle.py, so that no code inside them can run), transformers' ``tf_model.h5`` (tf_h5.py) and
the shard index of a split checkpoint (index.py). This module picks the reader by file name:
:func:`load_state_dict` reads whole files under their stored names, :func:`read_canonical` and
:func:`open_canonical` give canonical (PyTorch-layout) names, the latter tensor by tensor where the
format allows (a ``from_pretrained`` then holds the model and one tensor, not the model and a
second copy of the checkpoint).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ...fileio import atomic_write, atomic_write_text
from ..errors import CheckpointError
from .index import read_shard_index
from .safetensors import map_safetensors, stream_safetensors, write_safetensors
from .tf_h5 import load_h5_state_dict, stream_h5_state_dict
from .torch_pickle import load_torch_checkpoint

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PT_WEIGHTS_NAME = "pytorch_model.bin"
PT_WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
TF_WEIGHTS_NAME = "tf_model.h5"

#: what a hub folder may hold, in order of preference for the PyTorch twin.
PT_WEIGHT_FILES = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, PT_WEIGHTS_NAME, PT_WEIGHTS_INDEX_NAME)


def find_weights_file(path: str | os.PathLike, candidates: tuple[str, ...] = PT_WEIGHT_FILES) -> Path:
    """The first of ``candidates`` present in the folder ``path`` (or ``path`` itself if it is a file)."""
    from ...hub import resolve_file

    p = Path(path)
    if p.is_file() and p.suffix == ".json" and not p.name.endswith(".index.json"):
        p = p.parent  # a config.json was named: the weights are beside it
    if p.is_file():
        return p
    if p.is_dir():
        for name in candidates:
            if (p / name).is_file():
                return p / name
        raise FileNotFoundError(f"{p}: no weights file in this folder (looked for {', '.join(candidates)})")
    for name in candidates:  # a hub id
        f = resolve_file(path, name, required=False)
        if f is not None:
            return f
    raise FileNotFoundError(f"{path}: no such folder, file or reachable hub model")


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Weights of a file or hub folder as numpy arrays, under the names stored in the file."""
    path = find_weights_file(path)
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty")
    name = path.name
    if name.endswith(".index.json"):
        return read_shard_index(path, load_state_dict)
    if name.endswith(".safetensors"):
        return map_safetensors(path)
    if name.endswith((".h5", ".hdf5", ".keras")):
        return load_h5_state_dict(path)
    if name.endswith((".bin", ".pth", ".pt", ".ckpt")) or zipfile.is_zipfile(path):
        return load_torch_checkpoint(path).weights
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) == 8 and int.from_bytes(head, "little") < 100_000_000:
        return map_safetensors(path)  # safetensors starts with its header length
    raise CheckpointError(f"{path}: unknown weights format (expected .safetensors, .bin/.pth, .h5 or an index)")


def save_safetensors(state: Mapping[str, np.ndarray], path: str | os.PathLike,
                     metadata: dict[str, str] | None = None) -> None:
    """Write ``state`` atomically; ``format: pt`` metadata makes transformers accept the file."""
    atomic_write(path, lambda tmp: write_safetensors(state, Path(tmp), metadata=metadata))


def save_sharded_safetensors(state: Mapping[str, np.ndarray], directory: str | os.PathLike,
                             max_shard_bytes: int = 5 * 1024**3) -> list[Path]:
    """Split into ``model-0000i-of-0000n.safetensors`` shards plus an index when over ``max_shard_bytes``."""
    directory = Path(directory)
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for k, v in state.items():
        if size and size + v.nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = v
        size += v.nbytes
    if len(shards) == 1:
        save_safetensors(state, directory / SAFE_WEIGHTS_NAME)
        return [directory / SAFE_WEIGHTS_NAME]
    written, weight_map = [], {}
    n = len(shards)
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{n:05d}.safetensors"
        save_safetensors(shard, directory / name)
        weight_map.update({k: name for k in shard})
        written.append(directory / name)
    total = int(sum(v.nbytes for v in state.values()))
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    atomic_write_text(directory / SAFE_WEIGHTS_INDEX_NAME, json.dumps(index, indent=2) + "\n")
    return written + [directory / SAFE_WEIGHTS_INDEX_NAME]


def read_canonical(path: str | os.PathLike, candidates: tuple[str, ...], config=None) -> tuple[dict[str, np.ndarray], Path]:
    """Canonical (PyTorch-layout) weights from a hub folder or file, trying ``candidates`` in order;
    a transformers tf_model.h5 is converted in memory. Returns the arrays and the file read."""
    file = find_weights_file(path, candidates)
    if file.name.endswith((".h5", ".hdf5")):
        return load_h5_state_dict(file, config=config), file
    return load_state_dict(file), file


def open_canonical(path: str | os.PathLike, candidates: tuple[str, ...],
                   config: Any = None) -> tuple[Mapping[str, Any], Path]:
    """:func:`read_canonical`'s names, layouts, checks and messages, with :class:`~.lazy.LazyArray`
    values where the format can be read one tensor at a time: safetensors (one file or the shards of
    an index) and transformers' ``tf_model.h5`` (h5py reads one dataset at a time). Pickled torch
    files cannot be read in parts and come whole. Returns the tensors and the file read."""
    file = find_weights_file(path, candidates)
    name = file.name
    if name.endswith(".safetensors"):
        return stream_safetensors(file), file
    if name.endswith(".safetensors.index.json"):
        return read_shard_index(file, _stream_shard), file
    if name.endswith((".h5", ".hdf5")):
        return stream_h5_state_dict(file, config=config), file
    return read_canonical(path, candidates, config=config)


def _stream_shard(path: Path) -> Mapping[str, Any]:
    return stream_safetensors(path) if path.name.endswith(".safetensors") else load_state_dict(path)

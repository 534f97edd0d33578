"""Read and write weights as ``{name: numpy array}`` in the hub's file formats.

safetensors files are memory-mapped (safetensors_io.py); pickled torch files are read without torch
by an allow-list unpickler (torch_pickle.py) so that no code inside them can run.
"""

from __future__ import annotations

import argparse
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from ..fileio import atomic_write, atomic_write_text
from .errors import CheckpointError  # noqa: F401  (re-exported: the readers' error)
from .h5 import load_h5_state_dict
from .safetensors_io import map_safetensors, write_safetensors
from .torch_pickle import load_torch_file

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PT_WEIGHTS_NAME = "pytorch_model.bin"
PT_WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
TF_WEIGHTS_NAME = "tf_model.h5"

#: what a hub folder may hold, in order of preference for the PyTorch twin.
PT_WEIGHT_FILES = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, PT_WEIGHTS_NAME, PT_WEIGHTS_INDEX_NAME)


def find_weights_file(path: str | os.PathLike, candidates: tuple[str, ...] = PT_WEIGHT_FILES) -> Path:
    """The first of ``candidates`` present in the folder ``path`` (or ``path`` itself if it is a file)."""
    from ..hub import resolve_file

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


#: where training scripts keep the model's weights in a checkpoint dict, in order of preference.
MODEL_ENTRIES = ("model", "state_dict", "model_state_dict", "module")
#: where they keep the exponential moving average of the weights (official repos and torchvision:
#: ``model_ema``; timm's train.py: ``state_dict_ema``).
EMA_ENTRIES = ("model_ema", "state_dict_ema")


@dataclass
class TorchCheckpoint:
    """A torch pickle's weights, and what a training checkpoint says beside them."""

    weights: dict[str, np.ndarray]
    entry: Optional[str] = None          # the checkpoint entry the weights were read from; None: a bare state dict
    other_entries: list[str] = field(default_factory=list)
    architecture: Optional[str] = None   # timm train.py's ``arch``
    args: dict = field(default_factory=dict)  # the training command line (``args``, an argparse.Namespace)


def load_torch_checkpoint(path: str | os.PathLike, ema: bool = False) -> TorchCheckpoint:
    """A state dict, or a training checkpoint (``{"model": ..., "optimizer": ..., "args": Namespace,
    "model_ema": ...}``), whose ``model`` is read by default and its EMA weights with ``ema``."""
    path = Path(path)
    obj = load_torch_file(path)
    ckpt = TorchCheckpoint({})
    if isinstance(obj, Mapping):
        ckpt.other_entries = [str(k) for k in obj]
        arch, args = obj.get("arch"), obj.get("args")
        ckpt.architecture = arch if isinstance(arch, str) else None
        ckpt.args = dict(vars(args)) if isinstance(args, argparse.Namespace) else {}
        for key in EMA_ENTRIES if ema else MODEL_ENTRIES:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(k, str) for k in inner):
                obj, ckpt.entry = inner, key
                ckpt.other_entries.remove(key)
                break
        else:
            if ema:
                raise CheckpointError(f"{path}: --ema given, but the checkpoint holds no EMA weights "
                                      f"({' or '.join(EMA_ENTRIES)}); its entries: "
                                      f"{', '.join(ckpt.other_entries[:10]) or 'none'}")
            ckpt.other_entries = []  # a bare state dict
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    for k, v in obj.items():
        if isinstance(v, np.ndarray):  # only tensors become arrays; skips e.g. optimizer step counters
            ckpt.weights[str(k)] = v
    if not ckpt.weights:
        raise CheckpointError(f"{path}: holds no tensors")
    return ckpt


def _load_torch_pickle(path: Path) -> dict[str, np.ndarray]:
    return load_torch_checkpoint(path).weights


def _load_index(path: Path) -> dict[str, np.ndarray]:
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        weight_map = index["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a valid shard index ({type(e).__name__}: {e})") from None
    out: dict[str, np.ndarray] = {}
    for shard in shards:
        shard_path = path.parent / shard
        if not shard_path.is_file():
            raise CheckpointError(f"{path}: shard {shard} is missing")
        out.update(load_state_dict(shard_path))
    missing = sorted(set(weight_map) - set(out))
    if missing:
        raise CheckpointError(f"{path}: tensors listed in the index but absent from the shards: {missing[:5]}")
    return out


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Weights of a file or hub folder as numpy arrays, under the names stored in the file."""
    path = find_weights_file(path)
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty")
    name = path.name
    if name.endswith(".index.json"):
        return _load_index(path)
    if name.endswith(".safetensors"):
        return map_safetensors(path)
    if name.endswith((".h5", ".hdf5", ".keras")):
        return load_h5_state_dict(path)
    if name.endswith((".bin", ".pth", ".pt", ".ckpt")) or zipfile.is_zipfile(path):
        return _load_torch_pickle(path)
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

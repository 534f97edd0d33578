"""The shard index of a checkpoint split over several files (``model.safetensors.index.json``,
``pytorch_model.bin.index.json``): the one reader of it.

The index maps every tensor name to the shard holding it (``{"weight_map": {name: shard}}``); the
shards lie beside the index. How each shard is read (whole, memory-mapped, or tensor by tensor) is
the caller's choice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import CheckpointError


def read_shard_index(path: Path, read_shard: Callable[[Path], Mapping[str, Any]]) -> dict[str, Any]:
    """The tensors of every shard ``path`` lists, each shard read by ``read_shard``; CheckpointError
    naming the index when it is not valid, a shard is missing, or a listed tensor is in no shard."""
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
        out.update(read_shard(shard_path))
    missing = sorted(set(weight_map) - set(out))
    if missing:
        raise CheckpointError(f"{path}: tensors listed in the index but absent from the shards: {missing[:5]}")
    return out

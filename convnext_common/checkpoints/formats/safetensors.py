"""safetensors files as numpy arrays, without torch and without a second copy of the weights.

Reading either memory-maps the file and returns read-only views (pages are read as they are
touched; :func:`map_safetensors`, for the converter) or returns tensors read one by one when used
(:func:`stream_safetensors`, for loading into a model), so a large checkpoint is never held twice;
writing streams one tensor at a time. This is the project's one safetensors reader and writer.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from ...progress import Progress
from ..errors import CheckpointError
from .lazy import LazyArray

_ST_NUMPY = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
             "U8": "u1", "BOOL": "?"}


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lies in a safetensors file: its dtype (safetensors' name), shape and bytes."""

    dtype: str
    shape: tuple[int, ...]
    begin: int  # offset of the first byte in the file
    end: int

    @property
    def numpy_dtype(self) -> np.dtype:
        """The dtype a reader returns: bfloat16 is widened to float32 (numpy has no bfloat16)."""
        return np.dtype("<f4") if self.dtype == "BF16" else np.dtype(_ST_NUMPY[self.dtype])


def read_header(path: Path) -> dict[str, TensorEntry]:
    """The tensors a safetensors file lists, checked against the file's size (nothing else is read).

    Raises CheckpointError naming the file when it is empty, truncated or not safetensors.
    """
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: the file is empty")
    try:
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            if not 0 < n <= min(size - 8, 100_000_000):
                raise ValueError(f"header length {n} does not fit a {size}-byte file")
            header = json.loads(f.read(n))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        header.pop("__metadata__", None)
        data_start, data_size = 8 + n, size - 8 - n
        out: dict[str, TensorEntry] = {}
        for name, info in header.items():
            begin, end = (int(v) for v in info["data_offsets"])
            shape = tuple(int(d) for d in info["shape"])
            dtype = info["dtype"]
            if not 0 <= begin <= end <= data_size:
                raise ValueError(f"{name}: data offsets {begin}..{end} lie outside the file")
            if dtype != "BF16" and dtype not in _ST_NUMPY:
                raise ValueError(f"{name}: unsupported dtype {dtype}")
            itemsize = 2 if dtype == "BF16" else np.dtype(_ST_NUMPY[dtype]).itemsize
            if end - begin != itemsize * int(np.prod(shape)):
                raise ValueError(f"{name}: {end - begin} bytes do not hold shape {list(shape)} in {dtype}")
            out[name] = TensorEntry(dtype, shape, data_start + begin, data_start + end)
    except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    if not out:
        raise CheckpointError(f"{path}: holds no tensors")
    return out


def _as_numpy(raw: np.ndarray, entry: TensorEntry) -> np.ndarray:
    """The tensor in ``raw`` (its bytes as uint8) as an array of its shape; a view unless bfloat16."""
    if entry.dtype == "BF16":  # the upper half of a float32
        wide = np.zeros(raw.size // 2, dtype="<u4")
        wide[:] = raw.view("<u2").astype("<u4") << 16
        return wide.view("<f4").reshape(entry.shape)
    return raw.view(entry.numpy_dtype).reshape(entry.shape)


def map_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file as read-only views of a memory map.

    ``safetensors.numpy.load_file`` maps the file and then copies every tensor, so a large
    checkpoint briefly occupies twice its size; views keep the conversion near one size (pages
    are read as the converter touches them). bfloat16 tensors become float32 copies.
    """
    path = Path(path)
    entries = read_header(path)
    mapped = np.memmap(path, dtype=np.uint8, mode="r")
    return {name: _as_numpy(mapped[e.begin:e.end], e) for name, e in entries.items()}


def stream_safetensors(path: Path) -> dict[str, LazyArray]:
    """The tensors of a safetensors file, each read from the file only when used (``np.asarray``).

    For copying a checkpoint into a model already built: each tensor is read into its own buffer
    just before it is copied and freed after, so the load holds one tensor besides the model. (A
    memory map would not do here: the pages of a map count towards the process' resident memory
    until it is unmapped, so a model loaded through one would still show the file a second time.)
    """
    path = Path(path)
    return {name: LazyArray(e.shape, e.numpy_dtype, partial(_read_tensor, path, e))
            for name, e in read_header(path).items()}


def _read_tensor(path: Path, entry: TensorEntry) -> np.ndarray:
    raw = np.empty(entry.end - entry.begin, dtype=np.uint8)
    with open(path, "rb") as f:
        f.seek(entry.begin)
        if f.readinto(memoryview(raw)) != raw.size:
            raise CheckpointError(f"{path}: the file ended inside a tensor (was it changed while loading?)")
    return _as_numpy(raw, entry)


_ST_DTYPES = {np.dtype("float64"): "F64", np.dtype("float32"): "F32", np.dtype("float16"): "F16",
              np.dtype("int64"): "I64", np.dtype("int32"): "I32", np.dtype("int16"): "I16", np.dtype("int8"): "I8",
              np.dtype("uint8"): "U8", np.dtype("bool"): "BOOL"}


def write_safetensors(state: Mapping[str, np.ndarray], path: Path, progress: Optional[Progress] = None,
                      metadata: Optional[dict] = None) -> None:
    """Stream ``state`` into a safetensors file one tensor at a time (no second copy of the weights)."""
    header: dict = {"__metadata__": {"format": "pt", **(metadata or {})}}
    offset = 0
    for name, array in state.items():
        dtype = np.dtype(array.dtype)
        if dtype not in _ST_DTYPES:
            raise CheckpointError(f"{name}: dtype {dtype} cannot be stored in safetensors")
        header[name] = {"dtype": _ST_DTYPES[dtype], "shape": [int(d) for d in array.shape],
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for array in state.values():
            a = np.ascontiguousarray(array)
            if a.dtype.byteorder == ">":
                a = a.astype(a.dtype.newbyteorder("<"))
            f.write(memoryview(a.reshape(-1)).cast("B"))
            if progress is not None:
                progress.advance(a.nbytes)

"""safetensors files as numpy arrays, without torch and without a second copy of the weights.

Reading memory-maps the file and returns read-only views (pages are read as they are touched), so a
large checkpoint is never held twice; writing streams one tensor at a time. This is the project's
one safetensors reader and writer.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from ..progress import Progress
from .errors import CheckpointError

_ST_NUMPY = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
             "U8": "u1", "BOOL": "?"}


def map_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file as read-only views of a memory map.

    ``safetensors.numpy.load_file`` maps the file and then copies every tensor, so a large
    checkpoint briefly occupies twice its size; views keep the conversion near one size (pages
    are read as the converter touches them). bfloat16 tensors become float32 copies.
    """
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            if not 0 < n <= min(size - 8, 100_000_000):
                raise ValueError(f"header length {n} does not fit a {size}-byte file")
            header = json.loads(f.read(n))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        header.pop("__metadata__", None)
        mapped = np.memmap(path, dtype=np.uint8, mode="r") if size > 8 + n else np.zeros(0, np.uint8)
        data = mapped[8 + n:]
        out: dict[str, np.ndarray] = {}
        for name, info in header.items():
            begin, end = (int(v) for v in info["data_offsets"])
            shape = tuple(int(d) for d in info["shape"])
            dtype = info["dtype"]
            if not 0 <= begin <= end <= data.size:
                raise ValueError(f"{name}: data offsets {begin}..{end} lie outside the file")
            raw = data[begin:end]
            if dtype == "BF16":  # numpy has no bfloat16: widen (the upper half of a float32)
                if raw.size != 2 * int(np.prod(shape)):
                    raise ValueError(f"{name}: {raw.size} bytes for shape {list(shape)} in BF16")
                wide = np.zeros(raw.size // 2, dtype="<u4")
                wide[:] = raw.view("<u2").astype("<u4") << 16
                out[name] = wide.view("<f4").reshape(shape)
                continue
            if dtype not in _ST_NUMPY:
                raise ValueError(f"{name}: unsupported dtype {dtype}")
            np_dtype = np.dtype(_ST_NUMPY[dtype])
            if raw.size != np_dtype.itemsize * int(np.prod(shape)):
                raise ValueError(f"{name}: {raw.size} bytes do not hold shape {list(shape)} in {dtype}")
            out[name] = raw.view(np_dtype).reshape(shape)
    except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    if not out:
        raise CheckpointError(f"{path}: holds no tensors")
    return out


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

"""Unreadable weights files: empty, truncated, corrupted or foreign bytes in the hub's file names.

Every case goes through each entry point that reads the file: ``load_state_dict``, the PyTorch
twin's ``from_pretrained`` on the folder, and the converter (which must also leave no output
folder behind). The error is a CheckpointError (a ValueError) naming the file and the problem.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from badinput.support import HF, convert_leaving_nothing, expect_error, write_folder
from convnext_common.checkpoints.errors import CheckpointError
from convnext_common.checkpoints.formats.files import load_state_dict
from convnext_pt import ConvNextForImageClassification

SAFE, BIN, H5 = "model.safetensors", "pytorch_model.bin", "tf_model.h5"


def _noise(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _safetensors_header(data: bytes) -> tuple[dict, bytes]:
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def _with_header(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + body


def _grow_first_tensor(data: bytes) -> bytes:
    """The header claims a bigger shape than the bytes the tensor occupies."""
    header, body = _safetensors_header(data)
    name = next(k for k in header if k != "__metadata__")
    header[name]["shape"] = [d * 2 for d in header[name]["shape"]]
    return _with_header(header, body)


def _header_beyond_file(data: bytes) -> bytes:
    return struct.pack("<Q", len(data) * 4) + data[8:]


def _header_not_json(data: bytes) -> bytes:
    text = b'{"weight": {"dtype": F32, not json}    '
    return struct.pack("<Q", len(text)) + text


def _zip_without_pickle(data: bytes) -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/readme.txt", "a zip file, but not a torch checkpoint")
    return buf.getvalue()


def _zero_tail(data: bytes, n: int = 200) -> bytes:
    return data[:-n] + b"\0" * n  # the zip's central directory is at the end


def _clobber_superblock(data: bytes) -> bytes:
    return data[:8] + b"\xff" * 64 + data[72:]


EMPTY, SAFETENSORS, TORCH, HDF5 = r"\bempty\b", r"not a readable safetensors", r"not a (readable|weights-only) torch", r"not a readable HDF5"

#: id -> (file name in the hub folder, what to write given the valid file's bytes, problem regex)
CASES = {
    "safetensors-empty": (SAFE, lambda b: b"", EMPTY),
    "safetensors-truncated-half": (SAFE, lambda b: b[: len(b) // 2], SAFETENSORS),
    "safetensors-truncated-in-header": (SAFE, lambda b: b[:40], SAFETENSORS),
    "safetensors-only-length-prefix": (SAFE, lambda b: b[:8], SAFETENSORS),
    "safetensors-random-bytes": (SAFE, lambda b: _noise(4096), SAFETENSORS),
    "safetensors-header-not-json": (SAFE, _header_not_json, SAFETENSORS),
    "safetensors-header-length-beyond-file": (SAFE, _header_beyond_file, SAFETENSORS),
    "safetensors-shape-larger-than-data": (SAFE, _grow_first_tensor, SAFETENSORS),
    "bin-empty": (BIN, lambda b: b"", EMPTY),
    "bin-truncated-half": (BIN, lambda b: b[: len(b) // 2], TORCH),
    "bin-truncated-to-100-bytes": (BIN, lambda b: b[:100], TORCH),
    "bin-random-bytes": (BIN, lambda b: _noise(4096, 1), TORCH),
    "bin-text-file": (BIN, lambda b: b"model weights will be uploaded later\n" * 4, TORCH),
    "bin-zip-without-pickle": (BIN, _zip_without_pickle, TORCH),
    "bin-central-directory-zeroed": (BIN, _zero_tail, TORCH),
    "h5-empty": (H5, lambda b: b"", EMPTY),
    "h5-truncated-half": (H5, lambda b: b[: len(b) // 2], HDF5),
    "h5-random-bytes": (H5, lambda b: _noise(4096, 2), HDF5),
    "h5-superblock-clobbered": (H5, _clobber_superblock, HDF5),
}


def _load(folder: Path, file: Path, tmp_path: Path):
    return load_state_dict(file)


def _from_pretrained(folder: Path, file: Path, tmp_path: Path):
    return ConvNextForImageClassification.from_pretrained(folder)


def _convert(folder: Path, file: Path, tmp_path: Path):
    return convert_leaving_nothing(file, tmp_path)


ENTRY_POINTS = {"load_state_dict": _load, "from_pretrained": _from_pretrained, "convert": _convert}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("case", CASES)
def test_unreadable_weights_file(tmp_path, case, entry):
    name, corrupt, problem = CASES[case]
    folder = write_folder(tmp_path / "model")
    bad = folder / name
    bad.write_bytes(corrupt((HF / name).read_bytes()))
    expect_error(lambda: ENTRY_POINTS[entry](folder, bad, tmp_path), CheckpointError, str(bad), problem=problem)

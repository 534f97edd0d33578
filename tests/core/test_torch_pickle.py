"""The torch-free reader of torch.save files (convnext_common.checkpoints.formats.torch_pickle) against
torch itself: every array equals what ``torch.load(weights_only=True)`` returns for the same file."""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import FIXTURES, REPO  # noqa: E402
from convnext_common.checkpoints.errors import CheckpointError  # noqa: E402
from convnext_common.checkpoints.formats.files import load_state_dict  # noqa: E402
from convnext_common.checkpoints.formats.torch_pickle import load_torch_checkpoint, load_torch_file  # noqa: E402

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
          torch.int8, torch.uint8, torch.bool, torch.complex64]


def _reference(value):
    """What the reader must return for a tensor: torch's values, bfloat16 widened to float32."""
    if value.dtype == torch.bfloat16:
        value = value.float()
    return value.detach().numpy()


def _tensors() -> dict:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, 4, generator=g)
    shared = torch.randn(40, generator=g)
    out = {f"dtype.{str(d).split('.')[-1]}": (torch.randn(3, 4, generator=g) * 50).to(d) for d in DTYPES}
    out.update({
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
        "transposed": base.transpose(0, 2),                  # strides (1, 4, 20)
        "strided": base[::2, 1:, ::3],                        # a view with an offset and steps
        "expanded": torch.randn(3, 1, generator=g).expand(3, 5),  # stride 0
        "shared.a": shared[:10].view(2, 5),                   # two views of one storage
        "shared.b": shared[25:].view(5, 3),
        "conv": torch.randn(8, 1, 7, 7, generator=g).to(memory_format=torch.channels_last),
        "param": torch.nn.Parameter(torch.randn(4, generator=g)),
    })
    return out


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_arrays_equal_torch_load(tmp_path, zip_format):
    tensors = _tensors()
    path = tmp_path / "weights.pth"
    torch.save(tensors, path, _use_new_zipfile_serialization=zip_format)
    got = load_torch_file(path)
    want = torch.load(path, weights_only=True)
    assert list(got) == list(want)
    for name, value in want.items():
        ref = _reference(value)
        assert got[name].dtype == ref.dtype and got[name].shape == ref.shape, name
        assert np.array_equal(got[name], ref), name


def test_big_endian_file(tmp_path):
    """A file written on a big-endian machine records its byte order; the values are the same."""
    tensors = {"w": torch.randn(3, 4).double(), "i": torch.arange(5, dtype=torch.int32)}
    path = tmp_path / "little.pth"
    torch.save(tensors, path)
    big = tmp_path / "big.pth"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(big, "w") as dst:
        prefix = next(n for n in src.namelist() if n.endswith("data.pkl"))[: -len("data.pkl")]
        got = load_torch_file(path)
        for info in src.infolist():
            data = src.read(info)
            if info.filename.startswith(prefix + "data/"):
                dtype = ">f8" if len(data) == 3 * 4 * 8 else ">i4"
                data = np.frombuffer(data, dtype.replace(">", "<")).astype(dtype).tobytes()
            if info.filename == prefix + "byteorder":
                data = b"big"
            dst.writestr(info, data)
    back = load_torch_file(big)
    for name in tensors:
        assert np.array_equal(back[name], got[name]) and back[name].dtype.isnative


def test_training_checkpoint_entries_and_namespace(tmp_path):
    model = OrderedDict(w=torch.randn(2, 3), b=torch.zeros(2))
    ema = OrderedDict(w=torch.randn(2, 3), b=torch.ones(2))
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": model, "model_ema": ema, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]},
                "epoch": 7, "args": argparse.Namespace(lr=4e-3, model="convnext_tiny"), "scaler": None}, path)
    ckpt = load_torch_checkpoint(path)
    assert ckpt.entry == "model" and ckpt.args == {"lr": 4e-3, "model": "convnext_tiny"}
    assert np.array_equal(ckpt.weights["w"], model["w"].numpy())
    assert np.array_equal(load_torch_checkpoint(path, ema=True).weights["b"], np.ones(2, np.float32))


@pytest.mark.parametrize("fixture", sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.glob("*/*")
                                           if p.suffix in (".bin", ".pth")))
def test_peer_fixtures_read_as_torch_reads_them(fixture):
    path = FIXTURES / fixture
    want = torch.load(path, weights_only=True)
    want = want.get("model", want)
    got = load_state_dict(path)
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        assert np.array_equal(got[name], _reference(value)), name


def test_corrupted_record_is_refused_by_its_crc(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"w": torch.ones(1000)}, path)
    data = bytearray(path.read_bytes())
    at = data.index(np.ones(4, np.float32).tobytes())
    data[at + 100] ^= 0xFF  # one flipped byte inside the tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"{path.name}: not a readable torch checkpoint.*CRC"):
        load_torch_file(path)


@pytest.mark.parametrize("payload, refused", [
    ({"w": torch.zeros(2), "n": torch.nn.Linear(1, 1)}, "torch.nn.modules.linear.Linear"),
    ({"w": np.zeros(2)}, "numpy"),
])
def test_anything_but_tensors_and_containers_is_refused(tmp_path, payload, refused):
    path = tmp_path / "weights.pth"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=rf"refused: .*{refused}"):
        load_torch_file(path)


def test_reading_imports_no_framework(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"w": torch.randn(2, 2)}, path)
    code = ("import sys; from convnext_common.checkpoints.formats.files import load_state_dict; "
            f"w = load_state_dict({str(path)!r})['w']; assert w.shape == (2, 2); "
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO)
    assert out.stdout.strip() == "[]"

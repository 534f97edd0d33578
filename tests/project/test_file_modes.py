"""Files and folders the project writes get the modes a plain ``open()`` / ``mkdir()`` gives under
the current umask (0o666 / 0o777 less the umask), so a model folder written by one account is
readable by another when the umask says so. Checked under umask 022 and 077 for the atomic
writers, ``convnext convert``, ``convnext train``, both twins' ``save_pretrained`` and ONNX export.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FIXTURES
from convnext_app import cli
from convnext_common import ConvNextConfig
from convnext_app.digits import Rendering, load_heldout, render
from convnext_common.fileio import atomic_directory, atomic_write, atomic_write_text
from convnext_common.processing import ConvNextImageProcessor
from convnext_pt import ConvNextForImageClassification

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")

TINY = dict(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 32, 64], num_labels=3, image_size=32)


@pytest.fixture(params=[0o022, 0o077], ids=["umask022", "umask077"])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, str]:
    """Permission bits of everything under ``root`` (pytest's own tmp_path is private), by relative path."""
    return {str(path.relative_to(root)): oct(stat.S_IMODE(path.lstat().st_mode)) for path in root.rglob("*")}


def assert_plain_modes(root: Path, umask: int) -> None:
    """Every folder 0o777 and every file 0o666, less the umask (as mkdir() and open() make them)."""
    found = modes(root)
    expected = {name: oct((0o777 if (root / name).is_dir() else 0o666) & ~umask) for name in found}
    assert found == expected


def test_atomic_writers(tmp_path, umask):
    atomic_write_text(tmp_path / "a.json", "{}\n")
    atomic_write(tmp_path / "b.bin", lambda tmp: tmp.write_bytes(b"x"))
    atomic_write_text(tmp_path / "a.json", "[]\n")  # a replaced file too
    with atomic_directory(tmp_path / "folder") as tmp:
        (tmp / "inner").mkdir()
        atomic_write_text(tmp / "inner" / "c.txt", "c")
    with atomic_directory(tmp_path / "folder", overwrite=True) as tmp:
        atomic_write_text(tmp / "d.txt", "d")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin", "folder"]
    assert_plain_modes(tmp_path, umask)


def test_convert_output(tmp_path, umask, capsys):
    out = tmp_path / "converted"
    assert cli.main(["convert", str(FIXTURES / "timm-convnext" / "model.safetensors"), str(out), "--quiet"]) == 0
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert_plain_modes(tmp_path, umask)


def test_pt_save_pretrained(tmp_path, umask):
    torch.manual_seed(0)
    model = ConvNextForImageClassification(ConvNextConfig(**TINY))
    model.save_pretrained(tmp_path / "safe")
    model.save_pretrained(tmp_path / "bin", safe_serialization=False)
    model.save_pretrained(tmp_path / "sharded", max_shard_size=20_000)
    assert len(list((tmp_path / "sharded").glob("model-*.safetensors"))) > 1
    assert_plain_modes(tmp_path, umask)


def test_tf_save_pretrained(tmp_path, umask):
    tfm = pytest.importorskip("convnext_tf")
    model = tfm.TFConvNextForImageClassification(ConvNextConfig(**TINY))
    model(np.zeros((1, 3, 32, 32), np.float32), training=False)
    model.save_pretrained(tmp_path / "keras", safe_serialization=True)
    assert {p.name for p in (tmp_path / "keras").iterdir()} >= {"config.json", "tf_model.h5", "model.safetensors"}
    assert_plain_modes(tmp_path, umask)


def test_onnx_export(tmp_path, umask, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from convnext_pt.export import export_onnx

    torch.manual_seed(0)
    model = ConvNextForImageClassification(ConvNextConfig(**TINY)).eval()
    export_onnx(model, tmp_path / "m.onnx", exporter="torchscript")
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    assert_plain_modes(tmp_path, umask)


def test_train_output(tmp_path, umask, capsys):
    held = load_heldout(FIXTURES / "digits_heldout.npz")
    data = tmp_path / "data"
    for digit in (1, 7):
        (data / str(digit)).mkdir(parents=True)
        for k, i in enumerate(np.flatnonzero(held.labels == digit)[:4]):
            render(held.images[i], Rendering("bilinear", 36, "L")).save(data / str(digit) / f"{k}.png")
    model = tmp_path / "start"
    torch.manual_seed(0)
    ConvNextForImageClassification(ConvNextConfig(**TINY)).save_pretrained(model)
    ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0).save_pretrained(model)
    out = tmp_path / "nested" / "run"
    assert cli.main(["train", "--data", str(data), "--model", str(model), "--out", str(out), "--epochs", "1",
                     "--batch-size", "4", "--val-fraction", "0.25", "--quiet"]) == 0
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "preprocessor_config.json",
                                               "metrics.json", "last_checkpoint.pt"}
    assert_plain_modes(tmp_path / "nested", umask)

"""`convnext export`: dispatch to the twins' exporters, its report, and one-line errors."""

import json
import sys

import numpy as np
import pytest

from conftest import rel_err
from convnext_common.cli import main


def test_onnx_of_fixture_with_json_report(tmp_path, fixtures_dir, inputs, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from convnext_pt.export import run_onnx

    out = tmp_path / "m.onnx"
    rc = main(["export", "--model", str(fixtures_dir / "hf-convnext"), "--format", "onnx", "--out", str(out),
               "--exporter", "torchscript", "--image-size", "64", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and out.is_file()
    assert report["format"] == "onnx" and report["details"]["opset"] == 18 and report["max_rel"] <= 1e-5
    expected = np.load(fixtures_dir / "hf-convnext" / "expected.npz")
    assert rel_err(run_onnx(out, inputs["pixel_values_odd"])["logits"], expected["logits_odd"]) <= 1e-4


def test_savedmodel_of_a_backbone(tmp_path, fixtures_dir, inputs, capsys):
    """A Backbone folder (PyTorch weights only) becomes a SavedModel serving its feature maps."""
    tf = pytest.importorskip("tensorflow")
    out = tmp_path / "saved"
    rc = main(["export", "--model", str(fixtures_dir / "hf-convnext-backbone"), "--format", "savedmodel",
               "--out", str(out), "--image-size", "64"])
    text = capsys.readouterr().out
    assert rc == 0 and "TFConvNextBackbone" in text and "max rel" in text
    outputs = tf.saved_model.load(str(out)).signatures["serving_default"](
        pixel_values=tf.constant(inputs["pixel_values"]))
    expected = np.load(fixtures_dir / "hf-convnext-backbone" / "expected.npz")
    assert sorted(outputs) == ["feature_maps_0", "feature_maps_1", "feature_maps_2"]
    for name, value in outputs.items():
        assert rel_err(value.numpy(), expected[name]) <= 1e-4, name


@pytest.mark.parametrize("argv, message", [
    (["--format", "onnx", "--int8"], "--int8 applies to --format tflite only"),
    (["--format", "tflite", "--opset", "17"], "--opset and --exporter apply to --format onnx only"),
    (["--format", "onnx", "--model", "no/such/folder"], "no such model folder"),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, argv, message):
    rc = main(["export", "--out", str(tmp_path / "x.out"), *argv])
    err = capsys.readouterr().err
    assert rc == 1 and message in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    out.write_bytes(b"keep")
    assert main(["export", "--format", "onnx", "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"keep"


def test_missing_onnx_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    rc = main(["export", "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert rc == 1 and 'pip install "convnext-twins[export]"' in err and "'onnx'" in err
    assert not (tmp_path / "m.onnx").exists()


def test_help_lists_the_formats(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--help"])
    text = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert "onnx,savedmodel,tflite" in text and "--int8" in text and "--opset" in text

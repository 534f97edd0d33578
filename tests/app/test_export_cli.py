"""`convnext export`: dispatch to the twins' exporters, its report, and one-line errors."""

import json
import sys

import numpy as np
import pytest

from conftest import rel_err
from convnext_app.cli import main


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


@pytest.mark.slow
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
    (["--format", "tflite", "--opset", "17"], "--opset applies to --format onnx or openvino only"),
    (["--format", "savedmodel", "--exporter", "dynamo"], "--exporter applies to --format onnx or openvino only"),
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
    assert "onnx,openvino,savedmodel,tflite" in text and "--int8" in text and "--opset" in text


# ---- the ONNX opset: what the file declares is what is reported; unsupported ones are one line -----
def declared_opset(path) -> int:
    import onnx

    return {o.domain: o.version for o in onnx.load(str(path), load_external_data=False).opset_import}[""]


@pytest.mark.slow
@pytest.mark.parametrize("exporter, opset", [("dynamo", 20), ("torchscript", 17)])
def test_report_gives_the_written_files_opset(tmp_path, capfd, exporter, opset):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = tmp_path / "m.onnx"
    rc = main(["export", "--format", "onnx", "--out", str(out), "--exporter", exporter, "--opset", str(opset),
               "--json"])
    captured = capfd.readouterr()
    assert rc == 0 and captured.err == ""  # no exporter warnings or tracebacks on a supported opset
    assert json.loads(captured.out)["details"]["opset"] == declared_opset(out) == opset


@pytest.mark.parametrize("exporter, opset, supported", [
    ("dynamo", 17, "writes opsets 18-"), ("dynamo", 99, "writes opsets 18-"), ("torchscript", 99, "writes opsets 17-"),
])
def test_unsupported_opset_is_one_line_naming_the_range(tmp_path, capfd, exporter, opset, supported):
    pytest.importorskip("onnxruntime")
    rc = main(["export", "--format", "onnx", "--out", str(tmp_path / "m.onnx"), "--exporter", exporter,
               "--opset", str(opset)])
    captured = capfd.readouterr()
    assert rc == 1 and captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert f"opset {opset} is not supported by the {exporter}" in captured.err and supported in captured.err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_an_opset_the_exporter_swaps_is_refused(tmp_path, monkeypatch):
    """Were the range check to let an opset through that the exporter replaces (dynamo writes 18 when
    asked for 17), the file's own opset is compared with the one asked for and nothing is written."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import convnext_pt.export as pt_export
    from convnext_common.export import ExportVerificationError
    from convnext_app.inference import default_model_dir
    from convnext_pt import ConvNextForImageClassification

    monkeypatch.setattr(pt_export, "check_opset", lambda opset, exporter="dynamo": opset)
    model = ConvNextForImageClassification.from_pretrained(default_model_dir())
    with pytest.raises(ExportVerificationError, match="wrote opset 18 where 17 was asked"):
        pt_export.export_onnx(model, tmp_path / "m.onnx", opset=17)
    assert list(tmp_path.iterdir()) == []


def test_quiet_prints_nothing(tmp_path, capfd):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "m.onnx"
    assert main(["export", "--format", "onnx", "--out", str(out), "--exporter", "torchscript", "--quiet"]) == 0
    assert capfd.readouterr() == ("", "") and out.is_file()


def test_a_format_is_one_registry_entry(tmp_path, capsys, monkeypatch):
    """A new record in exporting.FORMATS is a --format choice: its options are checked, the folder is
    loaded in its twin through the class lookup, and its function writes the file."""
    import dataclasses

    from convnext_app import exporting
    from convnext_common.export import ExportReport

    calls = []

    def write_npz(model, out, options, common):
        calls.append((type(model).__name__, options, common["batch_size"]))
        with open(out, "wb") as f:
            np.savez(f, **{k: v.detach().numpy() for k, v in model.state_dict().items()})
        return ExportReport("npz", out, "pt", None)

    fmt = exporting.ExportFormat("npz", "pt", "file", (), ("int8",), write_npz)
    monkeypatch.setitem(exporting.FORMATS, "npz", fmt)
    out = tmp_path / "m.npz"
    assert main(["export", "--format", "npz", "--out", str(out), "--int8", "--batch-size", "3", "--quiet"]) == 0
    assert calls == [("ConvNextForImageClassification", {"int8": True}, 3)] and out.is_file()
    rc = main(["export", "--format", "npz", "--out", str(tmp_path / "n.npz"), "--opset", "18"])
    assert rc == 1 and "--opset applies to --format onnx or openvino only" in capsys.readouterr().err
    monkeypatch.setitem(exporting.FORMATS, "npz", dataclasses.replace(fmt, writes="folder"))
    assert main(["export", "--format", "npz", "--out", str(out), "--overwrite"]) == 1
    assert "is not a folder" in capsys.readouterr().err

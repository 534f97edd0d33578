"""``--runtime onnxruntime|openvino`` and ``convnext export --format openvino``: the engines run the
project's verified ONNX export and give the PyTorch twin's answers (float32: rel <= 1e-5 on
logits and features); a missing engine is one line naming the extra (simulated by hiding the
module, so the test does not depend on what is installed)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from app.conftest import one_line_error
from convnext_app import cli
from convnext_app.inference import (
    default_model_dir, load_classifier, load_embedder, load_processor, preprocess_files, sample_image_paths,
)
from convnext_common.export import rel_error, random_pixels

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def pixels():
    return preprocess_files(load_processor(default_model_dir()), sample_image_paths())


@pytest.fixture(scope="module")
def torch_logits(pixels):
    return load_classifier(default_model_dir(), "pt").logits(pixels)


@pytest.mark.slow  # each run exports the model first (the tests below without a mark export nothing)
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_runtime_gives_the_twins_logits(runtime, pixels, torch_logits):
    if runtime == "openvino":
        pytest.importorskip("openvino")
    clf = load_classifier(default_model_dir(), "pt", runtime=runtime)
    logits = clf.logits(pixels)
    assert logits.dtype == np.float32 and logits.shape == torch_logits.shape
    assert rel_error(logits, torch_logits) <= 1e-5
    assert np.array_equal(logits.argmax(-1), torch_logits.argmax(-1))


@pytest.mark.slow
def test_onnxruntime_embedder_gives_the_twins_features(pixels):
    ours = load_embedder(default_model_dir(), "pt", runtime="onnxruntime").features(pixels)
    ref = load_embedder(default_model_dir(), "pt").features(pixels)
    assert ours.shape == ref.shape and rel_error(ours, ref) <= 1e-5


@pytest.mark.slow  # bfloat16 on a CPU without bfloat16 instructions falls back to float32 or is slow
def test_openvino_bf16_agrees_on_top1(pixels, torch_logits):
    pytest.importorskip("openvino")
    logits = load_classifier(default_model_dir(), "pt", "bf16", runtime="openvino").logits(pixels)
    assert np.array_equal(logits.argmax(-1), torch_logits.argmax(-1))
    assert rel_error(logits, torch_logits) <= 0.05


@pytest.mark.slow
def test_openvino_export_round_trip(tmp_path, capsys):
    ov = pytest.importorskip("openvino")
    import torch

    out = tmp_path / "digits.xml"
    assert cli.main(["export", "--format", "openvino", "--out", str(out), "--json"]) == 0
    assert '"format": "openvino"' in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits.bin", "digits.xml"]  # no ONNX step left behind
    compiled = ov.Core().compile_model(str(out), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    x = random_pixels((3, 3, 48, 40), seed=7)  # a batch and size the export was not checked at
    got = np.asarray(compiled(x)[compiled.outputs[0]])
    model = load_classifier(default_model_dir(), "pt").model
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).logits.numpy()
    assert rel_error(got, ref) <= 1e-5


def test_missing_openvino_is_one_line_naming_the_extra(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    one_line_error(capsys, ["predict", "--runtime", "openvino"], "convnext-twins[openvino]")
    one_line_error(capsys, ["export", "--format", "openvino", "--out", str(tmp_path / "m.xml")],
                    "convnext-twins[openvino]")
    assert not list(tmp_path.iterdir())


def test_missing_onnxruntime_is_one_line_naming_the_extra(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    one_line_error(capsys, ["predict", "--runtime", "onnxruntime"], "convnext-twins[export]")


def test_runtime_option_errors(capsys, tmp_path):
    one_line_error(capsys, ["predict", "--runtime", "onnxruntime", "--precision", "bf16"], "fp32")
    one_line_error(capsys, ["predict", "--runtime", "onnxruntime", "--framework", "tf"], "--framework pt")
    img = sample_image_paths()[0]
    one_line_error(capsys, ["embed", str(img), "--runtime", "onnxruntime", "--stage", "2",
                             "--output", str(tmp_path / "f.npy")], "--stage")

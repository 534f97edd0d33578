"""SavedModel and TFLite exports of the Keras twin: the transformers fixture, a random-weight V2
model, the embedded digits model (int8 agreement on its held-out set), and failure handling.

References independent of the exporters: transformers' outputs in expected.npz (docs/DESIGN.md's
rel <= 1e-4), the eager Keras model (SavedModel rel <= 1e-5, TFLite float32 rel <= 1e-4) and, for
the random model, the PyTorch twin holding the same weights.
"""

import os
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
convnext_tf = pytest.importorskip("convnext_tf")
if not hasattr(convnext_tf, "TFConvNextForImageClassification"):
    pytest.skip("the Keras twin has no TFConvNextForImageClassification yet", allow_module_level=True)

from conftest import FIXTURES, rel_err  # noqa: E402
from convnext_common import ConvNextV2Config  # noqa: E402
from convnext_common.export import ExportVerificationError  # noqa: E402
from convnext_app.inference import default_model_dir  # noqa: E402
from convnext_tf import TFConvNextForImageClassification, TFConvNextV2ForImageClassification  # noqa: E402
from convnext_tf.export import (  # noqa: E402
    compare_tflite, eager_outputs, export_saved_model, export_tflite, run_saved_model, run_tflite,
)

HELDOUT = FIXTURES / "digits_heldout.npz"
SAVED_MODEL_TOL = 1e-5
TFLITE_TOL = 1e-4
HF_TOL = 1e-4


@pytest.fixture(scope="module")
def fixture_model(fixtures_dir):
    return TFConvNextForImageClassification.from_pretrained(fixtures_dir / "hf-convnext")


def _fixture_pairs(inputs, expected):
    return [(inputs["pixel_values"], expected["logits"]), (inputs["pixel_values_odd"], expected["logits_odd"])]


@pytest.fixture(scope="module")
def fixture_saved_model(fixture_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("saved") / "hf-convnext"
    return out, export_saved_model(fixture_model, out, image_size=(64, 64))


def test_saved_model_of_fixture(fixture_model, fixture_saved_model, fixtures_dir, inputs):
    out, report = fixture_saved_model
    assert report.max_rel <= SAVED_MODEL_TOL and len(report.checks) >= 2
    assert {c.shape[0] for c in report.checks} >= {1, 2}
    # a fresh load, as a serving system would do it
    loaded = tf.saved_model.load(str(out))
    signature = loaded.signatures["serving_default"]
    (spec,) = signature.structured_input_signature[1].values()
    assert spec.name == "pixel_values" and spec.dtype == tf.float32 and spec.shape.as_list() == [None, 3, None, None]
    expected = np.load(fixtures_dir / "hf-convnext" / "expected.npz")
    for x, ref in _fixture_pairs(inputs, expected):
        ours = run_saved_model(out, x, loaded)["logits"]
        assert rel_err(ours, ref) <= HF_TOL
        assert rel_err(ours, eager_outputs(fixture_model, x)["logits"]) <= SAVED_MODEL_TOL
    assert os.stat(out).st_mode & 0o077 != 0  # readable by others (umask permitting), unlike a temp folder


def test_tflite_float32_of_fixture(fixture_model, fixture_saved_model, fixtures_dir, inputs, tmp_path):
    path = tmp_path / "m.tflite"
    report = export_tflite(fixture_model, path, image_size=(64, 64), saved_model_dir=fixture_saved_model[0])
    assert report.max_rel <= TFLITE_TOL and report.details["weights"] == "float32"
    expected = np.load(fixtures_dir / "hf-convnext" / "expected.npz")
    for x, ref in _fixture_pairs(inputs, expected):
        ours = run_tflite(path, x)["logits"]
        assert rel_err(ours, ref) <= HF_TOL
        assert rel_err(ours, eager_outputs(fixture_model, x)["logits"]) <= TFLITE_TOL


@pytest.mark.slow
def test_random_weight_v2_matches_pytorch_twin(tmp_path):
    """Both formats for a V2 model whose weights come from a re-drawn PyTorch twin."""
    import torch

    from helpers import tiny_classifier

    pt_model = tiny_classifier(v2=True, seed=9)
    model = TFConvNextV2ForImageClassification(pt_model.config)
    model.load_numpy_state_dict(pt_model.numpy_state_dict())
    saved = export_saved_model(model, tmp_path / "saved", image_size=(64, 96))
    lite = export_tflite(model, tmp_path / "m.tflite", image_size=(64, 96))
    assert saved.max_rel <= SAVED_MODEL_TOL and lite.max_rel <= TFLITE_TOL
    x = np.random.default_rng(4).standard_normal((3, 3, 70, 90)).astype(np.float32)
    with torch.no_grad():
        ref = pt_model(torch.from_numpy(x)).logits.numpy()
    assert rel_err(run_saved_model(tmp_path / "saved", x)["logits"], ref) <= HF_TOL
    assert rel_err(run_tflite(tmp_path / "m.tflite", x)["logits"], ref) <= HF_TOL


def _heldout_pixels(folder: Path):
    from convnext_app.digits import heldout_batch, load_heldout
    from convnext_app.inference import load_processor

    return heldout_batch(load_heldout(HELDOUT), load_processor(folder))


@pytest.mark.slow
def test_embedded_model_saved_model_tflite_and_int8(tmp_path):
    folder = default_model_dir()
    if not (folder / "config.json").is_file() or not HELDOUT.is_file():
        pytest.skip("the embedded default model or its held-out set is not in this checkout")
    model = TFConvNextForImageClassification.from_pretrained(folder)
    saved = export_saved_model(model, tmp_path / "saved")
    fp32 = export_tflite(model, tmp_path / "fp32.tflite", saved_model_dir=tmp_path / "saved")
    int8 = export_tflite(model, tmp_path / "int8.tflite", int8=True, saved_model_dir=tmp_path / "saved")
    assert saved.max_rel <= SAVED_MODEL_TOL and fp32.max_rel <= TFLITE_TOL
    assert int8.tolerance is None and int8.details["weights"].startswith("int8")
    size_ratio = (tmp_path / "int8.tflite").stat().st_size / (tmp_path / "fp32.tflite").stat().st_size
    assert 3.2 <= 1 / size_ratio <= 4.0  # the README's 3.5x for this model (int8 weights, float biases and norms)

    # int8 on the held-out digits (bench/bench_export.py reports the same for float32 too)
    pixels, labels = _heldout_pixels(folder)
    int8_check = compare_tflite(model, tmp_path / "int8.tflite", pixels, batch_size=512)
    int8_acc = float((run_tflite(tmp_path / "int8.tflite", pixels)["logits"].argmax(-1) == labels).mean())
    print(f"\nembedded model, {len(pixels)} held-out renderings: int8 TFLite rel {int8_check.max_rel:.2e}, "
          f"top-1 agreement with Keras {int8_check.top1_agree:.4f}, accuracy {int8_acc:.4f}")
    assert int8_check.top1_agree >= 0.99


@pytest.mark.slow
def test_failed_verification_leaves_nothing(fixture_model, fixture_saved_model, tmp_path):
    with pytest.raises(ExportVerificationError, match="above the tolerance"):
        export_saved_model(fixture_model, tmp_path / "saved", image_size=(64, 64), tolerance=1e-12)
    with pytest.raises(ExportVerificationError, match="above the tolerance"):
        export_tflite(fixture_model, tmp_path / "m.tflite", image_size=(64, 64), tolerance=1e-12,
                      saved_model_dir=fixture_saved_model[0])
    assert list(tmp_path.iterdir()) == []


def test_existing_outputs_need_overwrite(fixture_model, tmp_path):
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "keep").write_text("x")
    with pytest.raises(FileExistsError):
        export_saved_model(fixture_model, tmp_path / "saved")
    (tmp_path / "m.tflite").write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        export_tflite(fixture_model, tmp_path / "m.tflite")
    assert (tmp_path / "saved" / "keep").read_text() == "x" and (tmp_path / "m.tflite").read_bytes() == b"keep"


@pytest.mark.parametrize("task", ["Model", "ForImageClassification", "Backbone"])
def test_every_head_serves_the_pytorch_twins_output_names_and_values(task, tmp_path):
    """``model.export()`` of each head serves the tensors the PyTorch twin's exports return, under
    the same names (convnext_pt.export.output_names), each equal to the PyTorch twin's output."""
    import torch

    import convnext_pt
    from convnext_pt.export import TensorOutputs, output_names
    from convnext_tf.export import output_names as tf_output_names
    from helpers import redraw_

    config = ConvNextV2Config(depths=[1, 1], hidden_sizes=[8, 16], num_stages=2, num_labels=3,
                              out_features=["stem", "stage2"])
    pt = getattr(convnext_pt, "ConvNextV2" + task)(config).eval()
    redraw_(pt, seed=4)
    model = getattr(convnext_tf, "TFConvNextV2" + task)(config)
    model.load_numpy_state_dict(pt.numpy_state_dict())
    names = output_names(pt)
    assert tf_output_names(model) == names
    model.export(str(tmp_path / "sm"), verbose=False)
    x = np.random.default_rng(3).standard_normal((2, 3, 36, 44)).astype(np.float32)
    served = run_saved_model(tmp_path / "sm", x)
    assert sorted(served) == sorted(names)
    with torch.no_grad():
        ref = dict(zip(names, TensorOutputs(pt)(torch.from_numpy(x))))
    for name in names:
        assert rel_err(served[name], ref[name].numpy()) <= HF_TOL, name

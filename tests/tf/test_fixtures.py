"""The Keras twin reproduces transformers' outputs on the shared fixtures (DESIGN.md: rel <= 1e-4),
from each weights file on its own: tf_model.h5 (written by transformers' TF classes),
model.safetensors and pytorch_model.bin (written by the PyTorch classes)."""

import numpy as np
import pytest

from conftest import rel_err
from helpers import outputs_by_name

tf = pytest.importorskip("tensorflow")
convnext_tf = pytest.importorskip("convnext_tf")

pytestmark = pytest.mark.tf
TOL = 1e-4
CASES = [
    ("hf-convnext", "TFConvNextForImageClassification"),
    ("hf-convnext-base", "TFConvNextModel"),
    ("hf-convnext-backbone", "TFConvNextBackbone"),
    ("hf-convnextv2", "TFConvNextV2ForImageClassification"),
]
WEIGHTS = ["tf_model.h5", "model.safetensors", "pytorch_model.bin"]


def expected_names(expected, suffix):
    return [k[: len(k) - len(suffix)] for k in expected.files
            if k.endswith(suffix) and (suffix or not k.endswith("_odd"))]


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("folder, cls_name", CASES)
def test_fixture_outputs(fixtures_dir, inputs, folder, cls_name, weights, tmp_path):
    src = fixtures_dir / folder
    if not (src / weights).is_file():
        pytest.skip(f"{folder} has no {weights} (transformers has no TF backbone)")
    (tmp_path / "config.json").write_bytes((src / "config.json").read_bytes())
    (tmp_path / weights).write_bytes((src / weights).read_bytes())
    model = getattr(convnext_tf, cls_name).from_pretrained(tmp_path)
    expected = np.load(src / "expected.npz")
    for key, suffix in (("pixel_values", ""), ("pixel_values_odd", "_odd")):
        ours = outputs_by_name(model(inputs[key], output_hidden_states=True, training=False))
        wanted = expected_names(expected, suffix)
        assert wanted and set(wanted) <= set(ours)
        for name in wanted:
            assert rel_err(ours[name], expected[name + suffix]) <= TOL, (folder, weights, name + suffix)


@pytest.mark.parametrize("folder, cls_name", CASES)
def test_channels_last_input_and_outputs(fixtures_dir, inputs, folder, cls_name):
    src = fixtures_dir / folder
    model = getattr(convnext_tf, cls_name).from_pretrained(src, data_format="channels_last")
    expected = np.load(src / "expected.npz")
    x = inputs["pixel_values_odd"].transpose(0, 2, 3, 1)
    out = model(x, output_hidden_states=True, training=False)
    maps = out.feature_maps if hasattr(out, "feature_maps") else out.hidden_states
    assert maps[-1].shape[-1] == 128  # NHWC out
    ours = outputs_by_name(out, channels_last=True)
    for name in expected_names(expected, "_odd"):
        assert rel_err(ours[name], expected[name + "_odd"]) <= TOL, name


def test_tuple_access_and_return_dict_false(fixtures_dir, inputs):
    model = convnext_tf.TFConvNextForImageClassification.from_pretrained(fixtures_dir / "hf-convnext")
    x = inputs["pixel_values"]
    out = model(x, output_hidden_states=True)
    tup = model(x, output_hidden_states=True, return_dict=False)
    assert isinstance(tup, tuple) and len(tup) == 2
    np.testing.assert_array_equal(np.asarray(tup[0]), np.asarray(out.logits))
    np.testing.assert_array_equal(np.asarray(out["logits"]), np.asarray(out[0]))
    assert [h.shape[1] for h in out.hidden_states] == [16, 16, 32, 64, 128]
    assert model(x).hidden_states is None

"""The Keras twin called as transformers' TF ConvNeXt classes are: a dict as the first argument,
``from_config`` with a model config (or its dict), output flags from the config, transformers'
save options, ``input_signature`` / ``dummy_inputs`` / ``serving_output`` (transformers' rules:
pixel_values (None, num_channels, image_size, image_size) float32; dummies of batch 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import torch  # noqa: F401 (before TensorFlow)
from convnext_common import ConvNextConfig

tf = pytest.importorskip("tensorflow")
convnext_tf = pytest.importorskip("convnext_tf")

pytestmark = pytest.mark.tf


def _config(**kwargs) -> ConvNextConfig:
    return ConvNextConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32], num_labels=3, image_size=32, **kwargs)


@pytest.fixture(scope="module")
def classifier():
    return convnext_tf.TFConvNextForImageClassification(_config())


def test_dict_as_first_argument(classifier):
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype("float32")
    labels = np.array([0, 2])
    positional = classifier(x, labels=labels, training=False)
    as_dict = classifier({"pixel_values": x, "labels": labels}, training=False)
    np.testing.assert_array_equal(np.asarray(positional.logits), np.asarray(as_dict.logits))
    np.testing.assert_array_equal(np.asarray(positional.loss), np.asarray(as_dict.loss))
    with pytest.raises(ValueError, match="unknown inputs"):
        classifier({"pixel_values": x, "input_ids": x})


def test_output_flags_from_the_config():
    model = convnext_tf.TFConvNextModel(_config(output_hidden_states=True))
    x = np.zeros((1, 3, 32, 32), "float32")
    assert list(model(x)) == ["last_hidden_state", "pooler_output", "hidden_states"]
    assert list(model(x, output_hidden_states=False)) == ["last_hidden_state", "pooler_output"]
    model.config.return_dict = False
    assert isinstance(model(x), tuple)


def test_from_config_with_a_model_config_or_its_dict(classifier):
    for config in (classifier.config, classifier.config.to_dict()):
        model = convnext_tf.TFConvNextModel.from_config(config)
        assert type(model) is convnext_tf.TFConvNextModel and model.config == classifier.config
    keras_config = classifier.get_config()  # Keras' own round trip still works
    assert type(convnext_tf.TFConvNextForImageClassification.from_config(keras_config)).__name__ == \
        "TFConvNextForImageClassification"


def test_signature_dummies_and_serving_output(classifier):
    spec = classifier.input_signature["pixel_values"]
    assert tuple(spec.shape) == (None, 3, 32, 32) and spec.dtype == tf.float32
    dummies = classifier.dummy_inputs
    assert tuple(dummies["pixel_values"].shape) == (1, 3, 32, 32)
    out = classifier(dummies, output_hidden_states=True)
    assert list(classifier.serving_output(out)) == ["logits"]  # the config does not ask for hidden states


def test_transformers_save_options(classifier, tmp_path):
    classifier.save_pretrained(tmp_path, saved_model=False, max_shard_size="10GB")
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["ConvNextForImageClassification"]
    with pytest.raises(ValueError, match="push_to_hub"):
        classifier.save_pretrained(tmp_path, push_to_hub=True)
    loaded = convnext_tf.TFConvNextForImageClassification.from_pretrained(tmp_path, from_pt=False)
    np.testing.assert_array_equal(np.asarray(loaded.classifier.kernel), np.asarray(classifier.classifier.kernel))

"""The one class lookup per twin (convnext_pt.auto, convnext_tf.auto) and the Auto classes built on it.

Expected classes are transformers' names for (family, head); loaded models are checked against the
model that wrote the folder, on weights re-drawn so that every block matters.
"""

import json

import numpy as np
import pytest
import torch

import convnext_pt
from convnext_common import ConvNextConfig, ConvNextV2Config
from helpers import redraw_

TINY = dict(depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 16, 16], num_labels=3, image_size=32)
FAMILIES = {"convnext": ConvNextConfig, "convnextv2": ConvNextV2Config}
# transformers' class names: (model_type, head) -> name
EXPECTED = {("convnext", "classification"): "ConvNextForImageClassification",
            ("convnext", "base"): "ConvNextModel", ("convnext", "backbone"): "ConvNextBackbone",
            ("convnextv2", "classification"): "ConvNextV2ForImageClassification",
            ("convnextv2", "base"): "ConvNextV2Model", ("convnextv2", "backbone"): "ConvNextV2Backbone"}
PT_AUTO = {"classification": convnext_pt.AutoModelForImageClassification, "base": convnext_pt.AutoModel,
           "backbone": convnext_pt.AutoBackbone}


def tiny_config(model_type, architecture=None):
    config = FAMILIES[model_type](**TINY)
    if architecture:
        config.architectures = [architecture]
    return config


@pytest.mark.parametrize("model_type,head", sorted(EXPECTED))
def test_pt_lookup_per_head_and_family(model_type, head):
    name = EXPECTED[(model_type, head)]
    assert convnext_pt.model_class(tiny_config(model_type), head) is getattr(convnext_pt, name)
    # no head: the class config.json's architectures names (TF spelling included)
    for arch in (name, "TF" + name):
        assert convnext_pt.model_class(tiny_config(model_type, arch)) is getattr(convnext_pt, name)
    assert type(PT_AUTO[head].from_config(tiny_config(model_type))) is getattr(convnext_pt, name)


def test_no_architectures_means_a_classifier():
    assert convnext_pt.model_class(tiny_config("convnextv2")) is convnext_pt.ConvNextV2ForImageClassification


def test_lookup_errors_are_clear():
    with pytest.raises(ValueError, match="ViTForImageClassification.*not a ConvNeXt"):
        convnext_pt.model_class(tiny_config("convnext", "ViTForImageClassification"))
    with pytest.raises(ValueError, match="head 'detector' is not one of classification, base, backbone"):
        convnext_pt.model_class(tiny_config("convnext"), "detector")
    with pytest.raises(TypeError, match="from_pretrained"):
        convnext_pt.AutoModel()


def _main_output(out):
    return out.logits if getattr(out, "logits", None) is not None else (
        out.pooler_output if getattr(out, "pooler_output", None) is not None else out.feature_maps[-1])


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One folder per (family, head), written by save_pretrained of a re-drawn model, with its output."""
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    folders = {}
    for (model_type, head), name in EXPECTED.items():
        model = getattr(convnext_pt, name)(tiny_config(model_type)).eval()
        redraw_(model, seed=len(folders))
        folder = tmp_path_factory.mktemp(name)
        model.save_pretrained(folder)
        with torch.no_grad():
            folders[(model_type, head)] = (folder, _main_output(model(x)).numpy(), model)
    return x, folders


@pytest.mark.parametrize("model_type,head", sorted(EXPECTED))
def test_pt_folder_loads_back_as_its_class(written, model_type, head):
    x, folders = written
    folder, expected, _ = folders[(model_type, head)]
    model = PT_AUTO[head].from_pretrained(folder)
    assert type(model) is getattr(convnext_pt, EXPECTED[(model_type, head)])
    with torch.no_grad():
        np.testing.assert_array_equal(_main_output(model(x)).numpy(), expected)
    assert json.loads((folder / "config.json").read_text())["architectures"] == [EXPECTED[(model_type, head)]]


@pytest.mark.parametrize("model_type", sorted(FAMILIES))
def test_pt_auto_model_of_a_classifier_is_its_trunk(written, model_type):
    """transformers' AutoModel semantics: the base model of any checkpoint, without the classifier."""
    x, folders = written
    folder, _, classifier = folders[(model_type, "classification")]
    model = convnext_pt.AutoModel.from_pretrained(folder)
    assert type(model) is getattr(convnext_pt, EXPECTED[(model_type, "base")])
    with torch.no_grad():
        pooled = classifier.base_model(x).pooler_output.numpy()
        np.testing.assert_array_equal(model(x).pooler_output.numpy(), pooled)


def test_pt_auto_passes_overrides(written):
    folder = written[1][("convnext", "classification")][0]
    with pytest.warns(UserWarning, match="newly initialised"):
        model = convnext_pt.AutoModelForImageClassification.from_pretrained(folder, num_labels=5,
                                                                            ignore_mismatched_sizes=True)
    assert model.classifier.out_features == 5


@pytest.mark.parametrize("model_type,head", sorted(EXPECTED))
def test_tf_lookup_and_folders(written, model_type, head):
    tfm = pytest.importorskip("convnext_tf")
    name = "TF" + EXPECTED[(model_type, head)]
    auto = {"classification": tfm.TFAutoModelForImageClassification, "base": tfm.TFAutoModel,
            "backbone": tfm.TFAutoBackbone}[head]
    assert tfm.model_class(tiny_config(model_type), head) is getattr(tfm, name)
    assert tfm.model_class(tiny_config(model_type, EXPECTED[(model_type, head)])) is getattr(tfm, name)
    x, folders = written
    folder, expected, _ = folders[(model_type, head)]
    model = auto.from_pretrained(folder)
    assert type(model) is getattr(tfm, name)
    out = np.asarray(_main_output(model(x.numpy(), training=False)))
    assert float(np.abs(out - expected).max() / max(1.0, np.abs(expected).max())) < 1e-4
    with pytest.raises(ValueError, match="not a ConvNeXt"):
        tfm.model_class(tiny_config(model_type, "ResNetModel"))

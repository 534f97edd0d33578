"""transformers' pipelines run our PyTorch models and image processors (transformers is a client
library here, tested where it is installed). The reference is the pipeline's documented contract:
image-classification returns the top labels with the softmax of our logits; image-feature-extraction
returns our pooled features."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from convnext_common.processing import ConvNextImageProcessor
from convnext_pt import ConvNextConfig, ConvNextForImageClassification, ConvNextModel

transformers = pytest.importorskip("transformers")

SMALL = dict(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32])


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((80, 96, 3)) * 255).astype("uint8"))


@pytest.fixture(scope="module")
def processor():
    return ConvNextImageProcessor(size={"shortest_edge": 64})


def test_image_classification(image, processor):
    torch.manual_seed(0)
    config = ConvNextConfig(**SMALL, id2label={0: "cat", 1: "dog", 2: "fox"})
    model = ConvNextForImageClassification(config).eval()
    pipe = transformers.pipeline("image-classification", model=model, image_processor=processor)
    result = pipe(image, top_k=3)
    with torch.no_grad():
        probs = model(**processor(image, return_tensors="pt")).logits.softmax(-1)[0]
    expected = sorted(((config.id2label[i], float(p)) for i, p in enumerate(probs)), key=lambda t: -t[1])
    assert [r["label"] for r in result] == [label for label, _ in expected]
    np.testing.assert_allclose([r["score"] for r in result], [p for _, p in expected], rtol=1e-5)


def test_image_feature_extraction(image, processor):
    torch.manual_seed(0)
    model = ConvNextModel(ConvNextConfig(**SMALL)).eval()
    pipe = transformers.pipeline("image-feature-extraction", model=model, image_processor=processor)
    features = np.asarray(pipe(image, pool=True))
    with torch.no_grad():
        expected = model(**processor(image, return_tensors="pt")).pooler_output.numpy()
    np.testing.assert_allclose(features.reshape(expected.shape), expected, rtol=1e-5, atol=1e-6)


def test_auto_image_processor_reloads_the_fast_one_as_fast(tmp_path):
    from convnext_pt import ConvNextImageProcessorFast

    ConvNextImageProcessorFast(size={"shortest_edge": 64}).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "preprocessor_config.json").read_text())["image_processor_type"] == \
        "ConvNextImageProcessorFast"
    loaded = transformers.AutoImageProcessor.from_pretrained(tmp_path)
    # 4.x picks the fast class by the saved name (where torchvision is there to run it); 5.x has one
    # torch-backed class under the plain name
    if int(transformers.__version__.split(".")[0]) < 5 and transformers.utils.is_torchvision_available():
        assert loaded.is_fast and type(loaded).__name__ == "ConvNextImageProcessorFast"
    assert loaded.size["shortest_edge"] == 64
    ours = ConvNextImageProcessor.from_pretrained(tmp_path)  # our loaders read either name
    assert ours.size == {"shortest_edge": 64}

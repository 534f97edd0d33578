"""transformers' pipelines with the Keras twin (``framework="tf"``), where the installed transformers
still has TensorFlow pipelines (4.x with TensorFlow and tf-keras; transformers 5 dropped them, so
this file skips there). The reference is the pipeline's contract: our model on our processor's output."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

transformers = pytest.importorskip("transformers")
if int(transformers.__version__.split(".")[0]) >= 5 or not transformers.is_tf_available():
    pytest.skip("this transformers has no TensorFlow pipelines", allow_module_level=True)

from convnext_common import ConvNextConfig  # noqa: E402
from convnext_common.processing import ConvNextImageProcessor  # noqa: E402
from convnext_tf import TFConvNextForImageClassification, TFConvNextModel  # noqa: E402

SMALL = dict(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32])


@pytest.fixture(scope="module")
def image():
    return Image.fromarray((np.random.default_rng(2).random((80, 96, 3)) * 255).astype("uint8"))


@pytest.fixture(scope="module")
def processor():
    return ConvNextImageProcessor(size={"shortest_edge": 64})


def test_image_classification_tf(image, processor):
    config = ConvNextConfig(**SMALL, id2label={0: "cat", 1: "dog", 2: "fox"})
    model = TFConvNextForImageClassification(config)
    pipe = transformers.pipeline("image-classification", model=model, image_processor=processor, framework="tf")
    result = pipe(image, top_k=3)
    logits = np.asarray(model(**processor(image, return_tensors="np")).logits)[0].astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs)
    assert [r["label"] for r in result] == [config.id2label[int(i)] for i in order]
    np.testing.assert_allclose([r["score"] for r in result], probs[order], rtol=1e-5)


def test_image_feature_extraction_tf(image, processor):
    model = TFConvNextModel(ConvNextConfig(**SMALL))
    pipe = transformers.pipeline("image-feature-extraction", model=model, image_processor=processor, framework="tf")
    out = model(**processor(image, return_tensors="np"))
    np.testing.assert_allclose(np.asarray(pipe(image, pool=True), np.float32), np.asarray(out.pooler_output),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(pipe(image), np.float32), np.asarray(out.last_hidden_state),
                               rtol=1e-5, atol=1e-6)

"""transformers' image-feature-extraction pipeline with our PyTorch models and processors, in the
forms its documentation gives: ``pool=True`` (pooler_output), the default output (the model's first
output, last_hidden_state, as nested lists), ``return_tensors=True``, batches, processor keyword
arguments. The reference is our model called on our processor's output, as the pipeline's contract
says. Skipped without transformers (a client library here, not a dependency).

The default output is taken by position from the model's output after the pipeline has copied it
to the CPU; that copy keeps only transformers' own ``ModelOutput`` class and makes any other
mapping a plain dict, which has no position 0. A model whose config says ``return_dict=False``
returns a tuple, which the copy keeps (docs/compat.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from convnext_common.processing import ConvNextImageProcessor
from convnext_pt import (
    ConvNextConfig, ConvNextForImageClassification, ConvNextImageProcessorFast, ConvNextModel, ConvNextV2Config,
    ConvNextV2Model,
)

transformers = pytest.importorskip("transformers")

SMALL = dict(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32])


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    return [Image.fromarray((rng.random((h, w, 3)) * 255).astype("uint8")) for h, w in ((80, 96), (70, 50))]


def expected(model, processor, image, field: str, **processor_kwargs) -> np.ndarray:
    with torch.no_grad():
        out = model(**processor(image, return_tensors="pt", **processor_kwargs), return_dict=True)
    return getattr(out, field).numpy()


def model_of(cls, config_cls, **kwargs):
    torch.manual_seed(0)
    return cls(config_cls(**SMALL, **kwargs)).eval()


@pytest.mark.parametrize("cls,config_cls", [(ConvNextModel, ConvNextConfig), (ConvNextV2Model, ConvNextV2Config)])
@pytest.mark.parametrize("processor_cls", [ConvNextImageProcessor, ConvNextImageProcessorFast])
def test_default_output_is_last_hidden_state(images, cls, config_cls, processor_cls):
    model = model_of(cls, config_cls, return_dict=False)
    processor = processor_cls(size={"shortest_edge": 64})
    pipe = transformers.pipeline("image-feature-extraction", model=model, image_processor=processor)
    out = np.asarray(pipe(images[0]), dtype=np.float32)
    want = expected(model, processor, images[0], "last_hidden_state")
    assert out.shape == want.shape  # (1, C, H/32, W/32): the pipeline returns the batch it ran
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


def test_pool_and_tensors_and_batches(images):
    model = model_of(ConvNextModel, ConvNextConfig)
    processor = ConvNextImageProcessor(size={"shortest_edge": 64})
    pipe = transformers.pipeline("image-feature-extraction", model=model, image_processor=processor)
    pooled = pipe(images, pool=True)
    assert len(pooled) == 2
    for image, features in zip(images, pooled):
        np.testing.assert_allclose(np.asarray(features, np.float32), expected(model, processor, image, "pooler_output"),
                                   rtol=1e-5, atol=1e-6)
    model.config.return_dict = False
    tensor = pipe(images[1], return_tensors=True)
    assert isinstance(tensor, torch.Tensor)
    np.testing.assert_allclose(tensor.numpy(), expected(model, processor, images[1], "last_hidden_state"),
                               rtol=1e-5, atol=1e-6)


def test_processor_keyword_arguments_reach_our_processor(images):
    model = model_of(ConvNextModel, ConvNextConfig, return_dict=False)
    processor = ConvNextImageProcessor(size={"shortest_edge": 64})
    pipe = transformers.pipeline("image-feature-extraction", model=model, image_processor=processor)
    kwargs = {"size": {"shortest_edge": 96}, "image_mean": 0.5, "image_std": 0.25}
    out = pipe(images[0], image_processor_kwargs=kwargs, return_tensors=True)
    want = expected(model, processor, images[0], "last_hidden_state", **kwargs)
    assert tuple(out.shape) == want.shape == (1, 32, 3, 3)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-6)


def test_classifier_in_feature_extraction_gives_logits(images):
    # the pipeline takes any model's first output: a classifier's logits
    torch.manual_seed(0)
    model = ConvNextForImageClassification(ConvNextConfig(**SMALL, num_labels=4, return_dict=False)).eval()
    processor = ConvNextImageProcessor(size={"shortest_edge": 64})
    pipe = transformers.pipeline("image-feature-extraction", model=model, image_processor=processor)
    np.testing.assert_allclose(np.asarray(pipe(images[0]), np.float32), expected(model, processor, images[0], "logits"),
                               rtol=1e-5, atol=1e-6)


def test_pool_without_pooler_is_refused_by_the_pipeline(images):
    from convnext_pt import ConvNextBackbone

    torch.manual_seed(0)
    model = ConvNextBackbone(ConvNextConfig(**SMALL)).eval()
    pipe = transformers.pipeline("image-feature-extraction", model=model,
                                 image_processor=ConvNextImageProcessor(size={"shortest_edge": 64}))
    with pytest.raises(ValueError, match="pooled output"):
        pipe(images[0], pool=True)

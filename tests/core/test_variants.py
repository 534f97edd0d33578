"""Named sizes: each builds in the twins with the published parameter count.

Independent references: torchvision's documented counts (exact) and timm's model cards
(rounded to 0.1 M), in convnext_common.variants.PUBLISHED_PARAMS. Large sizes are built on
torch's meta device (shapes only), so xxlarge's 846M parameters cost no memory.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import convnext_pt
from convnext_common import ConvNextConfig, ConvNextV2Config
from convnext_common.checkpoints.canonical import count_parameters, expected_shapes
from convnext_common.variants import PUBLISHED_PARAMS, V1_VARIANTS, V2_VARIANTS, parse_variant, variant_names

SMALL = [n for n in variant_names() if n.split("-")[-1] in ("atto", "femto", "pico", "nano")]
CLASSES = {"classification": "ForImageClassification", "base": "Model"}


def build_meta(name: str, head: str = "classification"):
    config = (ConvNextV2Config if name.startswith("convnextv2") else ConvNextConfig).from_variant(name, num_labels=1000)
    family = "ConvNextV2" if config.model_type == "convnextv2" else "ConvNext"
    with torch.device("meta"):
        return getattr(convnext_pt, family + CLASSES[head])(config), config


def test_every_published_size_is_named():
    assert set(V1_VARIANTS) == {"atto", "femto", "pico", "nano", "tiny", "small", "base", "large", "xlarge", "xxlarge"}
    assert set(V2_VARIANTS) == {"atto", "femto", "pico", "nano", "tiny", "base", "large", "huge"}
    assert parse_variant("convnext-tiny") == (1, "tiny") and parse_variant("convnextv2_huge") == (2, "huge")
    with pytest.raises(ValueError, match="unknown variant"):
        ConvNextConfig.from_variant("convnext-giant")
    with pytest.raises(ValueError, match="is ConvNeXt V1, not V2"):
        ConvNextV2Config.from_variant("convnext-tiny")


@pytest.mark.parametrize("name", variant_names())
def test_pytorch_twin_has_the_canonical_tensors_of_each_size(name):
    model, config = build_meta(name)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == expected_shapes(config)
    assert sum(p.numel() for p in model.parameters()) == count_parameters(config)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_parameter_count_matches_the_published_one(name):
    published = PUBLISHED_PARAMS[name]
    model, _ = build_meta(name, published.head)
    n = sum(p.numel() for p in model.parameters())
    rounded = int(round(n / published.precision)) * published.precision
    assert rounded == published.params, f"{name}: {n:,} parameters, {published.source} says {published.params:,}"


def test_tiny_matches_torchvision_exactly():
    assert sum(p.numel() for p in build_meta("convnext-tiny")[0].parameters()) == 28_589_128


@pytest.mark.parametrize("name", SMALL)
def test_small_sizes_run_forward(name):
    config = (ConvNextV2Config if name.startswith("convnextv2") else ConvNextConfig).from_variant(name, num_labels=1000)
    cls = convnext_pt.ConvNextV2ForImageClassification if name.startswith("convnextv2") else \
        convnext_pt.ConvNextForImageClassification
    torch.manual_seed(0)
    model = cls(config).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32), output_hidden_states=True)
    assert out.logits.shape == (1, 1000) and torch.isfinite(out.logits).all()
    widths = config.hidden_sizes
    assert [tuple(h.shape) for h in out.hidden_states] == [
        (1, widths[0], 8, 8), (1, widths[0], 8, 8), (1, widths[1], 4, 4), (1, widths[2], 2, 2), (1, widths[3], 1, 1)]


@pytest.mark.tf
@pytest.mark.parametrize("name", ["convnext-atto", "convnext-nano", "convnextv2-atto", "convnextv2-nano"])
def test_tf_twin_builds_each_small_size_with_the_same_count(name):
    convnext_tf = pytest.importorskip("convnext_tf")
    v2 = name.startswith("convnextv2")
    cls = getattr(convnext_tf, "TFConvNextV2ForImageClassification" if v2 else "TFConvNextForImageClassification", None)
    if cls is None:
        pytest.skip("convnext_tf lacks the classification class")
    config = (ConvNextV2Config if v2 else ConvNextConfig).from_variant(name, num_labels=1000)
    model = cls(config)
    logits = np.asarray(model(np.zeros((1, 3, 32, 32), np.float32), training=False).logits)
    assert logits.shape == (1, 1000)
    assert sum(int(np.prod(w.shape)) for w in model.weights) == count_parameters(config)

"""Helpers for tests: small configs and weights re-drawn so that every block matters."""

from __future__ import annotations

import numpy as np


def redraw_(model, seed: int = 0) -> None:
    """Re-draw every parameter of a PyTorch model the way the shared fixtures were made:
    conv/linear weights ~ N(0, 1/fan_in), norm scales 1 + N(0, 0.1), biases N(0, 0.1),
    layer scale and GRN parameters ~ U(0.2, 1.0)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if "layer_scale" in name or ".grn." in name:
                p.copy_(torch.rand(p.shape, generator=g) * 0.8 + 0.2)
            elif leaf == "bias":
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif p.ndim == 1:  # norm scales
                p.copy_(1 + torch.randn(p.shape, generator=g) * 0.1)
            else:
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(fan_in))


def outputs_by_name(out, channels_last: bool = False) -> dict[str, np.ndarray]:
    """A model output's tensors under the fixtures' expected.npz names (logits, hidden_states_0, ...),
    as numpy; ``channels_last`` maps are transposed to the fixtures' NCHW layout."""
    named = {}
    for field in ("logits", "last_hidden_state", "pooler_output"):
        if getattr(out, field, None) is not None:
            named[field] = getattr(out, field)
    for i, f in enumerate(getattr(out, "feature_maps", None) or ()):
        named[f"feature_maps_{i}"] = f
    for i, h in enumerate(out.hidden_states or ()):
        named[f"hidden_states_{i}"] = h
    named = {k: v.detach().numpy() if hasattr(v, "detach") else np.asarray(v) for k, v in named.items()}
    if channels_last:
        named = {k: v.transpose(0, 3, 1, 2) if v.ndim == 4 else v for k, v in named.items()}
    return named


def make_torchvision_importable() -> None:
    """Let torchvision (and transformers, which imports it when present) import beside a CPU-only
    torch wheel.

    PyPI's torchvision wheels carry C++ ops built against PyTorch's CUDA wheel; beside the CPU
    wheel that library does not load, and torchvision's import then fails registering a fake
    kernel for ``torchvision::nms``. What the tests use of torchvision (feature extraction) is
    pure Python on torch.fx, so where the ops are missing their schemas are declared first
    (without kernels: calling them would fail). Nothing happens where torchvision imports as is.
    """
    import sys

    import torch

    try:
        import torchvision  # noqa: F401
        return
    except ImportError:
        return
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    global _TORCHVISION_SCHEMAS
    _TORCHVISION_SCHEMAS = torch.library.Library("torchvision", "FRAGMENT")
    _TORCHVISION_SCHEMAS.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TORCHVISION_SCHEMAS.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision  # noqa: F401,F811


_TORCHVISION_SCHEMAS = None


TINY = dict(depths=[1, 1, 2, 1], hidden_sizes=[8, 16, 24, 32], num_labels=5)  # four stages, one of two blocks


def tiny_config(v2: bool = False, **changes):
    """A ConvNeXt (V2 with ``v2``) config small enough for any test: TINY with ``changes``."""
    from convnext_common import ConvNextConfig, ConvNextV2Config

    return (ConvNextV2Config if v2 else ConvNextConfig)(**{**TINY, **changes})


def tiny_classifier(v2: bool = False, seed: int = 0, **changes):
    """The PyTorch twin's classifier on ``tiny_config(v2, **changes)``, in eval mode, every parameter
    re-drawn from ``seed`` (redraw_)."""
    from convnext_pt import ConvNextForImageClassification, ConvNextV2ForImageClassification

    model = (ConvNextV2ForImageClassification if v2 else ConvNextForImageClassification)(tiny_config(v2, **changes))
    model.eval()
    redraw_(model, seed=seed)
    return model

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

"""Multiply-accumulate count of a ConvNeXt forward pass, from its config (convs and linears only)."""

from __future__ import annotations

from convnext_common.architecture import DWCONV_KERNEL, MLP_RATIO, stage_specs
from convnext_common.config import ConvNextConfig


def convnext_macs(config: ConvNextConfig, height: int, width: int) -> int:
    h, w = height // config.patch_size, width // config.patch_size
    c0 = config.hidden_sizes[0]
    macs = h * w * c0 * config.num_channels * config.patch_size**2  # stem
    for spec in stage_specs(config):
        if spec.downsamples:
            h, w = h // spec.stride, w // spec.stride
            macs += h * w * spec.out_channels * spec.in_channels * spec.stride**2
        c = spec.out_channels
        per_block = h * w * (c * DWCONV_KERNEL**2 + 2 * MLP_RATIO * c * c)
        macs += spec.depth * per_block
    return macs + config.hidden_sizes[-1] * config.num_labels


def convnext_flops(variant: str, size: int, num_labels: int = 1000) -> int:
    """FLOPs (2 x MACs) of one image: ConvNeXt-T at 224 is about 8.9 GFLOP."""
    config = ConvNextConfig.from_variant(variant, num_labels=num_labels)
    return 2 * convnext_macs(config, size, size)

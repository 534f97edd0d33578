"""Framework-free facts about a ConvNeXt built from a config, used by both twins."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .config import ConvNextConfig

#: epsilon of every LayerNorm except the final pooled one (which uses config.layer_norm_eps).
NORM_EPS = 1e-6
#: GRN's guard against division by zero, as in the ConvNeXt-V2 paper's code.
GRN_EPS = 1e-6
DWCONV_KERNEL = 7
MLP_RATIO = 4


class StageSpec(NamedTuple):
    in_channels: int
    out_channels: int
    stride: int           # 2 for every stage but the first: a 2x2 conv halves H and W
    depth: int
    drop_path_rates: list[float]

    @property
    def downsamples(self) -> bool:
        return self.in_channels != self.out_channels or self.stride > 1


def stage_specs(config: ConvNextConfig) -> list[StageSpec]:
    """Per stage: channels in/out, stride, depth, and the stochastic-depth rate of each block.

    Drop-path rates rise linearly from 0 to ``drop_path_rate`` over all blocks of the network.
    """
    rates = np.linspace(0.0, config.drop_path_rate, sum(config.depths)).tolist()
    specs, start, prev = [], 0, config.hidden_sizes[0]
    for i, (width, depth) in enumerate(zip(config.hidden_sizes, config.depths)):
        specs.append(StageSpec(prev, width, 2 if i > 0 else 1, depth, rates[start:start + depth]))
        start += depth
        prev = width
    return specs


def backbone_channels(config: ConvNextConfig) -> list[int]:
    """Channels of each ``out_features`` map (the stem counts as stage 0)."""
    num_features = [config.hidden_sizes[0]] + list(config.hidden_sizes)
    return [num_features[i] for i in config.out_indices]


def infer_problem_type(config: ConvNextConfig, labels_are_integers: bool) -> str:
    """transformers' rule when ``config.problem_type`` is unset."""
    if config.problem_type is not None:
        return config.problem_type
    if config.num_labels == 1:
        return "regression"
    if labels_are_integers:
        return "single_label_classification"
    return "multi_label_classification"


def uses_grn(config: ConvNextConfig) -> bool:
    return config.model_type == "convnextv2"

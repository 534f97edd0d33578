"""The fine-tuning recipe of the ConvNeXt papers (the official ConvNeXt / ConvNeXt-V2 code and timm):
EMA of weights, mixup / cutmix with soft targets, RandAugment, random erasing and layer-wise learning
rate decay. Every random draw comes from a stream keyed by what it belongs to
(:mod:`convnext_app.training.common.keys`), so a run split at an epoch boundary and resumed repeats the
same draws."""

from .ema import ModelEma
from .erasing import RandomErasing
from .layer_decay import LAYER_DECAY_TYPES, layer_id, layer_decay_groups, num_layer_groups
from .mixup import Mixup, cutmix_box, mixup_targets, soft_target_cross_entropy
from .randaugment import RandAugment, parse_randaugment

__all__ = [
    "LAYER_DECAY_TYPES", "Mixup", "ModelEma", "RandAugment", "RandomErasing", "cutmix_box", "layer_decay_groups",
    "layer_id", "mixup_targets", "num_layer_groups", "parse_randaugment", "soft_target_cross_entropy",
]

"""ConvNeXt for PyTorch: drop-in for transformers' ConvNext* classes, reading the same hub folders."""

import torch

from convnext_common import ConvNextConfig, ConvNextV2Config, DINOv3ConvNextConfig
from convnext_common.tensor_types import register_tensor_type

from .auto import AutoBackbone, AutoModel, AutoModelForImageClassification, AutoModelForMaskedImageModeling, model_class
from .modeling import (
    ConvNextBackbone, ConvNextForImageClassification, ConvNextModel, ConvNextPreTrainedModel,
    ConvNextV2Backbone, ConvNextV2ForImageClassification, ConvNextV2ForMaskedImageModeling, ConvNextV2Model,
    ConvNextV2PreTrainedModel, DINOv3ConvNextBackbone, DINOv3ConvNextModel, DINOv3ConvNextPreTrainedModel,
)

register_tensor_type("pt", torch.from_numpy)  # return_tensors="pt" also where no installed metadata declares it


def __getattr__(name):  # the fast processor imports lazily: it is not needed to run a model
    if name == "ConvNextImageProcessorFast":
        from .image_processing_fast import ConvNextImageProcessorFast

        return ConvNextImageProcessorFast
    raise AttributeError(name)


__all__ = [
    "ConvNextConfig", "ConvNextV2Config", "ConvNextModel", "ConvNextForImageClassification", "ConvNextBackbone",
    "ConvNextPreTrainedModel", "ConvNextV2Model", "ConvNextV2ForImageClassification", "ConvNextV2Backbone",
    "ConvNextV2PreTrainedModel", "ConvNextImageProcessorFast",
    "DINOv3ConvNextConfig", "DINOv3ConvNextModel", "DINOv3ConvNextBackbone", "DINOv3ConvNextPreTrainedModel",
    "AutoModel", "AutoModelForImageClassification", "AutoBackbone", "model_class",
    "ConvNextV2ForMaskedImageModeling", "AutoModelForMaskedImageModeling",
]

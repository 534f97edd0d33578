"""ConvNeXt for PyTorch: drop-in for transformers' ConvNext* classes, reading the same hub folders."""

from convnext_common import ConvNextConfig, ConvNextV2Config

from .auto import AutoBackbone, AutoModel, AutoModelForImageClassification, model_class
from .modeling import (
    ConvNextBackbone, ConvNextForImageClassification, ConvNextModel, ConvNextPreTrainedModel,
    ConvNextV2Backbone, ConvNextV2ForImageClassification, ConvNextV2Model, ConvNextV2PreTrainedModel,
)


def __getattr__(name):  # the fast processor imports lazily: it is not needed to run a model
    if name == "ConvNextImageProcessorFast":
        from .image_processing_fast import ConvNextImageProcessorFast

        return ConvNextImageProcessorFast
    raise AttributeError(name)


__all__ = [
    "ConvNextConfig", "ConvNextV2Config", "ConvNextModel", "ConvNextForImageClassification", "ConvNextBackbone",
    "ConvNextPreTrainedModel", "ConvNextV2Model", "ConvNextV2ForImageClassification", "ConvNextV2Backbone",
    "ConvNextV2PreTrainedModel", "ConvNextImageProcessorFast",
    "AutoModel", "AutoModelForImageClassification", "AutoBackbone", "model_class",
]

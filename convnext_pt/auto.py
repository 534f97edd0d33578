"""Which PyTorch class for a config: :func:`model_class`, and transformers-style Auto classes.

The one place this twin maps a config and a head (:data:`convnext_common.heads.HEADS`) to a class;
every caller that needs "the model of this folder" asks here. As in transformers, each Auto class
stands for one head and picks V1, V2 or DINOv3 by ``config.model_type``: :class:`AutoModel` gives the base
model (trunk + pooled norm) whatever head the checkpoint has, :class:`AutoModelForImageClassification`
the classifier, :class:`AutoBackbone` the backbone. :func:`model_class` with no head gives the
class the config's ``architectures`` names.
"""

from __future__ import annotations

from typing import Optional

from convnext_common import heads
from convnext_common.config import ConvNextConfig

from .modeling import (
    ConvNextBackbone, ConvNextForImageClassification, ConvNextModel, ConvNextPreTrainedModel, ConvNextV2Backbone,
    ConvNextV2ForImageClassification, ConvNextV2ForMaskedImageModeling, ConvNextV2Model, DINOv3ConvNextBackbone,
    DINOv3ConvNextModel,
)

# keyed by transformers' class names, the vocabulary of config.json's "architectures"
_CLASSES: dict[str, type[ConvNextPreTrainedModel]] = {cls.__name__: cls for cls in (
    ConvNextModel, ConvNextForImageClassification, ConvNextBackbone,
    ConvNextV2Model, ConvNextV2ForImageClassification, ConvNextV2Backbone, ConvNextV2ForMaskedImageModeling,
    DINOv3ConvNextModel, DINOv3ConvNextBackbone)}


def model_class(config: ConvNextConfig, head: Optional[str] = None) -> type[ConvNextPreTrainedModel]:
    """The class of ``config``'s family (V1/V2/DINOv3) with ``head`` ("classification", "base", "backbone");
    ``head=None``: the one ``config.architectures`` names (a classifier when it names none).
    Raises ValueError for an unknown head or an architectures entry that is not a ConvNeXt."""
    return _CLASSES[heads.class_name(config, heads.head_of(config) if head is None else head)]


class _AutoClass(heads.AutoClass):
    _lookup = staticmethod(model_class)


class AutoModel(_AutoClass):
    """The base model (ConvNextModel / ConvNextV2Model / DINOv3ConvNextModel) of any ConvNeXt checkpoint, as
    transformers' AutoModel: a classifier's weights load without their classifier."""

    _head = "base"


class AutoModelForImageClassification(_AutoClass):
    """ConvNextForImageClassification / ConvNextV2ForImageClassification."""

    _head = "classification"


class AutoBackbone(_AutoClass):
    """ConvNextBackbone / ConvNextV2Backbone / DINOv3ConvNextBackbone."""

    _head = "backbone"


class AutoModelForMaskedImageModeling(_AutoClass):
    """ConvNextV2ForMaskedImageModeling (FCMAE pre-training; ConvNeXt V2 only)."""

    _head = heads.MASKED_IMAGE_MODELING


__all__ = ["model_class", "AutoModel", "AutoModelForImageClassification", "AutoBackbone",
           "AutoModelForMaskedImageModeling"]

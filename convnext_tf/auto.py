"""Which Keras class for a config: :func:`model_class`, and transformers-style Auto classes.

The one place this twin maps a config and a head (:data:`convnext_common.heads.HEADS`) to a class;
every caller that needs "the model of this folder" asks here. As in transformers, each Auto class
stands for one head and picks V1, V2 or DINOv3 by ``config.model_type``: :class:`TFAutoModel` gives the base
model (trunk + pooled norm) whatever head the checkpoint has, :class:`TFAutoModelForImageClassification`
the classifier, :class:`TFAutoBackbone` the backbone. :func:`model_class` with no head gives the
class the config's ``architectures`` names.
"""

from __future__ import annotations

from typing import Optional

from convnext_common import heads
from convnext_common.config import ConvNextConfig

from .modeling import (
    TFConvNextBackbone, TFConvNextForImageClassification, TFConvNextModel, TFConvNextPreTrainedModel,
    TFConvNextV2Backbone, TFConvNextV2ForImageClassification, TFConvNextV2ForMaskedImageModeling, TFConvNextV2Model,
    TFDINOv3ConvNextBackbone, TFDINOv3ConvNextModel,
)

# keyed by transformers' PyTorch class names, the vocabulary of config.json's "architectures"
_CLASSES: dict[str, type[TFConvNextPreTrainedModel]] = {cls.__name__[len(heads.TF_PREFIX):]: cls for cls in (
    TFConvNextModel, TFConvNextForImageClassification, TFConvNextBackbone,
    TFConvNextV2Model, TFConvNextV2ForImageClassification, TFConvNextV2Backbone, TFConvNextV2ForMaskedImageModeling,
    TFDINOv3ConvNextModel, TFDINOv3ConvNextBackbone)}


def model_class(config: ConvNextConfig, head: Optional[str] = None) -> type[TFConvNextPreTrainedModel]:
    """The class of ``config``'s family (V1/V2/DINOv3) with ``head`` ("classification", "base", "backbone");
    ``head=None``: the one ``config.architectures`` names (a classifier when it names none).
    Raises ValueError for an unknown head or an architectures entry that is not a ConvNeXt."""
    return _CLASSES[heads.class_name(config, heads.head_of(config) if head is None else head)]


class _AutoClass(heads.AutoClass):
    _lookup = staticmethod(model_class)


class TFAutoModel(_AutoClass):
    """The base model (TFConvNextModel / TFConvNextV2Model / TFDINOv3ConvNextModel) of any ConvNeXt checkpoint, as
    transformers' TFAutoModel: a classifier's weights load without their classifier."""

    _head = "base"


class TFAutoModelForImageClassification(_AutoClass):
    """TFConvNextForImageClassification / TFConvNextV2ForImageClassification."""

    _head = "classification"


class TFAutoBackbone(_AutoClass):
    """TFConvNextBackbone / TFConvNextV2Backbone / TFDINOv3ConvNextBackbone."""

    _head = "backbone"


class TFAutoModelForMaskedImageModeling(_AutoClass):
    """TFConvNextV2ForMaskedImageModeling (FCMAE pre-training; ConvNeXt V2 only)."""

    _head = heads.MASKED_IMAGE_MODELING


__all__ = ["model_class", "TFAutoModel", "TFAutoModelForImageClassification", "TFAutoBackbone",
           "TFAutoModelForMaskedImageModeling"]

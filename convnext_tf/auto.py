"""Which Keras class for a config: :func:`model_class`, and transformers-style Auto classes.

The one place this twin maps a config and a head (:data:`convnext_common.heads.HEADS`) to a class;
every caller that needs "the model of this folder" asks here. As in transformers, each Auto class
stands for one head and picks V1 or V2 by ``config.model_type``: :class:`TFAutoModel` gives the base
model (trunk + pooled norm) whatever head the checkpoint has, :class:`TFAutoModelForImageClassification`
the classifier, :class:`TFAutoBackbone` the backbone. :func:`model_class` with no head gives the
class the config's ``architectures`` names.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Union

from convnext_common import heads
from convnext_common.config import ConvNextConfig, load_config

from .modeling import (
    TFConvNextBackbone, TFConvNextForImageClassification, TFConvNextModel, TFConvNextPreTrainedModel,
    TFConvNextV2Backbone, TFConvNextV2ForImageClassification, TFConvNextV2Model,
)

# keyed by transformers' PyTorch class names, the vocabulary of config.json's "architectures"
_CLASSES: dict[str, type[TFConvNextPreTrainedModel]] = {cls.__name__[len(heads.TF_PREFIX):]: cls for cls in (
    TFConvNextModel, TFConvNextForImageClassification, TFConvNextBackbone,
    TFConvNextV2Model, TFConvNextV2ForImageClassification, TFConvNextV2Backbone)}


def model_class(config: ConvNextConfig, head: Optional[str] = None) -> type[TFConvNextPreTrainedModel]:
    """The class of ``config``'s family (V1/V2) with ``head`` ("classification", "base", "backbone");
    ``head=None``: the one ``config.architectures`` names (a classifier when it names none).
    Raises ValueError for an unknown head or an architectures entry that is not a ConvNeXt."""
    return _CLASSES[heads.class_name(config, heads.head_of(config) if head is None else head)]


class _AutoClass:
    """``from_pretrained`` / ``from_config`` for the head in ``_head`` (None: the config's own)."""

    _head: Optional[str] = None

    def __init__(self, *args: Any, **kwargs: Any):
        raise TypeError(f"{type(self).__name__} is not instantiated: use {type(self).__name__}.from_pretrained(...) "
                        f"or {type(self).__name__}.from_config(config)")

    @classmethod
    def class_for(cls, config: ConvNextConfig) -> type[TFConvNextPreTrainedModel]:
        return model_class(config, cls._head)

    @classmethod
    def from_config(cls, config: ConvNextConfig) -> TFConvNextPreTrainedModel:
        """A randomly initialised model of this head for ``config``."""
        return cls.class_for(config)(config)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike], **kwargs: Any):
        """Load a folder or hub id (transformers or timm) into the class :meth:`class_for` picks; the
        keyword arguments are those of ``TFConvNextPreTrainedModel.from_pretrained``."""
        config = kwargs.pop("config", None)
        if config is None:
            hub = {k: kwargs[k] for k in ("revision", "cache_dir", "local_files_only", "token") if k in kwargs}
            config = load_config(pretrained_model_name_or_path, **hub)
        return cls.class_for(config).from_pretrained(pretrained_model_name_or_path, config=config, **kwargs)


class TFAutoModel(_AutoClass):
    """The base model (TFConvNextModel / TFConvNextV2Model) of any ConvNeXt checkpoint, as
    transformers' TFAutoModel: a classifier's weights load without their classifier."""

    _head = "base"


class TFAutoModelForImageClassification(_AutoClass):
    """TFConvNextForImageClassification / TFConvNextV2ForImageClassification."""

    _head = "classification"


class TFAutoBackbone(_AutoClass):
    """TFConvNextBackbone / TFConvNextV2Backbone."""

    _head = "backbone"


__all__ = ["model_class", "TFAutoModel", "TFAutoModelForImageClassification", "TFAutoBackbone"]

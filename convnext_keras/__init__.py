"""The Keras twin (``convnext_tf``) under names without transformers' historical "TF" prefix:
``ConvNextModel``, ``ConvNextForImageClassification``, ... are ``TFConvNextModel``, ... themselves
(the same classes; they run on every Keras backend)."""

import convnext_tf
from convnext_tf import (  # noqa: F401  (re-exported)
    ConvNextConfig, ConvNextV2Config, DINOv3ConvNextConfig, model_class, portable_ops,
)

_PREFIX = "TF"
_ALIASED = [name for name in convnext_tf.__all__ if name.startswith((_PREFIX + "ConvNext", _PREFIX + "DINOv3ConvNext",
                                                                      _PREFIX + "Auto"))]
globals().update({name[len(_PREFIX):]: getattr(convnext_tf, name) for name in _ALIASED})

__all__ = (["ConvNextConfig", "ConvNextV2Config", "DINOv3ConvNextConfig", "model_class", "portable_ops"]
           + [n[len(_PREFIX):] for n in _ALIASED])

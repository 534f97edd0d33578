"""The Keras twin (``convnext_tf``) under names without transformers' historical "TF" prefix:
``ConvNextModel``, ``ConvNextForImageClassification``, ... are ``TFConvNextModel``, ... themselves
(the same classes; they run on every Keras backend)."""

import convnext_tf
from convnext_tf import ConvNextConfig, ConvNextV2Config, model_class, portable_ops  # noqa: F401  (re-exported)

_PREFIX = "TF"
_ALIASED = [name for name in convnext_tf.__all__ if name.startswith(_PREFIX + "ConvNext")
            or name.startswith(_PREFIX + "Auto")]
globals().update({name[len(_PREFIX):]: getattr(convnext_tf, name) for name in _ALIASED})

__all__ = ["ConvNextConfig", "ConvNextV2Config", "model_class", "portable_ops"] + [n[len(_PREFIX):] for n in _ALIASED]

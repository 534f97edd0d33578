"""ConvNeXt for Keras 3 (TensorFlow backend): drop-in for transformers' TFConvNext* classes, reading
and writing the same hub folders (tf_model.h5, model.safetensors, pytorch_model.bin)."""

from convnext_common import ConvNextConfig, ConvNextV2Config
from convnext_common.tensor_types import register_tensor_type
from convnext_tf.quiet import import_tensorflow

import_tensorflow()  # first, so that TensorFlow's start-up notices follow TF_CPP_MIN_LOG_LEVEL

import keras  # noqa: E402  (after TensorFlow, see above)
import tensorflow as tf  # noqa: E402

if keras.backend.backend() != "tensorflow":  # checked first: the layers below use TensorFlow ops
    raise ImportError(
        f"convnext_tf needs Keras' TensorFlow backend, but KERAS_BACKEND selects {keras.backend.backend()!r}: "
        "set KERAS_BACKEND=tensorflow before Keras is imported (PyTorch users: convnext_pt)")

from .auto import TFAutoBackbone, TFAutoModel, TFAutoModelForImageClassification, model_class  # noqa: E402
from .modeling import (
    TFConvNextBackbone, TFConvNextDropPath, TFConvNextEmbeddings, TFConvNextEncoder, TFConvNextForImageClassification,
    TFConvNextLayer, TFConvNextLayerNorm, TFConvNextModel, TFConvNextPreTrainedModel, TFConvNextStage,
    TFConvNextV2Backbone, TFConvNextV2ForImageClassification, TFConvNextV2GRN, TFConvNextV2Model,
    TFConvNextV2PreTrainedModel,
)
from .fused import portable_ops

register_tensor_type("tf", tf.convert_to_tensor)  # return_tensors="tf" also where no installed metadata declares it

__all__ = [
    "ConvNextConfig", "ConvNextV2Config", "TFConvNextModel", "TFConvNextForImageClassification", "TFConvNextBackbone",
    "TFConvNextPreTrainedModel", "TFConvNextV2Model", "TFConvNextV2ForImageClassification", "TFConvNextV2Backbone",
    "TFConvNextV2PreTrainedModel", "TFConvNextLayerNorm", "TFConvNextDropPath", "TFConvNextV2GRN",
    "TFConvNextEmbeddings", "TFConvNextLayer", "TFConvNextStage", "TFConvNextEncoder", "portable_ops",
    "TFAutoModel", "TFAutoModelForImageClassification", "TFAutoBackbone", "model_class",
]

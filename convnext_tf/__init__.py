"""ConvNeXt for Keras 3 on any of its backends (TensorFlow, JAX, PyTorch): drop-in for transformers'
TFConvNext* classes, reading and writing the same hub folders (tf_model.h5, model.safetensors,
pytorch_model.bin). "TF" in the class names is transformers' historical prefix for its Keras
classes; ``convnext_keras`` gives the same classes without it. TensorFlow is imported only when it
is Keras' backend."""

from convnext_common import ConvNextConfig, ConvNextV2Config, DINOv3ConvNextConfig
from convnext_tf.quiet import import_keras

keras = import_keras()  # first: on the TensorFlow backend its start-up notices follow TF_CPP_MIN_LOG_LEVEL

from .auto import (  # noqa: E402
    TFAutoBackbone, TFAutoModel, TFAutoModelForImageClassification, TFAutoModelForMaskedImageModeling, model_class,
)
from .modeling import (  # noqa: E402
    TFConvNextBackbone, TFConvNextDropPath, TFConvNextEmbeddings, TFConvNextEncoder, TFConvNextForImageClassification,
    TFConvNextLayer, TFConvNextLayerNorm, TFConvNextModel, TFConvNextPreTrainedModel, TFConvNextStage,
    TFConvNextV2Backbone, TFConvNextV2ForImageClassification, TFConvNextV2ForMaskedImageModeling, TFConvNextV2GRN,
    TFConvNextV2MaskedImageDecoder, TFConvNextV2Model, TFConvNextV2PreTrainedModel, TFDINOv3ConvNextBackbone,
    TFDINOv3ConvNextModel, TFDINOv3ConvNextPreTrainedModel,
)
from .fused import portable_ops  # noqa: E402
from .preprocessing import TFConvNextImagePreprocessing  # noqa: E402

if keras.backend.backend() == "tensorflow":
    import tensorflow as tf

    from convnext_common.tensor_types import register_tensor_type

    register_tensor_type("tf", tf.convert_to_tensor)  # return_tensors="tf" also where no installed metadata declares it

__all__ = [
    "ConvNextConfig", "ConvNextV2Config", "TFConvNextModel", "TFConvNextForImageClassification", "TFConvNextBackbone",
    "TFConvNextPreTrainedModel", "TFConvNextV2Model", "TFConvNextV2ForImageClassification", "TFConvNextV2Backbone",
    "TFConvNextV2PreTrainedModel", "TFConvNextLayerNorm", "TFConvNextDropPath", "TFConvNextV2GRN",
    "TFConvNextEmbeddings", "TFConvNextLayer", "TFConvNextStage", "TFConvNextEncoder", "portable_ops",
    "TFConvNextImagePreprocessing",
    "TFAutoModel", "TFAutoModelForImageClassification", "TFAutoBackbone", "model_class",
    "TFConvNextV2ForMaskedImageModeling", "TFConvNextV2MaskedImageDecoder", "TFAutoModelForMaskedImageModeling",
    "DINOv3ConvNextConfig", "TFDINOv3ConvNextModel", "TFDINOv3ConvNextBackbone", "TFDINOv3ConvNextPreTrainedModel",
]

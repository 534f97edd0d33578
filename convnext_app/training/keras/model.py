"""The Keras twin's side of the model a run starts from (the decisions, the PyTorch path's too:
:mod:`convnext_app.training.common.model`), and the head and trunk options of the recipe
(``--head-init-scale``, ``--freeze-trunk``)."""

from __future__ import annotations

from typing import Optional, Sequence

import keras
import numpy as np

from convnext_common.config import ConvNextConfig
from convnext_tf import TFAutoModelForImageClassification
from convnext_tf.modeling import TFConvNextDropPath, TFConvNextPreTrainedModel

from ..common import model as common
from ..common.model import ModelSetup
from .options import KerasTrainingError


class _KerasBuilder(common.ModelBuilder):
    def seed(self, seed: int) -> None:
        keras.utils.set_random_seed(seed)

    def from_pretrained(self, spec: str, config: ConvNextConfig) -> TFConvNextPreTrainedModel:
        # a new head keeps the loader's init: N(0, initializer_range), bias 0
        return TFAutoModelForImageClassification.from_pretrained(spec, config=config, ignore_mismatched_sizes=True)

    def from_config(self, config: ConvNextConfig) -> TFConvNextPreTrainedModel:
        return TFAutoModelForImageClassification.from_config(config)


def prepare_keras_model(spec: str, folder_classes: Sequence[str], image_size: Optional[int],
                        drop_path: Optional[float], seed: int) -> ModelSetup:
    """Call inside the strategy's scope. The random init (a new head, a variant) is seeded by ``seed``."""
    return common.prepare_model(spec, folder_classes, image_size, drop_path, seed, _KerasBuilder(),
                                KerasTrainingError)


def scale_head(model: TFConvNextPreTrainedModel, scale: float) -> None:
    """The official ConvNeXt ``head_init_scale``: the new head's weight and bias multiplied by ``scale``."""
    for variable in model.classifier.weights:
        variable.assign(np.asarray(variable.numpy()) * np.float32(scale))


def freeze_trunk(model: TFConvNextPreTrainedModel) -> None:
    """A linear probe: only the classifier trains, on the trunk's inference-mode features (no drop path)."""
    trunk = model.base_model
    trunk.trainable = False
    for layer in trunk._flatten_layers(include_self=False):
        if isinstance(layer, TFConvNextDropPath):
            layer.drop_prob = 0.0

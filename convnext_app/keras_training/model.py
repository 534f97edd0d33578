"""The Keras model a run starts from, chosen as ``convnext train`` chooses it: a folder or hub id
fine-tuned (its head kept when its labels are the folder's classes, else a new head), or a named
variant from a random init; with the processor it evaluates with. Plus the head and trunk options
of the recipe (``--head-init-scale``, ``--freeze-trunk``)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional, Sequence

import keras
import numpy as np

from convnext_common.processing import ConvNextImageProcessor
from convnext_tf import TFAutoModelForImageClassification
from convnext_tf.modeling import TFConvNextDropPath, TFConvNextPreTrainedModel

from ..fine_tuning import is_pretrained_source, plan_head, training_processor, variant_start
from .options import KerasTrainingError


@dataclass
class KerasSetup:
    model: TFConvNextPreTrainedModel
    processor: ConvNextImageProcessor
    classes: list[str]          # classes[i] is the label of output i (the folder names)
    image_size: int
    source: str                 # what the run started from, for metrics.json
    new_head: bool


def prepare_keras_model(spec: str, folder_classes: Sequence[str], image_size: Optional[int],
                        drop_path: Optional[float], seed: int) -> KerasSetup:
    """Call inside the strategy's scope. The random init (a new head, a variant) is seeded by ``seed``."""
    labels = list(folder_classes)
    keras.utils.set_random_seed(seed)
    if is_pretrained_source(spec):  # a folder or a hub id (transformers or timm)
        plan = plan_head(spec, folder_classes, drop_path)
        config, labels = plan.config, plan.labels
        with warnings.catch_warnings():
            if plan.new_head:  # the new head (N(0, initializer_range), bias 0) is expected to be untrained
                warnings.filterwarnings("ignore", message=".*newly initialised.*")
            model = TFAutoModelForImageClassification.from_pretrained(spec, config=config,
                                                                      ignore_mismatched_sizes=True)
        processor, size = training_processor(model.preprocessor_config, config, image_size)
        source, new_head = str(spec), plan.new_head
    else:
        config, processor, size = variant_start(spec, labels, image_size, drop_path, KerasTrainingError)
        model = TFAutoModelForImageClassification.from_config(config)
        source, new_head = spec, True
    processor.size = {"shortest_edge": size}
    model.config.image_size = size
    return KerasSetup(model, processor, labels, size, source, new_head)


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

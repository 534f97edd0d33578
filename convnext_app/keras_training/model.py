"""The Keras model a run starts from, chosen as ``convnext train`` chooses it: a folder or hub id
fine-tuned (its head kept when its labels are the folder's classes, else a new head), or a named
variant from a random init; with the processor it evaluates with. Plus the head and trunk options
of the recipe (``--head-init-scale``, ``--freeze-trunk``)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import keras
import numpy as np

from convnext_common.checkpoints.preprocessing import default_preprocessor_config
from convnext_common.config import load_config
from convnext_common.hub import is_hub_id
from convnext_common.processing import ConvNextImageProcessor
from convnext_common.variants import config_for_variant, parse_variant
from convnext_tf import TFAutoModelForImageClassification
from convnext_tf.modeling import TFConvNextDropPath, TFConvNextPreTrainedModel

from .options import KerasTrainingError


@dataclass
class KerasSetup:
    model: TFConvNextPreTrainedModel
    processor: ConvNextImageProcessor
    classes: list[str]          # classes[i] is the label of output i (the folder names)
    image_size: int
    source: str                 # what the run started from, for metrics.json
    new_head: bool


def _is_hub_model(spec: str) -> bool:
    """A namespaced hub id (``org/name``); a single word names a variant (as ``convnext train``)."""
    return "/" in spec.removeprefix("hf-hub:").removeprefix("hf_hub:") and is_hub_id(spec)


def prepare_keras_model(spec: str, folder_classes: Sequence[str], image_size: Optional[int],
                        drop_path: Optional[float], seed: int) -> KerasSetup:
    """Call inside the strategy's scope. The random init (a new head, a variant) is seeded by ``seed``."""
    labels = list(folder_classes)
    id2label = dict(enumerate(labels))
    label2id = {v: k for k, v in id2label.items()}
    keras.utils.set_random_seed(seed)
    if Path(spec).is_dir() or _is_hub_model(spec):
        config = load_config(spec)
        overrides: dict[str, Any] = {}
        if drop_path is not None:
            overrides["drop_path_rate"] = drop_path
        old_labels = [config.id2label[i] for i in range(config.num_labels)]
        keeps_head = sorted(old_labels) == sorted(labels)
        if keeps_head:
            labels = old_labels  # the model's output order wins; folders map onto it by name
        else:
            overrides.update(num_labels=len(labels), id2label=id2label, label2id=label2id)
        config = config.copy(**overrides)
        with warnings.catch_warnings():
            if not keeps_head:  # the new head (N(0, initializer_range), bias 0) is expected to be untrained
                warnings.filterwarnings("ignore", message=".*newly initialised.*")
            model = TFAutoModelForImageClassification.from_pretrained(spec, config=config,
                                                                      ignore_mismatched_sizes=True)
        if model.preprocessor_config is not None:
            processor = ConvNextImageProcessor.from_dict(model.preprocessor_config)
        else:  # the same default as `convnext predict` / `evaluate` use for such a folder
            processor = ConvNextImageProcessor.from_dict(default_preprocessor_config(config.image_size))
        size = image_size or int(processor.size.get("shortest_edge", config.image_size))
        source, new_head = str(spec), not keeps_head
    else:
        try:
            parse_variant(spec)
        except ValueError as e:
            raise KerasTrainingError(f"--model {spec!r} is neither a model folder, a hub id nor a known variant "
                                     f"({e})") from None
        size = image_size or 224
        config = config_for_variant(spec, num_labels=len(labels), id2label=id2label, label2id=label2id,
                                    drop_path_rate=0.1 if drop_path is None else drop_path, image_size=size)
        model = TFAutoModelForImageClassification.from_config(config)
        processor = ConvNextImageProcessor.from_dict(default_preprocessor_config(size))
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

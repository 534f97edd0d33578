"""The model a run starts from: a folder or hub id fine-tuned (its head kept when its labels are
the folder's classes), or a named variant from a random init; with the processor it evaluates with."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from convnext_common.processing import ConvNextImageProcessor
from convnext_pt import AutoModelForImageClassification, ConvNextForImageClassification

from ..fine_tuning import is_pretrained_source, plan_head, training_processor, variant_start

from .options import TrainingError


def _reset_head(model: ConvNextForImageClassification) -> None:
    with torch.no_grad():
        nn.init.normal_(model.classifier.weight, std=model.config.initializer_range)
        nn.init.zeros_(model.classifier.bias)


def scale_head(model: ConvNextForImageClassification, scale: float) -> None:
    """``--head-init-scale``: the new head's weight and bias times ``scale`` (the official ConvNeXt's
    ``head_init_scale``, e.g. 0.001 when fine-tuning on a new label set)."""
    with torch.no_grad():
        model.classifier.weight.mul_(scale)
        model.classifier.bias.mul_(scale)


def freeze_trunk(model: ConvNextForImageClassification) -> None:
    """``--freeze-trunk`` (linear probe): only the classifier trains. The trunk is transformers'
    ``base_model`` (``model.convnext``), the pooled LayerNorm included, as MAE's linear probe keeps
    the features' norm frozen; the training loop also keeps it in eval mode (no drop path)."""
    for param in getattr(model, model.base_model_prefix).parameters():
        param.requires_grad_(False)


@dataclass
class ModelSetup:
    model: ConvNextForImageClassification
    processor: ConvNextImageProcessor
    classes: list[str]          # classes[i] is the label of output i (the folder names)
    image_size: int
    source: str                 # what the run started from, for metrics.json
    new_head: bool


def prepare_model(spec: str, folder_classes: Sequence[str], image_size: Optional[int],
                  drop_path: Optional[float], seed: int) -> ModelSetup:
    """A folder fine-tunes (keeping its head when its labels are exactly the folder names, else a new
    head); a variant name builds a random init seeded by ``seed``."""
    labels = list(folder_classes)
    torch.manual_seed(seed)
    if is_pretrained_source(spec):  # a folder or a hub id (transformers or timm)
        plan = plan_head(spec, folder_classes, drop_path)
        config, labels = plan.config, plan.labels
        with warnings.catch_warnings():
            if plan.new_head:  # the new head is expected to be untrained: no "newly initialised" warning
                warnings.filterwarnings("ignore", message=".*newly initialised.*")
            model = AutoModelForImageClassification.from_pretrained(spec, config=config,
                                                                    ignore_mismatched_sizes=True)
        if plan.new_head:
            _reset_head(model)
        processor, size = training_processor(model.preprocessor_config, config, image_size)
        source, new_head = str(spec), plan.new_head
    else:
        config, processor, size = variant_start(spec, labels, image_size, drop_path, TrainingError)
        model = AutoModelForImageClassification.from_config(config)
        source, new_head = spec, True
    processor.size = {"shortest_edge": size}
    model.config.image_size = size
    return ModelSetup(model, processor, labels, size, source, new_head)

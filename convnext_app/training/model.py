"""The model a run starts from: a folder or hub id fine-tuned (its head kept when its labels are
the folder's classes), or a named variant from a random init; with the processor it evaluates with."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import nn

from convnext_common.checkpoints.preprocessing import default_preprocessor_config
from convnext_common.config import load_config
from convnext_common.hub import is_hub_id
from convnext_common.processing import ConvNextImageProcessor
from convnext_common.variants import config_for_variant, parse_variant
from convnext_pt import AutoModelForImageClassification, ConvNextForImageClassification

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


def _is_hub_model(spec: str) -> bool:
    """A namespaced hub id (``org/name``): a single word names a variant (``convnext-atto``), so a
    misspelt variant is reported as such instead of being looked up on the hub."""
    return "/" in spec.removeprefix("hf-hub:").removeprefix("hf_hub:") and is_hub_id(spec)


def prepare_model(spec: str, folder_classes: Sequence[str], image_size: Optional[int],
                  drop_path: Optional[float], seed: int) -> ModelSetup:
    """A folder fine-tunes (keeping its head when its labels are exactly the folder names, else a new
    head); a variant name builds a random init seeded by ``seed``."""
    labels = list(folder_classes)
    id2label = dict(enumerate(labels))
    label2id = {v: k for k, v in id2label.items()}
    torch.manual_seed(seed)
    path = Path(spec)
    if path.is_dir() or _is_hub_model(spec):
        path = spec  # a folder or a hub id (transformers or timm), resolved by load_config/from_pretrained
        config = load_config(path)
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
            if not keeps_head:  # the new head is expected to be untrained: no "newly initialised" warning
                warnings.filterwarnings("ignore", message=".*newly initialised.*")
            model = AutoModelForImageClassification.from_pretrained(path, config=config,
                                                                    ignore_mismatched_sizes=True)
        if not keeps_head:
            _reset_head(model)
        if model.preprocessor_config is not None:  # the source's preprocessor_config.json
            processor = ConvNextImageProcessor.from_dict(model.preprocessor_config)
        else:  # the same default as `convnext predict` / `evaluate` use for such a folder
            processor = ConvNextImageProcessor.from_dict(default_preprocessor_config(config.image_size))
        size = image_size or int(processor.size.get("shortest_edge", config.image_size))
        source = str(path)
        new_head = not keeps_head
    else:
        try:
            parse_variant(spec)
        except ValueError as e:
            raise TrainingError(f"--model {spec!r} is neither a model folder, a hub id nor a known variant ({e})") \
                from None
        size = image_size or 224
        config = config_for_variant(spec, num_labels=len(labels), id2label=id2label, label2id=label2id,
                                    drop_path_rate=0.1 if drop_path is None else drop_path, image_size=size)
        model = AutoModelForImageClassification.from_config(config)
        processor = ConvNextImageProcessor.from_dict(default_preprocessor_config(size))
        source = spec
        new_head = True
    processor.size = {"shortest_edge": size}
    model.config.image_size = size
    return ModelSetup(model, processor, labels, size, source, new_head)

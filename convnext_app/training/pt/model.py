"""The PyTorch twin's side of the model a run starts from (the decisions:
:mod:`convnext_app.training.common.model`), and the head and trunk options of the recipe
(``--head-init-scale``, ``--freeze-trunk``)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from convnext_common.config import ConvNextConfig
from convnext_pt import AutoModelForImageClassification, ConvNextForImageClassification

from ..common import model as common
from ..common.model import ModelSetup
from .options import TrainingError


class _TorchBuilder(common.ModelBuilder):
    def seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def from_pretrained(self, spec: str, config: ConvNextConfig) -> ConvNextForImageClassification:
        return AutoModelForImageClassification.from_pretrained(spec, config=config, ignore_mismatched_sizes=True)

    def from_config(self, config: ConvNextConfig) -> ConvNextForImageClassification:
        return AutoModelForImageClassification.from_config(config)

    def new_head(self, model: ConvNextForImageClassification) -> None:
        with torch.no_grad():
            nn.init.normal_(model.classifier.weight, std=model.config.initializer_range)
            nn.init.zeros_(model.classifier.bias)


def prepare_model(spec: str, folder_classes: Sequence[str], image_size: Optional[int],
                  drop_path: Optional[float], seed: int) -> ModelSetup:
    """A folder fine-tunes (keeping its head when its labels are exactly the folder names, else a new
    head); a variant name builds a random init seeded by ``seed``."""
    return common.prepare_model(spec, folder_classes, image_size, drop_path, seed, _TorchBuilder(), TrainingError)


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

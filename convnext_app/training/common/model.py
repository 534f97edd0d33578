"""The model a fine-tuning run starts from, decided alike for both paths: a folder or hub id
fine-tuned (its head kept when its labels are the folder's classes, else a new head), or a named
variant from a random init; with the processor it evaluates with. Each path supplies only how its twin
loads and builds a model (:func:`prepare_model`'s ``build``)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from convnext_common.checkpoints.preprocessing import default_preprocessor_config
from convnext_common.config import ConvNextConfig, load_config
from convnext_common.hub import is_hub_id
from convnext_common.processing import ConvNextImageProcessor
from convnext_common.variants import config_for_variant, parse_variant


def is_pretrained_source(spec: str) -> bool:
    """``--model`` names a folder or a namespaced hub id (``org/name``); a single word names a variant
    (``convnext-atto``), so a misspelt variant is reported as such instead of being looked up."""
    if Path(spec).is_dir():
        return True
    return "/" in spec.removeprefix("hf-hub:").removeprefix("hf_hub:") and is_hub_id(spec)


@dataclass
class HeadPlan:
    """How a pretrained model meets the folder: its config for training, the labels in output order,
    and whether its head is kept (same label set) or replaced (``new_head``)."""

    config: ConvNextConfig
    labels: list[str]
    new_head: bool


def plan_head(spec: str, folder_classes: Sequence[str], drop_path: Optional[float]) -> HeadPlan:
    """A pretrained model keeps its head when its labels are the folder's classes (its output order
    wins; the folders map onto it by name), else gets a new head with the folder's labels."""
    labels = list(folder_classes)
    config = load_config(spec)
    overrides: dict[str, Any] = {}
    if drop_path is not None:
        overrides["drop_path_rate"] = drop_path
    old_labels = [config.id2label[i] for i in range(config.num_labels)]
    keeps_head = sorted(old_labels) == sorted(labels)
    if keeps_head:
        labels = old_labels
    else:
        id2label = dict(enumerate(labels))
        overrides.update(num_labels=len(labels), id2label=id2label, label2id={v: k for k, v in id2label.items()})
    return HeadPlan(config.copy(**overrides), labels, not keeps_head)


def training_processor(preprocessor_config: Optional[dict], config: ConvNextConfig,
                       image_size: Optional[int]) -> tuple[ConvNextImageProcessor, int]:
    """The image processor a fine-tuned model evaluates with (its source's preprocessor_config.json,
    else the same default `convnext predict` / `evaluate` use for such a folder) and the training size
    (``--image-size``, else the processor's)."""
    if preprocessor_config is not None:
        processor = ConvNextImageProcessor.from_dict(preprocessor_config)
    else:
        processor = ConvNextImageProcessor.from_dict(default_preprocessor_config(config.image_size))
    return processor, image_size or int(processor.size.get("shortest_edge", config.image_size))


def variant_start(spec: str, folder_classes: Sequence[str], image_size: Optional[int], drop_path: Optional[float],
                  error: type[Exception]) -> tuple[ConvNextConfig, ConvNextImageProcessor, int]:
    """A named variant trained from a random init: its config with the folder's labels (drop path 0.1
    unless given), the default processor and the size (``--image-size``, else 224). ``error``: the
    path's error class, raised when ``spec`` names no variant."""
    try:
        parse_variant(spec)
    except ValueError as e:
        raise error(f"--model {spec!r} is neither a model folder, a hub id nor a known variant ({e})") from None
    size = image_size or 224
    id2label = dict(enumerate(folder_classes))
    config = config_for_variant(spec, num_labels=len(id2label), id2label=id2label,
                                label2id={v: k for k, v in id2label.items()},
                                drop_path_rate=0.1 if drop_path is None else drop_path, image_size=size)
    return config, ConvNextImageProcessor.from_dict(default_preprocessor_config(size)), size


@dataclass
class ModelSetup:
    """What a run starts from (``model``: the twin's classification model)."""

    model: Any
    processor: ConvNextImageProcessor
    classes: list[str]          # classes[i] is the label of output i (the folder names)
    image_size: int
    source: str                 # what the run started from, for metrics.json
    new_head: bool


class ModelBuilder:
    """How one twin makes the model (a path subclasses it with its twin's classes)."""

    def seed(self, seed: int) -> None:
        """Seed the random init (a new head, a variant)."""
        raise NotImplementedError

    def from_pretrained(self, spec: str, config: ConvNextConfig) -> Any:
        raise NotImplementedError

    def from_config(self, config: ConvNextConfig) -> Any:
        raise NotImplementedError

    def new_head(self, model: Any) -> None:
        """Called on a pretrained model whose head was replaced (the default keeps the loader's init)."""


def prepare_model(spec: str, folder_classes: Sequence[str], image_size: Optional[int], drop_path: Optional[float],
                  seed: int, builder: ModelBuilder, error: type[Exception]) -> ModelSetup:
    """A folder or hub id fine-tunes (keeping its head when its labels are exactly the folder names, else
    a new head); a variant name builds a random init seeded by ``seed``. ``error``: the path's error
    class, raised when ``spec`` names nothing known."""
    labels = list(folder_classes)
    builder.seed(seed)
    if is_pretrained_source(spec):  # a folder or a hub id (transformers or timm)
        plan = plan_head(spec, folder_classes, drop_path)
        config, labels = plan.config, plan.labels
        with warnings.catch_warnings():
            if plan.new_head:  # the new head is expected to be untrained: no "newly initialised" warning
                warnings.filterwarnings("ignore", message=".*newly initialised.*")
            model = builder.from_pretrained(spec, config)
        if plan.new_head:
            builder.new_head(model)
        processor, size = training_processor(model.preprocessor_config, config, image_size)
        source, new_head = str(spec), plan.new_head
    else:
        config, processor, size = variant_start(spec, labels, image_size, drop_path, error)
        model = builder.from_config(config)
        source, new_head = spec, True
    processor.size = {"shortest_edge": size}
    model.config.image_size = size
    return ModelSetup(model, processor, labels, size, source, new_head)

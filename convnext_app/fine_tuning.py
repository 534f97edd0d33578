"""What the two training paths decide alike, written once: ``convnext train`` in PyTorch
(:mod:`convnext_app.training`) and with ``--framework tf`` (:mod:`convnext_app.keras_training`).

Framework-free (numpy and the core only), because the Keras path must not import torch: the checks
of the options both paths take, the random-resized-crop box, and how a starting model's labels meet
the folder's classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from convnext_common.checkpoints.preprocessing import default_preprocessor_config
from convnext_common.config import ConvNextConfig, load_config
from convnext_common.hub import is_hub_id
from convnext_common.processing import ConvNextImageProcessor
from convnext_common.variants import config_for_variant, parse_variant


@dataclass
class SharedTrainOptions:
    """The options both training paths take, with the same defaults; each path's options add its own."""

    data: str
    model: str
    out: str
    epochs: int = 10
    batch_size: int = 32          # per process (PyTorch) or per device (Keras)
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    drop_path: Optional[float] = None
    image_size: Optional[int] = None
    min_scale: float = 0.25
    flip: bool = True
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    overwrite: bool = False
    quiet: bool = False
    # the recipe options both paths run; the defaults leave them off
    ema: Optional[float] = None
    mixup: float = 0.0
    cutmix: float = 0.0
    accum_steps: int = 1
    clip_grad: Optional[float] = None
    head_init_scale: float = 1.0
    freeze_trunk: bool = False


def shared_option_checks(o: Any) -> list[tuple[bool, str]]:
    """(condition, message when it fails) for the options both paths take (``o``: their options)."""
    return [
        (o.epochs >= 1, f"--epochs must be >= 1, got {o.epochs}"),
        (o.batch_size >= 1, f"--batch-size must be >= 1, got {o.batch_size}"),
        (o.lr > 0 and math.isfinite(o.lr), f"--lr must be a positive number, got {o.lr}"),
        (o.weight_decay >= 0, f"--weight-decay must be >= 0, got {o.weight_decay}"),
        (o.warmup_epochs >= 0, f"--warmup-epochs must be >= 0, got {o.warmup_epochs}"),
        (0 <= o.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {o.label_smoothing}"),
        (o.drop_path is None or 0 <= o.drop_path < 1, f"--drop-path must be in [0, 1), got {o.drop_path}"),
        (o.image_size is None or o.image_size >= 32, f"--image-size must be >= 32, got {o.image_size}"),
        (0 < o.min_scale <= 1, f"--min-scale must be in (0, 1], got {o.min_scale}"),
        (0 < o.val_fraction < 1, f"--val-fraction must be between 0 and 1, got {o.val_fraction}"),
        (o.ema is None or 0 < o.ema < 1, f"--ema must be in (0, 1), got {o.ema}"),
        (o.mixup >= 0 and math.isfinite(o.mixup), f"--mixup must be >= 0, got {o.mixup}"),
        (o.cutmix >= 0 and math.isfinite(o.cutmix), f"--cutmix must be >= 0, got {o.cutmix}"),
        (o.accum_steps >= 1, f"--accum-steps must be >= 1, got {o.accum_steps}"),
        (o.clip_grad is None or (o.clip_grad > 0 and math.isfinite(o.clip_grad)),
         f"--clip-grad must be a positive number, got {o.clip_grad}"),
        (o.head_init_scale > 0 and math.isfinite(o.head_init_scale),
         f"--head-init-scale must be a positive number, got {o.head_init_scale}"),
    ]


def crop_box(height: int, width: int, uniforms: Callable[[], Sequence[float]], min_scale: float = 0.25,
             ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random resized crop, torchvision's rule: area uniform in
    ``[min_scale, 1]`` of the image, aspect log-uniform in ``ratio``; ``uniforms()`` gives four
    numbers in [0, 1) per try (area, aspect, top, left); after 10 misses, the largest centred crop
    within ``ratio``. Each path draws the uniforms from its own keyed generator."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        u = list(uniforms())
        target = area * (min_scale + (1.0 - min_scale) * u[0])
        aspect = math.exp(log_lo + (log_hi - log_lo) * u[1])
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(u[2] * (height - h + 1))
            left = int(u[3] * (width - w + 1))
            return min(top, height - h), min(left, width - w), h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


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

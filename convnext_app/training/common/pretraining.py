"""What both paths of ``convnext pretrain`` (PyTorch: ``training/pt/pretrain.py``, Keras:
``training/keras/pretrain.py``) decide alike, without a framework: the options and their checks, the
images, the model's config, the learning rate and AdamW's betas."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from convnext_common.config import ConvNextV2Config, load_config
from convnext_common.variant_sizes import parse_variant

from convnext_app.imagefolder import is_image_file

from .model import is_pretrained_source


#: AdamW's betas in the official pre-training (MAE's).
BETAS = (0.9, 0.95)


class PretrainError(ValueError):
    """Bad pre-training options or data; the message names the option or path."""


@dataclass
class PretrainOptions:
    data: str
    model: str
    out: str
    epochs: int = 800
    batch_size: int = 64
    accum_steps: int = 1
    blr: float = 1.5e-4
    lr: Optional[float] = None
    min_lr: float = 0.0
    weight_decay: float = 0.05
    warmup_epochs: float = 40.0
    mask_ratio: Optional[float] = None
    norm_pix_loss: Optional[bool] = None
    decoder_hidden_size: int = 512
    decoder_layers: int = 1
    image_size: int = 224
    min_scale: float = 0.2
    flip: bool = True
    drop_path: float = 0.0
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    amp: bool = False
    resume: bool = False
    stop_after: Optional[int] = None
    overwrite: bool = False
    quiet: bool = False
    pictures: int = 4

    def validate(self) -> None:
        if not Path(self.data).is_dir():
            raise PretrainError(f"--data {self.data}: no such folder")
        if self.image_size % 32:
            raise PretrainError(f"--image-size {self.image_size}: must be a multiple of the patch size 32")
        if self.mask_ratio is not None and not 0.0 <= self.mask_ratio < 1.0:
            raise PretrainError(f"--mask-ratio {self.mask_ratio}: must be in [0, 1)")
        if not 0.0 < self.min_scale <= 1.0:
            raise PretrainError(f"--min-scale {self.min_scale}: must be in (0, 1]")
        if not 0.0 <= self.drop_path < 1.0:
            raise PretrainError(f"--drop-path {self.drop_path}: must be in [0, 1)")
        for name in ("blr", "weight_decay", "warmup_epochs", "min_lr"):
            if getattr(self, name) < 0 or not math.isfinite(getattr(self, name)):
                raise PretrainError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be >= 0")


def effective_batch(options: PretrainOptions, processes: int = 1) -> int:
    """Images per optimizer update: per process x accumulation x processes."""
    return options.batch_size * options.accum_steps * processes


def peak_lr(options: PretrainOptions, processes: int = 1) -> float:
    """``--lr``, else the official rule: ``--blr`` x the effective batch / 256."""
    if options.lr is not None:
        return options.lr
    return options.blr * effective_batch(options, processes) / 256


def scan_images(root: str | Path) -> list[Path]:
    """Every image file under ``root``, sub-folders included (they are just more images), sorted."""
    files = sorted(p for p in Path(root).rglob("*") if p.is_file() and is_image_file(p))
    if not files:
        raise PretrainError(f"--data {root}: no image files found (sub-folders included)")
    return files



def plan_model(options: PretrainOptions) -> tuple[ConvNextV2Config, bool]:
    """(the config to build, whether ``--model`` is a folder or hub id to load). A V2 variant name starts
    from a random init; a folder or hub id (a converted FCMAE checkpoint, a previous run, or any V2
    model: its decoder is then new, sized by the flags) continues. norm_pix_loss is on unless the
    flags or the folder's config say otherwise (the official recipe)."""
    overrides: dict[str, Any] = {"drop_path_rate": options.drop_path, "image_size": options.image_size}
    if options.mask_ratio is not None:
        overrides["mask_ratio"] = options.mask_ratio
    if options.norm_pix_loss is not None:
        overrides["norm_pix_loss"] = options.norm_pix_loss
    if is_pretrained_source(options.model):
        config = load_config(options.model)
        if config.model_type != "convnextv2":
            raise PretrainError(f"--model {options.model}: a ConvNeXt V1; FCMAE pre-trains ConvNeXt V2 models")
        if "norm_pix_loss" not in config.extra:
            overrides.setdefault("norm_pix_loss", True)
        if "decoder_hidden_size" not in config.extra:
            overrides.update(decoder_hidden_size=options.decoder_hidden_size,
                             decoder_num_hidden_layers=options.decoder_layers)
        return config.copy(**overrides), True
    try:
        version, _ = parse_variant(options.model, version=2)
    except ValueError as e:
        raise PretrainError(f"--model {options.model!r} is neither a model folder, a hub id nor a known V2 variant "
                            f"({e})") from None
    if version != 2:
        raise PretrainError(f"--model {options.model}: FCMAE pre-trains ConvNeXt V2 variants (e.g. convnextv2-atto)")
    overrides.setdefault("norm_pix_loss", True)
    return ConvNextV2Config.from_variant(options.model, decoder_hidden_size=options.decoder_hidden_size,
                                         decoder_num_hidden_layers=options.decoder_layers, **overrides), False

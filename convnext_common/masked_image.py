"""FCMAE (ConvNeXt V2's fully convolutional masked autoencoder): the framework-free facts both twins share.

The masked-image model (``ConvNextV2ForMaskedImageModeling``) removes square patches of
``patch_size`` = the trunk's total stride (32 for the published sizes), so that one patch is one
site of the last stage and ``(patch_size / stride)**2`` sites of an earlier stage. The official
code (facebookresearch/ConvNeXt-V2, ``models/fcmae.py``) runs the trunk on sparse tensors that
hold only the visible sites; the twins compute the same numbers densely (see docs/pretraining.md).
"""

from __future__ import annotations

from .config import ConfigError, ConvNextConfig

#: added to the variance of each target patch when ``norm_pix_loss`` normalises it (official value).
NORM_PIX_EPS = 1e-6


def total_stride(config: ConvNextConfig) -> int:
    """The trunk's total stride: the stem's patch size times 2 per downsampling stage (32 by default)."""
    return config.patch_size * 2 ** (len(config.depths) - 1)


def check_masked_image_config(config: ConvNextConfig) -> None:
    """Raise ConfigError naming the first FCMAE field that is invalid (or a V1 config)."""
    if config.model_type != "convnextv2":
        raise ConfigError("masked-image modeling (FCMAE) is ConvNeXt V2's: the config's model_type is "
                          f"{config.model_type!r}")
    ratio = config.mask_ratio
    if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0.0 <= ratio < 1.0:
        raise ConfigError(f"mask_ratio must be a number in [0, 1), got {ratio!r}")
    if not isinstance(config.norm_pix_loss, bool):
        raise ConfigError(f"norm_pix_loss must be true or false, got {config.norm_pix_loss!r}")
    for name in ("decoder_hidden_size", "decoder_num_hidden_layers"):
        v = getattr(config, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < (1 if name == "decoder_hidden_size" else 0):
            raise ConfigError(f"{name} must be a {'positive' if name == 'decoder_hidden_size' else 'non-negative'} "
                              f"int, got {v!r}")


def patch_grid(config: ConvNextConfig, height: int, width: int) -> tuple[int, int]:
    """The (rows, columns) of patches of an image; ValueError unless both sides are multiples of the patch size."""
    p = total_stride(config)
    if height % p or width % p or height <= 0 or width <= 0:
        raise ValueError(f"masked-image modeling needs height and width divisible by the patch size {p}, "
                         f"got {height}x{width}")
    return height // p, width // p


def num_kept(num_patches: int, mask_ratio: float) -> int:
    """How many patches a random mask keeps visible: ``int(L * (1 - mask_ratio))``, as the official code."""
    return int(num_patches * (1 - mask_ratio))

"""Which library wrote a checkpoint, told from its tensor names (and, for h5 files, its layout)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

from .foreign import FORMATS
from .io import CheckpointError

#: per format, names that only that library writes; the first format with a match wins.
SIGNATURES: dict[str, tuple[str, ...]] = {
    "hf": (r"(?:convnext(?:v2)?\.)?embeddings\.patch_embeddings\.weight",
           r"(?:convnext(?:v2)?\.)?encoder\.stages\.\d+\.layers\.\d+\.dwconv\.weight"),
    "timm": (r"stem\.0\.weight", r"stages\.\d+\.blocks\.\d+\.conv_dw\.weight"),
    "official": (r"downsample_layers\.0\.0\.weight", r"stages\.\d+\.\d+\.dwconv\.weight"),
    "torchvision": (r"features\.0\.0\.weight", r"features\.\d+\.\d+\.block\.0\.weight"),
    "keras": (r"stem_conv/kernel", r"stage_\d+_block_\d+_depthwise_conv/kernel"),
}
#: wrappers that training scripts put around a state dict's names.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
#: bookkeeping tensors a wrapper keeps beside the wrapped names: torch.optim.swa_utils.AveragedModel
#: (torchvision's EMA) counts its updates in ``n_averaged``.
WRAPPER_BOOKKEEPING = {"module.": ("n_averaged",)}


def strip_wrappers(state: dict) -> dict:
    """Remove a ``module.`` (DataParallel, AveragedModel) or ``_orig_mod.`` (torch.compile) prefix shared by
    every name (a wrapper's bookkeeping tensors are dropped with it)."""
    for prefix in WRAPPER_PREFIXES:
        names = [k for k in state if k not in WRAPPER_BOOKKEEPING.get(prefix, ())]
        if names and all(k.startswith(prefix) for k in names):
            state = {k[len(prefix):]: state[k] for k in names}
    return state


def detect_format(state: Mapping, source: str = "checkpoint") -> str:
    """One of FORMATS, from the names in ``state``; CheckpointError when none fits."""
    names = list(state)
    scores = {}
    for fmt, patterns in SIGNATURES.items():
        scores[fmt] = sum(any(re.fullmatch(p, n) for n in names) for p in patterns)
    best = max(scores, key=lambda f: scores[f])
    if scores[best] == 0:
        shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
        raise CheckpointError(
            f"{source}: cannot tell which library wrote these weights (first names: {shown}); not a ConvNeXt "
            f"checkpoint in a known layout? Pass --from {'|'.join(FORMATS)} to say it")
    return best


def h5_kind(path: str | Path) -> str:
    """``"hf"`` for transformers' tf_model.h5, ``"keras"`` for a keras-applications h5.

    Both are Keras legacy h5 files; transformers nests every weight under the model's main layer
    (``convnext/.../stages.0/layers.0/...``), keras-applications has one top-level group per layer
    (``<model>_stage_0_block_0_depthwise_conv``), in a ``save_weights`` file or under the
    ``model_weights`` group of a whole-model ``save``.
    """
    import h5py

    from .h5 import is_transformers_tf_h5
    from .keras_applications import str_list_attr, weights_root

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            names = str_list_attr(weights_root(f), "layer_names")
            if names is None and "layers" in f:
                raise CheckpointError(f"{path}: a Keras 3 .weights.h5 file; save the model with the legacy "
                                      f"h5 format (tf-keras save_weights) or convert from the source library")
    except OSError as e:
        raise CheckpointError(f"{path}: not a readable HDF5 file ({e})") from None
    names = names or []
    if any(re.search(r"_stage_\d+_block_\d+_depthwise_conv$", n) for n in names):
        return "keras"
    if is_transformers_tf_h5(path):
        return "hf"
    raise CheckpointError(f"{path}: an HDF5 file but neither transformers' tf_model.h5 nor a keras-applications "
                          f"ConvNeXt (top-level layers: {', '.join(names[:5]) or 'none'})")

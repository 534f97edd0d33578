"""Which library wrote a checkpoint, told from its tensor names (each source's signature in
sources.py) and, for h5 files, from the file's layout."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import h5py

from .errors import CheckpointError
from .h5 import is_transformers_tf_h5
from .keras_applications import str_list_attr, weights_root
from .sources import FORMATS, SOURCES

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
    """One of FORMATS, from the names in ``state`` (the source whose signature matches most; the
    first in SOURCES on a tie); CheckpointError when none fits."""
    names = list(state)
    scores = {}
    for src in SOURCES:
        scores[src.name] = sum(any(re.fullmatch(p, n) for n in names) for p in src.signature)
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

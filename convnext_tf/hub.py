"""Hub-layout loading and saving for the Keras twin (config.json + tf_model.h5, ...).

Weights move as canonical (PyTorch-layout) numpy arrays, the same as in ``convnext_pt/hub.py``.
A Keras variable's path below the model is transformers' TF name (``convnext/encoder/stages.0/
layers.0/dwconv/kernel``), so ``convnext_common.checkpoints.h5`` maps it; the only layout of ours
that differs from transformers' TF one is the depthwise kernel (see ``OWN_LAYOUTS``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Optional, TypeVar, Union

import numpy as np

from convnext_common.checkpoints.h5 import canonical_to_tf, save_hf_tf_h5, tf_name_to_canonical, tf_to_canonical
from convnext_common.checkpoints.io import (
    PT_WEIGHT_FILES, TF_WEIGHTS_NAME, CheckpointError, save_sharded_safetensors,
)
from convnext_common.checkpoints.matching import LoadReport, match_state_dict
from convnext_common.config import ConvNextConfig
from convnext_common.hub import HubOptions
from convnext_common.pretrained import PreprocessorConfigAttribute, load_pretrained, save_preprocessor_config

M = TypeVar("M", bound="TFPreTrainedMixin")

#: what a hub folder may hold, in order of preference for the Keras twin.
TF_WEIGHT_FILES = (TF_WEIGHTS_NAME,) + PT_WEIGHT_FILES

#: Keras dtype policies accepted by ``from_pretrained(dtype=...)``.
DTYPE_POLICIES = ("float32", "float16", "bfloat16", "mixed_float16", "mixed_bfloat16", "float64")

#: variables whose layout here differs from transformers' TF layout: the axes between the two
#: (self-inverse). Our depthwise conv is a DepthwiseConv2D, kernel (7, 7, C, 1); transformers'
#: is a grouped Conv2D, kernel (7, 7, 1, C).
OWN_LAYOUTS = {"dwconv/kernel": (0, 1, 3, 2)}


def _own_axes(tf_path: str) -> Optional[tuple[int, ...]]:
    for suffix, axes in OWN_LAYOUTS.items():
        if tf_path.endswith("/" + suffix):
            return axes
    return None


def resolve_dtype(dtype: Optional[str], config: ConvNextConfig) -> Optional[str]:
    """``"auto"`` takes the dtype recorded in config.json (``dtype`` or ``torch_dtype``)."""
    if dtype is None:
        return None
    if dtype == "auto":
        dtype = config.extra.get("dtype") or config.extra.get("torch_dtype") or "float32"
    name = str(dtype).replace("torch.", "")
    if name not in DTYPE_POLICIES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPE_POLICIES)} or 'auto'")
    return name


@contextlib.contextmanager
def _global_dtype_policy(policy: Optional[str]):
    """Keras gives a ``dtype=`` argument to that layer only; the sub-layers a model creates in its
    ``__init__`` take the global policy. Set it while the model is built so that every layer runs
    in ``policy``, then restore it."""
    if policy is None:
        yield
        return
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


class TFPreTrainedMixin:
    """``from_pretrained`` / ``save_pretrained`` for the keras.Model classes in modeling.py."""

    config_class: type[ConvNextConfig]
    base_model_prefix: str

    @classmethod
    def from_pretrained(cls: type[M], pretrained_model_name_or_path: Union[str, os.PathLike], *,
                        config: Optional[ConvNextConfig] = None, dtype: Optional[str] = None,
                        data_format: str = "channels_first", ignore_mismatched_sizes: bool = False,
                        output_loading_info: bool = False, revision: Optional[str] = None,
                        cache_dir: Union[str, os.PathLike, None] = None, local_files_only: bool = False,
                        token: Union[str, bool, None] = None, **config_overrides: Any):
        """Build the model from ``config.json`` and load its weights.

        ``pretrained_model_name_or_path``: a hub-layout folder (tf_model.h5 preferred, then
        model.safetensors, sharded safetensors, pytorch_model.bin (weights_only)), a weights file,
        a hub id (``facebook/convnext-tiny-224``; only the first of those files the repo has is
        downloaded), or a timm folder or hub id (``timm/convnext_tiny.fb_in1k``, converted in
        memory). ``revision``, ``cache_dir``, ``local_files_only``, ``token``: as in
        transformers. ``dtype``: a Keras dtype policy (``"mixed_float16"``, ...) or ``"auto"``.
        Keyword overrides change config fields (e.g. ``num_labels=5`` with
        ``ignore_mismatched_sizes=True`` for a new head). The source's preprocessor config is
        kept in ``model.preprocessor_config`` and written again by ``save_pretrained``.
        """
        options = HubOptions(revision, cache_dir, local_files_only, token)
        source = load_pretrained(pretrained_model_name_or_path, TF_WEIGHT_FILES, cls.config_class, config,
                                 config_overrides, cls.__name__, options)
        policy = resolve_dtype(dtype, source.config)
        with _global_dtype_policy(policy):
            model = cls(source.config, data_format=data_format, **({"dtype": policy} if policy else {}))
        model.load_numpy_state_dict(source.state, source=str(source.weights_file),
                                    ignore_mismatched_sizes=ignore_mismatched_sizes, report_to=(info := LoadReport()))
        model.preprocessor_config = source.preprocessor_config
        if output_loading_info:
            return model, {"missing_keys": info.missing_keys, "unexpected_keys": info.unexpected_keys,
                           "mismatched_keys": info.mismatched_keys}
        return model

    preprocessor_config = PreprocessorConfigAttribute()

    def _variables_by_tf_path(self) -> dict[str, Any]:
        """Every variable under its transformers TF path below this model (``convnext/.../dwconv/kernel``)."""
        out: dict[str, Any] = {}
        for layer in self.layers:  # direct sub-layers
            if isinstance(layer, TFPreTrainedMixin):
                out.update({f"{layer.name}/{k}": v for k, v in layer._variables_by_tf_path().items()})
                continue
            if not layer.weights:  # e.g. the Identity head of a num_labels=0 classifier
                continue
            root = layer.path + "/"
            for v in layer.weights:
                if not v.path.startswith(root):
                    raise RuntimeError(f"{v.path}: variable built outside its layer {layer.path}")
                out[f"{layer.name}/{v.path[len(root):]}"] = v
        return out

    def load_numpy_state_dict(self, state: dict[str, np.ndarray], source: str = "checkpoint",
                              ignore_mismatched_sizes: bool = False, report_to: Optional[LoadReport] = None) -> None:
        """Load canonical-named numpy weights, adapting prefixes and refusing what does not fit."""
        by_name: dict[str, tuple[str, Any]] = {}
        expected: dict[str, tuple[int, ...]] = {}
        for tf_path, variable in self._variables_by_tf_path().items():
            name, to_pt = tf_name_to_canonical(tf_path)
            shape = tuple(variable.shape)
            for axes in (_own_axes(tf_path), to_pt):
                if axes is not None:
                    shape = tuple(shape[a] for a in axes)
            by_name[name] = (tf_path, variable)
            expected[name] = shape
        matched, report = match_state_dict(state, expected, self.base_model_prefix, source=source,
                                           ignore_mismatched_sizes=ignore_mismatched_sizes)
        for name, array in matched.items():
            if not np.issubdtype(np.asarray(array).dtype, np.floating):
                raise CheckpointError(f"{source}: {name} has dtype {array.dtype}, expected floating point")
            tf_path, variable = by_name[name]
            _, value = canonical_to_tf(name, array)
            axes = _own_axes(tf_path)
            if axes is not None:
                value = value.transpose(axes)
            variable.assign(np.ascontiguousarray(value).astype(variable.dtype))
        if report_to is not None:
            report_to.__dict__.update(report.__dict__)

    def numpy_state_dict(self) -> dict[str, np.ndarray]:
        """Weights under canonical names, in PyTorch layouts (float32 for bfloat16 variables)."""
        out: dict[str, np.ndarray] = {}
        for tf_path, variable in self._variables_by_tf_path().items():
            value = np.asarray(variable.numpy())
            if value.dtype.name == "bfloat16":
                value = value.astype(np.float32)
            axes = _own_axes(tf_path)
            if axes is not None:
                value = value.transpose(axes)
            name, value = tf_to_canonical(tf_path, value)
            out[name] = value
        return out

    def save_pretrained(self, save_directory: Union[str, os.PathLike], safe_serialization: bool = False,
                        max_shard_size: int = 5 * 1024**3, image_processor: Any = None) -> Path:
        """Write config.json and the tf_model.h5 transformers' TF class would write (and, with
        ``safe_serialization``, a canonical model.safetensors too), each file atomically, and
        preprocessor_config.json from ``image_processor`` or else ``self.preprocessor_config``."""
        directory = Path(save_directory)
        if directory.exists() and not directory.is_dir():
            raise FileExistsError(f"{directory}: exists and is not a folder")
        directory.mkdir(parents=True, exist_ok=True)
        config = self.config.copy()
        class_name = type(self).__name__
        config.architectures = [class_name[2:] if class_name.startswith("TF") else class_name]
        config.extra["dtype"] = self.dtype_policy.variable_dtype
        config.extra.pop("torch_dtype", None)
        state = self.numpy_state_dict()
        save_hf_tf_h5(state, config, directory / TF_WEIGHTS_NAME, architecture=class_name)
        if safe_serialization:
            save_sharded_safetensors(state, directory, max_shard_bytes=max_shard_size)
        config.save_pretrained(directory)
        save_preprocessor_config(directory, image_processor if image_processor is not None
                                 else self.preprocessor_config)
        return directory

"""Hub-layout loading and saving for the Keras twin (config.json + tf_model.h5, ...).

The steps both twins share are ``convnext_common.pretrained.PretrainedModel``'s; this mixin adds
what is Keras' own: its weights-file order, its variables, dtype policies, and tf_model.h5.
Weights move as canonical (PyTorch-layout) numpy arrays, the same as in ``convnext_pt/hub.py``.
A Keras variable's path below the model is transformers' TF name (``convnext/encoder/stages.0/
layers.0/dwconv/kernel``) once ``group_key`` layer names read ``group.key`` (:func:`transformers_path`),
so ``convnext_common.checkpoints.formats.tf_h5`` maps it; the only layout of ours that differs from
transformers' TF one is the depthwise kernel (see ``OWN_LAYOUTS``).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from functools import partial
from pathlib import Path
from typing import Any, Iterator, Optional, TypeVar, Union

import numpy as np

from convnext_common.checkpoints.formats.tf_h5 import canonical_to_tf, save_hf_tf_h5, tf_name_to_canonical, tf_to_canonical
from convnext_common.checkpoints.formats.files import PT_WEIGHT_FILES, TF_WEIGHTS_NAME, save_sharded_safetensors
from convnext_common.checkpoints.formats.lazy import materialise
from convnext_common.config import ConvNextConfig
from convnext_common.fileio import size_in_bytes
from convnext_common.hub import HubOptions
from convnext_common.pretrained import PretrainedModel, WeightSlot, requested_dtype_name

from .quantization import (
    QUANTIZATION_VARIABLES, RECORD_KEY, QuantizationSaveError, check_hub_savable, float_kernel, quantize_as_recorded,
)

#: the variables Keras' Dense.enable_lora adds (saved merged into their kernel)
LORA_VARIABLES = ("lora_kernel_a", "lora_kernel_b")


def keras_numpy(tensor: Any) -> np.ndarray:
    import keras

    return keras.ops.convert_to_numpy(tensor)

M = TypeVar("M", bound="TFPreTrainedMixin")

#: what a hub folder may hold, in order of preference for the Keras twin.
TF_WEIGHT_FILES = (TF_WEIGHTS_NAME,) + PT_WEIGHT_FILES

#: Keras dtype policies accepted by ``from_pretrained(dtype=...)``.
DTYPE_POLICIES = ("float32", "float16", "bfloat16", "mixed_float16", "mixed_bfloat16", "float64")

#: variables whose layout here differs from transformers' TF layout: the axes between the two
#: (self-inverse). Our depthwise conv is a DepthwiseConv2D, kernel (7, 7, C, 1); transformers'
#: is a grouped Conv2D, kernel (7, 7, 1, C).
OWN_LAYOUTS = {"dwconv/kernel": (0, 1, 3, 2)}


#: transformers' list and dict attributes whose entries it names ``group.key`` (``stages.0``,
#: ``hidden_states_norms.stage2``). Keras' PyTorch backend keys every layer's torch parameters by
#: variable path and torch refuses "." in those keys, so on every backend the Keras layers are
#: named ``group_key`` (:func:`keras_layer_name`) and their paths map back here (:func:`transformers_path`).
INDEXED_GROUPS = ("stages", "layers", "downsampling_layer", "hidden_states_norms")
_INDEXED = re.compile(rf"^({'|'.join(INDEXED_GROUPS)})_(\w+)$")


def keras_layer_name(group: str, key: Union[int, str]) -> str:
    """The Keras name of transformers' layer ``group.key``: ``stages_0``, ``hidden_states_norms_stage2``."""
    if group not in INDEXED_GROUPS:
        raise ValueError(f"{group!r} is not one of {INDEXED_GROUPS}")
    return f"{group}_{key}"


def transformers_path(keras_path: str) -> str:
    """A variable path below the model with transformers' TF layer names: ``encoder/stages_0/layers_1/
    dwconv/kernel`` -> ``encoder/stages.0/layers.1/dwconv/kernel``."""
    return "/".join(_INDEXED.sub(r"\1.\2", part) for part in keras_path.split("/"))


def _own_axes(tf_path: str) -> Optional[tuple[int, ...]]:
    for suffix, axes in OWN_LAYOUTS.items():
        if tf_path.endswith("/" + suffix):
            return axes
    return None


def to_canonical(tf_path: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    """A value shaped like the variable at ``tf_path`` (its weight, or a gradient of it) under its
    canonical name, in the PyTorch layout."""
    axes = _own_axes(tf_path)
    return tf_to_canonical(tf_path, value if axes is None else np.asarray(value).transpose(axes))


def resolve_dtype(dtype: Optional[str], config: ConvNextConfig) -> Optional[str]:
    """``"auto"`` takes the dtype recorded in config.json (``dtype`` or ``torch_dtype``)."""
    name = requested_dtype_name(dtype, config)
    if name is None:
        return None
    if name not in DTYPE_POLICIES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPE_POLICIES)} or 'auto'")
    return name


#: True while ``from_pretrained`` builds a model that a checkpoint fills next (:func:`kernels_from_checkpoint`).
_KERNELS_FROM_CHECKPOINT = contextvars.ContextVar("convnext_tf_kernels_from_checkpoint", default=False)


@contextlib.contextmanager
def kernels_from_checkpoint() -> Iterator[None]:
    """Models built within start their kernels at zero instead of drawing them: a checkpoint
    overwrites them next, and on TensorFlow the random draws' temporaries stay in its allocator's
    pool through the load. ``from_pretrained`` then draws every kernel the checkpoint did not fill
    (``_draw_kernels``)."""
    token = _KERNELS_FROM_CHECKPOINT.set(True)
    try:
        yield
    finally:
        _KERNELS_FROM_CHECKPOINT.reset(token)


def building_for_checkpoint() -> bool:
    """Whether a model is being built inside :func:`kernels_from_checkpoint` (read by its initializers)."""
    return _KERNELS_FROM_CHECKPOINT.get()


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


def _assign(variable: Any, name: str, tf_path: str, tensor: Any) -> None:
    """Copy the canonical tensor ``name`` into ``variable`` (transformers' TF layout, then ours),
    holding at most two copies of it at a time: the array read from the file is dropped once its
    re-laid-out copy exists, before the variable takes that copy."""
    _, value = canonical_to_tf(name, materialise(tensor))  # a view of the read array
    axes = _own_axes(tf_path)
    if axes is not None:
        value = value.transpose(axes)
    value = np.ascontiguousarray(value, dtype=variable.dtype)  # the only reference to the read array goes here
    variable.assign(value)


class TFPreTrainedMixin(PretrainedModel):
    """``from_pretrained`` / ``save_pretrained`` for the keras.Model classes in modeling.py."""

    weight_files = TF_WEIGHT_FILES

    @classmethod
    def from_pretrained(cls: type[M], pretrained_model_name_or_path: Union[str, os.PathLike], *,
                        config: Optional[ConvNextConfig] = None, dtype: Optional[str] = None,
                        data_format: str = "channels_first", ignore_mismatched_sizes: bool = False,
                        output_loading_info: bool = False, revision: Optional[str] = None,
                        cache_dir: Union[str, os.PathLike, None] = None, local_files_only: bool = False,
                        token: Union[str, bool, None] = None, subfolder: str = "", **config_overrides: Any):
        """Build the model from ``config.json`` and load its weights.

        ``pretrained_model_name_or_path``: a hub-layout folder (tf_model.h5 preferred, then
        model.safetensors, sharded safetensors, pytorch_model.bin (weights_only)), a weights file,
        a hub id (``facebook/convnext-tiny-224``; only the first of those files the repo has is
        downloaded), or a timm folder or hub id (``timm/convnext_tiny.fb_in1k``, converted in
        memory). ``revision``, ``cache_dir``, ``local_files_only``, ``token``: as in
        transformers. ``dtype``: a Keras dtype policy (``"mixed_float16"``, ...) or ``"auto"``.
        Keyword overrides change config fields (e.g. ``num_labels=5`` with
        ``ignore_mismatched_sizes=True`` for a new head). The source's preprocessor config is
        kept in ``model.preprocessor_config`` and written again by ``save_pretrained``. Missing
        keys, mismatched sizes and ``subfolder`` as in the PyTorch twin's ``from_pretrained``.
        """
        for option in ("from_pt", "use_safetensors", "_fast_init", "trust_remote_code"):
            config_overrides.pop(option, None)  # every weights file of a folder is read here; no need to ask

        from_checkpoint = pretrained_model_name_or_path is not None  # else: from_pretrained(None, config=...)

        def build(model_config: ConvNextConfig) -> M:
            policy = resolve_dtype(dtype, model_config)
            kernels = kernels_from_checkpoint() if from_checkpoint else contextlib.nullcontext()
            with _global_dtype_policy(policy), kernels:
                return cls(model_config, data_format=data_format, **({"dtype": policy} if policy else {}))

        model, info = cls._load_pretrained(pretrained_model_name_or_path, build,
                                           config=config, overrides=config_overrides,
                                           options=HubOptions(revision, cache_dir, local_files_only, token),
                                           ignore_mismatched_sizes=ignore_mismatched_sizes, subfolder=subfolder)
        if from_checkpoint:  # the kernels the checkpoint did not fill get their random draw now
            unfilled = set(info["missing_keys"]) | {name for name, _, _ in info["mismatched_keys"]}
            variables = [slot.assign.args[0] for name, slot in model._weight_slots().items() if name in unfilled]
            model._draw_kernels([v for v in variables if v.path.rsplit("/", 1)[-1] in ("kernel", "mask_token")])
        # layers saved from a quantized model: quantized again from the loaded float weights
        quantize_as_recorded(model, model.config.extra.get(RECORD_KEY), str(pretrained_model_name_or_path))
        return (model, info) if output_loading_info else model

    def _variables_by_tf_path(self) -> dict[str, Any]:
        """Every variable under its transformers TF path below this model (``convnext/encoder/stages.0/.../kernel``)."""
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
                if v.path.rsplit("/", 1)[-1] in QUANTIZATION_VARIABLES and v.path.rsplit("/", 1)[0] in self._quantized:
                    continue  # a quantized layer's own state: not a hub-layout tensor (quantization.py)
                if v.path.rsplit("/", 1)[-1] in LORA_VARIABLES:
                    continue  # adapters: saved merged into their kernel (numpy_state_dict)
                out[transformers_path(f"{layer.name}/{v.path[len(root):]}")] = v
        return out

    @property
    def _quantized(self) -> dict[str, Any]:
        """The quantized layers below this model (any depth), by Keras path."""
        return {layer.path: layer for layer in self._flatten_layers(include_self=False)
                if getattr(layer.dtype_policy, "quantization_mode", None) is not None}  # variable paths follow these

    def _weight_slots(self) -> dict[str, WeightSlot]:
        if self._quantized:
            raise QuantizationSaveError(f"{type(self).__name__}: load weights before quantize(); a quantized layer "
                                        f"({next(iter(self._quantized))}) takes no float weights")
        slots: dict[str, WeightSlot] = {}
        for tf_path, variable in self._variables_by_tf_path().items():
            name, to_pt = tf_name_to_canonical(tf_path)
            shape = tuple(variable.shape)
            for axes in (_own_axes(tf_path), to_pt):
                if axes is not None:
                    shape = tuple(shape[a] for a in axes)
            slots[name] = WeightSlot(shape, partial(_assign, variable, name, tf_path))  # args[0]: the variable
        return slots

    def numpy_state_dict(self) -> dict[str, np.ndarray]:
        """Weights under canonical names, in PyTorch layouts (float32 for bfloat16 variables)."""
        out: dict[str, np.ndarray] = {}
        quantized = self._quantized
        adapted = {layer.path: layer for layer in self._flatten_layers(include_self=False)
                   if getattr(layer, "lora_enabled", False)}
        for tf_path, variable in self._variables_by_tf_path().items():
            owner = variable.path.rsplit("/", 1)[0]
            is_kernel = variable.path.endswith("/kernel")
            if is_kernel and owner in adapted and owner in quantized:
                raise QuantizationSaveError(f"{owner}: save_pretrained cannot merge LoRA into a quantized kernel; "
                                            f"save it with model.save('model.keras')")
            if is_kernel and owner in adapted:  # the kernel the layer computes with: LoRA merged in
                value = np.asarray(keras_numpy(adapted[owner].kernel))
            elif is_kernel and owner in quantized:
                value = float_kernel(quantized[owner])
            else:
                value = np.asarray(variable.numpy())
            if value.dtype.name == "bfloat16":
                value = value.astype(np.float32)
            name, value = to_canonical(tf_path, value)
            out[name] = value
        return out

    def save_pretrained(self, save_directory: Union[str, os.PathLike], safe_serialization: bool = False,
                        max_shard_size: Union[int, str] = 5 * 1024**3, image_processor: Any = None, *,
                        saved_model: bool = False, version: int = 1, push_to_hub: bool = False,
                        signatures: Any = None, **kwargs: Any) -> Path:
        """Write config.json and the tf_model.h5 transformers' TF class would write (and, with
        ``safe_serialization``, a canonical model.safetensors too), each file atomically, and
        preprocessor_config.json from ``image_processor`` or else ``self.preprocessor_config``.
        As transformers: ``max_shard_size`` also as ``"5GB"``; ``saved_model=True`` adds a
        SavedModel in ``saved_model/<version>`` (see ``export``); ``push_to_hub`` is refused."""
        if push_to_hub:
            raise ValueError("push_to_hub is not supported: save to a folder and upload it")
        check_hub_savable(self)  # a quantization float weights cannot hold is refused before anything is written
        directory = self._save_pretrained(save_directory, image_processor, safe_serialization=safe_serialization,
                                          max_shard_size=size_in_bytes(max_shard_size))
        if saved_model:
            self.export(str(directory / "saved_model" / str(version)))
        return directory

    def _saved_architecture(self) -> str:
        class_name = type(self).__name__
        return class_name[2:] if class_name.startswith("TF") else class_name

    def _saved_dtype(self) -> str:
        return self.dtype_policy.variable_dtype

    def _write_weights(self, directory: Path, config: ConvNextConfig, *, safe_serialization: bool,
                       max_shard_size: int) -> None:
        record = check_hub_savable(self)  # before anything is written
        config.extra.pop(RECORD_KEY, None)
        if record:
            config.extra[RECORD_KEY] = record  # the config.json written after the weights
        state = self.numpy_state_dict()
        save_hf_tf_h5(state, config, directory / TF_WEIGHTS_NAME, architecture=type(self).__name__)
        if safe_serialization:
            save_sharded_safetensors(state, directory, max_shard_bytes=max_shard_size)

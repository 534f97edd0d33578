"""Hub-layout loading and saving for the PyTorch twin (config.json + model.safetensors, ...).

The steps both twins share are ``convnext_common.pretrained.PretrainedModel``'s; this mixin adds
what is PyTorch's own: its weights-file order, its parameters, torch dtypes, and pickled weights.
"""

from __future__ import annotations

import os
import warnings
from functools import partial
from pathlib import Path
from typing import Any, Optional, TypeVar, Union

import numpy as np
import torch

from convnext_common.checkpoints.formats.files import PT_WEIGHT_FILES, PT_WEIGHTS_NAME, TF_WEIGHTS_NAME, save_sharded_safetensors
from convnext_common.checkpoints.formats.lazy import materialise
from convnext_common.config import ConvNextConfig
from convnext_common.fileio import atomic_write, size_in_bytes
from convnext_common.hub import HubOptions
from convnext_common.pretrained import PretrainedModel, WeightSlot, requested_dtype_name

M = TypeVar("M", bound="PreTrainedMixin")

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def resolve_dtype(torch_dtype: Union[str, torch.dtype, None], config: ConvNextConfig) -> Optional[torch.dtype]:
    """``"auto"`` takes the dtype recorded in config.json (``dtype`` or ``torch_dtype``)."""
    if isinstance(torch_dtype, torch.dtype):
        return torch_dtype
    name = requested_dtype_name(torch_dtype, config)
    if name is None:
        return None
    if name not in _DTYPES:
        raise ValueError(f"torch_dtype {torch_dtype!r} is not one of {', '.join(_DTYPES)} or 'auto'")
    return _DTYPES[name]


def _one_dtype(torch_dtype: Union[str, torch.dtype, None], dtype: Union[str, torch.dtype, None]
               ) -> Union[str, torch.dtype, None]:
    if torch_dtype is not None and dtype is not None and torch_dtype != dtype:
        raise ValueError(f"dtype={dtype!r} and torch_dtype={torch_dtype!r} disagree; give one of them")
    return dtype if dtype is not None else torch_dtype


def _copy_into(target: torch.Tensor, tensor: Any) -> None:
    array = materialise(tensor)
    with torch.no_grad(), warnings.catch_warnings():
        # read-only arrays (memory-mapped files) are only read here: torch's warning does not apply
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        target.copy_(torch.from_numpy(np.ascontiguousarray(array)).to(target.dtype))


class PreTrainedMixin(PretrainedModel):
    """``from_pretrained`` / ``save_pretrained`` for the nn.Module classes in modeling.py."""

    weight_files = PT_WEIGHT_FILES + (TF_WEIGHTS_NAME,)

    @classmethod
    def from_pretrained(cls: type[M], pretrained_model_name_or_path: Union[str, os.PathLike, None], *model_args: Any,
                        config: Optional[ConvNextConfig] = None, torch_dtype: Union[str, torch.dtype, None] = None,
                        dtype: Union[str, torch.dtype, None] = None,
                        ignore_mismatched_sizes: bool = False, output_loading_info: bool = False,
                        revision: Optional[str] = None, cache_dir: Union[str, os.PathLike, None] = None,
                        local_files_only: bool = False, token: Union[str, bool, None] = None,
                        subfolder: str = "", state_dict: Optional[dict[str, torch.Tensor]] = None,
                        **config_overrides: Any):
        """Build the model from ``config.json`` and load its weights.

        ``pretrained_model_name_or_path``: a hub-layout folder (model.safetensors preferred, then
        sharded safetensors, pytorch_model.bin (weights_only), tf_model.h5), a weights file, a
        hub id (``facebook/convnext-tiny-224``; only the first of those files the repo has is
        downloaded), or a timm folder or hub id (``timm/convnext_tiny.fb_in1k``, converted in
        memory). ``revision``, ``cache_dir``, ``local_files_only``, ``token``: as in
        transformers. Keyword overrides change config fields (e.g. ``num_labels=5`` with
        ``ignore_mismatched_sizes=True`` for a new head). The source's preprocessor config is
        kept in ``model.preprocessor_config`` and written again by ``save_pretrained``.

        As in transformers: ``dtype`` (or its older name ``torch_dtype``) casts the loaded model;
        keys the weights lack keep their initial values, with a warning, and are reported with
        ``output_loading_info=True``; shapes that differ raise a RuntimeError unless
        ``ignore_mismatched_sizes=True``; ``pretrained_model_name_or_path=None`` builds from
        ``config`` (and loads ``state_dict`` if given); ``subfolder`` names a folder inside a
        local one; loading under ``with torch.device("meta")`` is refused.
        """
        if model_args:
            raise TypeError(f"{cls.__name__}.from_pretrained takes no positional model arguments, got {len(model_args)}")
        config_overrides.pop("_fast_init", None)  # transformers' option for an initialisation detail
        config_overrides.pop("use_safetensors", None)
        config_overrides.pop("trust_remote_code", None)
        if torch.get_default_device().type == "meta":
            raise RuntimeError(
                "You are using `from_pretrained` with a meta device context manager or "
                "`torch.set_default_device('meta')`.\n"
                f"{cls.__name__}.from_pretrained loads existing weights; to build an empty model on the "
                "meta device, call the class with its config instead.")
        dtype = _one_dtype(torch_dtype, dtype)
        if state_dict is not None:
            state_dict = {k: v.detach().cpu().float().numpy() if v.dtype == torch.bfloat16 else v.detach().cpu().numpy()
                          for k, v in state_dict.items()}
        model, info = cls._load_pretrained(pretrained_model_name_or_path, cls,
                                           config=config, overrides=config_overrides,
                                           options=HubOptions(revision, cache_dir, local_files_only, token),
                                           ignore_mismatched_sizes=ignore_mismatched_sizes,
                                           subfolder=subfolder, state_dict=state_dict)
        info["mismatched_keys"] = [name for name, *_ in info["mismatched_keys"]]  # names, as transformers' PyTorch
        dtype = resolve_dtype(dtype, model.config)
        if dtype is not None:
            model = model.to(dtype)
            model.config.dtype = dtype
        model.eval()
        return (model, info) if output_loading_info else model

    def _weight_slots(self) -> dict[str, WeightSlot]:
        # the canonical names and layouts are PyTorch's: a state dict entry is a slot as it is
        return {k: WeightSlot(tuple(v.shape), partial(_copy_into, v)) for k, v in self.state_dict().items()}

    def numpy_state_dict(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().float().numpy() if v.dtype == torch.bfloat16 else v.detach().cpu().numpy()
                for k, v in self.state_dict().items()}

    def save_pretrained(self, save_directory: Union[str, os.PathLike], safe_serialization: bool = True,
                        max_shard_size: Union[int, str] = 5 * 1024**3, image_processor: Any = None, *,
                        is_main_process: bool = True, push_to_hub: bool = False, **kwargs: Any) -> Path:
        """Write config.json and model.safetensors (or pytorch_model.bin), each file atomically, and
        preprocessor_config.json from ``image_processor`` or else ``self.preprocessor_config``.
        ``max_shard_size``: bytes or as transformers spells it (``"5GB"``). transformers' other
        options that only concern distributed saving (``is_main_process``, ``save_function``, ...)
        are accepted; ``push_to_hub`` is refused."""
        if push_to_hub:
            raise ValueError("push_to_hub is not supported: save to a folder and upload it")
        if not is_main_process:
            return Path(save_directory)
        return self._save_pretrained(save_directory, image_processor, safe_serialization=safe_serialization,
                                     max_shard_size=size_in_bytes(max_shard_size))

    def _saved_architecture(self) -> str:
        return type(self).__name__

    def _saved_dtype(self) -> str:
        return str(next(self.parameters()).dtype).replace("torch.", "")

    def _write_weights(self, directory: Path, config: ConvNextConfig, *, safe_serialization: bool,
                       max_shard_size: int) -> None:
        if safe_serialization:
            save_sharded_safetensors(self.numpy_state_dict(), directory, max_shard_bytes=max_shard_size)
        else:
            tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
            atomic_write(directory / PT_WEIGHTS_NAME, lambda tmp: torch.save(tensors, tmp))

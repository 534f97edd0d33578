"""Hub-layout loading and saving for the PyTorch twin (config.json + model.safetensors, ...)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Optional, TypeVar, Union

import numpy as np
import torch

from convnext_common.checkpoints.io import (
    PT_WEIGHT_FILES, PT_WEIGHTS_NAME, TF_WEIGHTS_NAME, CheckpointError, save_sharded_safetensors,
)
from convnext_common.hub import HubOptions
from convnext_common.pretrained import PreprocessorConfigAttribute, load_pretrained, save_preprocessor_config
from convnext_common.checkpoints.matching import LoadReport, match_state_dict
from convnext_common.config import ConvNextConfig
from convnext_common.fileio import atomic_write

M = TypeVar("M", bound="PreTrainedMixin")

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def resolve_dtype(torch_dtype: Union[str, torch.dtype, None], config: ConvNextConfig) -> Optional[torch.dtype]:
    """``"auto"`` takes the dtype recorded in config.json (``dtype`` or ``torch_dtype``)."""
    if torch_dtype is None or isinstance(torch_dtype, torch.dtype):
        return torch_dtype
    if torch_dtype == "auto":
        torch_dtype = config.extra.get("dtype") or config.extra.get("torch_dtype") or "float32"
    name = str(torch_dtype).replace("torch.", "")
    if name not in _DTYPES:
        raise ValueError(f"torch_dtype {torch_dtype!r} is not one of {', '.join(_DTYPES)} or 'auto'")
    return _DTYPES[name]


class PreTrainedMixin:
    """``from_pretrained`` / ``save_pretrained`` for the nn.Module classes in modeling.py."""

    config_class: type[ConvNextConfig]
    base_model_prefix: str

    @classmethod
    def from_pretrained(cls: type[M], pretrained_model_name_or_path: Union[str, os.PathLike], *,
                        config: Optional[ConvNextConfig] = None, torch_dtype: Union[str, torch.dtype, None] = None,
                        ignore_mismatched_sizes: bool = False, output_loading_info: bool = False,
                        revision: Optional[str] = None, cache_dir: Union[str, os.PathLike, None] = None,
                        local_files_only: bool = False, token: Union[str, bool, None] = None,
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
        """
        options = HubOptions(revision, cache_dir, local_files_only, token)
        source = load_pretrained(pretrained_model_name_or_path, PT_WEIGHT_FILES + (TF_WEIGHTS_NAME,),
                                 cls.config_class, config, config_overrides, cls.__name__, options)
        model = cls(source.config)
        model.load_numpy_state_dict(source.state, source=str(source.weights_file),
                                    ignore_mismatched_sizes=ignore_mismatched_sizes, report_to=(info := LoadReport()))
        model.preprocessor_config = source.preprocessor_config
        dtype = resolve_dtype(torch_dtype, source.config)
        if dtype is not None:
            model = model.to(dtype)
        model.eval()
        if output_loading_info:
            return model, {"missing_keys": info.missing_keys, "unexpected_keys": info.unexpected_keys,
                           "mismatched_keys": info.mismatched_keys}
        return model

    preprocessor_config = PreprocessorConfigAttribute()

    def load_numpy_state_dict(self, state: dict[str, np.ndarray], source: str = "checkpoint",
                              ignore_mismatched_sizes: bool = False, report_to: Optional[LoadReport] = None) -> None:
        """Load canonical-named numpy weights, adapting prefixes and refusing what does not fit."""
        own = self.state_dict()
        expected = {k: tuple(v.shape) for k, v in own.items()}
        matched, report = match_state_dict(state, expected, self.base_model_prefix, source=source,
                                           ignore_mismatched_sizes=ignore_mismatched_sizes)
        with torch.no_grad(), warnings.catch_warnings():
            # read-only arrays (memory-mapped files) are only read here: torch's warning does not apply
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            for name, array in matched.items():
                target = own[name]
                if not np.issubdtype(np.asarray(array).dtype, np.floating):
                    raise CheckpointError(f"{source}: {name} has dtype {array.dtype}, expected floating point")
                target.copy_(torch.from_numpy(np.ascontiguousarray(array)).to(target.dtype))
        if report_to is not None:
            report_to.__dict__.update(report.__dict__)

    def numpy_state_dict(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().float().numpy() if v.dtype == torch.bfloat16 else v.detach().cpu().numpy()
                for k, v in self.state_dict().items()}

    def save_pretrained(self, save_directory: Union[str, os.PathLike], safe_serialization: bool = True,
                        max_shard_size: int = 5 * 1024**3, image_processor: Any = None) -> Path:
        """Write config.json and model.safetensors (or pytorch_model.bin), each file atomically, and
        preprocessor_config.json from ``image_processor`` or else ``self.preprocessor_config``."""
        directory = Path(save_directory)
        if directory.exists() and not directory.is_dir():
            raise FileExistsError(f"{directory}: exists and is not a folder")
        directory.mkdir(parents=True, exist_ok=True)
        config = self.config.copy()
        config.architectures = [type(self).__name__]
        dtype = next(self.parameters()).dtype
        config.extra["dtype"] = str(dtype).replace("torch.", "")
        config.extra.pop("torch_dtype", None)
        state = self.numpy_state_dict()
        if safe_serialization:
            save_sharded_safetensors(state, directory, max_shard_bytes=max_shard_size)
        else:
            tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
            atomic_write(directory / PT_WEIGHTS_NAME, lambda tmp: torch.save(tensors, tmp))
        config.save_pretrained(directory)
        save_preprocessor_config(directory, image_processor if image_processor is not None
                                 else self.preprocessor_config)
        return directory

"""The converter's first step: read INPUT (a hub folder or id, a weights file) into its source's
names and tell which source wrote it (sources.py), with what the source stores beside the tensors."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Optional

from ..config import ConvNextConfig
from ..hub import HubOptions, is_hub_id, model_folder
from .detect import detect_format, h5_kind, strip_wrappers
from .errors import CheckpointError
from .io import PT_WEIGHT_FILES, TF_WEIGHTS_NAME, find_weights_file, load_state_dict, load_torch_checkpoint
from .safetensors_io import map_safetensors
from .sources import FORMATS, SourceCheckpoint, get_source

#: torch pickles (state dicts or training checkpoints); other files are told by their content.
PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt")


def local_input(input: str | Path, hub_options: Optional[HubOptions] = None) -> Path:
    """INPUT itself, or for a hub id the cached snapshot folder holding its config and one weights file."""
    if Path(input).exists() or not is_hub_id(input):
        return Path(input)
    from ..identify import check_convnext_config  # a hub id that is not a ConvNeXt is refused by name

    return model_folder(input, PT_WEIGHT_FILES + (TF_WEIGHTS_NAME,), hub_options, check_convnext_config)


def read_input(path: str | Path, source: Optional[str] = None, config: Optional[ConvNextConfig] = None,
               ema: bool = False) -> SourceCheckpoint:
    """Load INPUT's tensors and tell its source (``source`` overrides the detection); ``ema`` takes a
    training checkpoint's EMA weights instead of its model's. What the source keeps beside the
    tensors (a timm folder's config.json, ...) is read with them."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if source is not None and source not in FORMATS:
        raise ValueError(f"--from {source!r} is not one of {', '.join(FORMATS)}")
    hub_dir = None
    if path.is_dir():
        hub_dir = path
        file = find_weights_file(path, PT_WEIGHT_FILES + (TF_WEIGHTS_NAME,))
    else:
        file = path
        if file.name in PT_WEIGHT_FILES + (TF_WEIGHTS_NAME,) and (file.parent / "config.json").is_file():
            hub_dir = file.parent  # a hub folder's weights file: its config.json describes it
    if file.stat().st_size == 0:
        raise CheckpointError(f"{file}: the file is empty")
    suffix = file.suffix.lower()
    pickled = suffix in PICKLE_SUFFIXES or (suffix not in (".h5", ".hdf5", ".safetensors", ".json")
                                            and zipfile.is_zipfile(file))
    if ema and not pickled:
        raise CheckpointError(f"{file}: --ema reads a training checkpoint (.pth/.pt/.bin); this file holds one set "
                              f"of weights")
    if suffix in (".h5", ".hdf5"):
        kind = get_source(h5_kind(file))
        if source is not None and source != kind.name:
            raise CheckpointError(f"{file}: --from {source} given, but this h5 file is a {kind.library} file")
        return kind.read_h5(file, hub_dir, config)
    ckpt = None
    if suffix == ".safetensors":
        state = map_safetensors(file)
    elif pickled:
        ckpt = load_torch_checkpoint(file, ema=ema)
        state = ckpt.weights
    else:
        state = load_state_dict(file)
    state = strip_wrappers(state)
    fmt = source or detect_format(state, str(file))
    inp = SourceCheckpoint(state, fmt, file, hub_dir, entry=ckpt.entry if ckpt else None,
                           other_entries=ckpt.other_entries if ckpt else [])
    get_source(fmt).metadata(inp, ckpt)
    return inp

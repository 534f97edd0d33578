"""Convert any ConvNeXt checkpoint in circulation into a hub-layout folder both twins load.

``convert(INPUT, OUTPUT_DIR)`` reads INPUT (a hub folder, ``.safetensors``, a torch pickle
``.bin``/``.pth``/``.pt`` holding a state dict or a training checkpoint (``model``, ``model_ema``,
``args``, ...), transformers' ``tf_model.h5``, or a keras-applications ``.h5``), tells which library
wrote it (read.py, with each source's entry in sources.py), maps it to the canonical names
(foreign.py), infers the config from the tensors (infer.py), expresses what the tensors do not show
(the source's config, file layout) in that config or refuses it (computation.py, resolve.py), and
this module writes ``config.json``, ``model.safetensors`` and/or ``tf_model.h5`` (transformers' TF
layout, h5.py), and ``preprocessor_config.json`` when the normalisation is known. Everything is
numpy and h5py; pickles are read by an allow-list unpickler (torch_pickle.py).

The folder is built in a temporary sibling and renamed into place, so an error or Ctrl-C leaves
nothing behind; an existing OUTPUT_DIR is kept unless ``overwrite``.

The command-line front end (``convnext convert``, ``tools/convert_weights.py``) and the check that
both twins agree on the result live in the application layer, which calls :func:`convert`.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, TextIO

from ..config import ConvNextConfig
from ..fileio import atomic_directory, atomic_write_text
from ..heads import class_name
from ..licences import MODEL_CARD_NAME, licence_for_converted, write_model_card
from ..hub import PREPROCESSOR_NAME, HubOptions
from ..progress import Progress
from .dinov3_checkpoints import FAMILIES, default_family, to_family
from .h5 import save_hf_tf_h5
from .io import SAFE_WEIGHTS_NAME, TF_WEIGHTS_NAME
from .resolve import Converted, load_converted
from .safetensors_io import write_safetensors

__all__ = ["TARGETS", "ConversionResult", "Converted", "convert", "load_converted"]

TARGETS = ("pt", "tf", "all")


@dataclass
class ConversionResult:
    output_dir: Path
    source_format: str
    config: ConvNextConfig
    head: str
    files: list[str]
    notes: list[str] = field(default_factory=list)
    verify_max_diff: Optional[float] = None


def _write_tf(state: dict, config: ConvNextConfig, head: str, path: Path) -> None:
    save_hf_tf_h5(state, config, path, class_name(config, head))


def convert(input: str | Path, output_dir: str | Path, source: Optional[str] = None, to: str = "all",
            config: str | Path | ConvNextConfig | None = None, overwrite: bool = False,
            verify: Optional[Callable[[Path, list[str]], float]] = None,
            progress: bool = True, stream: Optional[TextIO] = None, ema: bool = False,
            hub_options: Optional[HubOptions] = None, family: Optional[str] = None) -> ConversionResult:
    """Convert INPUT into the hub-layout folder OUTPUT_DIR; see the module docstring.

    INPUT may be a hub id (transformers or timm repo; ``hub_options``: a ``hub.HubOptions``).
    ``to``: ``"pt"`` (model.safetensors), ``"tf"`` (tf_model.h5) or ``"all"``. ``config``: a hub
    config.json (or ConvNextConfig) to use instead of the inferred one (it must fit the weights), or
    a timm config.json (architecture, model_args) describing a bare timm state dict. ``ema``: a
    training checkpoint's EMA weights instead of its model's. ``verify(folder, notes)``: called on the
    finished folder before it is moved into place (the application's check that both twins agree);
    it returns a max difference or raises, leaving nothing. Raises ValueError/OSError subclasses
    naming the file and the problem; a source computing something the hub layout cannot express is
    refused (UnsupportedCheckpointError) with the reason. ``family``: ``"convnext"`` or ``"dinov3"``
    (transformers' DINOv3 ConvNeXt names and config, model.safetensors only); None: the source's
    (dinov3_checkpoints.py).
    """
    if to not in TARGETS:
        raise ValueError(f"--to {to!r} is not one of {', '.join(TARGETS)}")
    output_dir = Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise FileExistsError(f"{output_dir}: already exists; pass --overwrite to replace it")
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"{output_dir}: exists and is not a folder")
    stream = stream if stream is not None else sys.stderr
    if family is not None and family not in FAMILIES:
        raise ValueError(f"--family {family!r} is not one of {', '.join(FAMILIES)}")
    converted = load_converted(input, source, config, hub_options, ema=ema)
    state, cfg, head, notes = converted.state, converted.config, converted.head, converted.notes
    converted.state = {}  # `del state` below must free the arrays
    family = family or default_family(converted.source_format, cfg, converted.timm_pretrained_cfg)
    if family == "dinov3" and to == "tf":
        raise ValueError("--to tf: transformers has no TensorFlow DINOv3 ConvNeXt to read a tf_model.h5; a DINOv3 "
                         "folder holds model.safetensors (both twins read it): use --to pt, or --family convnext")
    source_dir = converted.weights_file.parent if (converted.weights_file.parent / "config.json").is_file() else None
    named = str(Path(input).resolve()) if Path(input).exists() else str(input)  # a hub id stays an id
    licence = licence_for_converted(converted.source_format, cfg.model_type, converted.timm_pretrained_cfg,
                                    source_dir, named)
    state, cfg, head = to_family(state, cfg, head, family, str(converted.weights_file), notes)

    write_pt = to in ("pt", "all")
    write_tf = to in ("tf", "all") and family != "dinov3"
    if write_tf and head == "backbone":
        notes.append("backbone: tf_model.h5 is read by this project's TF twin; transformers has no TF ConvNeXt "
                     "backbone")

    total = int(sum(a.nbytes for a in state.values()))
    files: list[str] = []
    verify_diff = None
    with atomic_directory(output_dir, overwrite=overwrite) as tmp:
        if write_pt:
            with Progress(f"writing {SAFE_WEIGHTS_NAME}", total, stream, enabled=progress) as bar:
                write_safetensors(state, tmp / SAFE_WEIGHTS_NAME, bar)
            files.append(SAFE_WEIGHTS_NAME)
        if write_tf:
            with Progress(f"writing {TF_WEIGHTS_NAME}", total, stream, enabled=progress) as bar:
                _write_tf(state, cfg, head, tmp / TF_WEIGHTS_NAME)
            files.append(TF_WEIGHTS_NAME)
        cfg.save_pretrained(tmp)
        files.append("config.json")
        pre = converted.preprocessor_config
        if pre is not None:
            atomic_write_text(tmp / PREPROCESSOR_NAME, json.dumps(pre, indent=2, sort_keys=True) + "\n")
            files.append(PREPROCESSOR_NAME)
        if write_model_card(tmp, licence, cfg.architectures[0]) is not None:
            files.append(MODEL_CARD_NAME)
            notes.append(f"licence: {licence.label} (README.md); the weights keep the licence of {licence.source}")
        del state
        if verify is not None:
            verify_diff = verify(tmp, notes)
    return ConversionResult(output_dir, converted.source_format, cfg, head, files, notes, verify_diff)

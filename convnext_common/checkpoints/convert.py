"""Convert any ConvNeXt checkpoint in circulation into a hub-layout folder both twins load.

``convert(INPUT, OUTPUT_DIR)`` reads INPUT (a hub folder, ``.safetensors``, a torch pickle
``.bin``/``.pth``/``.pt`` holding a state dict or a training checkpoint (``model``, ``model_ema``,
``args``, ...), transformers' ``tf_model.h5``, or a keras-applications ``.h5``), tells which library
wrote it, maps it to the canonical names (foreign.py), infers the config from the tensors (infer.py),
expresses what the tensors do not show (the source's config, file layout) in that config or refuses
it (computation.py), and writes ``config.json``, ``model.safetensors`` and/or ``tf_model.h5``, and
``preprocessor_config.json`` when the normalisation is known. Everything is numpy; torch is
imported only to unpickle with ``weights_only=True``.

The folder is built in a temporary sibling and renamed into place, so an error or Ctrl-C leaves
nothing behind; an existing OUTPUT_DIR is kept unless ``overwrite``.

The command-line front end (``convnext convert``, ``tools/convert_weights.py``) and the check that
both twins agree on the result live in the application, ``convnext_app.convert``.
"""

from __future__ import annotations

import json
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, TextIO

import numpy as np

from ..config import ConvNextConfig, load_config
from ..fileio import atomic_directory, atomic_write_text
from .computation import Computation, hub_fields
from .detect import detect_format, h5_kind, strip_wrappers
from .foreign import FORMATS, fill_bias_free_convs, to_canonical
from ..heads import class_name
from .infer import check_state_fits, head_of_state, infer_config, trunk_prefix_of
from .io import (EMA_ENTRIES, PT_WEIGHT_FILES, SAFE_WEIGHTS_NAME, TF_WEIGHTS_NAME, CheckpointError,
                 find_weights_file, load_state_dict, load_torch_checkpoint)
from .keras_applications import KerasWeights, normalization_stats, read_keras_h5
from .preprocessing import fit_to_channels, imagenet_preprocessor_config
from ..progress import Progress
from .safetensors_io import map_safetensors, write_safetensors
from .timm_config import (TimmHubConfig, is_timm_config, read_timm_hub_config, timm_computation,
                          timm_train_config)

TARGETS = ("pt", "tf", "all")
#: torch pickles (state dicts or training checkpoints); other files are told by their content.
PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt")
PREPROCESSOR_NAME = "preprocessor_config.json"


@dataclass
class ConversionResult:
    output_dir: Path
    source_format: str
    config: ConvNextConfig
    head: str
    files: list[str]
    notes: list[str] = field(default_factory=list)
    verify_max_diff: Optional[float] = None


@dataclass
class _Input:
    state: dict
    fmt: str
    weights_file: Path
    hub_dir: Optional[Path] = None          # a hub-layout folder: its config.json and preprocessor config
    keras: Optional[KerasWeights] = None    # a keras-applications file: the roles of its other layers
    timm: Optional[TimmHubConfig] = None    # a timm hub folder's config.json
    entry: Optional[str] = None             # the training checkpoint's entry the weights came from
    other_entries: list[str] = field(default_factory=list)


# --- reading -------------------------------------------------------------------------------------
def read_input(path: str | Path, source: Optional[str] = None, config: Optional[ConvNextConfig] = None,
               ema: bool = False) -> _Input:
    """Load INPUT's tensors and tell its format (``source`` overrides the detection); ``ema`` takes a
    training checkpoint's EMA weights instead of its model's. A timm hub folder's config.json is read
    with them (``_Input.timm``)."""
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
        kind = h5_kind(file)
        if source is not None and source != kind:
            raise CheckpointError(f"{file}: --from {source} given, but this h5 file is a "
                                  f"{'keras-applications' if kind == 'keras' else 'transformers tf_model.h5'} file")
        if kind == "keras":
            keras = read_keras_h5(file)
            return _Input(keras.weights, "keras", file, None, keras)
        from .h5 import load_h5_state_dict  # transformers' TF layout -> canonical names

        if config is None and hub_dir is not None and (hub_dir / "config.json").is_file():
            config = load_config(hub_dir)
        return _Input(dict(load_h5_state_dict(file, config=config)), "hf", file, hub_dir)
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
    timm = None
    if fmt == "timm" and hub_dir is not None and _is_timm_config_file(hub_dir / "config.json"):
        timm = read_timm_hub_config(hub_dir / "config.json")
    elif fmt == "timm" and ckpt is not None and ckpt.architecture is not None:
        timm = timm_train_config(ckpt, file)
    return _Input(state, fmt, file, hub_dir, None, timm, ckpt.entry if ckpt else None,
                  ckpt.other_entries if ckpt else [])


def _is_timm_config_file(path: Path) -> bool:
    try:
        return path.is_file() and is_timm_config(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False


# --- writing -------------------------------------------------------------------------------------
def _write_tf(state: dict, config: ConvNextConfig, head: str, path: Path) -> None:
    from .h5 import save_hf_tf_h5  # transformers' TF layout, written with h5py

    save_hf_tf_h5(state, config, path, "TF" + class_name(config, head))


# --- the conversion --------------------------------------------------------------------------------
@dataclass
class _UserConfig:
    """What ``--config`` stated: a hub config.json (or ConvNextConfig), or a timm config.json."""

    hub: Optional[ConvNextConfig] = None
    timm: Optional[TimmHubConfig] = None
    label: str = "the given config"


def _read_user_config(config: str | Path | ConvNextConfig | None) -> _UserConfig:
    if config is None or isinstance(config, ConvNextConfig):
        return _UserConfig(hub=config)
    if _is_timm_config_file(Path(config)):
        return _UserConfig(timm=read_timm_hub_config(config), label=str(config))
    return _UserConfig(hub=load_config(config), label=str(config))


def _computation(inp: _Input, state: dict, user: _UserConfig) -> Optional[Computation]:
    """What the source computes beyond its tensors (None for a transformers checkpoint, whose config
    is already in hub terms)."""
    source = str(inp.weights_file)
    if inp.fmt == "timm":
        stated = user.timm or inp.timm
        patch = int(np.shape(state[trunk_prefix_of(state) + "embeddings.patch_embeddings.weight"])[-1]) \
            if trunk_prefix_of(state) + "embeddings.patch_embeddings.weight" in state else 4
        if stated is None:
            return timm_computation(None, {}, patch, source)
        return timm_computation(stated.architecture, stated.model_args, patch, str(stated.path))
    if inp.fmt == "keras" and inp.keras is not None:
        comp = Computation()
        if not inp.keras.top:
            comp.state("pooling", inp.keras.pooling, f"{source} (include_top=False, pooling="
                                                       f"{inp.keras.pooling!r} from its layers)")
        return comp
    if inp.fmt in ("official", "torchvision"):
        return Computation()  # GELU, LayerNorm eps 1e-6, average pooling: fixed in their code
    return None


def _resolve_config(inp: _Input, state: dict, user: _UserConfig, notes: list[str]) -> ConvNextConfig:
    """The config of the converted folder; every fact of the source is expressed in it or refused."""
    source = str(inp.weights_file)
    comp = _computation(inp, state, user)
    if user.hub is not None:
        config, label = user.hub, f"{source} with {user.label}"
        if comp is not None:  # the user's config states the activation and final eps; the rest must hold
            hub_fields(comp, source, stated=frozenset({"hidden_act", "layer_norm_eps"}))
    elif inp.fmt == "hf" and inp.hub_dir is not None and (inp.hub_dir / "config.json").is_file():
        config, label = load_config(inp.hub_dir), f"{source} with {inp.hub_dir / 'config.json'}"
    else:
        fields = hub_fields(comp, source) if comp is not None else {"layer_norm_eps": 1e-12}
        config, label = infer_config(state, source, layer_norm_eps=fields["layer_norm_eps"]), source
        if "hidden_act" in fields:
            config.hidden_act = fields["hidden_act"]
        _apply_timm_metadata(config, head_of_state(state), user.timm or inp.timm, notes)
        notes.append(f"config inferred from the weights: {config.model_type}, depths {config.depths}, "
                     f"hidden_sizes {config.hidden_sizes}, {_head_summary(config, head_of_state(state))}"
                     + (f", hidden_act {config.hidden_act}" if config.hidden_act != "gelu" else ""))
    _fill_final_norm(state, config, notes)
    check_state_fits(state, config, label)
    return config


def _head_summary(config: ConvNextConfig, head: str) -> str:
    if head == "classification":
        return f"{config.num_labels} labels"
    if head == "backbone":
        return f"backbone ({', '.join(config.out_features)})"
    return "base model (no classifier)"


def _apply_timm_metadata(config: ConvNextConfig, head: str, timm: Optional[TimmHubConfig], notes: list[str]) -> None:
    """A timm config's num_classes must agree with the weights; its label names become id2label and
    its evaluation input size the config's image_size."""
    if timm is None:
        return
    if timm.preprocessor is not None:
        config.image_size = timm.preprocessor["size"]["shortest_edge"]
    classes = config.num_labels if head == "classification" else 0
    if timm.num_classes is not None and timm.num_classes != classes:
        raise CheckpointError(f"{timm.path}: num_classes is {timm.num_classes} but the weights have "
                              f"{classes} classes")
    if timm.label_names is not None and classes:
        if len(timm.label_names) != config.num_labels:
            notes.append(f"{timm.path}: {len(timm.label_names)} label_names for {config.num_labels} classes; ignored")
            return
        config.id2label = dict(enumerate(timm.label_names))
        config.label2id = {name: i for i, name in config.id2label.items()}


def _fill_final_norm(state: dict, config: ConvNextConfig, notes: list[str]) -> None:
    """A base model saved without its final norm (timm's fcmae weights, a trunk saved alone): the
    source library's model still has that LayerNorm, at its initial weights (ones, zeros), which is
    what is written; last_hidden_state does not pass through it."""
    if head_of_state(state) != "base":
        return
    name = trunk_prefix_of(state) + "layernorm.weight"
    if name in state:
        return
    c = config.hidden_sizes[-1]
    state[name] = np.ones((c,), np.float32)
    state[name[: -len("weight")] + "bias"] = np.zeros((c,), np.float32)
    notes.append("the checkpoint has no final norm: wrote it at its initial weights (ones, zeros), as the "
                 "source library's model has it")


def _entry_notes(inp: _Input, notes: list[str]) -> None:
    if inp.entry is None:
        return
    notes.append(f"read the training checkpoint's '{inp.entry}' entry")
    ema = [k for k in inp.other_entries if k in EMA_ENTRIES]
    if ema and inp.entry not in EMA_ENTRIES:
        notes.append(f"it also holds EMA weights ('{ema[0]}'): --ema converts those")


@dataclass
class Converted:
    """A checkpoint in canonical names with its config and preprocessing: what :func:`convert` writes."""

    state: dict
    config: ConvNextConfig
    head: str
    source_format: str
    weights_file: Path
    preprocessor_config: Optional[dict]
    notes: list[str]


def _local_input(input: str | Path, hub_options=None) -> Path:
    """INPUT itself, or for a hub id the cached snapshot folder holding its config and one weights file."""
    from ..hub import is_hub_id, model_folder

    if Path(input).exists() or not is_hub_id(input):
        return Path(input)
    from ..pretrained import check_convnext_config

    return model_folder(input, PT_WEIGHT_FILES + (TF_WEIGHTS_NAME,), hub_options, check_convnext_config)


def load_converted(input: str | Path, source: Optional[str] = None,
                   config: str | Path | ConvNextConfig | None = None, hub_options=None,
                   ema: bool = False) -> Converted:
    """Read INPUT (a path or a hub id) and map it to canonical names and a config, in memory."""
    user = _read_user_config(config)
    inp = read_input(_local_input(input, hub_options), source, user.hub, ema=ema)
    notes: list[str] = []
    _entry_notes(inp, notes)
    state = to_canonical(inp.state, inp.fmt, str(inp.weights_file), consume=True)
    inp.state = {}  # the canonical dict now owns the arrays
    filled = fill_bias_free_convs(state)
    if filled:
        notes.append(f"the {filled} spatial convolutions have no bias (timm conv_bias=False): written as zero biases")
    cfg = _resolve_config(inp, state, user, notes)
    head = head_of_state(state)
    if cfg.architectures is None:
        cfg.architectures = [class_name(cfg, head)]
    return Converted(state, cfg, head, inp.fmt, inp.weights_file, _preprocessor_config(inp, cfg, notes), notes)


def convert(input: str | Path, output_dir: str | Path, source: Optional[str] = None, to: str = "all",
            config: str | Path | ConvNextConfig | None = None, overwrite: bool = False,
            verify: Optional[Callable[[Path, list[str]], float]] = None,
            progress: bool = True, stream: Optional[TextIO] = None, ema: bool = False,
            hub_options=None) -> ConversionResult:
    """Convert INPUT into the hub-layout folder OUTPUT_DIR; see the module docstring.

    INPUT may be a hub id (transformers or timm repo; ``hub_options``: a ``hub.HubOptions``).
    ``to``: ``"pt"`` (model.safetensors), ``"tf"`` (tf_model.h5) or ``"all"``. ``config``: a hub
    config.json (or ConvNextConfig) to use instead of the inferred one (it must fit the weights), or
    a timm config.json (architecture, model_args) describing a bare timm state dict. ``ema``: a
    training checkpoint's EMA weights instead of its model's. ``verify(folder, notes)``: called on the
    finished folder before it is moved into place (the application's check that both twins agree,
    ``convnext_app.convert.verify_folder``); it returns a max difference or raises, leaving nothing. Raises ValueError/OSError subclasses
    naming the file and the problem; a source computing something the hub layout cannot express is
    refused (UnsupportedCheckpointError) with the reason.
    """
    if to not in TARGETS:
        raise ValueError(f"--to {to!r} is not one of {', '.join(TARGETS)}")
    output_dir = Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise FileExistsError(f"{output_dir}: already exists; pass --overwrite to replace it")
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"{output_dir}: exists and is not a folder")
    stream = stream if stream is not None else sys.stderr
    converted = load_converted(input, source, config, hub_options, ema=ema)
    state, cfg, head, notes = converted.state, converted.config, converted.head, converted.notes
    converted.state = {}  # `del state` below must free the arrays

    write_pt = to in ("pt", "all")
    write_tf = to in ("tf", "all")
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
        del state
        if verify is not None:
            verify_diff = verify(tmp, notes)
    return ConversionResult(output_dir, converted.source_format, cfg, head, files, notes, verify_diff)


def _preprocessor_config(inp: _Input, config: ConvNextConfig, notes: list[str]) -> Optional[dict]:
    """A hub folder's own preprocessor config verbatim; for a foreign source, its normalisation with
    one mean and std per input channel."""
    if inp.fmt == "hf":
        if inp.hub_dir is None or not (inp.hub_dir / PREPROCESSOR_NAME).is_file():
            return None
        text = (inp.hub_dir / PREPROCESSOR_NAME).read_text(encoding="utf-8")
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{inp.hub_dir / PREPROCESSOR_NAME}: not valid JSON ({e.msg})") from None
    if inp.fmt == "keras" and inp.keras is not None:
        if not inp.keras.preprocessing:
            notes.append("the keras model has no input Normalization layer (include_preprocessing=False): no "
                         "preprocessor_config.json written; it takes the inputs its training pipeline made")
            return None
        pre = imagenet_preprocessor_config(*normalization_stats(inp.keras.normalization))
    elif inp.fmt == "timm" and inp.timm is not None and inp.timm.preprocessor is not None:
        pre = inp.timm.preprocessor
    else:
        pre = imagenet_preprocessor_config()  # the ImageNet ConvNeXts of these libraries use it
    return fit_to_channels(pre, config.num_channels, notes)

"""Convert any ConvNeXt checkpoint in circulation into a hub-layout folder both twins load: the
converter's steps, each a function of this module.

``convert(INPUT, OUTPUT_DIR)`` reads INPUT (a hub folder or id, ``.safetensors``, a torch pickle
``.bin``/``.pth``/``.pt`` holding a state dict or a training checkpoint (``model``, ``model_ema``,
``args``, ...), transformers' ``tf_model.h5``, or a keras-applications ``.h5``), then:

1. read (:func:`read_input`): the tensors in their source's names, with what the source keeps
   beside them (a timm folder's config.json, a training checkpoint's entries);
2. identify (:func:`identify_h5`, :func:`detect_format`): which source wrote it, from an h5 file's
   layout or from the tensor names (each source's ``signature``), unless the caller said it;
3. map (:func:`to_canonical`): the source's refusals, then its rules rename every tensor and change
   its layout;
4. infer (:func:`resolve_config`): the config from the tensors (canonical.py), each fact of the
   source that the tensors do not show expressed in that config or refused (computation.py);
5. write (:func:`convert`): ``config.json``, ``model.safetensors`` and/or ``tf_model.h5``
   (transformers' TF layout, formats/tf_h5.py), ``preprocessor_config.json`` when the normalisation
   is known, and a model card when the weights carry a licence.

Steps 1-4 are :func:`load_converted`, in memory (``from_pretrained`` of a timm folder uses it too).
Every decision particular to a source is its entry in ``sources/``; this module asks the entries and
names no source (timm's config.json, which the ``config`` argument may be, and timm's bias-free
convolutions are read and filled by sources/timm.py's functions). Everything is numpy and h5py;
pickles are read by an allow-list unpickler (formats/torch_pickle.py).

The folder is built in a temporary sibling and renamed into place, so an error or Ctrl-C leaves
nothing behind; an existing OUTPUT_DIR is kept unless ``overwrite``. The command-line front end
(``convnext convert``, ``tools/convert_weights.py``) and the check that both twins agree on the
result live in the application layer, which calls :func:`convert`.
"""

from __future__ import annotations

import json
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, MutableMapping, Optional, TextIO

import numpy as np

from ..config import ConvNextConfig, load_config
from ..fileio import atomic_directory, atomic_write_text
from ..heads import MASKED_IMAGE_MODELING, class_name
from ..hub import PREPROCESSOR_NAME, HubOptions, is_hub_id, model_folder
from ..licences import MODEL_CARD_NAME, licence_for_converted, write_model_card
from ..progress import Progress
from .canonical import check_state_fits, head_of_state, infer_config, trunk_prefix_of
from .computation import hub_fields
from .errors import CheckpointError, UnsupportedCheckpointError
from .formats import keras_h5
from .formats.files import PT_WEIGHT_FILES, SAFE_WEIGHTS_NAME, TF_WEIGHTS_NAME, find_weights_file, load_state_dict
from .formats.safetensors import map_safetensors, write_safetensors
from .formats.tf_h5 import save_hf_tf_h5
from .formats.torch_pickle import EMA_ENTRIES, load_torch_checkpoint
from .sources import FORMATS, SOURCES, Source, SourceCheckpoint, get_source
from .sources.dinov3 import FAMILIES, default_family, to_family
from .sources.rules import LAYOUTS, apply_rules
from .sources.timm import (
    TimmHubConfig, apply_hub_config, fill_bias_free_convs, is_timm_config_file, read_timm_hub_config,
)

__all__ = ["TARGETS", "ConversionResult", "convert", "Converted", "load_converted", "local_input", "read_input",
           "identify_h5", "strip_wrappers", "detect_format", "canonical_name", "to_canonical", "resolve_config"]

#: torch pickles (state dicts or training checkpoints); other files are told by their content.
PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt")
#: wrappers that training scripts put around a state dict's names.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
#: bookkeeping tensors a wrapper keeps beside the wrapped names: torch.optim.swa_utils.AveragedModel
#: (torchvision's EMA) counts its updates in ``n_averaged``.
WRAPPER_BOOKKEEPING = {"module.": ("n_averaged",)}


# --- 1. read ----------------------------------------------------------------------------------------
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
        raise ValueError(f"source={source!r} is not one of {', '.join(FORMATS)}")
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
        raise CheckpointError(f"{file}: ema=True reads a training checkpoint (.pth/.pt/.bin); this file holds one "
                              f"set of weights")
    if suffix in (".h5", ".hdf5"):
        kind = identify_h5(file)
        if source is not None and source != kind.name:
            raise CheckpointError(f'{file}: source="{source}" given, but this h5 file is a {kind.library} file')
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


def strip_wrappers(state: dict) -> dict:
    """Remove a ``module.`` (DataParallel, AveragedModel) or ``_orig_mod.`` (torch.compile) prefix shared by
    every name (a wrapper's bookkeeping tensors are dropped with it)."""
    for prefix in WRAPPER_PREFIXES:
        names = [k for k in state if k not in WRAPPER_BOOKKEEPING.get(prefix, ())]
        if names and all(k.startswith(prefix) for k in names):
            state = {k[len(prefix):]: state[k] for k in names}
    return state


# --- 2. identify --------------------------------------------------------------------------------------
def identify_h5(path: str | Path) -> Source:
    """The source whose HDF5 layout ``path`` has (each source's ``h5_layout``): transformers' tf_model.h5
    nests every weight under the model's main layer (``convnext/.../stages.0/layers.0/...``),
    keras-applications has one top-level group per layer, in a ``save_weights`` file or under the
    ``model_weights`` group of a whole-model ``save``. CheckpointError naming the file otherwise."""
    path = Path(path)
    names = keras_h5.layer_names(path)
    for src in SOURCES:
        if src.h5_layout is not None and src.h5_layout(path, names):
            return src
    raise CheckpointError(f"{path}: an HDF5 file but neither transformers' tf_model.h5 nor a keras-applications "
                          f"ConvNeXt (top-level layers: {', '.join(names[:5]) or 'none'})")


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
            f"checkpoint in a known layout? Pass source=\"{'|'.join(FORMATS)}\" to say it")
    return best


# --- 3. map -------------------------------------------------------------------------------------------
def _check_refusals(state: Mapping[str, np.ndarray], src: Source, source: str) -> None:
    for refusal in src.refusals:
        regex = re.compile(refusal.pattern)
        for name, array in state.items():
            if regex.fullmatch(name) and (refusal.when is None or refusal.when(array)):
                raise UnsupportedCheckpointError(f"{source}: cannot convert: {name} means {refusal.reason}")
    # RMSNorm and friends: a norm with a scale but no shift.
    for name in state:
        if src.norms_have_bias and name.endswith("norm.weight"):
            if name[: -len("weight")] + "bias" not in state:
                raise UnsupportedCheckpointError(
                    f"{source}: cannot convert: {name} has no bias (an RMSNorm or a bias-free LayerNorm); "
                    f"a hub-layout ConvNeXt uses LayerNorm with a bias")


def canonical_name(name: str, fmt: str, trunk: str) -> tuple[str, str] | None:
    """(canonical name, layout) for a source name, or None when no rule of ``fmt`` matches it."""
    return apply_rules(get_source(fmt).rules, name, trunk)


def _uses_grn(state: Mapping[str, np.ndarray]) -> bool:
    return any(".grn." in k or "_grn/" in k for k in state)


def _has_head(state: Mapping[str, np.ndarray], fmt: str) -> bool:
    """Whether some tensor maps to ``classifier.weight`` under the rules of ``fmt``."""
    return any((canonical_name(k, fmt, "") or ("",))[0] == "classifier.weight" for k in state)


def to_canonical(state: MutableMapping[str, np.ndarray], fmt: str, source: str = "checkpoint",
                 consume: bool = False) -> dict[str, np.ndarray]:
    """Rename and re-lay-out a ``fmt`` checkpoint into canonical names.

    A checkpoint with a classifier becomes ``convnext.*`` / ``convnextv2.*`` (V2 when it has GRN)
    plus ``classifier.*``; one without keeps the trunk unprefixed, like transformers' base
    ``ConvNextModel``. With ``consume``, source arrays are removed from ``state`` as they are
    converted, so a transposed copy never coexists with its original (peak memory stays near
    one checkpoint). Raises CheckpointError listing the names no rule covers.
    """
    src = get_source(fmt)
    if not src.rules:
        return dict(state)  # already canonical
    _check_refusals(state, src, source)
    trunk = ("convnextv2." if _uses_grn(state) else "convnext.") if _has_head(state, fmt) else ""
    plan: list[tuple[str, str, str]] = []
    unknown: list[str] = []
    for name in list(state):
        target = canonical_name(name, fmt, trunk)
        if target is None:
            unknown.append(name)
        else:
            plan.append((name, *target))
    if unknown:
        shown = ", ".join(unknown[:8]) + (f", ... ({len(unknown) - 8} more)" if len(unknown) > 8 else "")
        raise CheckpointError(f"{source}: {len(unknown)} tensors are not part of a ConvNeXt in {fmt} layout: {shown}")
    seen: dict[str, str] = {}
    for name, target, _ in plan:
        if target in seen:
            raise CheckpointError(f"{source}: {seen[target]} and {name} both map to {target}")
        seen[target] = name
    out: dict[str, np.ndarray] = {}
    for name, target, layout in plan:
        array = state.pop(name) if consume else state[name]
        try:
            out[target] = LAYOUTS[layout](np.asarray(array))
        except ValueError as e:
            raise CheckpointError(f"{source}: {name}: {e}") from None
    return out


# --- 4. infer -----------------------------------------------------------------------------------------
@dataclass
class UserConfig:
    """What the ``config`` argument stated: a hub config.json (or ConvNextConfig), or a timm config.json."""

    hub: Optional[ConvNextConfig] = None
    timm: Optional[TimmHubConfig] = None
    label: str = "the given config"


def read_user_config(config: str | Path | ConvNextConfig | None) -> UserConfig:
    if config is None or isinstance(config, ConvNextConfig):
        return UserConfig(hub=config)
    if is_timm_config_file(Path(config)):
        return UserConfig(timm=read_timm_hub_config(config), label=str(config))
    return UserConfig(hub=load_config(config), label=str(config))


def resolve_config(inp: SourceCheckpoint, state: dict, user: UserConfig, notes: list[str]) -> ConvNextConfig:
    """The config of the converted folder; every fact of the source is expressed in it or refused."""
    source = str(inp.weights_file)
    comp = get_source(inp.fmt).computation(inp, state, user.timm)
    if user.hub is not None:
        config, label = user.hub, f"{source} with {user.label}"
        if comp is not None:  # the user's config states the activation and final eps; the rest must hold
            hub_fields(comp, source, stated=frozenset({"hidden_act", "layer_norm_eps"}))
    elif comp is None and inp.hub_dir is not None and (inp.hub_dir / "config.json").is_file():
        config, label = load_config(inp.hub_dir), f"{source} with {inp.hub_dir / 'config.json'}"
    else:
        fields = hub_fields(comp, source) if comp is not None else {"layer_norm_eps": 1e-12}
        config, label = infer_config(state, source, layer_norm_eps=fields["layer_norm_eps"]), source
        if "hidden_act" in fields:
            config.hidden_act = fields["hidden_act"]
        apply_hub_config(config, head_of_state(state), user.timm or inp.timm, notes)
        notes.append(f"config inferred from the weights: {config.model_type}, depths {config.depths}, "
                     f"hidden_sizes {config.hidden_sizes}, {_head_summary(config, head_of_state(state))}"
                     + (f", hidden_act {config.hidden_act}" if config.hidden_act != "gelu" else ""))
    _fill_final_norm(state, config, notes)
    check_state_fits(state, config, label)
    return config


def _head_summary(config: ConvNextConfig, head: str) -> str:
    if head == MASKED_IMAGE_MODELING:
        return (f"masked-image model (FCMAE decoder: {config.decoder_num_hidden_layers} block(s) of "
                f"{config.decoder_hidden_size})")
    if head == "classification":
        return f"{config.num_labels} labels"
    if head == "backbone":
        return f"backbone ({', '.join(config.out_features)})"
    return "base model (no classifier)"


def _fill_final_norm(state: dict, config: ConvNextConfig, notes: list[str]) -> None:
    """A base model saved without its final norm (timm's fcmae weights, a trunk saved alone): the
    source library's model still has that LayerNorm, at its initial weights (ones, zeros), which is
    what is written; last_hidden_state does not pass through it."""
    if head_of_state(state) not in ("base", MASKED_IMAGE_MODELING):
        return
    name = trunk_prefix_of(state) + "layernorm.weight"
    if name in state:
        return
    c = config.hidden_sizes[-1]
    state[name] = np.ones((c,), np.float32)
    state[name[: -len("weight")] + "bias"] = np.zeros((c,), np.float32)
    notes.append("the checkpoint has no final norm: wrote it at its initial weights (ones, zeros), as the "
                 "source library's model has it")


# --- 1-4 together, in memory ---------------------------------------------------------------------------------
@dataclass
class Converted:
    """A checkpoint in canonical names with its config and preprocessing: what ``convert`` writes."""

    state: dict
    config: ConvNextConfig
    head: str
    source_format: str
    weights_file: Path
    preprocessor_config: Optional[dict]
    notes: list[str]
    timm_pretrained_cfg: Optional[dict] = None  # a timm source's pretrained_cfg (its tag, licence)


def _entry_notes(inp: SourceCheckpoint, notes: list[str]) -> None:
    if inp.entry is None:
        return
    notes.append(f"read the training checkpoint's '{inp.entry}' entry")
    ema = [k for k in inp.other_entries if k in EMA_ENTRIES]
    if ema and inp.entry not in EMA_ENTRIES:
        notes.append(f"it also holds EMA weights ('{ema[0]}'): ema=True converts those")


def load_converted(input: str | Path, source: Optional[str] = None,
                   config: str | Path | ConvNextConfig | None = None, hub_options: Optional[HubOptions] = None,
                   ema: bool = False) -> Converted:
    """Read INPUT (a path or a hub id) and map it to canonical names and a config, in memory."""
    user = read_user_config(config)
    inp = read_input(local_input(input, hub_options), source, user.hub, ema=ema)
    notes: list[str] = []
    _entry_notes(inp, notes)
    state = to_canonical(inp.state, inp.fmt, str(inp.weights_file), consume=True)
    inp.state = {}  # the canonical dict now owns the arrays
    filled = fill_bias_free_convs(state)
    if filled:
        notes.append(f"the {filled} spatial convolutions have no bias (timm conv_bias=False): written as zero biases")
    cfg = resolve_config(inp, state, user, notes)
    head = head_of_state(state)
    if cfg.architectures is None:
        cfg.architectures = [class_name(cfg, head)]
    timm = user.timm or inp.timm
    preprocessor = get_source(inp.fmt).preprocessor(inp, cfg.num_channels, notes)
    return Converted(state, cfg, head, inp.fmt, inp.weights_file, preprocessor, notes,
                     timm.pretrained_cfg if timm is not None else None)


# --- 5. write -------------------------------------------------------------------------------------------
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
    (sources/dinov3.py).
    """
    if to not in TARGETS:
        raise ValueError(f"to={to!r} is not one of {', '.join(TARGETS)}")
    output_dir = Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise FileExistsError(f"{output_dir}: already exists; pass overwrite=True to replace it")
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"{output_dir}: exists and is not a folder")
    stream = stream if stream is not None else sys.stderr
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family={family!r} is not one of {', '.join(FAMILIES)}")
    converted = load_converted(input, source, config, hub_options, ema=ema)
    state, cfg, head, notes = converted.state, converted.config, converted.head, converted.notes
    converted.state = {}  # `del state` below must free the arrays
    family = family or default_family(converted.source_format, cfg, converted.timm_pretrained_cfg)
    if family == "dinov3" and to == "tf":
        raise ValueError('to="tf": transformers has no TensorFlow DINOv3 ConvNeXt to read a tf_model.h5; a DINOv3 '
                         'folder holds model.safetensors (both twins read it): use to="pt", or family="convnext"')
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

"""The converter's second step: the source's tensors in canonical names, and the config and
preprocessing of the converted folder, each fact of the source expressed in the config or refused
(computation.py); in memory, nothing written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..config import ConvNextConfig, load_config
from ..heads import MASKED_IMAGE_MODELING, class_name
from ..hub import HubOptions
from .computation import hub_fields
from .errors import CheckpointError
from .foreign import fill_bias_free_convs, to_canonical
from .infer import check_state_fits, head_of_state, infer_config, trunk_prefix_of
from .io import EMA_ENTRIES
from .read import local_input, read_input
from .sources import SourceCheckpoint, get_source, is_timm_config_file
from .timm_config import TimmHubConfig, read_timm_hub_config


@dataclass
class UserConfig:
    """What ``--config`` stated: a hub config.json (or ConvNextConfig), or a timm config.json."""

    hub: Optional[ConvNextConfig] = None
    timm: Optional[TimmHubConfig] = None
    label: str = "the given config"


def read_user_config(config: str | Path | ConvNextConfig | None) -> UserConfig:
    if config is None or isinstance(config, ConvNextConfig):
        return UserConfig(hub=config)
    if is_timm_config_file(Path(config)):
        return UserConfig(timm=read_timm_hub_config(config), label=str(config))
    return UserConfig(hub=load_config(config), label=str(config))


def _resolve_config(inp: SourceCheckpoint, state: dict, user: UserConfig, notes: list[str]) -> ConvNextConfig:
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
        _apply_timm_metadata(config, head_of_state(state), user.timm or inp.timm, notes)
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


def _entry_notes(inp: SourceCheckpoint, notes: list[str]) -> None:
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
    timm_pretrained_cfg: Optional[dict] = None  # a timm source's pretrained_cfg (its tag, licence)


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
    cfg = _resolve_config(inp, state, user, notes)
    head = head_of_state(state)
    if cfg.architectures is None:
        cfg.architectures = [class_name(cfg, head)]
    timm = user.timm or inp.timm
    preprocessor = get_source(inp.fmt).preprocessor(inp, cfg.num_channels, notes)
    return Converted(state, cfg, head, inp.fmt, inp.weights_file, preprocessor, notes,
                     timm.pretrained_cfg if timm is not None else None)

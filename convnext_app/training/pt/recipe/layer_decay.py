"""Layer-wise learning-rate decay for ConvNeXt, with the official layer ids (facebookresearch ConvNeXt
and ConvNeXt-V2 ``optim_factory`` / ``utils``), read on the canonical parameter names:

- "group" (``get_num_layer_for_convnext``, 12 + 2 ids, laid out for depths [3, 3, 27, 3]): the stem
  -> 0; stage 0 blocks -> 1, stage 1 (its downsampling and blocks) -> 2; stage 2's downsampling -> 3
  and its block j -> 3 + j // 3; stage 3 (downsampling and blocks) -> 12; everything else (the
  pooled norm, the head) -> 13.
- "single" (``get_num_layer_for_convnext_single``, sum(depths) + 2 ids): the stem -> 1 (as the
  official code: ``sum(depths[:0]) + 1``), stage s's downsampling -> sum(depths[:s]) + 1, its block
  j -> sum(depths[:s]) + j + 1, everything else -> sum(depths) + 1.

A parameter of layer id i learns at ``lr * rate ** (num_layers + 1 - i)``."""

from __future__ import annotations

import re
from typing import Sequence

from torch import nn

LAYER_DECAY_TYPES = ("group", "single")
_GROUP_LAYERS = 12
_STAGE = re.compile(r"^(?:convnext|convnextv2)\.encoder\.stages\.(\d+)\.(downsampling_layer|layers\.(\d+))")
_STEM = re.compile(r"^(?:convnext|convnextv2)\.embeddings\.")


def num_layer_groups(depths: Sequence[int], kind: str = "group") -> int:
    """``num_layers`` of the official formula (the head's id is ``num_layers + 1``)."""
    return _GROUP_LAYERS if kind == "group" else sum(depths)


def layer_id(name: str, depths: Sequence[int], kind: str = "group") -> int:
    """The official layer id of the parameter ``name`` (canonical names, DESIGN.md)."""
    head = num_layer_groups(depths, kind) + 1
    if _STEM.match(name):
        return 0 if kind == "group" else 1
    found = _STAGE.match(name)
    if found is None:
        return head
    stage = int(found.group(1))
    block = None if found.group(3) is None else int(found.group(3))
    if kind == "single":
        return sum(depths[:stage]) + 1 + (0 if block is None else block)
    if stage in (0, 1):
        return stage + 1
    if stage == 2:
        return 3 + (0 if block is None else block // 3)
    return _GROUP_LAYERS  # stage 3 and any later one


def layer_decay_groups(model: nn.Module, rate: float, weight_decay: float, no_decay,
                       kind: str = "group") -> list[dict]:
    """AdamW parameter groups, one per (layer id, weight decay or not), each with its ``lr_scale``;
    ``no_decay(name, param)`` says which parameters get no weight decay."""
    depths = list(model.config.depths)
    num_layers = num_layer_groups(depths, kind)
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lid = layer_id(name, depths, kind)
        decays = not no_decay(name, param)
        group = groups.setdefault((lid, decays), {
            "params": [], "weight_decay": weight_decay if decays else 0.0,
            "lr_scale": rate ** (num_layers + 1 - lid), "name": f"layer_{lid}_{'decay' if decays else 'no_decay'}"})
        group["params"].append(param)
    return [groups[k] for k in sorted(groups)]

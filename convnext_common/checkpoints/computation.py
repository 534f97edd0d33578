"""What a source checkpoint computes beyond its tensor shapes, and the one rule that maps it onto the
hub layout or refuses it.

A checkpoint's tensors tell depths, widths, kernels, heads, V1/V2 and layer scale (canonical.py). They do
not tell the activation, the norms' kind and epsilon, the pooling, or whether a stage dilates its
convolutions instead of striding them; those come from the file's layout or the config beside it,
each reader stating them here as a ``Computation`` with the place it read each one. ``hub_fields``
is the only place that decides: every fact is either expressed by a hub config field
(``hidden_act``, ``layer_norm_eps``) or refused with a one-line reason naming the fact and where it
was read. A fact nobody stated keeps the value all of timm's defaults, the official repos,
torchvision and keras-applications share: GELU (erf), LayerNorm with eps 1e-6 everywhere, average
pooling then the final norm, stride 4 stem and stride 2 stages without dilation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..architecture import NORM_EPS
from ..config import SUPPORTED_ACTIVATIONS
from .errors import UnsupportedCheckpointError

#: the pooling the hub layout performs before its final LayerNorm.
HUB_POOLING = "avg"
#: the norm the hub layout uses everywhere.
HUB_NORM = "layernorm"


@dataclass
class Computation:
    """The computation a source checkpoint describes, in neutral terms.

    ``activation`` is a transformers ``hidden_act`` name where the source's activation has one, else
    the source's own name (which ``hub_fields`` refuses). ``pooling`` is ``None`` when the final norm
    runs on every pixel of the last feature map. ``stage_dilations`` lists, per stage, the dilation
    the source uses in place of a stride (all 1 in the hub layout).
    """

    activation: str = "gelu"
    norm: str = HUB_NORM
    norm_eps: float = NORM_EPS
    final_norm_eps: float = NORM_EPS
    pooling: Optional[str] = HUB_POOLING
    stage_dilations: tuple[int, ...] = ()
    first_stage_stride: int = 1
    origin: dict[str, str] = field(default_factory=dict)
    #: (where, what) for settings the reader could not interpret: never guessed, always refused
    unknown: list[tuple[str, str]] = field(default_factory=list)

    def state(self, fact: str, value, origin: str) -> None:
        """Record ``fact = value`` as read from ``origin`` (a file and field, for the refusal message)."""
        setattr(self, fact, value)
        self.origin[fact] = origin


def hub_fields(comp: Computation, source: str, stated: frozenset[str] = frozenset()) -> dict:
    """The hub config fields that express ``comp``, or UnsupportedCheckpointError naming the first
    fact the hub layout cannot express. ``stated``: hub fields the user's own config fixes (their
    value wins, so the matching fact is not checked)."""

    def refuse(fact: str, reason: str):
        where = comp.origin.get(fact)
        raise UnsupportedCheckpointError(f"{source}: cannot convert: {where + ': ' if where else ''}{reason}")

    for where, what in comp.unknown:
        raise UnsupportedCheckpointError(f"{source}: cannot convert: {where}: {what}")
    fields: dict = {}
    if "hidden_act" not in stated:
        if comp.activation not in SUPPORTED_ACTIVATIONS:
            refuse("activation", f"activation {comp.activation!r} has no equivalent among the hub layout's "
                                 f"(hidden_act: {', '.join(SUPPORTED_ACTIVATIONS)})")
        fields["hidden_act"] = comp.activation
    if comp.norm != HUB_NORM:
        refuse("norm", f"norm layer {comp.norm!r}; a hub-layout ConvNeXt uses LayerNorm")
    if comp.norm_eps != NORM_EPS:
        refuse("norm_eps", f"norm epsilon {comp.norm_eps:g} in the stem, downsampling and block norms; a hub-layout "
                           f"ConvNeXt fixes them at {NORM_EPS:g} (only the final norm's is configurable)")
    if "layer_norm_eps" not in stated:
        fields["layer_norm_eps"] = comp.final_norm_eps
    if comp.pooling is None:
        refuse("pooling", "the final LayerNorm runs on every pixel of the last feature map (no pooling); a "
                          "hub-layout ConvNeXt pools first and then normalises")
    if comp.pooling != HUB_POOLING:
        refuse("pooling", f"global pooling {comp.pooling!r}; a hub-layout ConvNeXt averages")
    if comp.first_stage_stride != 1:
        refuse("first_stage_stride", f"stage 0 strides by {comp.first_stage_stride}; in a hub-layout ConvNeXt only "
                                     f"the stem reduces the resolution before stage 0")
    dilated = [(s, d) for s, d in enumerate(comp.stage_dilations) if d != 1]
    if dilated:
        shown = ", ".join(f"stage {s} by {d}" for s, d in dilated)
        refuse("stage_dilations", f"the model dilates its convolutions ({shown}) instead of striding, so its total "
                                  f"stride stops growing; a hub-layout ConvNeXt strides every stage after the first "
                                  f"by 2 without dilation")
    return fields

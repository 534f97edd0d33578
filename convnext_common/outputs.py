"""Output containers shared by both twins, with transformers' field names.

Fields are tensors of whichever framework made them. Like transformers' ``ModelOutput`` they
read as attributes, as ``out["logits"]`` and as tuples (``out[0]``, ``out.to_tuple()``), where
fields that are None are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


class ModelOutput:
    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None)

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def __getitem__(self, key: int | slice | str) -> Any:
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __iter__(self):
        return iter(self.to_tuple())

    def __len__(self) -> int:
        return len(self.to_tuple())


@dataclass
class BaseModelOutputWithPoolingAndNoAttention(ModelOutput):
    """``last_hidden_state`` (B, C_last, H/32, W/32), before the final norm;
    ``pooler_output`` (B, C_last) = LayerNorm(mean over H, W);
    ``hidden_states``: embeddings output then each stage's output, NCHW."""

    last_hidden_state: Any = None
    pooler_output: Any = None
    hidden_states: tuple[Any, ...] | None = None


@dataclass
class ImageClassifierOutputWithNoAttention(ModelOutput):
    """``loss`` (scalar, when labels are given), ``logits`` (B, num_labels), ``hidden_states``."""

    loss: Any = None
    logits: Any = None
    hidden_states: tuple[Any, ...] | None = None


@dataclass
class BackboneOutput(ModelOutput):
    """``feature_maps``: one normalised NCHW map per ``config.out_features`` entry."""

    feature_maps: tuple[Any, ...] | None = None
    hidden_states: tuple[Any, ...] | None = None
    attentions: tuple[Any, ...] | None = None


@dataclass
class MaskedImageModelingOutput(ModelOutput):
    """FCMAE pre-training (``ConvNextV2ForMaskedImageModeling``): ``loss`` (scalar, the mean squared
    error per patch averaged over the removed patches), ``logits`` (B, num_patches, patch_size**2 *
    num_channels: each patch's reconstruction, pixels row by row with the channels innermost, as the
    official ``patchify``), ``mask`` (B, num_patches, 1 = removed, patches row-major over the grid),
    ``hidden_states`` (the encoder's maps, NCHW, zero at removed sites)."""

    loss: Any = None
    logits: Any = None
    mask: Any = None
    hidden_states: tuple[Any, ...] | None = None

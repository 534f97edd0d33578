"""Output containers shared by both twins, with transformers' field names and container semantics.

``ModelOutput`` behaves as transformers' does: an ordered dict whose keys are the fields that are
not None, kept in sync with the attributes. ``for k in out`` yields keys, ``"logits" in out``
tests a key, ``out["logits"]`` and ``out.logits`` read the same value, while ``out[0]``,
``out[1:]`` and ``out.to_tuple()`` index the values. Fields are tensors of whichever framework
made them; the framework twins register the classes with their tree utilities (torch's pytree in
``convnext_pt``, Keras' tree in ``convnext_tf.outputs``): this module imports no framework.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, fields, is_dataclass
from typing import Any


def _is_tensor_like(value: Any) -> bool:
    """An array of any framework (or a tracer standing for one): it has a shape and a dtype."""
    return hasattr(value, "shape") and hasattr(value, "dtype")


class ModelOutput(OrderedDict):
    """Base of every output dataclass: see the module docstring. Keys cannot be deleted and the
    dict-mutating methods other than item assignment are refused, as in transformers."""

    def __post_init__(self) -> None:
        class_fields = fields(self)
        if not class_fields:
            raise ValueError(f"{type(self).__name__} has no fields")
        first_name = class_fields[0].name
        first = getattr(self, first_name)
        others_none = all(getattr(self, f.name) is None for f in class_fields[1:])
        if others_none and first is not None and not _is_tensor_like(first):
            self._fill_from_first(first_name, first)
            return
        for f in class_fields:
            value = getattr(self, f.name)
            if value is not None:
                self[f.name] = value

    def _fill_from_first(self, first_name: str, first: Any) -> None:
        """A lone first argument that is a mapping or an iterable of ``(key, value)`` pairs fills
        the fields by name (how tree utilities rebuild a mapping type); any other value is the
        first field's."""
        try:
            iterator = iter(first.items() if isinstance(first, dict) else first)
        except TypeError:
            self[first_name] = first
            return
        for index, element in enumerate(iterator):
            if not (isinstance(element, (list, tuple)) and len(element) == 2 and isinstance(element[0], str)):
                if index == 0:
                    self[first_name] = first
                    return
                raise ValueError(f"Cannot set key/value for {element!r}: it needs to be a (key, value) pair")
            if index == 0:
                super().__setattr__(first_name, None)
            super().__setattr__(element[0], element[1])
            if element[1] is not None:
                self[element[0]] = element[1]

    def __delitem__(self, *args, **kwargs):
        raise TypeError(f"You cannot use ``__delitem__`` on a {type(self).__name__} instance.")

    def setdefault(self, *args, **kwargs):
        raise TypeError(f"You cannot use ``setdefault`` on a {type(self).__name__} instance.")

    def pop(self, *args, **kwargs):
        raise TypeError(f"You cannot use ``pop`` on a {type(self).__name__} instance.")

    def update(self, *args, **kwargs):
        raise TypeError(f"You cannot use ``update`` on a {type(self).__name__} instance.")

    def __getitem__(self, key: int | slice | str) -> Any:
        if isinstance(key, str):
            return dict(self.items())[key]
        return self.to_tuple()[key]

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.keys() and value is not None:
            super().__setitem__(name, value)
        super().__setattr__(name, value)

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        super().__setattr__(key, value)

    def __reduce__(self):
        if not is_dataclass(self):
            return super().__reduce__()
        rebuild, _args, *rest = super().__reduce__()
        return (rebuild, tuple(getattr(self, f.name) for f in fields(self)), *rest)

    def __fx_create_arg__(self, tracer: Any) -> Any:
        """torch.fx records the output as a call of its class, so a traced model returns the same
        container (a plain dict otherwise)."""
        return tracer.create_node("call_function", type(self), (),
                                  {k: tracer.create_arg(v) for k, v in self.items()})

    def to_tuple(self) -> tuple[Any, ...]:
        """The values of the fields that are not None, in field order."""
        return tuple(self[k] for k in self.keys())


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


#: every output class the twins return
OUTPUT_CLASSES = (BaseModelOutputWithPoolingAndNoAttention, ImageClassifierOutputWithNoAttention, BackboneOutput,
                  MaskedImageModelingOutput)

"""The output containers (``convnext_common.outputs``) as torch sees them.

Registering them with torch's pytree lets ``torch.export``, ``torch.compile`` and ``torch.fx``
see into an output as transformers' outputs: the keys (fields that are not None) are the
structure, the values the leaves. Importing this module registers them.
"""

from __future__ import annotations

import functools

from torch.utils import _pytree as pytree

from convnext_common.outputs import (
    OUTPUT_CLASSES, BackboneOutput, BaseModelOutputWithPoolingAndNoAttention, ImageClassifierOutputWithNoAttention,
    MaskedImageModelingOutput, ModelOutput,
)


def _flatten(output: ModelOutput):
    return list(output.values()), list(output.keys())


def _flatten_with_keys(output: ModelOutput):
    return [(pytree.MappingKey(k), v) for k, v in output.items()], list(output.keys())


def _unflatten(values, context, output_type: type) -> ModelOutput:
    return output_type(**dict(zip(context, values)))


def _register() -> None:
    for cls in OUTPUT_CLASSES:
        if cls in pytree.SUPPORTED_NODES:
            continue
        pytree.register_pytree_node(
            cls, _flatten, functools.partial(_unflatten, output_type=cls),
            serialized_type_name=f"{cls.__module__}.{cls.__name__}", flatten_with_keys_fn=_flatten_with_keys)


_register()

__all__ = ["OUTPUT_CLASSES", "BackboneOutput", "BaseModelOutputWithPoolingAndNoAttention",
           "ImageClassifierOutputWithNoAttention", "MaskedImageModelingOutput"]

"""The output containers (``convnext_common.outputs``) as Keras sees them.

Keras' structure utilities (``fit``'s symbolic build, the functional API) map over a model's
outputs; registering the dataclasses with Keras' tree lets them see into an output as into a
dict. Fields that are None are not part of the structure: Keras wants a tensor at every leaf.
Importing this module registers them.
"""

from __future__ import annotations

import functools

import optree

from convnext_common.outputs import (
    BackboneOutput, BaseModelOutputWithPoolingAndNoAttention, ImageClassifierOutputWithNoAttention, ModelOutput,
)

#: every output class the Keras twin returns
OUTPUT_CLASSES = (BaseModelOutputWithPoolingAndNoAttention, ImageClassifierOutputWithNoAttention, BackboneOutput)


def _flatten(output: ModelOutput):
    names = tuple(output.keys())  # the fields that are not None
    return tuple(getattr(output, n) for n in names), names, names


def _unflatten(cls: type, names: tuple[str, ...], children) -> ModelOutput:
    return cls(**dict(zip(names, children)))


def _register_with_keras_tree() -> None:
    for cls in OUTPUT_CLASSES:
        try:
            optree.register_pytree_node(cls, _flatten, functools.partial(_unflatten, cls), namespace="keras")
        except ValueError:
            pass  # already registered (module reloaded)


_register_with_keras_tree()

__all__ = ["OUTPUT_CLASSES", "BackboneOutput", "BaseModelOutputWithPoolingAndNoAttention",
           "ImageClassifierOutputWithNoAttention"]

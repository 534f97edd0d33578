"""The output containers (``convnext_common.outputs``) as Keras sees them.

Keras' structure utilities (``fit``'s symbolic build, the functional API) map over a model's
outputs; registering the dataclasses with Keras' tree lets them see into an output as into a
dict. Fields that are None are not part of the structure: Keras wants a tensor at every leaf.
On the JAX backend they are JAX tree nodes too. Importing this module registers them.
"""

from __future__ import annotations

import functools

import keras
import optree

from convnext_common.outputs import (
    OUTPUT_CLASSES, BackboneOutput, BaseModelOutputWithPoolingAndNoAttention, ImageClassifierOutputWithNoAttention,
    MaskedImageModelingOutput, ModelOutput,
)


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


def _register_with_jax_tree() -> None:
    """On the JAX backend outputs also cross ``jax.jit`` and ``jax.value_and_grad`` (fit's step returns
    the predictions), which accept only JAX's own tree nodes."""
    import jax

    for cls in OUTPUT_CLASSES:
        try:
            jax.tree_util.register_pytree_node(cls, _flatten_jax, functools.partial(_unflatten, cls))
        except ValueError:
            pass  # already registered (module reloaded)


def _flatten_jax(output: ModelOutput):
    children, names, _ = _flatten(output)
    return children, names


_register_with_keras_tree()
if keras.backend.backend() == "jax":
    _register_with_jax_tree()

__all__ = ["OUTPUT_CLASSES", "BackboneOutput", "BaseModelOutputWithPoolingAndNoAttention",
           "ImageClassifierOutputWithNoAttention", "MaskedImageModelingOutput"]

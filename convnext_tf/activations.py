"""The activations named by ``config.hidden_act`` (transformers' ACT2FN names), as Keras layers.

The same names and formulas as ``convnext_pt/activations.py`` (e.g. ``leaky_relu`` has PyTorch's
slope 0.01, not Keras' 0.2; ``gelu`` is the exact erf form).
"""

from __future__ import annotations

from typing import Callable

import keras
from keras import ops


def quick_gelu(x):
    return x * ops.sigmoid(1.702 * x)


def _gelu_exact(x):
    return ops.gelu(x, approximate=False)


def _gelu_tanh(x):
    return ops.gelu(x, approximate=True)


def _leaky_relu(x):
    return ops.leaky_relu(x, negative_slope=0.01)


def _mish(x):
    return x * ops.tanh(ops.softplus(x))


def _identity(x):
    return x


_ACTIVATIONS: dict[str, Callable] = {
    "gelu": _gelu_exact,
    "gelu_new": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "quick_gelu": quick_gelu,
    "relu": ops.relu,
    "relu6": ops.relu6,
    "silu": ops.silu,
    "swish": ops.silu,
    "sigmoid": ops.sigmoid,
    "tanh": ops.tanh,
    "mish": _mish,
    "leaky_relu": _leaky_relu,
    "linear": _identity,
}


def get_activation(hidden_act: str, **kwargs) -> keras.layers.Layer:
    """A weightless Keras layer applying ``name``; ValueError for an unknown name."""
    try:
        fn = _ACTIVATIONS[hidden_act]
    except KeyError:
        raise ValueError(f"hidden_act {hidden_act!r} is not one of {', '.join(_ACTIVATIONS)}") from None
    return keras.layers.Activation(fn, **kwargs)

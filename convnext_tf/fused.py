"""TensorFlow's fused CPU kernels for the Keras twin, used only where they are provably invisible.

The Keras translation of ``convnext_pt/fused.py``: the modeling file calls :func:`layer_norm` and
:func:`linear_act`, which compute the plain thing unless a faster form is the same computation.

- :func:`linear_act`: ``act(dense(x))``. On 2-D rows (the block's layout, see
  ``TFConvNextLayer``) TensorFlow's graph optimizer fuses a Dense's MatMul with its BiasAdd and,
  where it has a fused form (GELU among them), the activation into one kernel by itself, so the
  plain layer calls are also the fast form; a layer replaced, quantized or given LoRA runs as itself.
- :func:`layer_norm`: a channels-last LayerNorm. In a graph on a oneDNN CPU (TensorFlow's default
  on x86) it is written as the batch-norm subgraph that TensorFlow's remapper fuses into its
  one-pass ``_MklLayerNorm`` kernel (Keras 2's fused LayerNormalization): one pass over the rows
  instead of separate mean, variance and normalise ops. Op by op that subgraph is the same
  LayerNorm; eager calls, GPUs, builds without oneDNN and tracing inside :func:`portable_ops`
  (``export()``: SavedModels are for TFLite and other runtimes) get the plain mean/variance ops.

Agreement of the two LayerNorm forms is that of two float32 reductions: within float32 rounding
(the tests bound both against a float64 reference, forward and backward), not bit for bit.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Iterator, Optional

import keras
import tensorflow as tf
from keras import ops

_PORTABLE_OPS = contextvars.ContextVar("convnext_tf_portable_ops", default=False)


@contextlib.contextmanager
def portable_ops() -> Iterator[None]:
    """Within this context the models trace standard TensorFlow ops only, leaving out the
    CPU-specific form of :func:`layer_norm`: for graphs that other runtimes load
    (``export()`` traces its SavedModel so, for TFLite, GPUs and builds without oneDNN)."""
    token = _PORTABLE_OPS.set(True)
    try:
        yield
    finally:
        _PORTABLE_OPS.reset(token)


def linear_act(dense: keras.layers.Layer, act: Optional[keras.layers.Layer], x):
    """``act(dense(x))`` (``dense(x)`` when ``act`` is None), calling the layers. On 2-D ``x`` in a
    graph TensorFlow's optimizer fuses them into one kernel itself (see the module docstring)."""
    x = dense(x)
    return x if act is None else act(x)


def layer_norm(x, gamma, beta, eps: float, axis: int = -1):
    """LayerNorm of float32 ``x`` over ``axis`` with float32 ``gamma`` / ``beta``; over the last
    axis in a graph on a oneDNN CPU as TensorFlow's one-pass kernel (see the module docstring)."""
    if axis == -1 and _use_onednn_layer_norm():
        shape = ops.shape(x)
        return ops.reshape(_onednn_layer_norm(ops.reshape(x, (-1, gamma.shape[0])), gamma, beta, eps), shape)
    mean, variance = ops.moments(x, axes=[axis], keepdims=True)
    if axis != -1:  # per-channel parameters broadcast along the axes after ``axis``
        trailing = (1,) * (len(x.shape) - 1 - axis % len(x.shape))
        gamma, beta = ops.reshape(gamma, (-1,) + trailing), ops.reshape(beta, (-1,) + trailing)
    return (x - mean) * ops.rsqrt(variance + eps) * gamma + beta


def _use_onednn_layer_norm() -> bool:
    # Only graphs get the rewrite; run eagerly, op by op, the plain form is the faster one.
    return not tf.executing_eagerly() and not _PORTABLE_OPS.get() and _onednn_layer_norm_available()


@functools.lru_cache(maxsize=None)
def _onednn_layer_norm_available() -> bool:
    """Whether TensorFlow's graph optimizer can turn :func:`_onednn_layer_norm` into its one-pass
    oneDNN LayerNorm kernel: oneDNN on (TensorFlow's default on x86 CPUs) and no GPU (the kernel
    is CPU-only; cuDNN's batch norm also rejects eps < 1e-5)."""
    try:
        from tensorflow.python.util import _pywrap_util_port
        onednn = bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):  # a TensorFlow build without the flag: keep the plain form
        return False
    return onednn and not tf.config.list_physical_devices("GPU")


def _onednn_layer_norm(rows, gamma, beta, eps: float):
    """LayerNorm of float32 ``rows`` (N, C) over C, written as the subgraph TensorFlow's remapper
    fuses into one oneDNN kernel (``_MklLayerNorm``): a training-mode FusedBatchNormV3 over an NCHW
    view (1, N, C, 1) (per-row statistics, scale and offset Fill ops of ones and zeros), reshaped
    back, times gamma, plus beta. Op by op (eager, or without the rewrite) it computes the same
    LayerNorm.

    The rewrite wants a 2-D input that is not itself a reshape (the optimizer merges reshape
    chains, and a block's rows are a reshape of the 4-D depthwise conv output), and Fill ops
    that constant folding has not turned into constants (it does whenever N is static). Passing
    the rows, and N, through PlaceholderWithDefault (an identity that the optimizer leaves alone)
    does both.
    """
    channels = rows.shape[-1]
    rows = tf.raw_ops.PlaceholderWithDefault(input=rows, shape=rows.shape)
    n = tf.raw_ops.PlaceholderWithDefault(input=tf.shape(rows)[:1], shape=[1])
    y, _, _, _, _, _ = tf.raw_ops.FusedBatchNormV3(
        x=tf.reshape(rows, tf.concat([[1], n, [channels, 1]], axis=0)),
        scale=tf.fill(n, 1.0), offset=tf.fill(n, 0.0), mean=tf.constant([], tf.float32),
        variance=tf.constant([], tf.float32), epsilon=eps, data_format="NCHW", is_training=True)
    return tf.reshape(y, tf.shape(rows)) * gamma + beta

"""Fast forms of the Keras twin's ops, one per Keras backend, used only where provably invisible.

The Keras translation of ``convnext_pt/fused.py``: the modeling file calls :func:`layer_norm`,
:func:`linear_act` and :func:`depthwise_conv`, which compute the plain thing unless a faster form
is the same computation on the backend Keras runs on (the one place that picks by backend).

TensorFlow backend:

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

PyTorch backend:

- :func:`linear_act`: without gradients (``predict``, ``torch.no_grad``), float32 on the CPU, a
  plain ``Dense`` and GELU (exact or tanh), ReLU or SiLU run as one oneDNN matmul with the bias
  and activation fused, the kernel of ``convnext_pt/fused.py``, instead of a matmul, an add and the
  activation. Anything else calls the layers.
- :func:`layer_norm`: a channels-last LayerNorm is ``torch.nn.functional.layer_norm`` (one kernel,
  forward and backward) instead of separate mean, variance and normalise ops.
- Both take their fast form only where the PyTorch twin's would: one torch guard for the two twins,
  ``convnext_torch_kernels`` (no hooks on the layers (Keras layers are torch modules on this
  backend) and no global module hooks, no ``__torch_function__`` / dispatch mode, no autocast, no
  tensor subclass, no tracing). That package imports torch, so this module imports it only on this
  backend.

JAX backend:

- :func:`depthwise_conv`: the block's 7x7 ``DepthwiseConv2D`` as 49 shifted multiply-adds over
  the zero-padded input. XLA fuses them (and their gradients) into a few loops; its own
  grouped/depthwise convolution, which the layer calls, is several times slower on CPU. Only a
  plain ``DepthwiseConv2D`` (that very class, stride 1, "same" padding, no dilation, depth
  multiplier 1, no activation, regularizer, quantization or LoRA) takes it; anything else calls
  the layer.

TensorFlow, and torch's helpers, are imported only on their backend. Agreement of the fast and plain
forms is that of two float32 summation orders: within float32 rounding (the tests bound it at 1e-5,
forward and backward), not bit for bit.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Iterator, Optional

import keras
from keras import ops

if keras.backend.backend() == "torch":  # the one torch guard and kernel, shared with the PyTorch twin
    import convnext_torch_kernels as _torch_kernels

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
    graph TensorFlow's optimizer fuses them into one kernel itself; on the PyTorch backend, without
    gradients, one oneDNN call computes it where that is the same computation (module docstring)."""
    if keras.backend.backend() == "torch":
        post_op = _torch_post_op(dense, act, x)
        if post_op is not None:
            attr, algorithm = post_op
            bias = dense.bias.value if dense.use_bias else None
            return _torch_kernels.linear_pointwise(x, dense.kernel.value.t(), bias, attr, [], algorithm or None)
    x = dense(x)
    return x if act is None else act(x)


def _torch_post_op(dense: keras.layers.Layer, act: Optional[keras.layers.Layer], x) -> Optional[tuple[str, str]]:
    """The oneDNN post-op (attr, algorithm) computing ``act`` after ``dense`` exactly in one call, or
    None where the layers must run themselves: a layer other than a plain float32 Dense / one of the
    activations oneDNN has (a replaced, subclassed, quantized or LoRA layer runs as itself), input
    other than 2-D rows, or where the PyTorch twin's fast path would step aside too (the shared
    torch guard ``convnext_torch_kernels.may_fuse_linear``: hooks, modes, autocast, tracing, tensor
    subclasses, gradients, device and dtype)."""
    if not _plain_dense(dense):
        return None
    if act is None:
        post_op = ("none", "")
    elif (type(act) is not keras.layers.Activation or type(act).call is not keras.layers.Activation.call
            or "call" in vars(act)):  # an instance's own call (patched by a user or a library) runs itself
        return None
    else:
        post_op = _ONEDNN_POST_OPS.get(act.activation)
        if post_op is None:
            return None
    modules = (dense,) if act is None else (dense, act)
    bias = dense.bias.value if dense.use_bias else None
    # the guard first: under a mode or tracing, nothing of ``x`` is read before the layers run
    if not _torch_kernels.may_fuse_linear(modules, x, dense.kernel.value, bias) or x.ndim != 2:
        return None
    return post_op


def _plain_dense(dense: keras.layers.Layer) -> bool:
    return (type(dense) is keras.layers.Dense and type(dense).call is keras.layers.Dense.call
            and "call" not in vars(dense)  # an instance's own call (patched by a user or a library) runs itself
            and dense.activation is keras.activations.linear and dense.compute_dtype == "float32"
            and dense.activity_regularizer is None
            and getattr(dense, "quantization_mode", None) is None and not getattr(dense, "lora_enabled", False))


def _onednn_post_ops() -> dict:
    from .activations import _ACTIVATIONS

    return {_ACTIVATIONS["gelu"]: ("gelu", "none"), _ACTIVATIONS["gelu_new"]: ("gelu", "tanh"),
            _ACTIVATIONS["relu"]: ("relu", ""), _ACTIVATIONS["silu"]: ("swish", "")}


_ONEDNN_POST_OPS = _onednn_post_ops()


def layer_norm(x, gamma, beta, eps: float, axis: int = -1):
    """LayerNorm of float32 ``x`` over ``axis`` with float32 ``gamma`` / ``beta``; over the last
    axis in a graph on a oneDNN CPU as TensorFlow's one-pass kernel (see the module docstring)."""
    if axis == -1 and keras.backend.backend() == "torch" and _torch_unobserved(x, gamma, beta):
        import torch  # torch's one-kernel LayerNorm (and backward)

        return torch.nn.functional.layer_norm(x, (gamma.shape[0],), gamma, beta, eps)
    if axis == -1 and _use_onednn_layer_norm():
        shape = ops.shape(x)
        return ops.reshape(_onednn_layer_norm(ops.reshape(x, (-1, gamma.shape[0])), gamma, beta, eps), shape)
    mean, variance = ops.moments(x, axes=[axis], keepdims=True)
    if axis != -1:  # per-channel parameters broadcast along the axes after ``axis``
        trailing = (1,) * (len(x.shape) - 1 - axis % len(x.shape))
        gamma, beta = ops.reshape(gamma, (-1,) + trailing), ops.reshape(beta, (-1,) + trailing)
    return (x - mean) * ops.rsqrt(variance + eps) * gamma + beta


def _torch_unobserved(*tensors) -> bool:
    """The shared torch guard (``convnext_torch_kernels.unobserved``): no tracing, mode, autocast,
    global hook or tensor subclass that would see the one kernel in place of the plain ops."""
    return _torch_kernels.unobserved((), tensors)


def _use_onednn_layer_norm() -> bool:
    # Only TensorFlow graphs get the rewrite; run eagerly, op by op, the plain form is the faster one.
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.executing_eagerly() and not _PORTABLE_OPS.get() and _onednn_layer_norm_available()


@functools.lru_cache(maxsize=None)
def _onednn_layer_norm_available() -> bool:
    """Whether TensorFlow's graph optimizer can turn :func:`_onednn_layer_norm` into its one-pass
    oneDNN LayerNorm kernel: oneDNN on (TensorFlow's default on x86 CPUs) and no GPU (the kernel
    is CPU-only; cuDNN's batch norm also rejects eps < 1e-5)."""
    import tensorflow as tf

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
    import tensorflow as tf

    channels = rows.shape[-1]
    rows = tf.raw_ops.PlaceholderWithDefault(input=rows, shape=rows.shape)
    n = tf.raw_ops.PlaceholderWithDefault(input=tf.shape(rows)[:1], shape=[1])
    y, _, _, _, _, _ = tf.raw_ops.FusedBatchNormV3(
        x=tf.reshape(rows, tf.concat([[1], n, [channels, 1]], axis=0)),
        scale=tf.fill(n, 1.0), offset=tf.fill(n, 0.0), mean=tf.constant([], tf.float32),
        variance=tf.constant([], tf.float32), epsilon=eps, data_format="NCHW", is_training=True)
    return tf.reshape(y, tf.shape(rows)) * gamma + beta


def depthwise_conv(layer: keras.layers.Layer, x):
    """``layer(x)`` for a block's depthwise conv (NHWC); on JAX as shifted multiply-adds where that is
    the same computation (see the module docstring)."""
    if keras.backend.backend() == "jax" and _is_plain_depthwise(layer) and not keras.backend.is_keras_tensor(x):
        return _shifted_depthwise(layer, x)
    return layer(x)


def _is_plain_depthwise(layer: keras.layers.Layer) -> bool:
    """Whether ``layer`` computes exactly a stride-1 "same" depthwise conv plus bias, nothing else."""
    return (type(layer) is keras.layers.DepthwiseConv2D and layer.built
            and type(layer).call is keras.layers.DepthwiseConv2D.call and "call" not in vars(layer)
            and layer.depth_multiplier == 1 and layer.data_format == "channels_last"
            and tuple(layer.strides) == (1, 1) and tuple(layer.dilation_rate) == (1, 1)
            and layer.padding == "same" and layer.activation is keras.activations.linear
            and layer.activity_regularizer is None
            and getattr(layer, "quantization_mode", None) is None and not getattr(layer, "lora_enabled", False))


def _shifted_depthwise(layer: keras.layers.Layer, x):
    """The depthwise conv of ``layer`` on NHWC ``x`` in the layer's compute dtype, as Keras' autocast
    would run it (see :func:`_shifted_sum`)."""
    dtype = layer.compute_dtype
    bias = ops.cast(layer.bias, dtype) if layer.use_bias else None
    return _jitted_shifted_sum()(ops.cast(x, dtype), ops.cast(layer.kernel, dtype), bias)


@functools.lru_cache(maxsize=None)
def _jitted_shifted_sum():
    # One XLA computation per input shape, also when called eagerly: op by op, each of the 49
    # slices would be a computation of its own. Inside a traced function (fit, predict) it is inlined.
    import jax

    @jax.custom_vjp
    def depthwise(x, kernel):
        return _shifted_sum(x, kernel)

    depthwise.defvjp(lambda x, kernel: (_shifted_sum(x, kernel), (x, kernel)), _shifted_sum_vjp)

    def conv(x, kernel, bias):
        out = depthwise(x, kernel[:, :, :, 0])
        return out if bias is None else out + bias

    return jax.jit(conv)


def _same_padding(kernel_size: int) -> tuple[int, int]:
    """Keras' "same" padding at stride 1: the extra row/column of an even kernel goes at the end."""
    return (kernel_size - 1) // 2, kernel_size - 1 - (kernel_size - 1) // 2


def _shifted_sum(x, kernel, pads=None):
    """A stride-1 "same" depthwise conv of NHWC ``x`` with kernel (kh, kw, C) as the sum of shifted,
    per-channel scaled copies of the zero-padded input (``pads``: ((top, bottom), (left, right)))."""
    import jax.numpy as jnp

    kh, kw = kernel.shape[0], kernel.shape[1]
    (top, bottom), (left, right) = pads or (_same_padding(kh), _same_padding(kw))
    height, width = x.shape[1], x.shape[2]
    padded = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    out = None
    for i in range(kh):
        for j in range(kw):
            term = padded[:, i:i + height, j:j + width, :] * kernel[i, j]
            out = term if out is None else out + term
    return out


def _shifted_sum_vjp(residuals, grad):
    """The gradients of :func:`_shifted_sum`, each in a form XLA runs fast on CPU. The input's is
    the same shifted sum with the kernel flipped (and the padding mirrored). The kernel's,
    ``dk[i, j, c] = sum_nhw padded[n, h+i, w+j, c] * grad[n, h, w, c]``, is per kernel row one
    matrix product per channel over (n, h) whose diagonals are the kernel columns: XLA's
    autodiff of the sum would be kh * kw reductions over the whole input, slower than its own
    (slow) convolution gradient."""
    import jax.numpy as jnp

    x, kernel = residuals
    kh, kw = kernel.shape[0], kernel.shape[1]
    (top, bottom), (left, right) = _same_padding(kh), _same_padding(kw)
    dx = _shifted_sum(grad, kernel[::-1, ::-1], pads=((bottom, top), (right, left)))
    n, height, width, channels = x.shape
    padded = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    rows_grad = grad.reshape(n * height, width, channels)
    dk = []
    for i in range(kh):
        rows = padded[:, i:i + height].reshape(n * height, width + kw - 1, channels)
        products = jnp.einsum("mvc,mwc->cvw", rows, rows_grad)  # (C, width + kw - 1, width)
        dk.append(jnp.stack([jnp.trace(products, offset=-j, axis1=1, axis2=2) for j in range(kw)]))
    return dx, jnp.stack(dk).astype(kernel.dtype)

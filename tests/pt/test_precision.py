"""Low precision: the norms compute their statistics in float32, and whole models in bfloat16 /
float16 stay finite and close to float32 on inputs with large activations.

References are independent: numpy float64 formulas for the single layers, the same weights in
float32 for whole models. Each overflow test also runs the naive formula (statistics in the input
dtype, as the original channels-first LayerNorm and GRN do) on the same input and shows that it
breaks there, so the input really is one that needs the float32 statistics.

Bounds (also in README, "Bad input and safety"), with rel = max|low - fp32| / max(1, max|fp32|)
on logits and every hidden state:
- bfloat16: rel <= 0.05 (8-bit mantissa; measured <= 0.024, both twins, V1 and V2)
- float16:  rel <= 0.01 (11-bit mantissa; measured <= 0.003)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import rel_err
from convnext_common import ConvNextConfig, ConvNextV2Config
from convnext_pt import ConvNextForImageClassification, ConvNextV2ForImageClassification
from convnext_pt.modeling import ConvNextLayerNorm, ConvNextV2GRN
from helpers import redraw_

BOUNDS = {"bfloat16": 0.05, "float16": 0.01}
FP16_MAX = float(np.finfo(np.float16).max)
TORCH_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def _cpu_supports_fp16() -> bool:
    try:
        conv = torch.nn.Conv2d(3, 4, 3).half()
        x = torch.ones(1, 3, 8, 8, dtype=torch.float16)
        return bool(torch.isfinite(conv(x)).all() and torch.isfinite(torch.nn.functional.layer_norm(x, (8,))).all())
    except RuntimeError:
        return False


PT_LOW = ["bfloat16"] + (["float16"] if _cpu_supports_fp16() else [])


# --- reference formulas (numpy, float64) --------------------------------------------------------------
def layer_norm_ref(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, axis: int, eps: float = 1e-6) -> np.ndarray:
    x = x.astype(np.float64)
    mean = x.mean(axis=axis, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axis, keepdims=True)
    shape = [1] * x.ndim
    shape[axis] = -1
    return (x - mean) / np.sqrt(var + eps) * weight.reshape(shape) + bias.reshape(shape)


def grn_ref(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """NHWC: x + gamma * x * (||x||_HW / mean_C ||x||_HW) + beta."""
    x = x.astype(np.float64)
    g = np.sqrt((x ** 2).sum(axis=(1, 2), keepdims=True))
    n = g / (g.mean(axis=-1, keepdims=True) + eps)
    return gamma * (x * n) + beta + x


def naive_channels_first_layer_norm(x: torch.Tensor, weight, bias, eps: float = 1e-6) -> torch.Tensor:
    """The original ConvNeXt's channels-first LayerNorm: statistics in the input dtype."""
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    x = (x - u) / torch.sqrt(s + eps)
    return weight[:, None, None].to(x.dtype) * x + bias[:, None, None].to(x.dtype)


def naive_grn(x: torch.Tensor, gamma, beta, eps: float = 1e-6) -> torch.Tensor:
    g = torch.sqrt((x * x).sum(dim=(1, 2), keepdim=True))  # sum of squares in the input dtype
    n = g / (g.mean(dim=-1, keepdim=True) + eps)
    return gamma.to(x.dtype) * (x * n) + beta.to(x.dtype) + x


def _large_nchw(seed: int = 0, c: int = 16, scale: float = 2000.0) -> np.ndarray:
    """Activations around +-2000 with a per-channel offset: (x - mean)^2 is ~1e6, beyond float16's 65504."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((2, c, 8, 8)) * scale + rng.uniform(-500, 500, (1, c, 1, 1))).astype(np.float32)


def _norm_params(c: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    return (1 + 0.1 * rng.standard_normal(c)).astype(np.float32), (0.1 * rng.standard_normal(c)).astype(np.float32)


def _max_abs_err(ours, ref) -> float:
    return float(np.abs(np.asarray(ours, np.float64) - ref).max())


# --- PyTorch: single layers ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_pt_channels_first_layer_norm_computes_in_float32(dtype):
    x = _large_nchw()
    weight, bias = _norm_params(16)
    norm = ConvNextLayerNorm(16, data_format="channels_first")
    with torch.no_grad():
        norm.weight.copy_(torch.from_numpy(weight))
        norm.bias.copy_(torch.from_numpy(bias))
    xt = torch.from_numpy(x).to(TORCH_DTYPES[dtype])
    with torch.no_grad():
        out = norm(xt)
    assert out.dtype == xt.dtype
    ref = layer_norm_ref(xt.float().numpy(), weight, bias, axis=1)  # the same rounded input
    # the only error left is rounding the O(1) output to the low-precision dtype
    tol = {"float16": 4e-3, "bfloat16": 3e-2}[dtype]
    assert torch.isfinite(out).all()
    assert _max_abs_err(out.float(), ref) < tol
    if dtype == "float16":  # the control: statistics in float16 overflow on this input
        with torch.no_grad():
            naive = naive_channels_first_layer_norm(xt, norm.weight, norm.bias)
        assert (~torch.isfinite(naive)).any() or _max_abs_err(naive.float(), ref) > 0.5


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_pt_grn_is_safe_in_low_precision(dtype):
    # NHWC activations of ~4000 over 32x32 positions: each channel's L2 norm (~1.3e5) is itself
    # beyond float16's range, not only the sum of squares.
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((2, 32, 32, 8)) * 4000).astype(np.float32)
    gamma = rng.uniform(0.2, 1.0, (1, 1, 1, 8)).astype(np.float32)
    beta = rng.uniform(0.2, 1.0, (1, 1, 1, 8)).astype(np.float32)
    grn = ConvNextV2GRN(8)
    with torch.no_grad():
        grn.weight.copy_(torch.from_numpy(gamma))
        grn.bias.copy_(torch.from_numpy(beta))
    grn = grn.to(TORCH_DTYPES[dtype])  # as in model.to(dtype)
    xt = torch.from_numpy(x).to(TORCH_DTYPES[dtype])
    with torch.no_grad():
        out = grn(xt)
    assert out.dtype == xt.dtype and torch.isfinite(out).all()
    ref = grn_ref(xt.float().numpy(), grn.weight.detach().float().numpy(), grn.bias.detach().float().numpy())
    rel = _max_abs_err(out.float(), ref) / np.abs(ref).max()
    assert rel < {"float16": 4e-3, "bfloat16": 3e-2}[dtype]
    if dtype == "float16":
        assert np.sqrt((x.astype(np.float64) ** 2).sum(axis=(1, 2))).max() > FP16_MAX
        with torch.no_grad():
            naive = naive_grn(xt, grn.weight, grn.bias)
        assert not torch.isfinite(naive).all()


# --- whole models -------------------------------------------------------------------------------------
def _large_activation_model(v2: bool):
    """A small model with every parameter re-drawn, its MLP expansion scaled x20 so that activations
    inside the blocks (the GRN input) are large too."""
    config_cls, model_cls = ((ConvNextV2Config, ConvNextV2ForImageClassification) if v2
                             else (ConvNextConfig, ConvNextForImageClassification))
    config = config_cls(depths=[2, 2, 2, 2], hidden_sizes=[16, 32, 64, 128], num_labels=10)
    model = model_cls(config).eval()
    redraw_(model, seed=3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("pwconv1.weight"):
                p.mul_(20.0)
    return model


def _large_pixels() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 100


@pytest.fixture(scope="module", params=[False, True], ids=["v1", "v2"])
def reference(request, tmp_path_factory):
    """(folder with the fp32 model, fp32 outputs, activation maxima seen inside the model)."""
    model = _large_activation_model(request.param)
    seen: dict[str, float] = {}

    def record(name):
        def hook(module, inputs, output):
            seen[name] = max(seen.get(name, 0.0), float(inputs[0].abs().max()))
        return hook

    hooks = [m.register_forward_hook(record(type(m).__name__ + (".cf" if getattr(m, "data_format", "") ==
                                                                  "channels_first" else "")))
             for m in model.modules() if isinstance(m, (ConvNextLayerNorm, ConvNextV2GRN))]
    with torch.no_grad():
        out = model(_large_pixels(), output_hidden_states=True)
    for h in hooks:
        h.remove()
    folder = tmp_path_factory.mktemp("precision") / ("v2" if request.param else "v1")
    model.save_pretrained(folder)
    return type(model), folder, out, seen


def test_the_inputs_are_large_enough_to_matter(reference):
    """A channels-first LayerNorm sees |x| > 256 (x^2 > float16 max) and, in V2, GRN inputs whose
    sum of squares over a 16x16 map exceeds float16's range."""
    _, _, _, seen = reference
    assert seen["ConvNextLayerNorm.cf"] ** 2 > FP16_MAX
    if "ConvNextV2GRN" in seen:
        assert seen["ConvNextV2GRN"] ** 2 * 16 * 16 > FP16_MAX


def _compare(outputs, ref, dtype: str, twin: str) -> None:
    pairs = [("logits", outputs["logits"], ref.logits)] + [
        (f"hidden_states[{i}]", h, r) for i, (h, r) in enumerate(zip(outputs["hidden_states"], ref.hidden_states))]
    for name, ours, theirs in pairs:
        ours = np.asarray(ours, np.float64)
        assert np.isfinite(ours).all(), f"{twin} {dtype}: {name} has NaN/inf"
        rel = rel_err(ours, theirs.numpy())
        assert rel <= BOUNDS[dtype], f"{twin} {dtype}: {name} rel {rel:.3g} > {BOUNDS[dtype]}"


@pytest.mark.parametrize("dtype", PT_LOW)
def test_pt_low_precision_model_agrees_with_float32(reference, dtype):
    cls, folder, ref, _ = reference
    model = cls.from_pretrained(folder, torch_dtype=TORCH_DTYPES[dtype])
    with torch.no_grad():
        out = model(_large_pixels().to(TORCH_DTYPES[dtype]), output_hidden_states=True)
    assert out.logits.dtype == TORCH_DTYPES[dtype]
    _compare({"logits": out.logits.float(), "hidden_states": [h.float() for h in out.hidden_states]}, ref, dtype, "PT")


# --- the Keras twin -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tf_twin():
    convnext_tf = pytest.importorskip("convnext_tf")
    import tensorflow as tf

    return convnext_tf, tf


@pytest.mark.tf
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_tf_channels_first_layer_norm_computes_in_float32(tf_twin, dtype):
    convnext_tf, tf = tf_twin
    x = _large_nchw()
    weight, bias = _norm_params(16)
    norm = convnext_tf.TFConvNextLayerNorm(16, data_format="channels_first")
    norm.build((None, 16, 8, 8))
    norm.gamma.assign(weight)
    norm.beta.assign(bias)
    xt = tf.cast(x, dtype)
    out = norm(xt)
    assert out.dtype == xt.dtype
    ref = layer_norm_ref(np.asarray(tf.cast(xt, tf.float32)), weight, bias, axis=1)
    out32 = np.asarray(tf.cast(out, tf.float32))
    assert np.isfinite(out32).all()
    assert _max_abs_err(out32, ref) < {"float16": 4e-3, "bfloat16": 3e-2}[dtype]


@pytest.mark.tf
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_tf_grn_is_safe_in_low_precision(tf_twin, dtype):
    convnext_tf, tf = tf_twin
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((2, 32, 32, 8)) * 4000).astype(np.float32)
    gamma = rng.uniform(0.2, 1.0, (1, 1, 1, 8)).astype(np.float32)
    beta = rng.uniform(0.2, 1.0, (1, 1, 1, 8)).astype(np.float32)
    grn = convnext_tf.TFConvNextV2GRN(8, dtype=dtype)
    grn.build((None, 32, 32, 8))
    grn.weight.assign(gamma.astype(grn.weight.dtype))
    grn.bias.assign(beta.astype(grn.bias.dtype))
    xt = tf.cast(x, dtype)
    out = np.asarray(tf.cast(grn(xt), tf.float32))
    assert np.isfinite(out).all()
    ref = grn_ref(np.asarray(tf.cast(xt, tf.float32)), np.asarray(tf.cast(grn.weight, tf.float32)),
                  np.asarray(tf.cast(grn.bias, tf.float32)))
    assert _max_abs_err(out, ref) / np.abs(ref).max() < {"float16": 4e-3, "bfloat16": 3e-2}[dtype]


@pytest.mark.tf
@pytest.mark.parametrize("policy", ["bfloat16", "mixed_bfloat16", "float16"])
def test_tf_low_precision_model_agrees_with_float32(reference, tf_twin, policy):
    convnext_tf, tf = tf_twin
    cls, folder, ref, _ = reference
    dtype = policy.replace("mixed_", "")
    tf_cls = getattr(convnext_tf, "TF" + cls.__name__)
    model = tf_cls.from_pretrained(folder, dtype=policy)
    out = model(_large_pixels().numpy(), output_hidden_states=True, training=False)
    # every layer ran in the low precision, not only the model's outer call
    assert all(h.dtype == getattr(tf, dtype) for h in out.hidden_states), [h.dtype for h in out.hidden_states]
    to32 = lambda t: np.asarray(tf.cast(t, tf.float32))  # noqa: E731
    _compare({"logits": to32(out.logits), "hidden_states": [to32(h) for h in out.hidden_states]}, ref, dtype,
             f"TF {policy}")

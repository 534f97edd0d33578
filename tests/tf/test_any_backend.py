"""The Keras twin on whichever Keras backend this process runs (KERAS_BACKEND): tensorflow in the
main suite, jax and torch in the processes tests/tf/test_backends_run.py starts for each.

Against the PyTorch twin with the same re-drawn weights: every output of the parity matrix
(tests/parity_configs.py) in NCHW and channels_last (rel <= 1e-4), the gradients of the loss taken
by the backend's own autodiff (rel <= 1e-3 per tensor), one epoch of ``fit`` lowering the loss,
mixed precision; the JAX depthwise fast path against Keras' own layer; files from another backend
(``CONVNEXT_FOREIGN_DIR``, written by the parent process) and for another (``CONVNEXT_OUT_DIR``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, rel_err
from convnext_common import ConvNextConfig, ConvNextV2Config
from helpers import redraw_
from parity_configs import CONFIG_IDS, CONFIGS, TASKS, TOL, make_config, named_outputs, pt_class, to_numpy

keras = pytest.importorskip("keras")
BACKEND = keras.backend.backend()
if BACKEND == "tensorflow":
    pytest.importorskip("tensorflow")
import convnext_tf  # noqa: E402  (not importorskip: on every backend an ImportError is a failure)
from convnext_tf import fused  # noqa: E402
from convnext_tf.hub import to_canonical  # noqa: E402

GRAD_TOL = 1e-3


def keras_twin(pt_model, **kwargs):
    """The Keras twin of a PyTorch model with its weights (through canonical arrays)."""
    model = getattr(convnext_tf, "TF" + type(pt_model).__name__)(pt_model.config, **kwargs)
    model.load_numpy_state_dict(pt_model.numpy_state_dict())
    return model


def assert_outputs_equal(ours: dict, ref: dict, what: str, tol: float = TOL) -> None:
    assert set(ours) == set(ref), (what, sorted(ours), sorted(ref))
    for name in ref:
        err = rel_err(ours[name], ref[name])
        assert err <= tol, f"{what}: {name} rel {err:.2e} > {tol:g} on the {BACKEND} backend"


def test_tensorflow_is_imported_only_on_its_backend(tmp_path):
    """Import, build, run, fit a step, save_pretrained and from_pretrained load no TensorFlow unless
    it is the backend. (First in this file: Keras itself imports TensorFlow, where installed, when
    it writes a .keras file, as later tests do; the backend processes run this file alone.)"""
    model = convnext_tf.TFConvNextV2ForImageClassification(
        ConvNextV2Config(depths=[1, 1], hidden_sizes=[8, 16], num_stages=2, num_labels=3))
    x = np.zeros((2, 3, 32, 32), np.float32)
    model(x)
    model.compile(optimizer="sgd")
    model.fit(x, np.array([0, 1]), verbose=0)
    model.save_pretrained(tmp_path, safe_serialization=True)
    type(model).from_pretrained(tmp_path)
    assert ("tensorflow" in sys.modules) == (BACKEND == "tensorflow")


def test_convnext_keras_names_the_same_classes_without_the_prefix():
    import convnext_keras

    assert convnext_keras.ConvNextForImageClassification is convnext_tf.TFConvNextForImageClassification
    assert convnext_keras.AutoBackbone is convnext_tf.TFAutoBackbone
    unprefixed = {n[2:] for n in convnext_tf.__all__ if n.startswith("TF")}
    assert unprefixed <= set(convnext_keras.__all__)


# --- outputs --------------------------------------------------------------------------------------
# every config in both layouts, the model types taking turns (all three in each layout): the full
# product runs on TensorFlow in tests/tf/test_parity.py; this keeps each backend's process short
MATRIX = [(*config, TASKS[(i + j) % len(TASKS)], data_format)
          for j, data_format in enumerate(["channels_first", "channels_last"]) for i, config in enumerate(CONFIGS)]


@pytest.mark.parametrize("name, config_cls, kwargs, shape, task, data_format", MATRIX,
                         ids=[f"{m[0]}-{m[4]}-{m[5]}" for m in MATRIX])
def test_outputs_equal_the_pytorch_twin(name, config_cls, kwargs, shape, task, data_format):
    config = make_config(config_cls, kwargs, task)
    pt = pt_class(config, task)(config).eval()
    redraw_(pt, seed=len(name))
    model = keras_twin(pt, data_format=data_format)
    x = np.random.default_rng(1).standard_normal((2,) + shape).astype(np.float32)
    with torch.no_grad():
        ref = named_outputs(pt(torch.from_numpy(x), output_hidden_states=True))
    channels_last = data_format == "channels_last"
    x_in = x.transpose(0, 2, 3, 1) if channels_last else x
    ours = named_outputs(model(x_in, output_hidden_states=True, training=False), channels_last=channels_last)
    assert_outputs_equal(ours, ref, f"{name}/{task}/{data_format}")


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_predict_gives_the_logits(v2):
    name, config_cls, kwargs, shape = CONFIGS[4 if v2 else 0]
    config = make_config(config_cls, kwargs, "ForImageClassification")
    pt = pt_class(config, "ForImageClassification")(config).eval()
    redraw_(pt, seed=11)
    x = np.random.default_rng(2).standard_normal((5,) + shape).astype(np.float32)
    with torch.no_grad():
        ref = pt(torch.from_numpy(x)).logits.numpy()
    assert rel_err(keras_twin(pt).predict(x, batch_size=2, verbose=0), ref) <= TOL


# --- gradients --------------------------------------------------------------------------------------
def keras_gradients(model, x, labels) -> tuple[float, dict[str, np.ndarray]]:
    """The model's own loss and its gradient for every trainable variable, under canonical names
    (PyTorch layouts), by the backend's autodiff."""
    variables = model.trainable_variables
    if BACKEND == "jax":
        import jax

        non_trainable = [v.value for v in model.non_trainable_variables]

        def loss_of(trainable):
            out, _ = model.stateless_call(trainable, non_trainable, x, labels=labels, training=False)
            return out.loss

        loss, grads = jax.jit(jax.value_and_grad(loss_of))([v.value for v in variables])
    elif BACKEND == "torch":
        loss = model(x, labels=labels, training=False).loss
        grads = torch.autograd.grad(loss, [v.value for v in variables])
    else:
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = model(x, labels=labels, training=False).loss
        grads = tape.gradient(loss, variables)
    by_id = {id(v): g for v, g in zip(variables, grads)}
    out = {}
    for tf_path, variable in model._variables_by_tf_path().items():
        name, value = to_canonical(tf_path, to_numpy(keras.ops.convert_to_numpy(by_id[id(variable)])))
        out[name] = value
    return float(to_numpy(keras.ops.convert_to_numpy(loss))), out


@pytest.mark.parametrize("name, config_cls, kwargs, shape", [CONFIGS[1], CONFIGS[5]],
                         ids=[CONFIG_IDS[1], CONFIG_IDS[5]])
def test_gradients_equal_the_pytorch_twin(name, config_cls, kwargs, shape):
    config = make_config(config_cls, kwargs, "ForImageClassification")
    pt = pt_class(config, "ForImageClassification")(config).eval()
    redraw_(pt, seed=len(name) + 1)
    model = keras_twin(pt)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3,) + shape).astype(np.float32)
    labels = rng.integers(0, config.num_labels, 3)
    pt_loss = pt(torch.from_numpy(x), labels=torch.from_numpy(labels)).loss
    pt_loss.backward()
    ref = {n: p.grad.numpy() for n, p in pt.named_parameters()}
    loss, ours = keras_gradients(model, x, labels.astype(np.int32))
    assert loss == pytest.approx(pt_loss.item(), rel=1e-5)
    assert set(ours) == set(ref)
    for n in ref:
        err = np.abs(ours[n] - ref[n]).max() / max(np.abs(ref[n]).max(), 1e-12)
        assert err <= GRAD_TOL, f"{name}: d loss / d {n} rel {err:.2e} > {GRAD_TOL:g} on the {BACKEND} backend"


def test_grn_gradient_of_an_all_zero_channel_equals_pytorch():
    """A channel that is zero everywhere (after a ReLU) has norm 0; its gradient is finite, as in
    the PyTorch twin (sqrt's own gradient at 0 is inf and would make every gradient NaN)."""
    from convnext_pt.modeling import ConvNextV2GRN

    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 5, 6, 4)).astype(np.float32)
    x[:, :, :, 1] = 0.0
    w = rng.uniform(0.2, 1.0, (1, 1, 1, 4)).astype(np.float32)
    pt = ConvNextV2GRN(4)
    with torch.no_grad():
        pt.weight.copy_(torch.from_numpy(w))
        pt.bias.copy_(torch.from_numpy(w[..., ::-1].copy()))
    xt = torch.from_numpy(x).requires_grad_()
    (pt(xt) ** 2).sum().backward()
    grn = convnext_tf.TFConvNextV2GRN(4)
    grn.build((None, None, None, 4))
    grn.weight.assign(w)
    grn.bias.assign(w[..., ::-1].copy())
    if BACKEND == "jax":
        import jax

        grad = jax.grad(lambda a: (grn(a) ** 2).sum())(x)
    elif BACKEND == "torch":
        a = torch.from_numpy(x).requires_grad_()
        (grn(a) ** 2).sum().backward()
        grad = a.grad
    else:
        import tensorflow as tf

        a = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(a)
            loss = tf.reduce_sum(grn(a) ** 2)
        grad = tape.gradient(loss, a)
    grad = to_numpy(keras.ops.convert_to_numpy(grad))
    assert np.isfinite(grad).all()
    assert rel_err(grad, xt.grad.numpy()) <= 1e-5


# --- training -----------------------------------------------------------------------------------------
def _learnable_data(n: int = 32, size: int = 32, classes: int = 3):
    """Images whose class is the channel with the largest mean: a task a small ConvNeXt learns at once."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, classes, n)
    x = rng.standard_normal((n, 3, size, size)).astype(np.float32)
    x[np.arange(n), y] += 1.0
    return x, y.astype(np.int32)


@pytest.mark.parametrize("own_loss, data_format", [(True, "channels_first"), (False, "channels_last")],
                         ids=["own-loss-nchw", "keras-loss-nhwc"])
def test_fit_one_epoch_lowers_the_loss(own_loss, data_format):
    keras.utils.set_random_seed(0)
    config = ConvNextV2Config(depths=[1, 1], hidden_sizes=[16, 32], num_stages=2, num_labels=3, drop_path_rate=0.1)
    model = convnext_tf.TFConvNextV2ForImageClassification(config, data_format=data_format)
    x, y = _learnable_data()
    if data_format == "channels_last":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    loss = None if own_loss else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.AdamW(3e-3), loss=loss, metrics=None if own_loss else ["accuracy"])
    before = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)["loss"]
    history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    after = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)["loss"]
    assert np.isfinite(history.history["loss"][0])
    assert after < 0.9 * before, (BACKEND, before, after)


@pytest.mark.parametrize("policy, bound", [("mixed_bfloat16", 0.05), ("mixed_float16", 0.01)])
def test_mixed_precision_stays_close_to_float32(policy, bound, tmp_path):
    """Variables and norm statistics in float32, compute in the low dtype (README's bounds)."""
    config = ConvNextV2Config(depths=[1, 1, 1], hidden_sizes=[8, 16, 24], num_stages=3, num_labels=4)
    pt = convnext_tf_pt_pair(config, tmp_path)
    x = np.random.default_rng(4).standard_normal((2, 3, 48, 48)).astype(np.float32)
    with torch.no_grad():
        ref = pt(torch.from_numpy(x), output_hidden_states=True)
    model = convnext_tf.TFConvNextV2ForImageClassification.from_pretrained(tmp_path, dtype=policy)
    out = model(x, output_hidden_states=True, training=False)
    assert keras.backend.standardize_dtype(out.logits.dtype) == policy.split("_")[1]
    assert {keras.backend.standardize_dtype(v.dtype) for v in model.weights} == {"float32"}
    ours = {k: v.astype(np.float32) for k, v in named_outputs(out).items()}
    assert_outputs_equal(ours, named_outputs(ref), policy, tol=bound)


def convnext_pt_model(config, seed: int = 21):
    """A PyTorch twin classifier with every parameter re-drawn."""
    pt = pt_class(config, "ForImageClassification")(config).eval()
    redraw_(pt, seed=seed)
    return pt


def convnext_tf_pt_pair(config, folder: Path):
    """A re-drawn PyTorch twin, saved to ``folder`` for the Keras twin to load."""
    pt = convnext_pt_model(config)
    pt.save_pretrained(folder)
    return pt


# --- the JAX fast path -----------------------------------------------------------------------------------
def _depthwise(channels: int = 12, kernel: int = 7, **kwargs):
    layer = keras.layers.DepthwiseConv2D(kernel, **{"padding": "same", **kwargs})
    layer.build((None, None, None, channels))
    rng = np.random.default_rng(kernel)
    for v in layer.weights:
        v.assign(rng.standard_normal(v.shape).astype(np.float32))
    return layer


@pytest.mark.parametrize("kernel", [7, 4, 3])
def test_depthwise_fast_form_equals_keras_layer(kernel):
    """fused.depthwise_conv equals Keras' DepthwiseConv2D within 1e-5 (odd and even kernels, odd
    sizes), forward and backward, on every backend (it is the layer's own call off JAX)."""
    layer = _depthwise(kernel=kernel)
    x = np.random.default_rng(0).standard_normal((2, 11, 9, 12)).astype(np.float32)
    ref = to_numpy(keras.ops.convert_to_numpy(layer(x)))
    ours = to_numpy(keras.ops.convert_to_numpy(fused.depthwise_conv(layer, x)))
    assert rel_err(ours, ref) <= 1e-5
    if BACKEND == "jax":  # the gradients (its own VJP) for the input, the kernel and the bias
        import jax
        import jax.numpy as jnp

        weights = jnp.asarray(np.random.default_rng(1).standard_normal(ref.shape).astype(np.float32))

        def plain(a, k, b):  # Keras' own depthwise convolution
            return keras.ops.depthwise_conv(a, k, strides=1, padding="same") + b

        args = (jnp.asarray(x), jnp.asarray(layer.kernel.value), jnp.asarray(layer.bias.value))
        grads = [jax.grad(lambda *a, f=f: jnp.sum(jnp.sin(f(*a)) * weights), argnums=(0, 1, 2))(*args)
                 for f in (plain, fused._jitted_shifted_sum())]
        for name, ours, theirs in zip(("input", "kernel", "bias"), grads[1], grads[0]):
            assert rel_err(np.asarray(ours), np.asarray(theirs)) <= 1e-5, name


def test_depthwise_fast_form_only_for_the_plain_layer():
    """Anything but a plain stride-1 "same" DepthwiseConv2D runs as the layer itself."""
    assert fused._is_plain_depthwise(_depthwise())

    class Shifted(keras.layers.DepthwiseConv2D):
        def call(self, inputs):
            return super().call(inputs) + 1.0

    changed = [_depthwise(strides=2), _depthwise(dilation_rate=2), _depthwise(depth_multiplier=2),
               _depthwise(activation="relu"), _depthwise(padding="valid")]
    for layer in changed:
        assert not fused._is_plain_depthwise(layer), layer.get_config()
    shifted = Shifted(7, padding="same")
    shifted.build((None, None, None, 12))
    assert not fused._is_plain_depthwise(shifted)
    x = np.zeros((1, 9, 9, 12), np.float32)
    np.testing.assert_allclose(to_numpy(keras.ops.convert_to_numpy(fused.depthwise_conv(shifted, x))), 1.0)


def test_model_output_follows_a_replaced_depthwise_layer():
    """A block's dwconv replaced by the user is what runs (not the fast path's formula)."""
    config = ConvNextConfig(depths=[1], hidden_sizes=[8], num_stages=1, num_labels=2)
    pt = convnext_pt_model(config)
    model = keras_twin(pt)
    x = np.random.default_rng(5).standard_normal((1, 3, 32, 32)).astype(np.float32)
    before = to_numpy(keras.ops.convert_to_numpy(model(x).logits))
    with torch.no_grad():
        ref = pt(torch.from_numpy(x)).logits.numpy()
    assert rel_err(before, ref) <= TOL
    block = model.convnext.encoder.stages[0].layers[0]
    replacement = keras.layers.DepthwiseConv2D(7, padding="same", depthwise_initializer="ones", name="dwconv")
    replacement.build((None, None, None, 8))
    block._tracker.unlock()  # Keras locks a built layer's state; replacing a sub-layer needs this
    block.dwconv = replacement
    block._tracker.lock()
    with torch.no_grad():
        pt.convnext.encoder.stages[0].layers[0].dwconv.weight.fill_(1.0)
        pt.convnext.encoder.stages[0].layers[0].dwconv.bias.zero_()
        ref = pt(torch.from_numpy(x)).logits.numpy()
    after = to_numpy(keras.ops.convert_to_numpy(model(x).logits))
    assert rel_err(after, ref) <= TOL and rel_err(after, before) > 1e-3


# --- the PyTorch backend's fused Dense + activation --------------------------------------------------------
def _no_grad():
    return torch.no_grad()  # what predict() runs under on the PyTorch backend; a no-op elsewhere


def _dense(units: int = 24, inputs: int = 16, **kwargs):
    dense = keras.layers.Dense(units, **kwargs)
    dense.build((None, inputs))
    rng = np.random.default_rng(units)
    for v in dense.weights:
        v.assign(rng.standard_normal(v.shape).astype(np.float32))
    return dense


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "relu", "silu", "quick_gelu", None])
def test_linear_act_fast_form_equals_the_layers(act):
    from convnext_tf.activations import get_activation

    dense, layer = _dense(), get_activation(act) if act else None
    x = keras.ops.convert_to_tensor(np.random.default_rng(2).standard_normal((37, 16)).astype(np.float32))
    with _no_grad():
        ref = dense(x) if layer is None else layer(dense(x))
        ours = fused.linear_act(dense, layer, x)
        fast = fused._torch_post_op(dense, layer, x) if BACKEND == "torch" else None
    assert rel_err(to_numpy(keras.ops.convert_to_numpy(ours)), to_numpy(keras.ops.convert_to_numpy(ref))) <= 1e-5
    if BACKEND == "torch":  # taken for the activations oneDNN has, and only without gradients
        assert (fast is not None) == (act != "quick_gelu")
        assert fused._torch_post_op(dense, layer, x) is None


def test_linear_act_runs_a_lora_or_subclassed_dense_as_itself():
    x = keras.ops.convert_to_tensor(np.random.default_rng(3).standard_normal((5, 16)).astype(np.float32))
    dense = _dense()
    plain = to_numpy(keras.ops.convert_to_numpy(dense(x)))
    dense.enable_lora(2)
    dense.lora_kernel_b.assign(np.ones(dense.lora_kernel_b.shape, np.float32))
    with _no_grad():
        ours = to_numpy(keras.ops.convert_to_numpy(fused.linear_act(dense, None, x)))
        ref = to_numpy(keras.ops.convert_to_numpy(dense(x)))
    assert rel_err(ours, ref) <= 1e-6 and rel_err(ours, plain) > 1e-3

    class Doubled(keras.layers.Dense):
        def call(self, inputs):
            return 2.0 * super().call(inputs)

    doubled = Doubled(24)
    doubled.build((None, 16))
    with _no_grad():
        ours = to_numpy(keras.ops.convert_to_numpy(fused.linear_act(doubled, None, x)))
        ref = to_numpy(keras.ops.convert_to_numpy(doubled(x)))
    assert rel_err(ours, ref) <= 1e-6


def test_fast_paths_step_aside_for_an_instance_whose_call_was_replaced():
    """A library or a user patching one layer's ``call`` (not its class) is honoured: the Dense's and
    the depthwise conv's own call runs, as in a plain Keras model."""
    x = keras.ops.convert_to_tensor(np.random.default_rng(4).standard_normal((5, 16)).astype(np.float32))
    dense = _dense()
    plain_call = dense.call
    dense.call = lambda inputs, *a, **k: 3.0 * plain_call(inputs, *a, **k)
    with _no_grad():
        ours = to_numpy(keras.ops.convert_to_numpy(fused.linear_act(dense, None, x)))
    ref = 3.0 * (to_numpy(keras.ops.convert_to_numpy(x)) @ to_numpy(keras.ops.convert_to_numpy(dense.kernel))
                 + to_numpy(keras.ops.convert_to_numpy(dense.bias)))
    assert rel_err(ours, ref) <= 1e-5

    depthwise = _depthwise()
    depthwise_call = depthwise.call
    depthwise.call = lambda inputs, *a, **k: depthwise_call(inputs, *a, **k) + 1.0
    assert not fused._is_plain_depthwise(depthwise)
    images = np.zeros((1, 9, 9, 12), np.float32)
    out = to_numpy(keras.ops.convert_to_numpy(fused.depthwise_conv(depthwise, images)))
    expected = np.broadcast_to(1.0 + to_numpy(keras.ops.convert_to_numpy(depthwise.bias)), out.shape)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


# --- files between backends, export ----------------------------------------------------------------------
CROSS_CONFIG = dict(depths=[1, 2], hidden_sizes=[8, 16], num_stages=2, num_labels=3)


def write_cross_backend_files(folder: Path) -> None:
    """A re-drawn V2 classifier from the PyTorch twin, as the Keras twin on this backend writes it
    (``hub/`` with tf_model.h5, ``model.keras``), with the input and the PyTorch twin's logits."""
    config = ConvNextV2Config(**CROSS_CONFIG)
    pt = convnext_tf_pt_pair(config, folder / "pt")
    model = keras_twin(pt)
    x = np.random.default_rng(6).standard_normal((2, 3, 40, 44)).astype(np.float32)
    with torch.no_grad():
        logits = pt(torch.from_numpy(x)).logits.numpy()
    model.save_pretrained(folder / "hub")
    model.save(folder / "model.keras")
    np.savez(folder / "reference.npz", x=x, logits=logits)
    (folder / "backend.json").write_text(json.dumps({"backend": BACKEND}))


def check_cross_backend_files(folder: Path) -> None:
    """What :func:`write_cross_backend_files` wrote (on any backend) loads here with the same logits."""
    ref = np.load(folder / "reference.npz")
    hub = convnext_tf.TFConvNextV2ForImageClassification.from_pretrained(folder / "hub")
    native = keras.models.load_model(folder / "model.keras")
    assert type(native) is convnext_tf.TFConvNextV2ForImageClassification
    for model in (hub, native):
        logits = to_numpy(keras.ops.convert_to_numpy(model(ref["x"], training=False).logits))
        assert rel_err(logits, ref["logits"]) <= TOL


def test_files_move_between_backends(tmp_path):
    """tf_model.h5 and .keras written on another backend (the parent process's, when it set
    CONVNEXT_FOREIGN_DIR; else this one's) load here, and this backend's files go to
    CONVNEXT_OUT_DIR for the parent to load."""
    foreign = os.environ.get("CONVNEXT_FOREIGN_DIR")
    if foreign is None:
        write_cross_backend_files(tmp_path)
    check_cross_backend_files(Path(foreign) if foreign else tmp_path)
    if os.environ.get("CONVNEXT_OUT_DIR"):
        write_cross_backend_files(Path(os.environ["CONVNEXT_OUT_DIR"]))


def test_export_names_the_backend_it_needs(tmp_path):
    config = ConvNextConfig(depths=[1], hidden_sizes=[8], num_stages=1, num_labels=2)
    model = convnext_tf.TFConvNextForImageClassification(config)
    if BACKEND == "tensorflow":
        model.export(tmp_path / "sm")
        assert (tmp_path / "sm" / "saved_model.pb").is_file()
    else:
        with pytest.raises(RuntimeError, match=f"KERAS_BACKEND=tensorflow.*'{BACKEND}'"):
            model.export(tmp_path / "sm")
        assert not (tmp_path / "sm").exists()


# --- DINOv3's ConvNeXt against transformers' outputs (tests/fixtures/dinov3-convnext) ------------------
DINOV3 = REPO / "tests" / "fixtures" / "dinov3-convnext"


def _dinov3_check(model, folder: str, data_format: str) -> None:
    from helpers import outputs_by_name

    ref = dict(np.load(DINOV3 / folder / "expected.npz"))
    channels_last = data_format == "channels_last"
    for suffix in ("", "_odd"):
        x = ref["pixel_values" + suffix]
        out = model(x.transpose(0, 2, 3, 1) if channels_last else x, output_hidden_states=True, training=False)
        ours = outputs_by_name(out, channels_last=channels_last)
        want = {k[:len(k) - len(suffix)] if suffix else k: v for k, v in ref.items()
                if not k.startswith("pixel_values") and k.endswith(suffix) and (suffix or not k.endswith("_odd"))}
        assert_outputs_equal(ours, want, f"{folder}{suffix}/{data_format}")


# Every size on TensorFlow; JAX and torch run Keras eagerly, compiling op by op, which makes the
# 27-block sizes long there: tiny and small cover both layouts and the epsilon on those backends.
DINOV3_CASES = [(size, data_format) if size in ("tiny", "small") else
                pytest.param(size, data_format, marks=pytest.mark.slow) for size, data_format in [
    ("tiny", "channels_first"), ("small", "channels_last"), ("base", "channels_first"), ("large", "channels_last")]
    if BACKEND == "tensorflow" or size in ("tiny", "small")]


@pytest.mark.parametrize("size, data_format", DINOV3_CASES)
def test_dinov3_folder_gives_transformers_outputs(size, data_format):
    model, info = convnext_tf.TFAutoModel.from_pretrained(DINOV3 / size, data_format=data_format,
                                                          output_loading_info=True)
    assert type(model) is convnext_tf.TFDINOv3ConvNextModel
    assert info == {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
    _dinov3_check(model, size, data_format)


def test_dinov3_backbone_and_files_as_transformers(tmp_path):
    from convnext_common.checkpoints.formats.safetensors import stream_safetensors

    backbone = convnext_tf.TFAutoBackbone.from_pretrained(DINOV3 / "tiny-backbone")
    assert type(backbone) is convnext_tf.TFDINOv3ConvNextBackbone and backbone.channels == [3, 12, 48]
    _dinov3_check(backbone, "tiny-backbone", "channels_first")
    model = convnext_tf.TFDINOv3ConvNextModel.from_pretrained(DINOV3 / "tiny")
    model.save_pretrained(tmp_path)  # model.safetensors with transformers' names: transformers reads it
    assert set(stream_safetensors(tmp_path / "model.safetensors")) == set(
        stream_safetensors(DINOV3 / "tiny" / "model.safetensors"))
    _dinov3_check(convnext_tf.TFAutoModel.from_pretrained(tmp_path), "tiny", "channels_first")
    reloaded = keras.saving.load_model(_keras_file(model, tmp_path))
    assert type(reloaded) is convnext_tf.TFDINOv3ConvNextModel
    _dinov3_check(reloaded, "tiny", "channels_first")


def _keras_file(model, folder: Path) -> Path:
    path = folder / "dinov3.keras"
    model.save(path)
    return path


@pytest.mark.parametrize("policy, bound", [("mixed_bfloat16", 0.05), ("mixed_float16", 0.01)][
    :2 if BACKEND == "tensorflow" else 1])
def test_dinov3_mixed_precision_stays_close_to_float32(policy, bound):
    ref = dict(np.load(DINOV3 / "tiny" / "expected.npz"))
    model = convnext_tf.TFDINOv3ConvNextModel.from_pretrained(DINOV3 / "tiny", dtype=policy)
    out = model(ref["pixel_values"], training=False)
    assert keras.backend.standardize_dtype(out.last_hidden_state.dtype) == policy.split("_")[1]
    for name in ("last_hidden_state", "pooler_output"):
        ours = np.asarray(keras.ops.convert_to_numpy(getattr(out, name))).astype(np.float32)
        err = rel_err(ours, ref[name])
        assert err <= bound, f"{name} rel {err:.3g} under {policy} on {BACKEND}"


def test_dinov3_zero_layer_scale_keeps_gamma_as_transformers():
    config = convnext_tf.DINOv3ConvNextConfig(depths=[1, 1], hidden_sizes=[8, 16], layer_scale_init_value=0.0)
    state = convnext_tf.TFDINOv3ConvNextModel(config).numpy_state_dict()
    gammas = {k: v for k, v in state.items() if k.endswith(".gamma")}
    assert len(gammas) == 2 and all(float(np.abs(v).max()) == 0.0 for v in gammas.values())
# --- Keras' own ways of using a model ---------------------------------------------------------------
KERAS_CONFIG = dict(depths=[1, 1], hidden_sizes=[8, 16], num_stages=2, num_labels=3, layer_scale_init_value=0.5)


def _numpy(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


def test_classifier_is_the_last_layer_of_a_sequential_and_of_a_functional_graph():
    """In a Sequential after RandomFlip and Rescaling, trained with a Keras loss and metric, and in a
    functional graph with Softmax after it, the model gives its logits (the same as its own
    transformers-style call, which still returns the output container)."""
    from convnext_common.outputs import ImageClassifierOutputWithNoAttention

    clf = convnext_tf.TFConvNextForImageClassification(ConvNextConfig(**KERAS_CONFIG), data_format="channels_last")
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (8, 32, 32, 3)).astype("float32")
    labels = np.arange(8) % 3
    seq = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.RandomFlip(), keras.layers.Rescaling(1 / 255.0), clf])
    seq.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
    history = seq.fit(images, labels, epochs=1, batch_size=4, verbose=0).history
    assert np.isfinite(history["loss"][0]) and 0.0 <= history["accuracy"][0] <= 1.0
    own = clf(images / 255.0, training=False)
    assert isinstance(own, ImageClassifierOutputWithNoAttention)
    logits = _numpy(own.logits)
    assert rel_err(_numpy(seq.predict(images, verbose=0)), logits) <= 1e-5  # RandomFlip is off in inference
    inputs = keras.Input((32, 32, 3))
    probabilities = keras.layers.Softmax()(clf(keras.layers.Rescaling(1 / 255.0)(inputs)))
    graph = keras.Model(inputs, probabilities)
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    assert rel_err(_numpy(graph(images)), expected) <= 1e-5
    assert len(clf(images, return_dict=False)) == 1  # tuple access as in transformers


def test_summary_shows_output_shapes_and_expands_nested_models():
    config = ConvNextConfig(depths=[1, 1], hidden_sizes=[8, 16], num_stages=2, out_features=["stem", "stage2"])
    backbone = convnext_tf.TFConvNextBackbone(config)
    shapes = backbone.compute_output_shape((2, 3, 64, 64))["feature_maps"]
    maps = backbone(np.zeros((2, 3, 64, 64), "float32")).feature_maps
    assert [tuple(s) for s in shapes] == [tuple(m.shape) for m in maps] == [(2, 8, 16, 16), (2, 16, 8, 8)]
    clf = convnext_tf.TFConvNextForImageClassification(ConvNextConfig(**KERAS_CONFIG))
    lines = []
    clf.summary(expand_nested=True, print_fn=lambda line, **_: lines.append(line))
    text = "\n".join(lines)
    assert "?" not in text and "(None, 3)" in text and "pooler_output" in text and "encoder" in text


def test_quantized_models_save_and_load(tmp_path):
    """.keras keeps every quantization mode exactly; save_pretrained writes int8 as float weights that
    from_pretrained quantizes to the same int8 kernels; int4 and float8 are refused in one line."""
    config = ConvNextConfig(**KERAS_CONFIG)
    x = np.random.default_rng(4).standard_normal((2, 3, 32, 32)).astype("float32")
    for mode in ("int8", "int4", "float8"):
        model = convnext_tf.TFConvNextForImageClassification(config)
        model.quantize(mode)
        logits = _numpy(model(x).logits)
        model.save(tmp_path / f"{mode}.keras")
        loaded = keras.models.load_model(tmp_path / f"{mode}.keras")
        block = loaded.convnext.encoder.stages[0].layers[0]
        assert block.pwconv1.quantization_mode == mode and loaded.classifier.quantization_mode == mode
        np.testing.assert_array_equal(_numpy(loaded(x).logits), logits)
        if mode != "int8":
            with pytest.raises(ValueError, match=f"cannot keep .*{mode}.*model.keras") as info:
                model.save_pretrained(tmp_path / f"{mode}-hub")
            assert "\n" not in str(info.value) and not (tmp_path / f"{mode}-hub").exists()
            continue
        model.save_pretrained(tmp_path / "int8-hub")
        assert "keras_quantization" in json.loads((tmp_path / "int8-hub" / "config.json").read_text())
        hub = convnext_tf.TFConvNextForImageClassification.from_pretrained(tmp_path / "int8-hub")
        original = model.convnext.encoder.stages[1].layers[0].pwconv2
        reloaded = hub.convnext.encoder.stages[1].layers[0].pwconv2
        np.testing.assert_array_equal(_numpy(reloaded._kernel), _numpy(original._kernel))
        assert rel_err(_numpy(hub(x).logits), logits) <= 1e-5


def test_lora_adapts_the_blocks_and_saves_merged(tmp_path):
    config = ConvNextConfig(**KERAS_CONFIG)
    model = convnext_tf.TFConvNextForImageClassification(config)
    model.enable_lora(2)
    trainable = {v.path.split("/")[-1] for v in model.trainable_variables}
    assert trainable == {"lora_kernel_a", "lora_kernel_b", "bias", "kernel"}  # kernel: the head's only
    assert all("pwconv" in v.path or "classifier" in v.path for v in model.trainable_variables)
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((8, 3, 32, 32)).astype("float32"), np.arange(8) % 3
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    dense = model.convnext.encoder.stages[0].layers[0].pwconv1
    delta = _numpy(dense.lora_kernel_a) @ _numpy(dense.lora_kernel_b) * (dense.lora_alpha / dense.lora_rank)
    assert np.abs(delta).max() > 0
    logits = _numpy(model(x).logits)
    model.save(tmp_path / "lora.keras")
    loaded = keras.models.load_model(tmp_path / "lora.keras")
    assert loaded.convnext.encoder.stages[0].layers[0].pwconv1.lora_enabled
    assert rel_err(_numpy(loaded(x).logits), logits) <= 1e-5
    model.save_pretrained(tmp_path / "hub")
    hub = convnext_tf.TFConvNextForImageClassification.from_pretrained(tmp_path / "hub")
    merged = _numpy(dense._kernel) + delta  # Keras' LoRA: kernel + A @ B * alpha / rank
    np.testing.assert_allclose(_numpy(hub.convnext.encoder.stages[0].layers[0].pwconv1.kernel), merged, atol=1e-6)
    assert rel_err(_numpy(hub(x).logits), logits) <= 1e-5


def test_keras_files_leave_the_compiler_to_the_backend_that_loads_them(tmp_path):
    """compile(jit_compile=True) is recorded as "auto" and resolved again where the file is loaded."""
    import zipfile

    model = convnext_tf.TFConvNextForImageClassification(ConvNextConfig(**KERAS_CONFIG))
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=True)
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as archive:
        saved = json.loads(archive.read("config.json"))
    assert saved["compile_config"]["jit_compile"] == "auto"
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.jit_compile == loaded._resolve_auto_jit_compile()
    if BACKEND == "torch":
        assert loaded.jit_compile is False  # no torch.compile from a file written where XLA is the default


def test_cli_keras_paths_run_on_this_backend(tmp_path, capsys):
    """train --framework tf (with curves.png), predict and evaluate --framework tf on this backend;
    a SavedModel export runs itself on TensorFlow."""
    from PIL import Image

    from convnext_app import cli
    from convnext_common.processing import ConvNextImageProcessor

    rng = np.random.default_rng(7)
    data = tmp_path / "data"
    for c, name in enumerate(("dark", "light")):
        (data / name).mkdir(parents=True)
        for k in range(6):
            pixels = rng.integers(0, 128, (36, 36, 3)) + 127 * c
            Image.fromarray(pixels.astype("uint8")).save(data / name / f"{k}.png")
    start = tmp_path / "start"
    convnext_tf.TFConvNextForImageClassification(ConvNextConfig(**{**KERAS_CONFIG, "image_size": 32})).save_pretrained(start)
    ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0).save_pretrained(start)
    out = tmp_path / "out"
    assert cli.main(["train", "--framework", "tf", "--data", str(data), "--model", str(start), "--out", str(out),
                     "--epochs", "1", "--batch-size", "4", "--quiet", "--val-fraction", "0.34"]) == 0
    assert {"config.json", "tf_model.h5", "metrics.json", "curves.png"} <= {p.name for p in out.iterdir()}
    capsys.readouterr()
    assert cli.main(["predict", str(data / "dark"), "--model", str(out), "--framework", "tf", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert len(results) == 6
    assert cli.main(["evaluate", "--data", str(data), "--model", str(out), "--framework", "tf"]) == 0
    capsys.readouterr()
    code = cli.main(["export", "--model", str(out), "--format", "savedmodel", "--out", str(tmp_path / "sm"), "--quiet"])
    assert code == 0 and (tmp_path / "sm" / "saved_model.pb").is_file()
    if BACKEND != "tensorflow":
        assert "KERAS_BACKEND=tensorflow convnext export" in capsys.readouterr().err


@pytest.mark.parametrize("settings, size", [
    ({"size": {"shortest_edge": 64}}, (64, 64)),                                     # resize to 73, centre crop
    ({"size": {"shortest_edge": 48}, "crop_pct": 0.9, "resample": 2}, (48, 60)),     # bilinear, not square
    ({"size": {"shortest_edge": 384}}, (200, 200)),                                   # warped to 384 x 384
])
def test_preprocessing_layer_gives_the_processors_numbers(settings, size, tmp_path):
    """uint8 images of one size through the layer equal the PIL processor's pixel values (exact in
    float64; JAX sums in float32, where a pixel may be one level off: the fast processor's bound);
    a model behind it gives the logits of the model on the processor's output, also after .keras."""
    from convnext_common import ConvNextImageProcessor
    from convnext_tf.preprocessing import TFConvNextImagePreprocessing

    processor = ConvNextImageProcessor(**settings)
    images = np.random.default_rng(8).integers(0, 256, (2, *size, 3)).astype("uint8")
    ref = processor(list(images), return_tensors="np")["pixel_values"]
    ours = _numpy(TFConvNextImagePreprocessing.from_processor(processor, size)(images))
    assert ours.shape == ref.shape
    if BACKEND == "jax":
        assert np.abs(ours - ref).max() <= 0.05 and np.abs(ours - ref).mean() <= 0.005
    else:
        np.testing.assert_allclose(ours, ref, atol=1e-6)
    if settings["size"]["shortest_edge"] != 64:
        return
    model = convnext_tf.TFConvNextForImageClassification(ConvNextConfig(**{**KERAS_CONFIG, "image_size": 64}))
    on_pixels = model.with_preprocessing(processor=processor)
    logits = _numpy(on_pixels(images))
    assert rel_err(logits, _numpy(model(ref, training=False).logits)) <= (1e-2 if BACKEND == "jax" else 1e-5)
    on_pixels.save(tmp_path / "on_pixels.keras")
    assert rel_err(_numpy(keras.models.load_model(tmp_path / "on_pixels.keras")(images)), logits) <= 1e-6

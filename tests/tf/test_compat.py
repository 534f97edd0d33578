"""The Keras twin under the tools Keras users apply to a model: LoRA (``enable_lora``), ``quantize``,
the functional API, ``trainable``, dtype policies and layer replacement, before and after the
model has been called; and a clear error on another Keras backend.

Each modification must take effect on the next call at every input shape, whatever the model ran
before. References: the PyTorch twin with the same change (an independent implementation), or a
fresh Keras model that was given the change before its first call.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import rel_err
from convnext_pt import ConvNextForImageClassification
from helpers import redraw_, tiny_config as config

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
from convnext_tf import TFConvNextBackbone, TFConvNextForImageClassification, TFConvNextModel  # noqa: E402

pytestmark = pytest.mark.tf
TOL = 1e-5
SHAPES = [(2, 3, 64, 64), (1, 3, 70, 90)]


def pt_and_tf(**kw):
    pt = ConvNextForImageClassification(config(**kw)).eval()
    redraw_(pt, seed=4)
    model = TFConvNextForImageClassification(pt.config)
    model.load_numpy_state_dict(pt.numpy_state_dict())
    return pt, model


def pixels(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def pt_logits(pt, x):
    with torch.no_grad():
        return pt(torch.from_numpy(x)).logits.numpy()


def tf_block(model, stage: int, layer: int = 0):
    return model.convnext.encoder.stages[stage].layers[layer]


def run_at_every_shape(model):
    return [np.asarray(model(pixels(s), training=False).logits) for s in SHAPES]


def test_enable_lora_after_calls_takes_effect_at_every_shape():
    pt, model = pt_and_tf()
    before = run_at_every_shape(model)  # the model has run at both shapes
    dense = tf_block(model, 2, 1).pwconv1
    dense.enable_lora(4)
    rng = np.random.default_rng(1)
    dense.lora_kernel_a.assign(rng.standard_normal(dense.lora_kernel_a.shape).astype("float32") * 0.3)
    dense.lora_kernel_b.assign(rng.standard_normal(dense.lora_kernel_b.shape).astype("float32") * 0.3)
    merged = np.asarray(dense._kernel) + (dense.lora_alpha / dense.lora_rank) * (
        np.asarray(dense.lora_kernel_a) @ np.asarray(dense.lora_kernel_b))
    with torch.no_grad():  # the same adapted weight in the PyTorch twin: (out, in) = kernel.T
        pt.convnext.encoder.stages[2].layers[1].pwconv1.weight.copy_(torch.from_numpy(merged.T))
    for shape, old in zip(SHAPES + [(1, 3, 96, 64)], before + [None]):
        x = pixels(shape)
        out = np.asarray(model(x, training=False).logits)
        assert rel_err(out, pt_logits(pt, x)) <= TOL
        if old is not None:
            assert rel_err(out, old) > 1e-3  # the adapter changed what the same input gives


def test_quantize_right_after_from_pretrained(tmp_path):
    _, model = pt_and_tf()
    model.save_pretrained(tmp_path)
    loaded = TFConvNextForImageClassification.from_pretrained(tmp_path)
    x = pixels(SHAPES[0])
    fp32 = np.asarray(loaded(x, training=False).logits)  # called before quantizing: no stale graph after
    with pytest.warns(UserWarning):  # Keras' own note on layers without int8 kernels (as for keras.applications)
        loaded.quantize("int8")
    assert loaded.convnext.encoder.stages[0].layers[0].pwconv1.quantization_mode == "int8"
    fresh = TFConvNextForImageClassification.from_pretrained(tmp_path)
    with pytest.warns(UserWarning):
        fresh.quantize("int8")
    out = np.asarray(loaded(x, training=False).logits)
    assert rel_err(out, np.asarray(fresh(x, training=False).logits)) <= TOL
    assert 1e-5 < rel_err(out, fp32) < 0.1  # int8: near float32, but quantized


def test_layer_replacement_and_dtype_policy_take_effect_after_calls():
    pt, model = pt_and_tf()
    run_at_every_shape(model)
    tf_block(model, 1).act.activation = keras.activations.tanh  # a public attribute of the layer
    pt.convnext.encoder.stages[1].layers[0].act = torch.nn.Tanh()
    block = tf_block(model, 2)
    block._tracker.unlock()  # Keras locks a built layer's state; replacing a sub-layer needs this
    block.act = keras.layers.Activation("sigmoid", name="act")
    block._tracker.lock()
    pt.convnext.encoder.stages[2].layers[0].act = torch.nn.Sigmoid()
    for shape in SHAPES:
        x = pixels(shape)
        assert rel_err(np.asarray(model(x, training=False).logits), pt_logits(pt, x)) <= TOL

    _, reference = pt_and_tf()
    tf_block(reference, 1).act.activation = keras.activations.tanh
    tf_block(reference, 2).act.activation = keras.activations.sigmoid
    for m in (model, reference):
        tf_block(m, 3).pwconv2.dtype_policy = keras.dtype_policies.DTypePolicy("mixed_bfloat16")
    x = pixels(SHAPES[1])
    out = np.asarray(model(x, training=False).logits)
    assert rel_err(out, np.asarray(reference(x, training=False).logits)) <= TOL
    assert rel_err(out, pt_logits(pt, x)) > 1e-4  # bfloat16 matmul in one layer: not float32 any more


def test_functional_api_transfer_learning():
    base = TFConvNextModel(config())
    inputs = keras.Input((3, None, None))
    features = base(inputs).pooler_output
    outputs = keras.layers.Dense(4, name="head")(features)
    model = keras.Model(inputs, outputs)
    x = pixels(SHAPES[0])
    expected = model.get_layer("head")(base(x).pooler_output)
    assert rel_err(model.predict(x, verbose=0), expected) <= TOL

    base.trainable = False
    trunk = [np.asarray(w).copy() for w in base.weights]
    head = np.asarray(model.get_layer("head").kernel).copy()
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(np.concatenate([x, x]), np.ones((4, 4), "float32"), epochs=1, batch_size=2, verbose=0)
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(trunk, base.weights))
    assert not np.array_equal(head, np.asarray(model.get_layer("head").kernel))


def test_functional_api_backbone_feature_maps():
    backbone = TFConvNextBackbone(config(out_features=["stage2", "stage4"]))
    inputs = keras.Input((3, 64, 64))
    maps = backbone(inputs).feature_maps
    model = keras.Model(inputs, [keras.layers.GlobalAveragePooling2D(data_format="channels_first")(m) for m in maps])
    x = pixels(SHAPES[0])
    pooled = model.predict(x, verbose=0)
    for p, m in zip(pooled, backbone(x).feature_maps):
        assert rel_err(p, np.asarray(m).mean(axis=(2, 3))) <= TOL


def test_trainable_false_on_the_trunk_keeps_it_fixed_in_fit():
    _, model = pt_and_tf()
    model.convnext.trainable = False
    trunk = [np.asarray(w).copy() for w in model.convnext.weights]
    head = np.asarray(model.classifier.kernel).copy()
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.fit(pixels((4, 3, 32, 32)), np.array([0, 1, 2, 3]), epochs=1, batch_size=2, verbose=0)
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(trunk, model.convnext.weights))
    assert not np.array_equal(head, np.asarray(model.classifier.kernel))


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_keras_backend_imports_without_tensorflow(backend):
    """The twin runs on every Keras backend (tests/tf/test_backends_run.py); elsewhere than on
    TensorFlow's, importing it loads no TensorFlow."""
    pytest.importorskip(backend)
    env = {**os.environ, "KERAS_BACKEND": backend}
    code = "import sys, keras, convnext_tf; print(keras.backend.backend(), 'tensorflow' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == [backend, "False"]


def test_eager_calls_at_many_shapes_log_no_retracing(caplog):
    # a newcomer's first calls print nothing: no traced graph per block, so nothing to retrace
    _, model = pt_and_tf()
    with caplog.at_level("WARNING", logger="tensorflow"):
        for side in (32, 40, 48, 56, 64, 72):
            model(pixels((1, 3, side, side + 8)), training=False)
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]

"""The Keras twin as a Keras model: .keras files, SavedModel export, fit on CPU, dtype policies,
and hub-folder options (new heads, loading info)."""

import json

import shutil

import numpy as np
import pytest
import torch

from conftest import rel_err
from convnext_common import ConvNextConfig, ConvNextV2Config
from convnext_common.checkpoints.errors import CheckpointError
from helpers import redraw_

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
convnext_tf = pytest.importorskip("convnext_tf")
import convnext_pt  # noqa: E402

pytestmark = pytest.mark.tf


def small_pair(task="ForImageClassification", v2=False, **kw):
    """A re-drawn PyTorch model and its Keras twin with the same weights."""
    config_cls = ConvNextV2Config if v2 else ConvNextConfig
    config = config_cls(**{"depths": [1, 1], "hidden_sizes": [8, 16], "num_stages": 2, "num_labels": 3, **kw})
    name = ("ConvNextV2" if v2 else "ConvNext") + task
    pt = getattr(convnext_pt, name)(config).eval()
    redraw_(pt, seed=11)
    model = getattr(convnext_tf, "TF" + name)(config)
    model.load_numpy_state_dict(pt.numpy_state_dict())
    return pt, model


def pixels(n=2, c=3, h=32, w=40, seed=0):
    return np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(np.float32)


@pytest.mark.parametrize("task, v2", [("ForImageClassification", False), ("Backbone", True)])
def test_keras_file_round_trip(task, v2, tmp_path):
    kw = {"out_features": ["stem", "stage2"]} if task == "Backbone" else {}
    _, model = small_pair(task, v2=v2, **kw)
    x = pixels()
    before = model(x, training=False)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded) is type(model) and loaded.config == model.config and loaded.data_format == model.data_format
    after = loaded(x, training=False)
    main = "logits" if task == "ForImageClassification" else "feature_maps"
    for a, b in zip(tf.nest.flatten(getattr(before, main)), tf.nest.flatten(getattr(after, main))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    ours, theirs = model.numpy_state_dict(), loaded.numpy_state_dict()
    assert all(np.array_equal(ours[k], theirs[k]) for k in ours)


def test_saved_model_serves_logits_from_nchw_float32(tmp_path):
    pt, model = small_pair()
    model.export(str(tmp_path / "sm"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "sm"))
    for x in (pixels(2, h=32, w=40), pixels(1, h=45, w=37, seed=1)):  # any batch and size
        with torch.no_grad():
            ref = pt(torch.from_numpy(x)).logits.numpy()
        out = served.serve(tf.constant(x))
        assert rel_err(out["logits"].numpy(), ref) <= 1e-4
        sig = served.signatures["serving_default"](pixel_values=tf.constant(x))
        assert rel_err(sig["logits"].numpy(), ref) <= 1e-4


@pytest.mark.parametrize("own_loss, v2", [(True, False), (False, True)])
def test_fit_trains_on_cpu_and_lowers_the_loss(own_loss, v2):
    _, model = small_pair(v2=v2, drop_path_rate=0.1, num_labels=3)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((16, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    if own_loss:  # compile without a loss: the model's own (transformers' TF behaviour)
        model.compile(optimizer=keras.optimizers.Adam(3e-3))
    else:
        model.compile(optimizer=keras.optimizers.Adam(3e-3),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    before = float(model(x, labels=y, training=False).loss)
    history = model.fit(x, y, batch_size=8, epochs=4, shuffle=False, verbose=0).history
    after = float(model(x, labels=y, training=False).loss)
    assert np.isfinite(history["loss"]).all()
    assert after < before
    assert model.predict(x, verbose=0).shape == (16, 3)  # predict gives logits


def test_mixed_precision_keeps_norm_statistics_in_float32(fixtures_dir, inputs):
    folder = fixtures_dir / "hf-convnextv2"
    ref = np.asarray(convnext_tf.TFConvNextV2ForImageClassification.from_pretrained(folder)(
        inputs["pixel_values"], training=False).logits)
    model = convnext_tf.TFConvNextV2ForImageClassification.from_pretrained(folder, dtype="mixed_float16")
    assert {layer.dtype_policy.name for layer in model._flatten_layers()} == {"mixed_float16"}  # every layer
    assert {v.dtype for v in model.weights} == {"float32"}
    out = model(inputs["pixel_values"], output_hidden_states=True, training=False)
    assert out.logits.dtype == tf.float16 and all(h.dtype == tf.float16 for h in out.hidden_states)
    assert rel_err(np.asarray(tf.cast(out.logits, tf.float32)), ref) <= 2e-2
    # activations that overflow float16 sums of squares (GRN) and variances (LayerNorm) stay finite
    big = model(inputs["pixel_values"] * 300, training=False).logits
    assert np.isfinite(np.asarray(tf.cast(big, tf.float32))).all()


def test_new_head_and_loading_info(fixtures_dir, tmp_path):
    folder = fixtures_dir / "hf-convnext"
    with pytest.raises(CheckpointError, match="classifier"):
        convnext_tf.TFConvNextForImageClassification.from_pretrained(folder, num_labels=4)
    with pytest.warns(UserWarning, match="newly initialised"):
        model, info = convnext_tf.TFConvNextForImageClassification.from_pretrained(
            folder, num_labels=4, ignore_mismatched_sizes=True, output_loading_info=True)
    assert [k for k, _, _ in info["mismatched_keys"]] == ["classifier.weight", "classifier.bias"]
    assert model(pixels(), training=False).logits.shape == (2, 4)
    # the trunk of a classification checkpoint loads into the base model and the backbone
    base, info = convnext_tf.TFConvNextModel.from_pretrained(folder / "tf_model.h5", output_loading_info=True)
    assert info["unexpected_keys"] == ["classifier.weight", "classifier.bias"]
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architectures"] == ["ConvNextForImageClassification"] and saved["dtype"] == "float32"
    assert len(saved["id2label"]) == 4


def test_refuses_mismatched_checkpoints_naming_the_file(fixtures_dir):
    with pytest.raises(CheckpointError, match=r"tf_model.h5: holds a convnext checkpoint"):
        convnext_tf.TFConvNextV2ForImageClassification.from_pretrained(
            fixtures_dir / "hf-convnext", config=ConvNextV2Config(depths=[2, 2, 3, 2], hidden_sizes=[16, 32, 64, 128]))
    # a shallower config: as transformers, the extra tensors are warned about and reported, not loaded
    with pytest.warns(UserWarning, match=r"tf_model.h5: not used by the model"):
        _, info = convnext_tf.TFConvNextForImageClassification.from_pretrained(
            fixtures_dir / "hf-convnext", config=ConvNextConfig(depths=[2, 2, 2, 2], hidden_sizes=[16, 32, 64, 128],
                                                                 num_labels=10),
            output_loading_info=True)
    assert info["unexpected_keys"] and all(".stages.2.layers.2." in k for k in info["unexpected_keys"])


def _reference_layer_norm(x, gamma, beta, eps):
    x = x.astype(np.float64)
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


@pytest.mark.parametrize("shape", [(300, 24), (2, 9, 7, 24)])
def test_layer_norm_forms_agree_with_float64_reference_forward_and_backward(shape):
    """The channels-last LayerNorm traces as TensorFlow's fusable batch-norm form on oneDNN CPUs and
    as mean/variance ops under portable_ops(); both are the float64 LayerNorm, and so are their
    gradients (checked against each other: the plain form's autodiff is the reference)."""
    rng = np.random.default_rng(5)
    x = tf.constant((rng.standard_normal(shape) * 4 + 2).astype(np.float32))
    norm = convnext_tf.TFConvNextLayerNorm(24, eps=1e-6)
    norm.build(None)
    norm.set_weights([rng.standard_normal(24).astype(np.float32) for _ in range(2)])
    gamma, beta = (w.numpy() for w in norm.weights)

    def forward_and_grads(portable: bool):
        @tf.function
        def run(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = norm(x)
                loss = tf.reduce_sum(y * tf.sin(y))  # a non-trivial upstream gradient
            return y, tape.gradient(loss, [x, *norm.trainable_weights])

        if portable:
            with convnext_tf.portable_ops():
                return run(x)
        return run(x)

    y, grads = forward_and_grads(False)
    y_plain, grads_plain = forward_and_grads(True)
    want = _reference_layer_norm(x.numpy(), gamma, beta, 1e-6)
    np.testing.assert_allclose(y.numpy(), want, rtol=0, atol=2e-5)
    np.testing.assert_allclose(y_plain.numpy(), want, rtol=0, atol=2e-5)
    for g, g_plain in zip(grads, grads_plain):
        assert rel_err(g.numpy(), g_plain.numpy()) < 1e-4


def test_layer_norm_runs_as_one_onednn_kernel_in_graphs_and_saved_models_stay_portable(tmp_path):
    """In a tf.function on a oneDNN CPU every channels-last LayerNorm of the model runs as
    TensorFlow's fused _MklLayerNorm kernel; an exported SavedModel has no batch-norm op at all
    (TFLite and GPUs need the plain form)."""
    import glob

    from convnext_tf.fused import _onednn_layer_norm_available

    _, model = small_pair()  # 2 stages of 1 block: stem, downsampling and block norms, and the head's
    x = tf.constant(pixels())
    if _onednn_layer_norm_available():
        fn = tf.function(lambda v: model(v, training=False).logits)
        fn(x)
        tf.profiler.experimental.start(str(tmp_path / "trace"))
        fn(x)
        tf.profiler.experimental.stop()
        from tensorflow.tsl.profiler.protobuf import xplane_pb2

        space = xplane_pb2.XSpace()
        space.ParseFromString(open(glob.glob(str(tmp_path / "trace/**/*.xplane.pb"), recursive=True)[0], "rb").read())
        ops = [m.name.rsplit(":", 1)[-1] for plane in space.planes for m in plane.event_metadata.values()]
        assert ops.count("_MklLayerNorm") == 5 and "FusedBatchNormV3" not in " ".join(ops)
    model.export(str(tmp_path / "sm"), verbose=False)
    graph_ops = {node.op for f in tf.saved_model.load(str(tmp_path / "sm")).serve.concrete_functions
                 for node in f.graph.as_graph_def().node}
    graph_ops |= {node.op for f in tf.saved_model.load(str(tmp_path / "sm")).serve.concrete_functions
                  for lib in [f.graph.as_graph_def().library] for fn in lib.function for node in fn.node_def}
    assert graph_ops and not any("BatchNorm" in op for op in graph_ops)


def test_modeling_file_leaves_tensorflow_to_fused_and_export():
    """TensorFlow-specific code (the oneDNN LayerNorm form, the SavedModel endpoint) lives in
    convnext_tf/fused.py and convnext_tf/export.py: modeling.py is written in Keras alone."""
    import ast
    import inspect

    import convnext_tf.modeling

    tree = ast.parse(inspect.getsource(convnext_tf.modeling))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not {name for name in imported if name.split(".")[0] == "tensorflow"}
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "tf"]


@pytest.mark.slow
def test_a_model_behind_its_preprocessing_exports_as_a_savedmodel_of_uint8_images(tmp_path):
    """model.with_preprocessing() on TensorFlow: Keras' own export writes a SavedModel whose endpoint
    takes the raw uint8 images and gives the logits of the model on the image processor's output."""
    from convnext_common import ConvNextImageProcessor

    model = convnext_tf.TFConvNextForImageClassification(
        ConvNextConfig(depths=[1, 1], hidden_sizes=[8, 16], num_stages=2, num_labels=3, image_size=32))
    processor = ConvNextImageProcessor(size={"shortest_edge": 32})
    images = np.random.default_rng(9).integers(0, 256, (2, 32, 32, 3)).astype("uint8")
    expected = np.asarray(model(processor(list(images), return_tensors="np")["pixel_values"], training=False).logits)
    model.with_preprocessing(processor=processor).export(str(tmp_path / "sm"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "sm"))  # held: the endpoint needs its variables alive
    served = loaded.serve(tf.constant(images))
    assert rel_err(np.asarray(served), expected) <= 1e-5


def test_plot_model_draws_a_graph_with_the_twin(tmp_path):
    pytest.importorskip("pydot")
    if shutil.which("dot") is None:  # keras draws through graphviz's program, not only pydot
        pytest.skip("graphviz's dot is not installed")
    model = convnext_tf.TFConvNextForImageClassification(
        ConvNextConfig(depths=[1], hidden_sizes=[8], num_stages=1, num_labels=3), data_format="channels_last")
    graph = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255), model])
    try:
        keras.utils.plot_model(graph, to_file=str(tmp_path / "model.png"), show_shapes=True, expand_nested=True)
    except ImportError as e:  # pydot without the graphviz binaries
        pytest.skip(str(e))
    assert (tmp_path / "model.png").stat().st_size > 0

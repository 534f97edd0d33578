"""PyTorch twin <-> Keras twin: the same weights give the same outputs (DESIGN.md: rel <= 1e-4),
over a matrix of configs with every parameter re-drawn (not the default init), at odd input sizes;
losses, activations, drop path and weights moving both ways."""

import numpy as np
import pytest
import torch

from conftest import rel_err
from convnext_common import ConvNextConfig, ConvNextV2Config
from helpers import redraw_
from parity_configs import CONFIG_IDS, CONFIGS, TASKS, TOL, make_config, named_outputs, pt_class

tf = pytest.importorskip("tensorflow")
convnext_tf = pytest.importorskip("convnext_tf")
import convnext_pt  # noqa: E402
from convnext_pt.activations import get_activation as pt_activation  # noqa: E402
from convnext_tf.activations import get_activation as tf_activation  # noqa: E402

pytestmark = pytest.mark.tf


def tf_twin(pt_model, **kwargs):
    """The Keras twin of a PyTorch model, with its weights (PT -> TF through canonical arrays)."""
    model = getattr(convnext_tf, "TF" + type(pt_model).__name__)(pt_model.config, **kwargs)
    model.load_numpy_state_dict(pt_model.numpy_state_dict())
    return model


def assert_same(pt_out, tf_out, what):
    ref, ours = named_outputs(pt_out), named_outputs(tf_out)
    assert set(ref) == set(ours), (what, sorted(ref), sorted(ours))
    for name in ref:
        assert rel_err(ours[name], ref[name]) <= TOL, (what, name)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("name, config_cls, kwargs, shape", CONFIGS, ids=CONFIG_IDS)
def test_pt_tf_parity(name, config_cls, kwargs, shape, task):
    config = make_config(config_cls, kwargs, task)
    pt = pt_class(config, task)(config).eval()
    redraw_(pt, seed=len(name))
    model = tf_twin(pt)
    x = np.random.default_rng(1).standard_normal((2,) + shape).astype(np.float32)
    with torch.no_grad():
        ref = pt(torch.from_numpy(x), output_hidden_states=True)
    assert_same(ref, model(x, output_hidden_states=True, training=False), f"{name}/{task}")


@pytest.mark.parametrize("name, config_cls, kwargs, shape", CONFIGS[::3], ids=[c[0] for c in CONFIGS[::3]])
def test_tf_to_pt_through_tf_model_h5_is_exact(name, config_cls, kwargs, shape, tmp_path):
    """save_pretrained writes tf_model.h5; the PyTorch twin reads it with the very same weights, and back."""
    config = config_cls(**kwargs)
    pt = pt_class(config, "ForImageClassification")(config).eval()
    redraw_(pt, seed=3)
    model = tf_twin(pt)
    model.save_pretrained(tmp_path / "tf")
    assert sorted(p.name for p in (tmp_path / "tf").iterdir()) == ["config.json", "tf_model.h5"]
    back = type(pt).from_pretrained(tmp_path / "tf")
    for k, v in pt.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    back.save_pretrained(tmp_path / "pt")
    again = type(model).from_pretrained(tmp_path / "pt")  # from model.safetensors
    ours, theirs = model.numpy_state_dict(), again.numpy_state_dict()
    assert set(ours) == set(theirs) == set(pt.state_dict())
    for k in ours:
        np.testing.assert_array_equal(ours[k], theirs[k], err_msg=k)


def test_headless_classifier_round_trips(tmp_path):
    """num_labels=0: the classifier is an identity (logits are the pooled features), as in PyTorch."""
    config = ConvNextConfig(depths=[1, 1], hidden_sizes=[8, 16], num_stages=2, num_labels=0)
    pt = convnext_pt.ConvNextForImageClassification(config).eval()
    redraw_(pt, seed=9)
    model = tf_twin(pt)
    x = np.random.default_rng(5).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = pt(torch.from_numpy(x)).logits.numpy()
    assert ref.shape == (2, 16) and rel_err(np.asarray(model(x).logits), ref) <= TOL
    model.save_pretrained(tmp_path)
    back = convnext_pt.ConvNextForImageClassification.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(back(torch.from_numpy(x)).logits, pt(torch.from_numpy(x)).logits)


def test_canonical_state_has_pytorch_names_and_layouts():
    config = ConvNextV2Config(depths=[1, 1], hidden_sizes=[8, 16], num_stages=2, num_labels=3)
    pt = convnext_pt.ConvNextV2ForImageClassification(config)
    ours = convnext_tf.TFConvNextV2ForImageClassification(config).numpy_state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: tuple(v.shape) for k, v in pt.state_dict().items()}
    # inside, the depthwise conv is a DepthwiseConv2D (kernel (7, 7, C, 1)), not a grouped Conv2D
    block = convnext_tf.TFConvNextV2ForImageClassification(config).convnextv2.encoder.stages[0].layers[0]
    assert type(block.dwconv).__name__ == "DepthwiseConv2D" and tuple(block.dwconv.kernel.shape) == (7, 7, 8, 1)


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "quick_gelu", "relu", "relu6",
                                 "silu", "swish", "sigmoid", "tanh", "mish", "leaky_relu", "linear"])
def test_activations_match_pytorch(act):
    x = np.linspace(-8, 8, 4001, dtype=np.float32)
    with torch.no_grad():
        ref = pt_activation(act)(torch.from_numpy(x)).numpy()
    assert np.abs(np.asarray(tf_activation(act)(x)) - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max())
    with pytest.raises(ValueError, match="hidden_act 'nope'"):
        tf_activation("nope")


@pytest.mark.parametrize("problem, num_labels, labels", [
    ("regression (1 label)", 1, np.array([0.5, -1.25], np.float32)),
    ("regression (3 labels)", 3, np.array([[0.5, 1.0, -2.0], [0.0, 0.3, 1.0]], np.float32)),
    ("single_label_classification", 3, np.array([2, 0], np.int64)),
    ("multi_label_classification", 3, np.array([[1, 0, 1], [0, 0, 1]], np.float32)),
])
def test_losses_equal_pytorch(problem, num_labels, labels):
    problem_type = "regression" if problem.startswith("regression") else problem
    config = ConvNextConfig(depths=[1, 1], hidden_sizes=[8, 16], num_stages=2, num_labels=num_labels,
                            problem_type=problem_type)
    pt = convnext_pt.ConvNextForImageClassification(config).eval()
    redraw_(pt, seed=5)
    model = tf_twin(pt)
    x = np.random.default_rng(2).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = pt(torch.from_numpy(x), labels=torch.from_numpy(labels)).loss.item()
    ours = float(model(x, labels=labels, training=False).loss)
    assert ours == pytest.approx(ref, rel=1e-5, abs=1e-6)
    # inferred problem type (config.problem_type unset) gives the same
    model.config.problem_type = None
    pt.config.problem_type = None
    with torch.no_grad():
        ref = pt(torch.from_numpy(x), labels=torch.from_numpy(labels)).loss.item()
    assert float(model(x, labels=labels, training=False).loss) == pytest.approx(ref, rel=1e-5, abs=1e-6)


def test_drop_path_is_per_sample_and_training_only():
    drop = convnext_tf.TFConvNextDropPath(0.5, seed=0)
    x = np.ones((256, 4, 4, 3), np.float32)
    np.testing.assert_array_equal(np.asarray(drop(x, training=False)), x)
    out = np.asarray(drop(x, training=True))
    per_sample = out.reshape(256, -1)
    assert (per_sample == per_sample[:, :1]).all()  # the whole sample is kept or dropped
    assert set(np.unique(per_sample)) == {0.0, 2.0}  # kept samples are scaled by 1 / keep
    assert 0.3 < (per_sample[:, 0] == 0).mean() < 0.7

    config = ConvNextConfig(depths=[2, 2], hidden_sizes=[8, 16], num_stages=2, num_labels=3, drop_path_rate=0.5)
    pt = convnext_pt.ConvNextForImageClassification(config).eval()
    redraw_(pt, seed=7)
    model = tf_twin(pt)
    x = np.random.default_rng(3).standard_normal((4, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = pt(torch.from_numpy(x)).logits.numpy()
    assert rel_err(np.asarray(model(x, training=False).logits), ref) <= TOL  # eval: no drop
    trained = [np.asarray(model(x, training=True).logits) for _ in range(3)]
    assert any(rel_err(t, ref) > 1e-3 for t in trained)


def test_bad_inputs_are_clear_value_errors():
    config = ConvNextConfig(depths=[1, 1], hidden_sizes=[8, 16], num_stages=2, num_labels=3)
    model = convnext_tf.TFConvNextForImageClassification(config)
    with pytest.raises(ValueError, match=r"pixel_values must be \(batch, 3, height, width\).*\(2, 32, 32, 3\)"):
        model(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="data_format must be channels_first or channels_last"):
        convnext_tf.TFConvNextModel(config, data_format="NCHW")
    with pytest.raises(TypeError, match="needs a ConvNextV2Config"):
        convnext_tf.TFConvNextV2Model(config)


def _top_level(module) -> tuple[list[str], set[str]]:
    """Class names in file order, and module-level function names, of a module's source."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(module))
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef) and not n.name.startswith("_")]
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    return classes, functions


def test_modeling_files_are_translations_class_for_class():
    """The two modeling files hold the same classes in the same order (the Keras ones prefixed TF)
    and share their helpers by name: the float32 LayerNorm, the input check and the loss."""
    import convnext_pt.modeling
    import convnext_tf.modeling

    pt_classes, pt_functions = _top_level(convnext_pt.modeling)
    tf_classes, tf_functions = _top_level(convnext_tf.modeling)
    assert tf_classes == ["TF" + name for name in pt_classes]
    shared = {"layer_norm_float32", "check_pixel_values", "classification_loss"}
    assert shared <= pt_functions and shared <= tf_functions

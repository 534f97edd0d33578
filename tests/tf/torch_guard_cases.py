"""The Keras twin on the PyTorch backend takes its torch fast forms (the fused oneDNN Dense +
activation, torch's one-kernel LayerNorm) only where the PyTorch twin's would: under autocast, a
torch function or dispatch mode, a forward hook on a layer or a global module hook, the model
computes exactly what its plain layers and ops compute.

Run by tests/tf/test_torch_guard_run.py in a process of its own with KERAS_BACKEND=torch (Keras
picks its backend once per process); not collected by the main suite.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

keras = pytest.importorskip("keras")
if keras.backend.backend() != "torch":
    pytest.fail("run with KERAS_BACKEND=torch (tests/tf/test_torch_guard_run.py does)", pytrace=False)

import convnext_tf  # noqa: E402
from convnext_common import ConvNextConfig  # noqa: E402
from convnext_tf import fused  # noqa: E402


def _model():
    model = convnext_tf.TFConvNextForImageClassification(
        ConvNextConfig(depths=[1, 2], hidden_sizes=[16, 32], num_stages=2, num_labels=5, image_size=32))
    rng = np.random.default_rng(0)
    for v in model.weights:  # re-drawn: the default layer scale makes every block nearly the identity
        v.assign(rng.standard_normal(v.shape).astype(np.float32) * 0.5)
    return model


@pytest.fixture(scope="module")
def model():
    return _model()


@pytest.fixture
def x():
    return torch.from_numpy(np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32))


def _plain(monkeypatch):
    """From here on the model runs its layers and the plain ops only."""
    monkeypatch.setattr(fused, "_torch_post_op", lambda *a: None)
    monkeypatch.setattr(fused, "_torch_unobserved", lambda *a: False)


def _logits(model, x) -> np.ndarray:
    with torch.no_grad():
        return model(x, training=False).logits.detach().float().numpy()


def _dense_layers(model):
    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.Dense)
            and layer.name in ("pwconv1", "pwconv2")]


def test_the_fast_forms_are_taken_where_nothing_observes(model, x, monkeypatch):
    # the guard against a vacuous file: with nothing attached, both fast forms run
    taken = {"dense": [], "norm": []}
    post_op, unobserved = fused._torch_post_op, fused._torch_unobserved
    monkeypatch.setattr(fused, "_torch_post_op", lambda *a: taken["dense"].append(post_op(*a)) or taken["dense"][-1])
    monkeypatch.setattr(fused, "_torch_unobserved",
                        lambda *a: taken["norm"].append(unobserved(*a)) or taken["norm"][-1])
    fast = _logits(model, x)
    assert taken["norm"] and all(taken["norm"])
    if fused._torch_kernels.HAS_ONEDNN:
        assert taken["dense"] and all(t is not None for t in taken["dense"])
    _plain(monkeypatch)
    plain = _logits(model, x)
    assert np.abs(fast - plain).max() <= 1e-5 * max(1.0, np.abs(plain).max())


def test_autocast_runs_the_plain_ops(model, x, monkeypatch):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = _logits(model, x)
        _plain(monkeypatch)
        plain = _logits(model, x)
    np.testing.assert_array_equal(ours, plain)
    monkeypatch.undo()
    assert np.abs(ours - _logits(model, x)).max() > 1e-4 * np.abs(plain).max()  # autocast did change the result


def test_a_dispatch_mode_sees_the_plain_ops(model, x, monkeypatch):
    from torch.utils.flop_counter import FlopCounterMode

    def flops():
        with FlopCounterMode(display=False) as counter:
            out = _logits(model, x)
        return counter.get_total_flops(), out

    counted, ours = flops()
    _plain(monkeypatch)
    counted_plain, plain = flops()
    assert counted == counted_plain > 0
    np.testing.assert_array_equal(ours, plain)


def test_a_torch_function_mode_sees_the_plain_ops(model, x, monkeypatch):
    from torch.overrides import TorchFunctionMode

    class Recorder(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.seen = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.seen.append(getattr(func, "__name__", str(func)))
            return func(*args, **(kwargs or {}))

    def record():
        with Recorder() as recorder:
            out = _logits(model, x)
        return recorder.seen, out

    seen, ours = record()
    _plain(monkeypatch)
    seen_plain, plain = record()
    assert seen == seen_plain and "layer_norm" not in seen
    np.testing.assert_array_equal(ours, plain)


@pytest.mark.parametrize("target", ["pwconv1", "act", "pwconv2"])
def test_a_forward_hook_on_a_layer_fires_and_takes_effect(x, target, monkeypatch):
    model = _model()
    before = _logits(model, x)
    block = model.convnext.encoder.stages[1].layers[0]
    layer = getattr(block, target)
    calls = []

    def edit(module, args, output):
        calls.append(module)
        return output * 0.5 + 0.1

    handle = layer.register_forward_hook(edit)
    ours = _logits(model, x)
    assert calls, "the hook did not fire"
    _plain(monkeypatch)
    plain = _logits(model, x)
    handle.remove()
    # the hooked layer runs itself (the other blocks may still take the fast form: within 1e-5)
    assert np.abs(ours - plain).max() <= 1e-5 * max(1.0, np.abs(plain).max())
    assert np.abs(ours - before).max() > 1e-3


def test_a_global_module_hook_sees_every_layer_call(model, x, monkeypatch):
    from torch.nn.modules.module import register_module_forward_hook

    def run():
        names = []
        handle = register_module_forward_hook(lambda m, a, o: names.append(getattr(m, "name", type(m).__name__)))
        try:
            out = _logits(model, x)
        finally:
            handle.remove()
        return names, out

    names, ours = run()
    _plain(monkeypatch)
    names_plain, plain = run()
    assert names == names_plain and names.count("pwconv1") == 3
    np.testing.assert_array_equal(ours, plain)

"""What ``from_pretrained`` leaves in the Keras twin: the checkpoint's tensors where it has them, and
transformers' initial draw (kernels N(0, initializer_range)) where it has none (a new head, a
missing decoder). The model is built without drawing its kernels when a checkpoint fills them
(``hub.kernels_from_checkpoint``); the ones it does not fill are drawn after the load."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.tf
tf = pytest.importorskip("tensorflow")

import convnext_tf  # noqa: E402
from convnext_common import ConvNextConfig, ConvNextV2Config  # noqa: E402
from convnext_pt import ConvNextForImageClassification, ConvNextV2Model  # noqa: E402
from helpers import redraw_  # noqa: E402

SMALL = dict(depths=[1, 1], hidden_sizes=[16, 32], num_stages=2, num_labels=3, initializer_range=0.5)


def _saved(model, tmp_path):
    redraw_(model)
    model.save_pretrained(tmp_path)
    return model.numpy_state_dict()


def _is_initial_draw(value: np.ndarray, std: float) -> bool:
    """Random, centred, with the configured spread (a zero or loaded kernel is none of these)."""
    return value.size >= 16 and abs(value.std() / std - 1) < 0.5 and abs(value.mean()) < std and np.all(value != 0)


def test_loaded_kernels_are_the_checkpoints_and_a_new_head_is_drawn(tmp_path):
    state = _saved(ConvNextForImageClassification(ConvNextConfig(**SMALL)), tmp_path)
    with pytest.warns(UserWarning, match="newly initialised"):
        model = convnext_tf.TFConvNextForImageClassification.from_pretrained(
            tmp_path, num_labels=5, ignore_mismatched_sizes=True)
    ours = model.numpy_state_dict()
    for name, value in state.items():
        if not name.startswith("classifier."):
            np.testing.assert_array_equal(ours[name], value, err_msg=name)
    assert _is_initial_draw(ours["classifier.weight"], SMALL["initializer_range"])
    np.testing.assert_array_equal(ours["classifier.bias"], 0)


def test_a_head_missing_from_the_checkpoint_is_drawn(tmp_path):
    """A trunk checkpoint loaded into FCMAE's model: the decoder's kernels and mask token are drawn."""
    _saved(ConvNextV2Model(ConvNextV2Config(**SMALL)), tmp_path)
    with pytest.warns(UserWarning):
        model, info = convnext_tf.TFConvNextV2ForMaskedImageModeling.from_pretrained(tmp_path, output_loading_info=True)
    ours = model.numpy_state_dict()
    missing = [k for k in info["missing_keys"] if k.endswith(("weight", "mask_token")) and ours[k].ndim > 1
               and ".grn." not in k]  # GRN starts at zero
    assert missing and any(k.endswith("mask_token") for k in missing)
    for name in missing:
        assert _is_initial_draw(ours[name], SMALL["initializer_range"]), name


def test_from_pretrained_without_a_checkpoint_draws_every_kernel():
    model = convnext_tf.TFConvNextForImageClassification.from_pretrained(None, config=ConvNextConfig(**SMALL))
    kernels = {k: v for k, v in model.numpy_state_dict().items() if v.ndim > 1}
    assert kernels and all(_is_initial_draw(v, SMALL["initializer_range"]) for v in kernels.values())

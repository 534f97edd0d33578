"""FCMAE pre-training in the Keras twin on whichever Keras backend this process runs (tensorflow in the
main suite; ``test_on_the_other_backends`` runs this file under jax and torch in their own processes):
against a reference written from the official sparse code (tests/fcmae_reference.py), folders moving
between the twins, and ``fit`` on unlabeled images."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO, rel_err
from fcmae_reference import fcmae_forward, official_state
from helpers import redraw_

from convnext_common.config import ConvNextV2Config
from convnext_pt import ConvNextV2ForMaskedImageModeling

keras = pytest.importorskip("keras")
BACKEND = keras.backend.backend()
if BACKEND == "tensorflow":
    pytest.importorskip("tensorflow")
import convnext_keras  # noqa: E402
import convnext_tf  # noqa: E402

DEPTHS = [1, 1, 2, 1]


def pt_model(seed: int = 3, **changes) -> ConvNextV2ForMaskedImageModeling:
    config = ConvNextV2Config(depths=DEPTHS, hidden_sizes=[8, 12, 16, 24], decoder_hidden_size=16, **changes)
    torch.manual_seed(0)
    model = ConvNextV2ForMaskedImageModeling(config).eval()
    redraw_(model, seed=seed)
    return model


def keras_twin(model, **kwargs):
    twin = convnext_tf.TFConvNextV2ForMaskedImageModeling(model.config, **kwargs)
    twin.load_numpy_state_dict(model.numpy_state_dict())
    return twin


def as_numpy(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x))


@pytest.mark.parametrize("norm_pix_loss, data_format", [
    (False, "channels_first"), pytest.param(True, "channels_last", marks=pytest.mark.slow)])
def test_equals_the_official_sparse_forward(norm_pix_loss, data_format):
    model = pt_model(norm_pix_loss=norm_pix_loss, decoder_num_hidden_layers=2)
    twin = keras_twin(model, data_format=data_format)
    images = np.random.default_rng(0).standard_normal((3, 3, 64, 96)).astype(np.float32)
    rng = np.random.default_rng(1)
    removed = rng.random((3, 6)) < 0.5
    removed[:, 0], removed[:, -1] = False, True
    x = images if data_format == "channels_first" else images.transpose(0, 2, 3, 1)
    out = twin(x, bool_masked_pos=removed, output_hidden_states=True)
    loss, pred, encoded = fcmae_forward(official_state(model.state_dict(), DEPTHS, 2), images, removed, DEPTHS, 2,
                                        norm_pix_loss)
    last = as_numpy(out.hidden_states[-1])
    assert rel_err(as_numpy(out.logits), pred) <= 1e-4
    assert rel_err(last if data_format == "channels_first" else last.transpose(0, 3, 1, 2), encoded) <= 1e-4
    assert abs(float(as_numpy(out.loss)) - loss) / max(1.0, abs(loss)) <= 1e-4
    np.testing.assert_array_equal(as_numpy(out.mask), removed.astype(np.float32))


def test_random_mask_is_reproducible_and_has_the_ratio():
    twin = convnext_keras.ConvNextV2ForMaskedImageModeling(
        ConvNextV2Config(depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 8, 8], decoder_hidden_size=8, mask_ratio=0.75))
    images = np.zeros((4, 3, 128, 64), np.float32)
    a = as_numpy(twin(images, seed=7).mask)
    b = as_numpy(twin(images, seed=7).mask)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (4, 8) and (a.sum(axis=1) == 8 - int(8 * 0.25)).all()
    assert not np.array_equal(a, as_numpy(twin(images, seed=8).mask))


def test_folders_move_between_the_twins(tmp_path):
    model = pt_model(seed=5, mask_ratio=0.5)
    keras_twin(model).save_pretrained(tmp_path / "keras", safe_serialization=True)
    again = ConvNextV2ForMaskedImageModeling.from_pretrained(tmp_path / "keras")
    for k, v in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v)
    model.save_pretrained(tmp_path / "torch")
    twin = convnext_tf.TFAutoModelForMaskedImageModeling.from_pretrained(tmp_path / "torch")
    assert type(twin).__name__ == "TFConvNextV2ForMaskedImageModeling" and twin.config.mask_ratio == 0.5
    base = convnext_tf.TFConvNextV2Model.from_pretrained(tmp_path / "torch")
    x = np.random.default_rng(2).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ref = model.convnextv2(torch.from_numpy(x)).last_hidden_state.numpy()
    assert rel_err(as_numpy(base(x).last_hidden_state), ref) <= 1e-4


@pytest.mark.slow
def test_fit_on_unlabeled_images_lowers_the_loss():
    twin = convnext_keras.ConvNextV2ForMaskedImageModeling(
        ConvNextV2Config(depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 8, 8], decoder_hidden_size=8))
    images = np.random.default_rng(0).random((8, 3, 32, 32)).astype(np.float32)  # one patch each: always removed
    twin.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = float(as_numpy(twin(images, bool_masked_pos=np.ones((8, 1), bool)).loss))
    twin.fit(images, epochs=5, batch_size=4, verbose=0)
    after = float(as_numpy(twin(images, bool_masked_pos=np.ones((8, 1), bool)).loss))
    assert after < before


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "tensorflow", reason="the main process starts the other backends")
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_on_the_other_backends(backend):
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", __file__,
                          "-k", "not other_backends"], cwd=REPO / "tests", env=env, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, f"{backend}:\n{run.stdout[-4000:]}\n{run.stderr[-2000:]}"

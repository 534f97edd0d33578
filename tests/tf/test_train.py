"""The Keras twin trains with compile/fit under a tf.distribute strategy (the recipe of docs/training.md), one epoch.

A zero learning rate first: fit must report exactly the cross-entropy that the PyTorch twin computes
on the same batches (so fit optimises the right objective on the right outputs). Then one real
epoch: the weights move, and the result saves to a hub folder that the PyTorch twin reads back with
the same logits.
"""

import numpy as np
import pytest
import torch

from conftest import FIXTURES
from convnext_common import ConvNextConfig
from convnext_app.digits import EVAL_RENDERINGS, load_heldout, render
from convnext_common.processing import ConvNextImageProcessor
from convnext_pt import ConvNextForImageClassification


pytestmark = pytest.mark.tf
HELDOUT = FIXTURES / "digits_heldout.npz"


@pytest.fixture(scope="module")
def data():
    held = load_heldout(HELDOUT)
    keep = np.flatnonzero(held.labels < 3)[:32]
    processor = ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0)
    images = [render(held.images[i], EVAL_RENDERINGS[k % len(EVAL_RENDERINGS)]) for k, i in enumerate(keep)]
    return processor(images, return_tensors="np")["pixel_values"], held.labels[keep].astype(np.int64)


@pytest.fixture(scope="module")
def start_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keras_start")
    torch.manual_seed(0)
    config = ConvNextConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 32, 64], num_labels=3, image_size=32,
                            layer_scale_init_value=0.5)
    ConvNextForImageClassification(config).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_fit_one_epoch_under_mirrored_strategy(data, start_folder, tmp_path):
    pytest.importorskip("convnext_tf")
    import keras
    import tensorflow as tf

    from convnext_tf import TFConvNextForImageClassification

    x, y = data
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = TFConvNextForImageClassification.from_pretrained(start_folder)
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    frozen = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0).history
    with torch.no_grad():
        pt = ConvNextForImageClassification.from_pretrained(start_folder)
        pt_loss = torch.nn.functional.cross_entropy(pt(torch.from_numpy(x)).logits, torch.from_numpy(y)).item()
    assert frozen["loss"][0] == pytest.approx(pt_loss, rel=1e-4)

    with strategy.scope():
        model.compile(optimizer=keras.optimizers.AdamW(learning_rate=3e-3, weight_decay=0.05),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0]) and 0.0 <= history["accuracy"][0] <= 1.0
    before = pt.classifier.weight.detach().numpy()
    out = tmp_path / "keras_trained"
    model.save_pretrained(out, safe_serialization=True)
    trained = ConvNextForImageClassification.from_pretrained(out)
    assert not np.allclose(trained.classifier.weight.detach().numpy(), before)
    with torch.no_grad():
        ref = trained(torch.from_numpy(x)).logits.numpy()
    got = np.asarray(model(x, training=False).logits)
    assert np.abs(got - ref).max() / max(1.0, np.abs(ref).max()) <= 1e-4

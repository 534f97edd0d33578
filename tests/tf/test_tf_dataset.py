"""``prepare_tf_dataset`` of the Keras twin, as transformers' TF models provide it: a
``datasets.Dataset`` becomes batches of the model's inputs (other columns dropped), with labels
where the dataset has them, which ``fit`` trains on. Skipped without the ``datasets`` package (not a
dependency)."""

from __future__ import annotations

import numpy as np
import pytest

datasets = pytest.importorskip("datasets")

from convnext_common import ConvNextConfig  # noqa: E402

SMALL = dict(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32], num_labels=3)


@pytest.fixture(scope="module")
def columns():
    rng = np.random.default_rng(3)
    return {"pixel_values": rng.standard_normal((6, 3, 32, 32)).astype(np.float32),
            "label": rng.integers(0, 3, 6), "file_name": [f"{i}.png" for i in range(6)]}


def test_features_and_labels_in_order(columns):
    from convnext_tf import TFConvNextForImageClassification

    model = TFConvNextForImageClassification(ConvNextConfig(**SMALL))
    ds = model.prepare_tf_dataset(datasets.Dataset.from_dict(columns), batch_size=4, shuffle=False)
    batches = list(ds)
    assert [len(b[1]) for b in batches] == [4, 2]  # drop_remainder follows shuffle (False: kept)
    features = np.concatenate([np.asarray(b[0]) for b in batches])
    labels = np.concatenate([np.asarray(b[1]) for b in batches])
    np.testing.assert_array_equal(features, columns["pixel_values"])
    np.testing.assert_array_equal(labels, columns["label"])
    model.compile(optimizer="sgd")  # the loss is the model's own (from labels), as in transformers
    history = model.fit(ds, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_base_model_gets_inputs_only(columns):
    from convnext_tf import TFConvNextModel

    model = TFConvNextModel(ConvNextConfig(**SMALL))
    ds = model.prepare_tf_dataset(datasets.Dataset.from_dict(columns), batch_size=6, shuffle=True)
    batch = next(iter(ds))
    assert not isinstance(batch, tuple)  # no labels column for a model without labels
    np.testing.assert_array_equal(np.sort(np.asarray(batch).ravel()), np.sort(columns["pixel_values"].ravel()))
    assert tuple(model(batch).pooler_output.shape) == (6, 32)


def test_refusals_name_the_argument(columns):
    from convnext_tf import TFConvNextModel

    model = TFConvNextModel(ConvNextConfig(**SMALL))
    with pytest.raises(TypeError, match="datasets.Dataset"):
        model.prepare_tf_dataset(columns)
    with pytest.raises(ValueError, match="dataset: none of its columns"):
        model.prepare_tf_dataset(datasets.Dataset.from_dict({"image": columns["file_name"]}))

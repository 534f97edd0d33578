"""``prepare_tf_dataset``: a Hugging Face ``datasets.Dataset`` as the ``tf.data.Dataset`` that the
model's ``fit`` / ``predict`` take, as transformers' TF models provide it.

The columns kept are the model's inputs (the parameters of ``call``: ``pixel_values``) and, as
labels, ``labels`` (a ``label`` column is read as ``labels``, as transformers' default collator
renames it); every other column is dropped. With one feature column the batches' features are that
tensor, else a dict; with a label column each batch is ``(features, labels)``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable


def prepare_tf_dataset(model: Any, dataset: Any, batch_size: int = 8, shuffle: bool = True, tokenizer: Any = None,
                       collate_fn: Callable | None = None, collate_fn_args: dict | None = None,
                       drop_remainder: bool | None = None, prefetch: bool = True) -> Any:
    try:
        import datasets
    except ImportError:
        raise ImportError("prepare_tf_dataset needs the `datasets` package (pip install datasets)") from None
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(f"dataset must be a datasets.Dataset, got {type(dataset).__name__}")
    if tokenizer is not None:
        raise ValueError("tokenizer: an image model has no text inputs to pad; pass collate_fn instead")
    inputs = [name for name in inspect.signature(model.call).parameters if name not in ("labels", "training")]
    takes_labels = "labels" in inspect.signature(model.call).parameters
    if takes_labels and "label" in dataset.column_names and "labels" not in dataset.column_names:
        dataset = dataset.rename_column("label", "labels")
    labels = ["labels"] if takes_labels and "labels" in dataset.column_names else []
    features = [name for name in dataset.column_names if name in inputs]
    if not features:
        raise ValueError(f"dataset: none of its columns {dataset.column_names} is an input of {type(model).__name__} "
                         f"({inputs})")
    dataset = dataset.remove_columns([c for c in dataset.column_names if c not in features + labels])
    if drop_remainder is None:
        drop_remainder = shuffle
    return dataset.to_tf_dataset(
        columns=features[0] if len(features) == 1 else features,
        label_cols=(labels[0] if labels else None),
        batch_size=batch_size, shuffle=shuffle, drop_remainder=drop_remainder, collate_fn=collate_fn,
        collate_fn_args=collate_fn_args or {}, prefetch=prefetch)

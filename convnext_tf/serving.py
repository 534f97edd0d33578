"""The SavedModel endpoint of the Keras twin's models (TensorFlow backend): what ``model.export()``
writes and what ``convnext_tf.export`` checks.

The endpoint ``serve`` (also the ``serving_default`` signature) maps ``pixel_values``, float32
(batch, C, height, width) with all three sizes free (NHWC for a ``channels_last`` model), to a dict
of the outputs each class names (``_serving_output_names``: ``logits`` for a classifier, as the
PyTorch twin's exports name them).

Imported by ``modeling.py`` only inside the methods that need TensorFlow, after checking the
backend; it imports nothing of ``modeling.py`` (``export.py`` builds on both).
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Union

import keras
import tensorflow as tf

from .fused import portable_ops

SIGNATURE = "serving_default"
INPUT_NAME = "pixel_values"


def input_signature(model) -> dict[str, Any]:
    """transformers' TF ``input_signature``: pixel_values of any batch, the config's channels and
    image size, in the model's data_format, float32."""
    c, size = model.config.num_channels, model.config.image_size
    shape = (None, c, size, size) if model.data_format == "channels_first" else (None, size, size, c)
    return {model.main_input_name: tf.TensorSpec(shape, tf.float32, name=model.main_input_name)}


def output_names(model) -> tuple[str, ...]:
    """The tensors the ``serve`` endpoint returns (transformers' field names, as the PyTorch twin's
    exports name them); a TypeError for a model without an endpoint."""
    return model._serving_output_names()


def serving_outputs(model, outputs) -> dict[str, Any]:
    """``model``'s outputs as the ``serve`` endpoint returns them: a dict in :func:`output_names`."""
    return model._serving_outputs(outputs)


def write_serving_archive(model, filepath: Union[str, os.PathLike], verbose: bool = False,
                          input_signature: Optional[Sequence[tf.TensorSpec]] = None) -> None:
    """Write ``model`` as a SavedModel with its ``serve`` endpoint, unchecked (``model.export()``).
    ``verbose=True`` lists the endpoint and its captured variables."""
    c = model.config.num_channels
    if input_signature is None:
        shape = (None, c, None, None) if model.data_format == "channels_first" else (None, None, None, c)
        input_signature = [tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)]
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(pixel_values):
        return serving_outputs(model, model(pixel_values, training=False))

    with portable_ops():  # a SavedModel is for any runtime, not only this CPU's
        archive.add_endpoint("serve", serve, input_signature=input_signature)
        archive.write_out(str(filepath), verbose=verbose)

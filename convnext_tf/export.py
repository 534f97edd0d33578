"""Deployment of the Keras twin: a TensorFlow SavedModel and a TFLite flatbuffer, each verified
against the Keras model before it is put in place.

- :func:`export_saved_model`: the model's ``serve`` endpoint as ``model.export()`` writes it
  (``serving.py``: ``pixel_values`` float32 (batch, C, height, width), all three sizes free, NHWC
  for a ``channels_last`` model -> a dict of outputs named by :func:`output_names`, ``logits`` for
  a classifier). Checked by reloading it with ``tf.saved_model.load``.
- :func:`export_tflite`: that SavedModel through the TFLite converter, float32 or with dynamic-range
  int8 weights (``int8=True``: weights stored as int8, activations float). Checked with the LiteRT
  interpreter (``ai_edge_litert`` when installed, else ``tf.lite.Interpreter``); the float32 file
  must reach ``rel <= 1e-4``; for int8 the report gives ``rel`` and top-1 agreement.

The checks run at the export shape and at another batch and odd size
(:func:`convnext_common.export.verification_shapes`).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import keras
import numpy as np

from .modeling import require_tensorflow_backend

require_tensorflow_backend("convnext_tf.export", ImportError)  # before TensorFlow is imported on another backend

import tensorflow as tf  # noqa: E402

from convnext_common.export import (  # noqa: E402
    SAVED_MODEL_TOLERANCE, TFLITE_TOLERANCE, Check, ExportReport, compare_outputs, random_pixels, staged_output,
    verification_shapes,
)
from convnext_common.fileio import atomic_directory  # noqa: E402
from convnext_tf.quiet import tf_notices_filtered  # noqa: E402

from .serving import INPUT_NAME, SIGNATURE, input_signature, output_names, serving_outputs  # noqa: E402,F401

def _check_float32(model) -> None:
    dtypes = sorted({str(v.dtype) for v in model.weights})
    if dtypes != ["float32"]:
        raise ValueError(f"export needs float32 weights, the model has {', '.join(dtypes)}")
    compute = getattr(getattr(model, "dtype_policy", None), "compute_dtype", "float32")
    if compute != "float32":
        raise ValueError(f"export needs a float32 model, this one computes in {compute} (mixed precision)")


def _input_shapes(model, batch_size: int, image_size: Optional[Sequence[int]],
                  check_shapes: Optional[Sequence[Sequence[int]]]) -> list[tuple[int, ...]]:
    """Verification shapes in the model's input layout (NCHW, or NHWC for channels_last)."""
    if check_shapes is not None:
        return [tuple(int(s) for s in shape) for shape in check_shapes]
    shapes = verification_shapes(model.config, batch_size, image_size)
    if model.data_format == "channels_last":
        shapes = [(b, h, w, c) for b, c, h, w in shapes]
    return shapes


def eager_outputs(model, pixel_values: np.ndarray) -> dict[str, np.ndarray]:
    """The reference: the Keras model's serving outputs (inference mode) by name, as numpy."""
    outputs = serving_outputs(model, model(tf.constant(pixel_values), training=False))
    return {name: np.asarray(value) for name, value in outputs.items()}


# ------------------------------------------------------------------------------------------------
# SavedModel
# ------------------------------------------------------------------------------------------------
def _write_saved_model(model, directory: Path) -> None:
    # Keras' ExportArchive (behind model.export) writes into an existing empty folder.
    model.export(str(directory), verbose=False)


def run_saved_model(directory: Union[str, os.PathLike], pixel_values: np.ndarray,
                    loaded: Any = None) -> dict[str, np.ndarray]:
    """Outputs of a SavedModel's ``serving_default`` signature, by name (pass ``loaded`` to reuse a load)."""
    loaded = loaded if loaded is not None else tf.saved_model.load(str(directory))
    if SIGNATURE not in loaded.signatures:
        raise ValueError(f"{directory}: SavedModel has no {SIGNATURE!r} signature "
                         f"(has {', '.join(loaded.signatures) or 'none'})")
    outputs = loaded.signatures[SIGNATURE](**{INPUT_NAME: tf.constant(pixel_values, tf.float32)})
    return {name: value.numpy() for name, value in outputs.items()}


def export_saved_model(model, directory: Union[str, os.PathLike], *, overwrite: bool = False, batch_size: int = 2,
                       image_size: Optional[Sequence[int]] = None,
                       check_shapes: Optional[Sequence[Sequence[int]]] = None,
                       tolerance: Optional[float] = SAVED_MODEL_TOLERANCE) -> ExportReport:
    """Write ``model`` as a SavedModel folder at ``directory`` and verify it by reloading.

    The folder is built beside ``directory`` and renamed into place only after the reloaded
    ``serving_default`` signature reproduced the Keras model within ``tolerance`` (``rel``) at the
    verification shapes; an existing ``directory`` is replaced only with ``overwrite``.
    """
    _check_float32(model)
    shapes = _input_shapes(model, batch_size, image_size, check_shapes)
    with atomic_directory(directory, overwrite=overwrite) as tmp:
        _write_saved_model(model, tmp)
        loaded = tf.saved_model.load(str(tmp))
        checks = []
        for i, shape in enumerate(shapes):
            pixels = random_pixels(shape, seed=i)
            checks.append(compare_outputs(run_saved_model(tmp, pixels, loaded), eager_outputs(model, pixels), shape,
                                          tolerance, f"SavedModel export of {type(model).__name__}"))
        del loaded
    return ExportReport("savedmodel", Path(directory), "Keras eager", tolerance, checks,
                        {"signature": SIGNATURE, "input": f"{INPUT_NAME} {_layout(model)}"})


def _layout(model) -> str:
    return "(batch, C, H, W)" if model.data_format == "channels_first" else "(batch, H, W, C)"


# ------------------------------------------------------------------------------------------------
# TFLite
# ------------------------------------------------------------------------------------------------
def tflite_interpreter(path: Union[str, os.PathLike]):
    """A LiteRT interpreter for ``path``: ``ai_edge_litert`` when installed, else TensorFlow's
    ``tf.lite.Interpreter`` (deprecated in favour of LiteRT, still present in TF 2.21)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        if not hasattr(tf, "lite"):
            raise ImportError("running a .tflite file needs the ai-edge-litert package "
                              "(pip install ai-edge-litert); this TensorFlow has no tf.lite") from None
        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tf.lite's deprecation notice
        return Interpreter(model_path=str(path))


def run_tflite(path: Union[str, os.PathLike], pixel_values: np.ndarray,
               interpreter: Any = None) -> dict[str, np.ndarray]:
    """Outputs of a .tflite file's ``serving_default`` signature, by name (the input is resized to
    ``pixel_values``' shape: batch and image size are free)."""
    interpreter = interpreter if interpreter is not None else tflite_interpreter(path)
    runner = interpreter.get_signature_runner(SIGNATURE)
    outputs = runner(**{INPUT_NAME: np.ascontiguousarray(pixel_values, dtype=np.float32)})
    return {name: np.array(value) for name, value in outputs.items()}


def _convert(saved_model_dir: Path, int8: bool) -> bytes:
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    if int8:
        # No representative dataset: dynamic-range quantisation (int8 weights, float activations).
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def export_tflite(model, path: Union[str, os.PathLike], int8: bool = False, *, overwrite: bool = False,
                  batch_size: int = 2, image_size: Optional[Sequence[int]] = None,
                  check_shapes: Optional[Sequence[Sequence[int]]] = None,
                  tolerance: Optional[float] = TFLITE_TOLERANCE,
                  saved_model_dir: Union[str, os.PathLike, None] = None) -> ExportReport:
    """Write ``model`` as a .tflite file at ``path`` and verify it with the LiteRT interpreter.

    Float32 must reproduce the Keras model within ``tolerance`` (``rel``) or nothing is written.
    With ``int8`` (dynamic-range quantisation) the tolerance is not applied: the report gives
    ``rel`` and top-1 agreement, and :func:`compare_tflite` measures them on real data.
    ``saved_model_dir``: convert this SavedModel of ``model`` (e.g. from :func:`export_saved_model`)
    instead of writing a temporary one; the check is still against ``model`` itself.
    """
    _check_float32(model)
    shapes = _input_shapes(model, batch_size, image_size, check_shapes)
    applied = None if int8 else tolerance
    if saved_model_dir is not None and not Path(saved_model_dir).is_dir():
        raise FileNotFoundError(f"{saved_model_dir}: no such SavedModel folder")
    with staged_output(path, overwrite=overwrite) as tmp:
        if saved_model_dir is not None:
            tmp.write_bytes(_convert(Path(saved_model_dir), int8))
        else:
            with tempfile.TemporaryDirectory(prefix=".saved_model.", dir=tmp.parent) as saved:
                _write_saved_model(model, Path(saved))
                tmp.write_bytes(_convert(Path(saved), int8))
        checks = []
        with tf_notices_filtered():  # LiteRT's "Created TensorFlow Lite XNNPACK delegate" notice
            interpreter = tflite_interpreter(tmp)
            for i, shape in enumerate(shapes):
                pixels = random_pixels(shape, seed=i)
                checks.append(compare_outputs(run_tflite(tmp, pixels, interpreter), eager_outputs(model, pixels),
                                              shape, applied, f"TFLite export of {type(model).__name__}"))
    return ExportReport("tflite", Path(path), "Keras eager", applied, checks,
                        {"weights": "int8 (dynamic range)" if int8 else "float32",
                         "input": f"{INPUT_NAME} {_layout(model)}"})


def compare_tflite(model, path: Union[str, os.PathLike], pixel_values: np.ndarray, batch_size: int = 64) -> Check:
    """``rel`` and top-1 agreement of a .tflite file against the Keras model on ``pixel_values``
    (e.g. a held-out set, run in batches of ``batch_size``)."""
    ours: dict[str, list] = {}
    ref: dict[str, list] = {}
    with tf_notices_filtered():
        interpreter = tflite_interpreter(path)
        for start in range(0, len(pixel_values), batch_size):
            block = np.ascontiguousarray(pixel_values[start:start + batch_size], dtype=np.float32)
            for store, outputs in ((ours, run_tflite(path, block, interpreter)), (ref, eager_outputs(model, block))):
                for name, value in outputs.items():
                    store.setdefault(name, []).append(value)
    joined = {name: np.concatenate(v) for name, v in ours.items()}
    return compare_outputs(joined, {name: np.concatenate(v) for name, v in ref.items()}, np.shape(pixel_values),
                           None, f"TFLite {path}")

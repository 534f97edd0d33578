"""Quantized layers (``model.quantize(mode)``, Keras' int8, int4 and float8) through the twin's files.

The model classes build their layers from the ConvNextConfig, not from each layer's own config, so
Keras cannot see from a saved model which layers were quantized. The model records them: each
quantized layer's path below the model with its mode and its ``quantization_config``
(:func:`quantization_record`), and a loaded model quantizes the same layers the same way again
(:func:`quantize_as_recorded`) before their values are read.

- ``.keras`` (``model.save`` / ``keras.models.load_model``): the record is in the model's config;
  the quantized variables are stored as Keras stores them (int8 kernel and scale, int4 packed
  kernel, float8 scales and amax histories), so every mode reloads exactly.
- ``save_pretrained`` writes the hub layout that every loader reads (transformers, the PyTorch
  twin): float weights under the canonical names. An int8 layer is written dequantized (its int8
  kernel divided by its per-output scale) and config.json records the layers
  (``keras_quantization``); the twin's ``from_pretrained`` quantizes them again, which gives back
  the same int8 kernel (the dequantized column's absolute maximum is 127 / scale, so the scale and
  every value come back). int4 and float8 keep state that float weights cannot hold (int4's
  grouped zero points, float8's scales learned in training): ``save_pretrained`` refuses them in
  one line and names ``.keras``.
"""

from __future__ import annotations

from typing import Any, Optional

import keras
import numpy as np

#: the config.json field (and the Keras config key) listing the quantized layers
RECORD_KEY = "keras_quantization"
#: the modes save_pretrained writes as float weights and restores exactly
HUB_MODES = ("int8",)


class QuantizationSaveError(ValueError):
    """A quantized model that a format cannot hold."""


def _layers_below(model: keras.layers.Layer, prefix: str = "") -> dict[str, keras.layers.Layer]:
    """Every layer below ``model`` by its names' path (``convnext/encoder/stages_0/layers_0/pwconv1``),
    the same wherever the model was created (a layer's Keras ``path`` depends on the name scope it
    was created in)."""
    out = {}
    for layer in model._layers:
        path = prefix + layer.name
        out[path] = layer
        out.update(_layers_below(layer, path + "/"))
    return out


def quantization_record(model: keras.Model) -> dict[str, dict[str, Any]]:
    """Every quantized layer below ``model``: {path: {"mode": ..., "config": serialised quantization_config}}."""
    record = {}
    for path, layer in _layers_below(model).items():
        mode = getattr(layer.dtype_policy, "quantization_mode", None)
        if mode is None:
            continue
        config = getattr(layer, "quantization_config", None)
        record[path] = {"mode": mode,
                        "config": keras.saving.serialize_keras_object(config) if config is not None else None}
    return record


def quantize_as_recorded(model: keras.Model, record: Optional[dict[str, dict[str, Any]]], source: str) -> None:
    """Quantize the layers ``record`` names, as they were (before their saved values are loaded)."""
    if not record:
        return
    layers = _layers_below(model)
    for path, entry in record.items():
        layer = layers.get(path)
        if layer is None or not isinstance(entry, dict) or "mode" not in entry:
            raise ValueError(f"{source}: {RECORD_KEY} names {path!r}, which is not a layer of "
                             f"{type(model).__name__} (or is not a {{'mode': ...}} entry)")
        config = entry.get("config")
        mode = str(entry["mode"]).split("/")[0]  # "int4/128": the block size is in the config
        layer.quantize(mode, config=keras.saving.deserialize_keras_object(config) if config else None)


def check_hub_savable(model: keras.Model) -> dict[str, dict[str, Any]]:
    """The record save_pretrained writes; a one-line error for a mode float weights cannot hold."""
    record = quantization_record(model)
    for path, entry in record.items():
        if entry["mode"] not in HUB_MODES:
            raise QuantizationSaveError(
                f"save_pretrained writes float weights and cannot keep {path}'s {entry['mode']} quantization "
                f"(its state is more than a float kernel); save it with model.save('model.keras'), which keeps "
                f"every mode, or save_pretrained before quantizing")
    return record


def float_kernel(layer: keras.layers.Layer) -> Optional[np.ndarray]:
    """A quantized Dense's kernel as float32 (int8: the int8 kernel divided by its per-output
    scale), or None for a layer that is not quantized."""
    mode = getattr(layer.dtype_policy, "quantization_mode", None)
    if mode is None:
        return None
    if mode != "int8":
        raise QuantizationSaveError(f"{layer.path}: no float kernel for mode {mode!r}")
    kernel = np.asarray(keras.ops.convert_to_numpy(layer._kernel), np.float32)
    scale = np.asarray(keras.ops.convert_to_numpy(layer.kernel_scale), np.float32)
    return kernel / scale


#: the variables a quantized layer adds beside its kernel and bias (not part of the hub layout)
QUANTIZATION_VARIABLES = ("kernel_scale", "kernel_zero", "g_idx", "inputs_scale", "inputs_amax_history",
                          "kernel_amax_history", "outputs_grad_scale", "outputs_grad_amax_history")

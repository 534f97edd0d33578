"""The image processor as a Keras layer, for models that take raw pixels (keras.applications'
``include_preprocessing``): ``TFConvNextImagePreprocessing`` turns uint8 RGB images of one size
(B, H, W, 3), channels last as Keras images are, into the ``pixel_values`` the project's
``ConvNextImageProcessor`` gives for them, in the model's layout.

The processor's steps for an image of that size are fixed, so they become constants: PIL's resize
is a matrix per axis over the source window each output reads (``convnext_common.processing.
resampling``, the same arithmetic the PyTorch twin's fast processor uses), the centre crop selects
the outputs those matrices produce, each pass is rounded to uint8 as PIL does, then transformers'
rescale and normalise. The sums are float64 where the backend has it (TensorFlow, PyTorch: PIL's
pixels exactly) and float32 on JAX (a pixel may be one level off: the fast processor's bound).

With the model: ``model.with_preprocessing(image_size)`` (a ``keras.Sequential``: the layer, then
the model as a Keras layer, which returns its logits / pooled features / feature maps); on
TensorFlow, ``.export()`` of that Sequential writes a SavedModel that takes the uint8 images.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import keras
import numpy as np
from keras import ops

from convnext_common.processing import ConvNextImageProcessor
from convnext_common.processing.geometry import resize_plan
from convnext_common.processing.resampling import (
    NEAREST, pil_horizontal_first, pil_nearest_indices, pil_window_matrix, round_fixed_point,
)


def _sum_dtype() -> str:
    return "float32" if keras.backend.backend() == "jax" else "float64"


class _KerasFloor:
    """``floor`` for :func:`round_fixed_point`, which clips its result with ``.clip(0, 255)``."""

    def __init__(self, x):
        self.x = x - ops.mod(x, 1.0)  # floor; Keras' ops.floor returns float32 for float64 on PyTorch

    def clip(self, lo, hi):
        return ops.clip(self.x, lo, hi)


def _round_pass(sums):
    """PIL's rounding of one pass's sums to uint8 levels (as floats)."""
    return round_fixed_point(sums, _KerasFloor)


@keras.saving.register_keras_serializable(package="convnext_tf")
class TFConvNextImagePreprocessing(keras.layers.Layer):
    """``ConvNextImageProcessor`` (its ``preprocessor_config.json`` settings) for uint8 RGB images of
    ``image_size`` (height, width), given as (B, H, W, 3); returns float32 pixel values (B, 3, h, w)
    (``data_format="channels_first"``, the twin's default) or (B, h, w, 3)."""

    def __init__(self, processor_config: dict[str, Any], image_size: Union[int, tuple[int, int]],
                 data_format: str = "channels_first", **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.processor_config = dict(processor_config)
        self.processor = ConvNextImageProcessor.from_dict(self.processor_config)
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.image_size = (int(size[0]), int(size[1]))
        if data_format not in ("channels_first", "channels_last"):
            raise ValueError(f"data_format must be channels_first or channels_last, got {data_format!r}")
        self.data_format = data_format
        self._plan = self._make_plan()

    @classmethod
    def from_processor(cls, processor: ConvNextImageProcessor, image_size: Union[int, tuple[int, int]],
                       **kwargs) -> "TFConvNextImagePreprocessing":
        return cls(processor.to_dict(), image_size, **kwargs)

    def _make_plan(self) -> dict[str, Any]:
        p = self.processor
        h, w = self.image_size
        plan: dict[str, Any] = {"resize": None}
        if p.do_resize:
            out_h, out_w, crop = resize_plan(h, w, p.size["shortest_edge"], p.crop_pct)
            if crop is not None and crop.padded:
                raise ValueError(f"crop_pct {p.crop_pct} pads a {h}x{w} image; the preprocessing layer does not pad")
            cy, cx, ch, cw = (0, 0, out_h, out_w) if crop is None else (crop.src_y, crop.src_x, crop.h, crop.w)
            plan["resize"] = (out_h, out_w, cy, cx, ch, cw)
        mean = np.asarray(p.image_mean if p.do_normalize else (0.0, 0.0, 0.0), np.float32)
        std = np.asarray(p.image_std if p.do_normalize else (1.0, 1.0, 1.0), np.float32)
        plan.update(rescale=float(p.rescale_factor) if p.do_rescale else None, mean=mean, std=std,
                    normalize=bool(p.do_normalize))
        return plan

    def _axis(self, x, axis: int, in_size: int, out_size: int, start: int, count: int):
        """One PIL pass along ``axis`` (1: height, 2: width of NHWC) giving outputs [start, start + count)."""
        resample = self.processor.resample
        if out_size == in_size:
            return x[:, start:start + count] if axis == 1 else x[:, :, start:start + count]
        if resample == NEAREST:
            return ops.take(x, pil_nearest_indices(in_size, out_size)[start:start + count], axis=axis)
        lo, hi, m = pil_window_matrix(in_size, out_size, start, count, resample)
        m = ops.convert_to_tensor(m, dtype=_sum_dtype())
        window = x[:, lo:hi] if axis == 1 else x[:, :, lo:hi]
        # sums over the window: (B, h, w, C) with the resized axis contracted against m (window, count)
        moved = ops.moveaxis(window, axis, -1)               # (..., window)
        sums = ops.einsum("...k,kj->...j", moved, m)         # (..., count); einsum keeps float64 on every backend
        return _round_pass(ops.moveaxis(sums, -1, axis))

    def call(self, images):
        shape = tuple(images.shape)
        if len(shape) != 4 or shape[-1] != 3 or tuple(shape[1:3]) != self.image_size:
            raise ValueError(f"images must be (batch, {self.image_size[0]}, {self.image_size[1]}, 3) RGB, "
                             f"got {shape}")
        x = ops.cast(images, _sum_dtype())
        if self._plan["resize"] is not None:
            out_h, out_w, cy, cx, ch, cw = self._plan["resize"]
            h, w = self.image_size
            if pil_horizontal_first(w, h, out_w, out_h):
                x = self._axis(self._axis(x, 2, w, out_w, cx, cw), 1, h, out_h, cy, ch)
            else:
                x = self._axis(self._axis(x, 1, h, out_h, cy, ch), 2, w, out_w, cx, cw)
        plan = self._plan
        if plan["rescale"] is not None:  # transformers: float64 product, cast to float32
            x = ops.cast(ops.cast(x, _sum_dtype()) * plan["rescale"], "float32")
        x = ops.cast(x, "float32")
        if plan["normalize"]:
            x = (x - ops.convert_to_tensor(plan["mean"])) / ops.convert_to_tensor(plan["std"])
        return ops.transpose(x, (0, 3, 1, 2)) if self.data_format == "channels_first" else x

    def compute_output_shape(self, input_shape):
        if self._plan["resize"] is not None:
            _, _, _, _, h, w = self._plan["resize"]
        else:
            h, w = self.image_size
        batch = input_shape[0] if input_shape is not None else None
        return (batch, 3, h, w) if self.data_format == "channels_first" else (batch, h, w, 3)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("autocast", None)
        return {**config, "processor_config": self.processor_config, "image_size": list(self.image_size),
                "data_format": self.data_format}


def with_preprocessing(model: keras.Model, image_size: Optional[Union[int, tuple[int, int]]] = None,
                       processor: Optional[ConvNextImageProcessor] = None) -> keras.Sequential:
    """``model`` behind its image processor: a Sequential taking uint8 RGB images (B, H, W, 3) of
    ``image_size`` (default ``config.image_size``). ``processor``: default the model's own
    ``preprocessor_config`` (from its folder), else the processor's defaults at ``config.image_size``."""
    from convnext_common.checkpoints.preprocessing import default_preprocessor_config

    if processor is not None:
        settings = processor.to_dict()
    elif model.preprocessor_config is not None:
        settings = dict(model.preprocessor_config)
    else:
        settings = default_preprocessor_config(model.config.image_size)
    size = image_size if image_size is not None else model.config.image_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    layer = TFConvNextImagePreprocessing(settings, size, data_format=model.data_format, name="preprocessing")
    return keras.Sequential([keras.Input((*size, 3), dtype="uint8"), layer, model], name=f"{model.name}_on_pixels")

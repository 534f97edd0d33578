"""Write tests/fixtures/image-processor-channels/expected.npz: transformers' ``ConvNextImageProcessor``
(the PIL one) on images of 2, 4 and 5 channels, for tests/core/test_image_processor_channels.py.

Each case stores its input (``<case>__input``), the keyword arguments (``<case>__kwargs``, JSON) and
transformers' ``pixel_values`` (``<case>``), or, where transformers refuses the input, the exception's
class name (``<case>__error``).

Run in a separate environment with transformers 4.57 (not a dependency of this project)::

    python -m venv /tmp/venv-hf457 && /tmp/venv-hf457/bin/pip install torch==2.13.0 "transformers==4.57.*" pillow
    /tmp/venv-hf457/bin/python scripts/make_processor_channels_fixtures.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import transformers
from transformers import ConvNextImageProcessor

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "image-processor-channels" / "expected.npz"


def inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(25)
    u8 = lambda *shape: rng.integers(0, 256, shape, dtype=np.uint8)  # noqa: E731
    alpha = u8(31, 45, 4)
    alpha[:10, :, 3] = 0  # fully transparent rows: their colour is lost in PIL's premultiplied resize
    alpha[10:20, :, 3] = 255
    return {
        "hwc4": alpha,
        "chw4_float": rng.random((4, 40, 29)).astype(np.float32),
        "chw2": u8(2, 33, 50),
        "hwc5": u8(30, 36, 5),
        "hwc4_small": u8(12, 9, 4),
    }


#: case -> (input, kwargs of the processor's constructor, kwargs of the call)
CASES = {
    # transformers' test_call_numpy_4_channels: its image_processor_dict, scalar statistics per call
    # (resample given everywhere: transformers 4 defaults to bilinear, this project to bicubic)
    "test_4_channels_last": ("hwc4", {"size": {"shortest_edge": 20}, "crop_pct": 0.875, "resample": 2},
                             {"input_data_format": "channels_last", "image_mean": 0, "image_std": 1}),
    "bicubic_4_means": ("hwc4", {"size": {"shortest_edge": 24}, "resample": 3},
                        {"input_data_format": "channels_last", "image_mean": [0.1, 0.2, 0.3, 0.4],
                         "image_std": [0.5, 0.25, 0.125, 1.0]}),
    "float_4_channels_first": ("chw4_float", {"size": {"shortest_edge": 16}, "resample": 2, "crop_pct": 1.0},
                               {"input_data_format": "channels_first", "image_mean": 0.5, "image_std": 0.5}),
    "two_channels": ("chw2", {"size": {"shortest_edge": 20}, "resample": 3},
                     {"input_data_format": "channels_first", "image_mean": [0.4, 0.6], "image_std": [0.2, 0.3]}),
    "padded_crop_4": ("hwc4_small", {"size": {"shortest_edge": 16}, "crop_pct": 1.5, "resample": 3},
                      {"input_data_format": "channels_last", "image_mean": 0.25, "image_std": 2.0}),
    "no_resize_4": ("hwc4", {"do_resize": False},
                    {"input_data_format": "channels_last", "image_mean": [0.5, 0.4, 0.3, 0.2],
                     "image_std": 0.5}),
    "no_resize_5": ("hwc5", {"do_resize": False}, {"input_data_format": "channels_last", "image_mean": 0.5,
                                                   "image_std": 0.25}),
    "nearest_4": ("hwc4", {"size": {"shortest_edge": 20}, "resample": 0},
                  {"input_data_format": "channels_last", "image_mean": 0, "image_std": 1}),
    # refusals
    "inferred_4": ("hwc4", {"size": {"shortest_edge": 20}, "resample": 3}, {"image_mean": 0, "image_std": 1}),
    "mean_3_for_4": ("hwc4", {"size": {"shortest_edge": 20}, "resample": 3}, {"input_data_format": "channels_last"}),
    "resize_5": ("hwc5", {"size": {"shortest_edge": 20}, "resample": 3}, {"input_data_format": "channels_last", "image_mean": 0,
                                                          "image_std": 1}),
}


def main() -> None:
    images = inputs()
    out: dict[str, np.ndarray] = {f"{name}__input": arr for name, arr in images.items()}
    for case, (image, init, call) in CASES.items():
        out[f"{case}__kwargs"] = np.array(json.dumps({"image": image, "init": init, "call": call}))
        try:
            pixels = ConvNextImageProcessor(**init)(images[image], return_tensors="np", **call).pixel_values
        except Exception as e:  # noqa: BLE001 -- the refusal itself is the reference
            out[f"{case}__error"] = np.array(type(e).__name__)
            print(f"{case}: {type(e).__name__}: {e}")
            continue
        out[case] = pixels
        print(f"{case}: {pixels.shape} {pixels.dtype}")
    out["transformers_version"] = np.array(transformers.__version__)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""File sizes of float32 and dynamic-range int8 TFLite exports (the README's "3.5x to 3.9x smaller").

    python scripts/tflite_int8_sizes.py                          # digits model, convnext-atto, convnext-tiny
    python scripts/tflite_int8_sizes.py --variants convnext-atto # fewer models

The embedded digits model and random-init variants (the size does not depend on the weights' values),
each written by convnext_tf.export.export_tflite (checked at one small input) into a temporary folder.
About a minute for ConvNeXt-T on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402,F401  (before tensorflow)

import convnext_tf as tfm  # noqa: E402
from convnext_app.inference import default_model_dir  # noqa: E402
from convnext_common.variants import config_for_variant  # noqa: E402
from convnext_tf.export import export_tflite  # noqa: E402


def sizes(model, folder: Path) -> tuple[int, int]:
    """(float32 bytes, int8 bytes) of the model's two TFLite files."""
    out = []
    for int8 in (False, True):
        path = folder / f"{'int8' if int8 else 'f32'}.tflite"
        export_tflite(model, path, int8=int8, overwrite=True, check_shapes=[(1, model.config.num_channels, 64, 64)])
        out.append(path.stat().st_size)
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="*", default=["convnext-atto", "convnext-tiny"])
    args = parser.parse_args()
    models = {"digits (embedded)": lambda: tfm.TFConvNextForImageClassification.from_pretrained(default_model_dir())}
    for name in args.variants:
        models[name] = lambda name=name: tfm.TFConvNextForImageClassification(config_for_variant(name))
    print("| model | parameters | float32 | int8 | ratio |\n|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in models.items():
            model = make()
            model(np.zeros((1, model.config.num_channels, 64, 64), np.float32), training=False)
            params = sum(int(np.prod(w.shape)) for w in model.weights)
            f32, int8 = sizes(model, Path(tmp))
            print(f"| {name} | {params / 1e6:.2f}M | {f32 / 1e6:.1f} MB | {int8 / 1e6:.2f} MB | {f32 / int8:.2f}x |",
                  flush=True)


if __name__ == "__main__":
    main()

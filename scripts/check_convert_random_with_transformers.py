#!/usr/bin/env python3
"""Convert every case of tests/fixtures/convert_random that must convert, load the result with transformers'
PyTorch classes and print the largest rel against the writer's recorded output.

Run in the peer environment (transformers is not a dependency of this project), from the repository root:

    python scripts/check_convert_random_with_transformers.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import transformers

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from convnext_common.checkpoints.pipeline import convert  # noqa: E402

CASES = ROOT / "tests" / "fixtures" / "convert_random"


def main() -> int:
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for folder in sorted(p for p in CASES.iterdir() if (p / "case.json").is_file()):
            meta = json.loads((folder / "case.json").read_text())
            if meta["expect"] != "converted":
                continue
            out = Path(tmp) / folder.name
            convert(folder / meta["input"], out, to="pt", progress=False, ema="--ema" in meta["args"])
            config = json.loads((out / "config.json").read_text())
            model = getattr(transformers, config["architectures"][0]).from_pretrained(out).eval()
            data = np.load(folder / "expected.npz")
            x = data["x"].astype(np.float32)
            if meta["input_layout"] != "nchw":
                if meta["input_layout"] == "nhwc_0_255":
                    pre = json.loads((out / "preprocessor_config.json").read_text())
                    x = (x * pre["rescale_factor"] - np.array(pre["image_mean"])) / np.array(pre["image_std"])
                x = np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype(np.float32)
            with torch.no_grad():
                o = model(torch.from_numpy(x))
            got = o.feature_maps[-1] if meta["output"] == "feature_map" else getattr(o, meta["output"])
            y = data["y"].astype(np.float64)
            rel = float(np.abs(got.numpy().astype(np.float64) - y).max() / max(1.0, np.abs(y).max()))
            worst = max(worst, rel)
            print(f"{folder.name:16s} {config['architectures'][0]:34s} rel {rel:.2e}")
    print(f"transformers {transformers.__version__}: max rel {worst:.2e}")
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())

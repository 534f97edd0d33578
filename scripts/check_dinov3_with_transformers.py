#!/usr/bin/env python3
"""Folders this project writes for DINOv3's ConvNeXt, loaded by transformers' DINOv3ConvNextModel.

Two steps, because transformers is not a dependency of this project:

    python scripts/check_dinov3_with_transformers.py write /tmp/dinov3-check        # this project's env
    /tmp/venv-hf457/bin/python scripts/check_dinov3_with_transformers.py check /tmp/dinov3-check
        # an environment with transformers (and torch) only, e.g. transformers 4.57.6

``write`` saves tests/fixtures/dinov3-convnext/tiny through the PyTorch twin's and the Keras twin's
``save_pretrained`` and converts the fixture's official and timm layouts and a ConvNeXt V1 copy of it
back to DINOv3 folders. ``check`` loads each with transformers (missing / unexpected keys must be
empty) and prints the largest rel of its outputs against tiny's expected.npz (transformers' own).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "dinov3-convnext"


def write(out: Path) -> None:
    import torch  # noqa: F401  (before TensorFlow)

    sys.path.insert(0, str(ROOT))
    import convnext_pt
    import convnext_tf
    from convnext_common.checkpoints.pipeline import convert

    convnext_pt.AutoModel.from_pretrained(FIXTURES / "tiny").save_pretrained(out / "pt-saved")
    convnext_tf.TFAutoModel.from_pretrained(FIXTURES / "tiny").save_pretrained(out / "tf-saved")
    convert(FIXTURES / "official-tiny.pth", out / "official-converted", progress=False)
    convert(FIXTURES / "timm-tiny", out / "timm-converted", progress=False)
    convert(FIXTURES / "tiny", out / "as-convnext", family="convnext", progress=False)
    convert(out / "as-convnext", out / "convnext-to-dinov3", family="dinov3", to="pt", progress=False)
    print(f"wrote {out}")


def check(out: Path) -> int:
    import torch
    import transformers
    from transformers import DINOv3ConvNextModel

    ref = dict(np.load(FIXTURES / "tiny" / "expected.npz"))
    worst, failed = 0.0, 0
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and p.name != "as-convnext"):
        model, info = DINOv3ConvNextModel.from_pretrained(folder, output_loading_info=True)
        problems = {k: v for k, v in info.items() if v and k != "error_msgs"}
        rel = 0.0
        for suffix in ("", "_odd"):
            with torch.no_grad():
                o = model(torch.from_numpy(ref["pixel_values" + suffix]), output_hidden_states=True)
            outs = {"last_hidden_state": o.last_hidden_state, "pooler_output": o.pooler_output,
                    **{f"hidden_states_{i}": h for i, h in enumerate(o.hidden_states)}}
            for name, value in outs.items():
                want = ref[name + suffix]
                rel = max(rel, float(np.abs(value.numpy() - want).max() / max(1.0, np.abs(want).max())))
        worst = max(worst, rel)
        failed += bool(problems) or rel > 1e-4
        print(f"{folder.name}: rel {rel:.2e}{'; ' + str(problems) if problems else ''}")
    print(f"transformers {transformers.__version__}: max rel {worst:.2e}, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "check"):
        sys.exit(__doc__)
    target = Path(sys.argv[2])
    sys.exit(write(target) if sys.argv[1] == "write" else check(target))

#!/usr/bin/env python3
"""Write tests/fixtures/pil-pass-order/pillow-<version>.json: which pass PIL runs first, as observed.

Each case is ``[w, h, out_w, out_h, resample, box_x0, box_y0, box_x1, box_y1, first]`` with ``first``
"h" (horizontal pass first) or "v".

PIL resizes 8-bit images one axis at a time and rounds to uint8 in between, so the pass order shows
in the pixels. For each case this script resizes a random image with ``Image.resize`` and compares
it with PIL's own two single-axis resizes composed in each order (a resize that keeps one axis is a
single pass); where exactly one order reproduces it, that order is recorded. Only PIL is used.

Not run by the tests. Run it with each Pillow version to record, e.g. in a separate environment:

    python -m venv /tmp/pil-env && /tmp/pil-env/bin/pip install numpy pillow==12.3.0
    /tmp/pil-env/bin/python scripts/record_pil_pass_order.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "pil-pass-order"
FILTERS = (1, 2, 3, 4, 5)  # lanczos, bilinear, bicubic, box, hamming


def observed_order(pixels: np.ndarray, out_w: int, out_h: int, resample: int, box: tuple) -> str | None:
    """"horizontal" / "vertical" first, or None when both orders give PIL's pixels."""
    img = Image.fromarray(pixels)
    h, w = pixels.shape[:2]
    x0, y0, x1, y1 = box
    full = np.asarray(img.resize((out_w, out_h), resample, box=box))
    h_first = img.resize((out_w, h), resample, box=(x0, 0, x1, h)).resize((out_w, out_h), resample,
                                                                          box=(0, y0, out_w, y1))
    v_first = img.resize((w, out_h), resample, box=(0, y0, w, y1)).resize((out_w, out_h), resample,
                                                                          box=(x0, 0, x1, out_h))
    h_ok, v_ok = np.array_equal(full, np.asarray(h_first)), np.array_equal(full, np.asarray(v_first))
    if h_ok == v_ok:
        if not h_ok:
            raise AssertionError(f"neither order reproduces PIL for {w}x{h} -> {out_w}x{out_h} {resample} {box}")
        return None
    return "horizontal" if h_ok else "vertical"


def cases(rng: np.random.Generator):
    """Sizes around each Pillow version's rule (ratios near 2 and 100) and boxes."""
    for _ in range(800):
        w, h = (int(v) for v in rng.integers(1, 60, 2))
        if rng.random() < 0.3:
            h *= int(rng.integers(2, 140))  # tall images, some more than 100x taller than wide
        if rng.random() < 0.1:
            w *= int(rng.integers(2, 20))
        out_w, out_h = (int(v) for v in rng.integers(1, 100, 2))
        box = (0.0, 0.0, float(w), float(h))
        if rng.random() < 0.3:  # a box selecting part of the image (float32-exact ends)
            x0, y0 = float(np.float32(rng.uniform(0, w / 2))), float(np.float32(rng.uniform(0, h / 2)))
            box = (x0, y0, float(np.float32(rng.uniform(x0 + 0.25, w))), float(np.float32(rng.uniform(y0 + 0.25, h))))
        yield w, h, out_w, out_h, int(rng.choice(FILTERS)), box
    # the boundaries: height loss exactly / just over twice the width loss; 100x taller, or just over
    for w, h, out_w, out_h in ((50, 100, 40, 80), (50, 100, 40, 79), (60, 90, 50, 70), (60, 90, 50, 69),
                               (3, 300, 2, 20), (3, 301, 2, 20), (2, 300, 1, 20), (2, 300, 3, 400)):
        for resample in (2, 3):
            yield w, h, out_w, out_h, resample, (0.0, 0.0, float(w), float(h))


def main() -> None:
    rng = np.random.default_rng(0)
    recorded = []
    for w, h, out_w, out_h, resample, box in cases(rng):
        order = observed_order(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), out_w, out_h, resample, box)
        if order is not None:
            recorded.append([w, h, out_w, out_h, resample, *box, order[0]])
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"pillow-{PIL.__version__}.json"
    path.write_text(json.dumps({"pillow": PIL.__version__, "cases": recorded}, separators=(",", ":")) + "\n")
    print(f"{path}: {len(recorded)} cases, {sum(c[-1] == 'v' for c in recorded)} vertical first")


if __name__ == "__main__":
    main()

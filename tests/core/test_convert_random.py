"""Randomized conversion: seeded random ConvNeXts written by the peers themselves, converted through
``convnext convert``.

tests/fixtures/convert_random holds checkpoints that timm, torchvision, transformers and tf-keras wrote
(and official-layout ones), with their outputs (scripts/make_convert_random_fixtures.py; its README
says which versions). Keras 3 keras-applications models are built here too. Every case must end one
of two ways, and the case records which (decided by inspecting the source model, not by the converter):

- converted: both twins load the folder and reproduce the source's output, rel <= 1e-4;
- refused: exit code 1, one line on stderr naming a reason the case records, and no output folder.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FIXTURES, rel_err
import convnext_pt
from convnext_app.cli import main as cli_main

CASES_DIR = FIXTURES / "convert_random"
CASES = sorted(p.name for p in CASES_DIR.iterdir() if (p / "case.json").is_file())
TOLERANCE = 1e-4

#: what a refusal message says for each reason the generator records.
REASON_PATTERNS = {
    "dilation": r"dilat", "stage0_stride": r"stage 0", "activation": r"activation", "pooling": r"pool",
    "norm": r"norm layer|RMSNorm|bias-free", "norm_eps": r"epsilon", "kernel": r"depthwise", "stem": r"stem",
    "head_mlp": r"head MLP", "head_norm_first": r"head_norm_first", "grn_and_layer_scale": r"GRN and layer scale",
}


def convert_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli_main(["convert", *argv, "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def model_input(x: np.ndarray, layout: str, folder: Path) -> np.ndarray:
    """The source's input as the converted model takes it: normalised NCHW. keras-applications takes
    NHWC and, with its Normalization layer, pixels in [0, 255]: the written preprocessor config's
    rescale, mean and std turn those into what the converted model takes."""
    if layout == "nchw":
        return x
    pre_file = folder / "preprocessor_config.json"
    if layout == "nhwc":
        assert not pre_file.exists(), "a model without its Normalization layer got a preprocessor config"
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    pre = json.loads(pre_file.read_text())
    x = (x * pre["rescale_factor"] - np.array(pre["image_mean"])) / np.array(pre["image_std"])
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)).astype(np.float32)


def main_output(out, kind: str):
    if kind == "feature_map":
        return out.feature_maps[-1]
    return getattr(out, kind)


def check_converted(folder: Path, x: np.ndarray, y: np.ndarray, meta: dict) -> dict[str, float]:
    """rel of each twin's output against the source's."""
    config = json.loads((folder / "config.json").read_text())
    arch = config["architectures"][0]
    x = model_input(x, meta["input_layout"], folder)
    rels = {}
    pt_model = getattr(convnext_pt, arch).from_pretrained(folder).eval()
    with torch.no_grad():
        rels["pt"] = rel_err(main_output(pt_model(torch.from_numpy(x)), meta["output"]).numpy(), y)
    import convnext_tf

    tf_model = getattr(convnext_tf, "TF" + arch).from_pretrained(folder)  # reads tf_model.h5
    rels["tf"] = rel_err(np.asarray(main_output(tf_model(x, training=False), meta["output"])), y)
    return rels


def check_refused(code: int, err: str, out_dir: Path, reasons: list[str]) -> str:
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, f"exit {code}, stderr:\n{err}"
    line = lines[0]
    assert line.startswith("convnext convert: error: ") and "Traceback" not in err, line
    assert any(re.search(REASON_PATTERNS[r], line) for r in reasons), f"names none of {reasons}: {line}"
    assert not out_dir.exists(), "a refused conversion left its output folder"
    return line


@pytest.mark.parametrize("case", CASES)
def test_peer_checkpoint_converts_with_its_numbers_or_is_refused(case, tmp_path, capsys):
    folder = CASES_DIR / case
    meta = json.loads((folder / "case.json").read_text())
    out_dir = tmp_path / "out"
    code, _, err = convert_cli([str(folder / meta["input"]), str(out_dir), *meta["args"]], capsys)
    if meta["expect"] == "refused":
        check_refused(code, err, out_dir, meta["reasons"])
        return
    assert code == 0, f"{meta['description']}: {err}"
    data = np.load(folder / "expected.npz")
    rels = check_converted(out_dir, data["x"].astype(np.float32), data["y"], meta)
    assert max(rels.values()) <= TOLERANCE, (meta["description"], rels)


def test_the_cases_cover_every_source_and_both_outcomes():
    metas = [json.loads((CASES_DIR / c / "case.json").read_text()) for c in CASES]
    assert {m["source"] for m in metas} == {"timm", "torchvision", "official", "hf", "keras"}
    for source in ("timm", "keras"):
        assert {m["expect"] for m in metas if m["source"] == source} == {"converted", "refused"}
    assert any("--ema" in m["args"] for m in metas)


# --- keras-applications in Keras 3, built here: a whole-model .h5 (the same legacy layout) ---------
KERAS3_HEADS = [(True, None, "converted"), (False, "avg", "converted"), (False, None, "refused")]


def _redraw_keras(model, rng: np.random.Generator) -> None:
    new = []
    for v in model.weights:
        name, shape = v.path if hasattr(v, "path") else v.name, tuple(v.shape)
        if "layer_scale" in name or "grn" in name:
            new.append(rng.uniform(0.2, 1.0, shape))
        elif len(shape) >= 2:
            new.append(rng.standard_normal(shape) / math.sqrt(int(np.prod(shape[:-1]))))
        elif "bias" in name or "beta" in name:
            new.append(rng.standard_normal(shape) * 0.1)
        elif "gamma" in name:
            new.append(1 + rng.standard_normal(shape) * 0.1)
        else:
            new.append(np.asarray(v))
    model.set_weights([a.astype(np.float32) for a in new])


@pytest.mark.parametrize("top, pooling, expect", KERAS3_HEADS)
def test_keras3_application_converts_or_is_refused(top, pooling, expect, tmp_path, capsys):
    import keras
    from keras.src.applications import convnext  # the builder behind ConvNeXtTiny etc.

    rng = np.random.default_rng(14 + len(str(pooling)) + top)
    depths = [1, 0, 1, 2] if top else [2, 1, 1, 0]
    h, w = 33 + int(rng.integers(0, 9)), 33 + int(rng.integers(0, 9))
    model = convnext.ConvNeXt(depths=depths, projection_dims=[4, 6, 8, 10], include_top=top, pooling=pooling,
                              weights=None, classes=3, input_shape=(h, w, 3), name="k3_convnext",
                              classifier_activation=None)
    _redraw_keras(model, rng)
    model.save(tmp_path / "k3.h5")
    x = rng.uniform(0, 255, (2, h, w, 3)).astype(np.float32)
    y = np.asarray(model(x, training=False))
    out_dir = tmp_path / "out"
    code, _, err = convert_cli([str(tmp_path / "k3.h5"), str(out_dir)], capsys)
    if expect == "refused":
        check_refused(code, err, out_dir, ["pooling"])
        return
    assert code == 0, err
    meta = {"input_layout": "nhwc_0_255", "output": "logits" if top else "pooler_output"}
    rels = check_converted(out_dir, x, y, meta)
    assert max(rels.values()) <= TOLERANCE, rels
    del keras

"""The processing core on its own: PIL's arithmetic against PIL itself, tensor types found by name
without the core naming a framework, and tensors read through the array protocols.

References: PIL (the installed one, and the pass orders other Pillow versions were observed to use,
tests/fixtures/pil-pass-order/), the numpy results of the same images, and the process's own imports.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FIXTURES
from convnext_common import ConvNextImageProcessor
from convnext_common import tensor_types
from convnext_common.processing import BatchFeature
from convnext_common.processing.geometry import center_crop_plan, resize_output_size
from convnext_common.processing.pil_resize import resize_and_crop
from convnext_common.processing.resampling import (
    FILTERS, PIL_VERSION, pil_horizontal_first, pil_nearest_indices, pil_window_matrix, round_fixed_point,
)
from tensor_types_support import ROOT, project_entry_points, write_distribution

PASS_ORDERS = sorted((FIXTURES / "pil-pass-order").glob("pillow-*.json"))
PIL_FILTERS = sorted(f for f in FILTERS if f in {int(r) for r in Image.Resampling})
SIZE = {"shortest_edge": 32}


def _random_case(rng: np.random.Generator) -> tuple[int, int, int, int, tuple[float, float, float, float]]:
    w, h = (int(v) for v in rng.integers(1, 50, 2))
    if rng.random() < 0.3:
        h *= int(rng.integers(2, 130))  # tall, some more than 100x taller than wide
    out_w, out_h = (int(v) for v in rng.integers(1, 80, 2))
    box = (0.0, 0.0, float(w), float(h))
    if rng.random() < 0.3:
        x0, y0 = float(np.float32(rng.uniform(0, w / 2))), float(np.float32(rng.uniform(0, h / 2)))
        box = (x0, y0, float(np.float32(rng.uniform(x0 + 0.25, w))), float(np.float32(rng.uniform(y0 + 0.25, h))))
    return w, h, out_w, out_h, box


# --- PIL's pass order ----------------------------------------------------------------------------------
def test_pass_order_is_the_installed_pils():
    """PIL's resize against its own single-axis resizes composed in the order the core says."""
    rng = np.random.default_rng(11)
    decisive = 0
    for _ in range(250):
        w, h, out_w, out_h, (x0, y0, x1, y1) = _random_case(rng)
        resample = int(rng.choice([1, 2, 3, 4, 5]))
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        full = np.asarray(img.resize((out_w, out_h), resample, box=(x0, y0, x1, y1)))
        h_first = img.resize((out_w, h), resample, box=(x0, 0, x1, h)).resize((out_w, out_h), resample,
                                                                              box=(0, y0, out_w, y1))
        v_first = img.resize((w, out_h), resample, box=(0, y0, w, y1)).resize((out_w, out_h), resample,
                                                                              box=(x0, 0, x1, out_h))
        h_ok, v_ok = np.array_equal(full, np.asarray(h_first)), np.array_equal(full, np.asarray(v_first))
        assert h_ok or v_ok, (w, h, out_w, out_h, resample)
        if h_ok != v_ok:
            decisive += 1
            assert pil_horizontal_first(w, h, out_w, out_h) == h_ok, (w, h, out_w, out_h, resample, (x0, y0, x1, y1))
    assert decisive > 100


@pytest.mark.parametrize("path", PASS_ORDERS, ids=[p.stem for p in PASS_ORDERS])
def test_pass_order_of_other_pillow_versions(path):
    recorded = json.loads(path.read_text())
    version = tuple(int(p) for p in recorded["pillow"].split(".")[:2])
    for w, h, out_w, out_h, resample, *box, first in recorded["cases"]:
        assert pil_horizontal_first(w, h, out_w, out_h, pil_version=version) == (first == "h"), \
            (recorded["pillow"], w, h, out_w, out_h, resample, box)


def test_pass_order_fixtures_cover_each_rule():
    versions = {json.loads(p.read_text())["pillow"] for p in PASS_ORDERS}
    assert {"12.1.0", "12.2.0", "13.0.0"} <= versions


# --- PIL's arithmetic, in numpy, against PIL ------------------------------------------------------------
def _one_pass(pixels: np.ndarray, axis: int, out_size: int, resample: int) -> np.ndarray:
    """PIL's pass over ``axis`` (1: width, 0: height) from the core's arithmetic."""
    n = pixels.shape[axis]
    if resample == 0:
        return np.take(pixels, pil_nearest_indices(n, out_size), axis=axis)
    lo, hi, m = pil_window_matrix(n, out_size, 0, out_size, resample)
    src = np.moveaxis(pixels.astype(np.float64), axis, -1)[..., lo:hi]
    return np.moveaxis(round_fixed_point(src @ m), -1, axis).astype(np.uint8)


@pytest.mark.parametrize("resample", [0, *PIL_FILTERS])
def test_core_arithmetic_reproduces_pils_resize(resample):
    rng = np.random.default_rng(resample)
    for _ in range(40):
        w, h, out_w, out_h, _ = _random_case(rng)
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        want = np.asarray(Image.fromarray(pixels).resize((out_w, out_h), resample))
        if resample == 0 or pil_horizontal_first(w, h, out_w, out_h):
            got = _one_pass(_one_pass(pixels, 1, out_w, resample), 0, out_h, resample)
        else:
            got = _one_pass(_one_pass(pixels, 0, out_h, resample), 1, out_w, resample)
        np.testing.assert_array_equal(got, want, err_msg=f"{w}x{h} -> {out_w}x{out_h}")


def test_split_resize_of_tall_images_is_pils():
    """Images more than 100x taller than wide: the crop-only resize still equals PIL's full resize."""
    rng = np.random.default_rng(3)
    for w, h, shortest_edge in ((2, 400, 8), (3, 2000, 16), (5, 700, 12), (1, 150, 20)):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for resample in (1, 2, 3, 4, 5):
            out_h, out_w = resize_output_size(h, w, shortest_edge, 0.875)
            crop = center_crop_plan(out_h, out_w, shortest_edge, shortest_edge)
            full = np.asarray(Image.fromarray(pixels).resize((out_w, out_h), resample))
            want = full[crop.src_y:crop.src_y + crop.h, crop.src_x:crop.src_x + crop.w]
            np.testing.assert_array_equal(resize_and_crop(Image.fromarray(pixels), out_h, out_w, crop, resample), want)


# --- the core names no framework ----------------------------------------------------------------------
FRAMEWORK_WORDS = re.compile(r"torch|tensorflow|keras|jax|convnext_pt|convnext_tf|convnext_app", re.IGNORECASE)
CORE_FILES = [*sorted((ROOT / "convnext_common" / "processing").glob("*.py")),
              ROOT / "convnext_common" / "tensor_types.py", ROOT / "convnext_common" / "constants.py"]


@pytest.mark.parametrize("path", CORE_FILES, ids=[p.name for p in CORE_FILES])
def test_processing_core_names_no_framework(path):
    found = [f"{path.name}:{i}: {line.strip()}" for i, line in enumerate(path.read_text().splitlines(), 1)
             if FRAMEWORK_WORDS.search(line)]
    assert not found, found


def _run(code: str, pythonpath: list) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in [*pythonpath, ROOT]))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_pt_tensors_come_from_the_declaration_without_the_twin(tmp_path):
    """``return_tensors="pt"`` works before anything imported the PyTorch twin or the framework."""
    site = write_distribution(tmp_path, project_entry_points())
    out = _run(
        "import sys, numpy as np\n"
        "from convnext_common import ConvNextImageProcessor\n"
        "p = ConvNextImageProcessor(size=32)\n"
        "x = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)\n"
        "want = p(x, return_tensors='np').pixel_values\n"
        "assert 'torch' not in sys.modules\n"
        "got = p(x, return_tensors='pt').pixel_values\n"
        "assert type(got).__module__ + '.' + type(got).__name__ == 'torch.Tensor', type(got)\n"
        "assert (got.numpy() == want).all()\n"
        "assert not any(m.startswith('convnext_pt') for m in sys.modules)\n"
        "print('ok')\n", [site])
    assert out.strip() == "ok"


@pytest.mark.tf
def test_tf_tensors_come_from_the_declaration_without_the_twin(tmp_path):
    pytest.importorskip("tensorflow")
    site = write_distribution(tmp_path, project_entry_points())
    out = _run(
        "import sys, numpy as np\n"
        "import torch  # first, as everywhere\n"
        "from convnext_common import ConvNextImageProcessor\n"
        "x = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)\n"
        "p = ConvNextImageProcessor(size=32)\n"
        "got = p(x, return_tensors='tf').pixel_values\n"
        "import tensorflow as tf\n"
        "assert isinstance(got, tf.Tensor), type(got)\n"
        "assert (got.numpy() == p(x, return_tensors='np').pixel_values).all()\n"
        "assert not any(m.startswith('convnext_tf') for m in sys.modules)\n"
        "print('ok')\n", [site])
    assert out.strip().endswith("ok")


def test_missing_framework_is_one_clear_error(tmp_path, monkeypatch):
    site = write_distribution(tmp_path, {tensor_types.ENTRY_POINT_GROUP: {"zz": "no_such_framework_zz:asarray"}})
    monkeypatch.syspath_prepend(str(site))
    proc = ConvNextImageProcessor(size=SIZE)
    with pytest.raises(ImportError) as info:
        proc(np.zeros((8, 8, 3), np.uint8), return_tensors="zz")
    message = str(info.value)
    assert "\n" not in message and "return_tensors='zz'" in message and "no_such_framework_zz" in message
    assert "zz" in tensor_types.known_tensor_types()


def test_unknown_tensor_type_names_the_option_and_the_known_ones():
    with pytest.raises(ValueError, match=r"return_tensors='mlx'.*known: \[.*'np'"):
        ConvNextImageProcessor(size=SIZE)(np.zeros((8, 8, 3), np.uint8), return_tensors="mlx")
    with pytest.raises(ValueError, match="return_tensors"):
        ConvNextImageProcessor(size=SIZE)(np.zeros((8, 8, 3), np.uint8), return_tensors=3)


def test_a_registered_tensor_type_is_used(monkeypatch):
    monkeypatch.setattr(tensor_types, "_CONVERTERS", dict(tensor_types._CONVERTERS))
    tensor_types.register_tensor_type("nested", lambda batch: batch.tolist())
    x = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    proc = ConvNextImageProcessor(size=SIZE)
    assert proc(x, return_tensors="nested").pixel_values == proc(x, return_tensors="np").pixel_values.tolist()
    with pytest.raises(ValueError, match="callable"):
        tensor_types.register_tensor_type("bad", "not a function")


# --- tensors read through the array protocols -------------------------------------------------------
def test_tensors_of_types_numpy_lacks_are_read_exactly():
    """bfloat16 / float8 tensors (no numpy dtype) give the result of the same values as float32."""
    rng = np.random.default_rng(5)
    proc = ConvNextImageProcessor(size=SIZE)
    base = torch.from_numpy(rng.integers(0, 256, (3, 40, 50)).astype(np.float32))
    unit = torch.from_numpy(rng.random((3, 40, 50), dtype=np.float32))
    cases = [(base.to(torch.bfloat16), {}), (unit.to(torch.bfloat16), {"do_rescale": False}),
             (unit.to(torch.float8_e4m3fn), {"do_rescale": False}), (base.to(torch.uint16), {}),
             (base.clone().requires_grad_(True), {})]
    for tensor, kwargs in cases:
        want = proc(tensor.detach().to(torch.float32).numpy(), return_tensors="np", **kwargs).pixel_values
        got = proc(tensor, return_tensors="np", **kwargs).pixel_values
        np.testing.assert_array_equal(got, want, err_msg=str(tensor.dtype))
        unresized = proc(tensor, return_tensors="np", do_resize=False, **kwargs).pixel_values
        np.testing.assert_array_equal(
            unresized, proc(tensor.detach().to(torch.float32).numpy(), return_tensors="np", do_resize=False,
                            **kwargs).pixel_values, err_msg=str(tensor.dtype))


def test_any_object_with_the_array_protocol_is_an_image():
    class OnlyArray:  # e.g. an image type of another library
        def __init__(self, a):
            self.a = a

        def __array__(self, dtype=None, copy=None):
            return self.a

    x = np.random.default_rng(2).integers(0, 256, (30, 20, 3), dtype=np.uint8)
    proc = ConvNextImageProcessor(size=SIZE)
    np.testing.assert_array_equal(proc(OnlyArray(x), return_tensors="np").pixel_values,
                                  proc(x, return_tensors="np").pixel_values)


def test_batch_feature_to_moves_tensors_and_leaves_arrays():
    out = BatchFeature({"pixel_values": torch.zeros(2, 3), "names": np.zeros(2), "list": [1]})
    moved = out.to(torch.float64)
    assert isinstance(moved, BatchFeature) and moved.pixel_values.dtype == torch.float64
    assert moved["names"] is out["names"] and moved["list"] is out["list"]


def test_pil_version_is_read():
    assert PIL_VERSION == tuple(int(p) for p in Image.__version__.split(".")[:2])

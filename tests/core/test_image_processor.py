"""ConvNextImageProcessor (PIL + numpy) against transformers' outputs and transformers' documented rules.

Ground truth: tests/fixtures/image-processor (transformers 4.57.6's slow ConvNextImageProcessor fed
``Image.open(path).convert("RGB")``). Where no fixture covers a case (float arrays, padding, other
modes), the reference is a few lines of plain PIL + numpy written here from transformers' rules.
"""

from __future__ import annotations

import functools
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import FIXTURES, PROCESSOR_FIXTURES as SETTINGS, PROCESSOR_MANIFEST as MANIFEST, load_image as load
from convnext_common import ConvNextFeatureExtractor, ConvNextImageProcessor
from convnext_common.processing.geometry import center_crop_plan, resize_output_size
from convnext_common.processing.pil_resize import resize_and_crop

CASES = [(name, image) for name, entry in MANIFEST.items() for image in entry["images"]]
HUB = MANIFEST["hub_tiny_224"]["kwargs"]


def expected(setting: str) -> dict:
    return dict(np.load(SETTINGS / setting / "expected.npz"))


def reference(rgb_u8: np.ndarray, shortest_edge: int = 224, crop_pct: float = 0.875, resample: int = 3,
              mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), value_scale: float = 1.0) -> np.ndarray:
    """transformers' ConvNeXt pipeline, written out plainly: PIL resize, crop/pad, rescale, normalise."""
    h, w = rgb_u8.shape[:2]
    if shortest_edge < 384:
        short = int(shortest_edge / crop_pct)
        size = (int(short * h / w), short) if w <= h else (short, int(short * w / h))
    else:
        size = (shortest_edge, shortest_edge)
    img = np.asarray(Image.fromarray(rgb_u8).resize(size[::-1], resample)).astype(np.float64)
    if shortest_edge < 384:  # transformers' center_crop, padding with zeros when too small
        hh, ww = img.shape[:2]
        nh, nw = max(hh, shortest_edge), max(ww, shortest_edge)
        padded = np.zeros((nh, nw, 3))
        ty, tx = math.ceil((nh - hh) / 2), math.ceil((nw - ww) / 2)
        padded[ty:ty + hh, tx:tx + ww] = img
        top, left = (hh - shortest_edge) // 2 + ty, (ww - shortest_edge) // 2 + tx
        img = padded[top:top + shortest_edge, left:left + shortest_edge]
    img = img * value_scale / 255
    return ((img - np.asarray(mean)) / np.asarray(std)).transpose(2, 0, 1)


# --- transformers' outputs ----------------------------------------------------------------------------
@pytest.mark.parametrize("setting,image", CASES)
def test_matches_transformers_fixture(setting, image):
    ref = expected(setting)[image]
    kwargs = MANIFEST[setting]["kwargs"]
    from_kwargs = ConvNextImageProcessor(**kwargs)
    from_file = ConvNextImageProcessor.from_pretrained(SETTINGS / setting)
    img = load(image)
    for proc in (from_kwargs, from_file):
        for inp in (img.convert("RGB"), img):  # the reference's own conversion, and ours from any mode
            out = proc(inp, return_tensors="np")["pixel_values"][0]
            assert out.shape == ref.shape and out.dtype == np.float32
            assert np.abs(out - ref).max() <= 1e-5, (setting, image, inp.mode)


def test_saved_config_is_transformers_file():
    saved = json.loads(ConvNextImageProcessor(**HUB).to_json_string())
    assert saved == json.loads((SETTINGS / "hub_tiny_224" / "preprocessor_config.json").read_text())


def test_batch_of_fixture_images_matches_each():
    names = MANIFEST["hub_tiny_224"]["images"]
    ref = expected("hub_tiny_224")
    out = ConvNextImageProcessor(**HUB)([load(n) for n in names], return_tensors="np").pixel_values
    assert out.shape == (len(names), 3, 224, 224)
    for i, n in enumerate(names):
        assert np.abs(out[i] - ref[n]).max() <= 1e-5


def test_threads_do_not_change_results():
    imgs = [load(n) for n in ("china.jpg", "flower.png", "tiny_17x23.png")]
    one = ConvNextImageProcessor(num_threads=1, **HUB)(imgs, return_tensors="np").pixel_values
    many = ConvNextImageProcessor(num_threads=3, **HUB)(imgs, return_tensors="np").pixel_values
    assert np.array_equal(one, many)



@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_thread_pool_works_in_a_forked_child():
    # a DataLoader worker forked after the parent used the pool must not wait on the parent's threads
    code = (
        "import os, numpy as np\n"
        "from convnext_common import ConvNextImageProcessor\n"
        "p = ConvNextImageProcessor(size=64, num_threads=2)\n"
        "imgs = [np.full((50, 70, 3), 9, np.uint8)] * 4\n"
        "ref = p(imgs, return_tensors='np').pixel_values\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0 if np.array_equal(p(imgs, return_tensors='np').pixel_values, ref) else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "raise SystemExit(os.waitstatus_to_exitcode(status))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=FIXTURES.parent.parent)

# --- the crop-only resize is PIL's full resize, bit for bit -------------------------------------------
def test_partial_resize_equals_full_resize_then_crop():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (700, 700, 3), dtype=np.uint8)
    sizes = [(640, 427), (427, 640), (500, 500), (17, 23), (150, 427), (699, 301), (301, 699), (1, 50), (333, 20)]
    for (w, h) in sizes:
        for shortest_edge, crop_pct, resample in ((224, 0.875, 3), (224, 0.875, 2), (64, 0.9, 1), (100, 1.0, 4),
                                                  (160, 0.5, 5), (224, 1.2, 3), (20, 0.875, 0)):
            img = Image.fromarray(base[:h, :w])
            oh, ow = resize_output_size(h, w, shortest_edge, crop_pct)
            crop = center_crop_plan(oh, ow, shortest_edge, shortest_edge)
            ours = resize_and_crop(img, oh, ow, crop, resample)
            full = np.asarray(img.resize((ow, oh), resample))
            want = full[crop.src_y:crop.src_y + crop.h, crop.src_x:crop.src_x + crop.w]
            assert np.array_equal(ours, want), (w, h, shortest_edge, crop_pct, resample)


# --- inputs of every kind -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _modes():
    rgb = load("china_rgba.png")  # 361 x 200 RGBA
    p_transparent = rgb.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE)
    p_transparent.info["transparency"] = 0
    rgb16 = np.asarray(rgb.convert("L")).astype(np.uint16) * 257
    return {
        "RGBA": rgb, "RGB": rgb.convert("RGB"), "L": rgb.convert("L"), "LA": rgb.convert("LA"),
        "P": rgb.convert("RGB").convert("P"), "P+transparency": p_transparent, "CMYK": rgb.convert("CMYK"),
        "YCbCr": rgb.convert("YCbCr"), "1": rgb.convert("1"), "I": rgb.convert("I"), "F": rgb.convert("F"),
        "I;16": Image.fromarray(rgb16),
        "HSV": rgb.convert("RGB").convert("HSV"),
    }


@pytest.mark.parametrize("mode", list(_modes()))
def test_every_pil_mode_is_converted_like_convert_rgb(mode):
    img = _modes()[mode]
    proc = ConvNextImageProcessor(**HUB)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL warns about palette transparency
        want = reference(np.asarray(img.convert("RGB")))
        out = proc(img).pixel_values[0]
    assert out.shape == (3, 224, 224)
    assert np.abs(out - want).max() <= 1e-5


def test_numpy_layouts_and_dtypes():
    img = load("china.jpg")
    hwc = np.asarray(img)
    proc = ConvNextImageProcessor(**HUB)
    want = reference(hwc)
    assert np.abs(proc(hwc).pixel_values[0] - want).max() <= 1e-5
    assert np.abs(proc(np.ascontiguousarray(hwc.transpose(2, 0, 1))).pixel_values[0] - want).max() <= 1e-5
    # integer-valued floats and other integer types are pixels in [0, 255]
    assert np.abs(proc(hwc.astype(np.float64)).pixel_values[0] - want).max() <= 1e-5
    assert np.abs(proc(hwc.astype(np.int32)).pixel_values[0] - want).max() <= 1e-5
    # explicit layout for an ambiguous (3, 3, 3) array
    tiny = np.arange(27, dtype=np.uint8).reshape(3, 3, 3)
    mean, std = np.array(HUB["image_mean"])[:, None, None], np.array(HUB["image_std"])[:, None, None]
    first = proc(tiny, input_data_format="channels_first", do_resize=False).pixel_values[0]
    assert np.allclose(first, (tiny / 255 - mean) / std, atol=1e-5)
    last = proc(tiny, input_data_format="channels_last", do_resize=False).pixel_values[0]
    assert np.allclose(last, (tiny.transpose(2, 0, 1) / 255 - mean) / std, atol=1e-5)


def test_float_images_in_unit_range_follow_transformers():
    rng = np.random.default_rng(1)
    x = rng.random((120, 90, 3))  # floats in [0, 1]
    proc = ConvNextImageProcessor(**HUB)
    u8 = (x * 255).astype(np.float32).astype(np.uint8)  # transformers' conversion for PIL (truncation)
    with pytest.warns(UserWarning, match="already rescaled"):
        out = proc(x).pixel_values[0]
    # transformers divides by 255 after the PIL resize and rescales by 1/255 again
    assert np.abs(out - reference(u8, value_scale=1 / 255)).max() <= 1e-5
    out = proc(x, do_rescale=False).pixel_values[0]
    assert np.abs(out - reference(u8)).max() <= 1e-5
    # without resizing no uint8 round trip happens
    out = proc(x, do_resize=False, do_rescale=False).pixel_values[0]
    want = (x - np.array(HUB["image_mean"])) / np.array(HUB["image_std"])
    assert np.abs(out - want.transpose(2, 0, 1)).max() <= 1e-5


def test_grayscale_arrays():
    gray = np.asarray(load("flower_gray.png"))
    proc = ConvNextImageProcessor(**HUB)
    want = reference(np.asarray(Image.fromarray(gray).convert("RGB")))
    for arr in (gray, gray[:, :, None], gray[None]):
        assert np.abs(proc(arr).pixel_values[0] - want).max() <= 1e-5


def test_torch_tensors(declared_tensor_types):
    import torch

    hwc = np.asarray(load("flower.png"))
    proc = ConvNextImageProcessor(**HUB)
    want = reference(hwc)
    chw = torch.from_numpy(hwc.copy()).permute(2, 0, 1)
    assert np.abs(proc(chw).pixel_values[0] - want).max() <= 1e-5
    assert np.abs(proc(chw.float()).pixel_values[0] - want).max() <= 1e-5
    batch = proc(torch.stack([chw, chw]), return_tensors="pt").pixel_values
    assert isinstance(batch, torch.Tensor) and batch.shape == (2, 3, 224, 224) and batch.dtype == torch.float32
    assert np.abs(batch.numpy() - want).max() <= 1e-5


@pytest.mark.tf
def test_tensorflow_tensors(declared_tensor_types):
    tf = pytest.importorskip("tensorflow")
    hwc = np.asarray(load("flower.png"))
    proc = ConvNextImageProcessor(**HUB)
    out = proc(tf.constant(hwc), return_tensors="tf").pixel_values
    assert isinstance(out, tf.Tensor) and tuple(out.shape) == (1, 3, 224, 224)
    assert np.abs(out.numpy()[0] - reference(hwc)).max() <= 1e-5


def test_single_vs_list_and_return_types():
    imgs = [load("china.jpg"), load("portrait_427x150.png"), load("tiny_17x23.png")]
    proc = ConvNextImageProcessor(**HUB)
    listed = proc(imgs)
    assert isinstance(listed, dict) and listed.pixel_values is listed["pixel_values"]
    assert isinstance(listed.pixel_values, list) and len(listed.pixel_values) == 3
    stacked = proc(imgs, return_tensors="np").pixel_values
    assert stacked.shape == (3, 3, 224, 224)
    for i, img in enumerate(imgs):
        single = proc(img).pixel_values
        assert len(single) == 1
        assert np.array_equal(single[0], listed.pixel_values[i])
        assert np.array_equal(single[0], stacked[i])
    batch4d = proc(np.stack([np.asarray(imgs[0])] * 2), return_tensors="np").pixel_values
    assert np.array_equal(batch4d[1], stacked[0])
    assert np.array_equal(proc.preprocess(imgs, return_tensors="np").pixel_values, stacked)


def test_channels_last_output():
    img = load("flower.png")
    proc = ConvNextImageProcessor(**HUB)
    first = proc(img, return_tensors="np").pixel_values
    last = proc(img, return_tensors="np", data_format="channels_last").pixel_values
    assert last.shape == (1, 224, 224, 3)
    assert np.array_equal(last, first.transpose(0, 2, 3, 1))


def test_crop_larger_than_resized_image_is_zero_padded():
    hwc = np.asarray(load("china_rgba.png").convert("RGB"))
    for crop_pct in (1.15, 1.6):
        out = ConvNextImageProcessor(**{**HUB, "crop_pct": crop_pct})(hwc).pixel_values[0]
        want = reference(hwc, crop_pct=crop_pct)
        assert np.abs(out - want).max() <= 1e-5
        # the padded border is a zero pixel, normalised
        assert np.allclose(out[:, 0, 0], -np.array(HUB["image_mean"]) / np.array(HUB["image_std"]), atol=1e-6)


def test_warp_resize_and_option_switches():
    hwc = np.asarray(load("flower.png"))
    proc = ConvNextImageProcessor(size=384, resample=2)
    out = proc(hwc).pixel_values[0]
    assert np.abs(out - reference(hwc, 384, resample=2, mean=(0.5,) * 3, std=(0.5,) * 3)).max() <= 1e-5
    raw = proc(hwc, do_rescale=False, do_normalize=False).pixel_values[0]
    assert raw.dtype == np.uint8  # nothing applied: pixels as resized (as transformers)
    assert np.array_equal(raw, np.asarray(Image.fromarray(hwc).resize((384, 384), 2)).transpose(2, 0, 1))
    no_norm = proc(hwc, do_normalize=False).pixel_values[0]
    assert np.allclose(no_norm, raw / 255, atol=1e-6)
    tiny = np.asarray(load("tiny_17x23.png"))
    unresized = proc(tiny, do_resize=False).pixel_values[0]
    assert unresized.shape == (3, 17, 23)
    assert np.allclose(unresized, (tiny.transpose(2, 0, 1) / 255 - 0.5) / 0.5, atol=1e-6)


# --- config files -------------------------------------------------------------------------------------
def test_save_load_round_trip_keeps_unknown_keys(tmp_path):
    proc = ConvNextImageProcessor(**HUB, processor_class="SomeProcessor", my_key=[1, 2])
    paths = proc.save_pretrained(tmp_path / "p")
    assert isinstance(paths, list) and all(isinstance(p, str) for p in paths)  # as transformers returns them
    path = Path(paths[0])
    assert path.name == "preprocessor_config.json"
    data = json.loads(path.read_text())
    assert data["processor_class"] == "SomeProcessor" and "_processor_class" not in data
    assert proc.to_dict()["_processor_class"] == "SomeProcessor"
    assert data["image_processor_type"] == "ConvNextImageProcessor" and data["my_key"] == [1, 2]
    back = ConvNextImageProcessor.from_pretrained(tmp_path / "p")
    assert back == proc and back.my_key == [1, 2] and back.processor_class == "SomeProcessor"
    assert ConvNextImageProcessor.from_pretrained(path) == proc  # the file itself
    img = load("china.jpg")
    assert np.array_equal(back(img).pixel_values[0], proc(img).pixel_values[0])
    # overrides at load time
    assert ConvNextImageProcessor.from_pretrained(path, crop_pct=1.0).crop_pct == 1.0
    assert not list((tmp_path / "p").glob("*.tmp"))


def test_legacy_feature_extractor_config(tmp_path):
    legacy = {"feature_extractor_type": "ConvNextFeatureExtractor", "size": 224, "crop_pct": 0.875,
              "resample": 3, "do_resize": True, "do_normalize": True,
              "image_mean": HUB["image_mean"], "image_std": HUB["image_std"]}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(legacy))
    proc = ConvNextImageProcessor.from_pretrained(tmp_path)
    assert proc.size == {"shortest_edge": 224}
    img = load("flower.png")
    ref = expected("hub_tiny_224")["flower.png"]
    assert np.abs(proc(img).pixel_values[0] - ref).max() <= 1e-5
    saved = json.loads(proc.to_json_string())
    assert saved["feature_extractor_type"] == "ConvNextFeatureExtractor" and saved["size"] == {"shortest_edge": 224}


def test_feature_extractor_alias_warns_and_matches():
    with pytest.warns(FutureWarning, match="ConvNextImageProcessor"):
        fe = ConvNextFeatureExtractor(**HUB)
    img = load("china.jpg")
    assert np.array_equal(fe(img).pixel_values[0], ConvNextImageProcessor(**HUB)(img).pixel_values[0])
    import convnext_common

    assert convnext_common.ConvNextImageProcessor is ConvNextImageProcessor
    assert convnext_common.ConvNextFeatureExtractor is ConvNextFeatureExtractor


def test_import_pulls_in_neither_torch_nor_tensorflow():
    code = ("import sys, numpy as np; from convnext_common import ConvNextImageProcessor; "
            "ConvNextImageProcessor(size=64)(np.zeros((40, 50, 3), np.uint8), return_tensors='np'); "
            "bad = [m for m in ('torch', 'tensorflow') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=FIXTURES.parent.parent)


# --- bad input ----------------------------------------------------------------------------------------
@pytest.mark.badinput
@pytest.mark.parametrize("kwargs,field", [
    ({"size": {"height": 224}}, "shortest_edge"),  # {"height", "width"} together is DINOv3's fixed size
    ({"size": {"height": 0, "width": 224}}, "height"),
    ({"size": {"shortest_edge": 0}}, "shortest_edge"),
    ({"size": "224"}, "size"),
    ({"crop_pct": 0}, "crop_pct"),
    ({"crop_pct": -0.5}, "crop_pct"),
    ({"crop_pct": float("nan")}, "crop_pct"),
    ({"resample": 42}, "resample"),
    ({"resample": "cubic-ish"}, "resample"),
    ({"image_mean": []}, "image_mean"),  # other lengths fit images of that many channels
    ({"image_std": [0.5, 0.0, 0.5]}, "image_std"),
    ({"rescale_factor": "x"}, "rescale_factor"),
    ({"do_resize": "yes"}, "do_resize"),
    ({"data_format": "nchw"}, "data_format"),
])
def test_bad_options_name_the_argument(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ConvNextImageProcessor(**kwargs)
    with pytest.raises(ValueError, match=field):  # the same as per-call overrides
        ConvNextImageProcessor()(np.zeros((8, 8, 3), np.uint8), **kwargs)


@pytest.mark.badinput
def test_bad_images_raise_clear_errors():
    proc = ConvNextImageProcessor(**HUB)
    cases = [
        ([], "empty"),
        (np.zeros((10, 10, 4), np.uint8), "channels"),
        (np.zeros((2, 10, 10), np.uint8), "channel"),
        (np.full((10, 10, 3), np.nan), "NaN"),
        (np.full((10, 10, 3), 1.5), r"\[0, 1\]"),
        (np.full((10, 10, 3), 300.0), r"\[0, 255\]"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.zeros((2, 3, 4, 5, 6), np.uint8), "shape"),
        ("not an image", "unsupported image type"),
        (None, "None"),
    ]
    for images, message in cases:
        with pytest.raises(ValueError, match=message):
            proc(images)
    with pytest.raises(ValueError, match="return_tensors"):
        proc(np.zeros((8, 8, 3), np.uint8), return_tensors="jax")


@pytest.mark.badinput
def test_mixed_sizes_without_resize():
    imgs = [np.zeros((10, 12, 3), np.uint8), np.zeros((11, 12, 3), np.uint8)]
    proc = ConvNextImageProcessor(do_resize=False)
    listed = proc(imgs).pixel_values  # a list may hold different sizes, as in transformers
    assert [a.shape for a in listed] == [(3, 10, 12), (3, 11, 12)]
    with pytest.raises(ValueError, match="different sizes"):
        proc(imgs, return_tensors="np")
    # resizing makes them stackable
    assert ConvNextImageProcessor(size=32)(imgs, return_tensors="np").pixel_values.shape == (2, 3, 32, 32)


@pytest.mark.badinput
def test_bad_config_files(tmp_path):
    with pytest.raises(OSError, match="preprocessor_config.json"):
        ConvNextImageProcessor.from_pretrained(tmp_path)
    bad_json = tmp_path / "a" / "preprocessor_config.json"
    bad_json.parent.mkdir()
    bad_json.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ConvNextImageProcessor.from_pretrained(bad_json.parent)
    bad_value = tmp_path / "b" / "preprocessor_config.json"
    bad_value.parent.mkdir()
    bad_value.write_text(json.dumps({"crop_pct": -1}))
    with pytest.raises(ValueError, match=r"preprocessor_config.json.*crop_pct"):
        ConvNextImageProcessor.from_pretrained(bad_value)


@pytest.mark.parametrize("resample", [0, 1, 2, 3, 4, 5])
def test_upscaled_crop_equals_pils_full_resize_then_crop(resample):
    # a 39x39 image, short side to int(33 / 0.515625) = 64, centre crop 33: with the box filter the
    # kept outputs' windows end before PIL's box does (once "box can't exceed original image size")
    from PIL import Image

    pixels = np.random.default_rng(7).integers(0, 256, (39, 39, 3), dtype=np.uint8)
    out = ConvNextImageProcessor()(Image.fromarray(pixels), size={"shortest_edge": 33}, crop_pct=0.515625,
                                   resample=resample, do_rescale=False, do_normalize=False).pixel_values[0]
    full = np.asarray(Image.fromarray(pixels).resize((64, 64), resample)).astype(np.float32)
    np.testing.assert_array_equal(out, full[15:48, 15:48].transpose(2, 0, 1))

"""ConvNextImageProcessorFast (torch) against the PIL processor and transformers' fixture outputs.

docs/DESIGN.md's bound for the fast processor: max <= 0.05 and mean <= 0.005 (normalised units) against
the slow one. The PIL-emulating matrix path (CUDA, and CPU for the filters without a torch uint8
kernel) must reproduce the slow processor exactly; it is tested on the CPU by disabling the
uint8-kernel path.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import PROCESSOR_FIXTURES as SETTINGS, PROCESSOR_MANIFEST as MANIFEST, load_image as load
from convnext_common import ConvNextImageProcessor
from convnext_pt import ConvNextImageProcessorFast
from convnext_pt import image_processing_fast as fast_module

HUB = MANIFEST["hub_tiny_224"]["kwargs"]
MAX_DIFF, MEAN_DIFF = 0.05, 0.005


@pytest.fixture
def matrix_path(monkeypatch):
    """Route CPU bilinear/bicubic through the PIL-emulating matrix path (the one CUDA uses)."""
    monkeypatch.setattr(fast_module, "_cpu_uint8_antialias", lambda: False)


def _compare_setting(setting: str):
    kwargs = MANIFEST[setting]["kwargs"]
    names = MANIFEST[setting]["images"]
    expected = dict(np.load(SETTINGS / setting / "expected.npz"))
    images = [load(n) for n in names]
    slow = ConvNextImageProcessor(**kwargs)
    fast = ConvNextImageProcessorFast(**kwargs)
    batched = fast(images, return_tensors="pt").pixel_values
    assert batched.dtype == torch.float32
    diffs = []
    for i, (name, img) in enumerate(zip(names, images)):
        ref = slow(img).pixel_values[0]
        got = batched[i].numpy()
        assert got.shape == ref.shape
        d = np.abs(got - ref)
        diffs.append((name, float(d.max()), float(d.mean()), float(np.abs(got - expected[name]).max())))
        # batched output equals per-image output
        assert torch.equal(fast(img, return_tensors="pt").pixel_values[0], batched[i])
    return diffs


@pytest.mark.parametrize("setting", list(MANIFEST))
def test_fast_within_tolerance_of_slow_on_fixtures(setting):
    for name, dmax, dmean, dref in _compare_setting(setting):
        assert dmax <= MAX_DIFF and dmean <= MEAN_DIFF, (setting, name, dmax, dmean)
        assert dref <= MAX_DIFF, (setting, name, dref)  # and against transformers' own output


@pytest.mark.parametrize("setting", list(MANIFEST))
def test_matrix_path_is_exact(setting, matrix_path):
    for name, dmax, _, dref in _compare_setting(setting):
        assert dmax <= 1e-5 and dref <= 1e-5, (setting, name, dmax)


@pytest.mark.parametrize("resample", [0, 1, 4, 5, 2, 3])
def test_every_filter_matches_slow(resample, matrix_path):
    rng = np.random.default_rng(resample)
    arrays = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((97, 131), (300, 41), (12, 9))]
    for kwargs in ({"size": 64, "crop_pct": 0.9}, {"size": 384}, {"size": 32, "crop_pct": 1.3}):
        slow = ConvNextImageProcessor(resample=resample, **kwargs)(arrays, return_tensors="np").pixel_values
        fast = ConvNextImageProcessorFast(resample=resample, **kwargs)(arrays, return_tensors="np").pixel_values
        assert np.abs(fast - slow).max() <= 1e-5, (resample, kwargs)


def test_mixed_sizes_are_grouped_and_kept_in_order():
    names = ["china.jpg", "tiny_17x23.png", "flower.png", "portrait_427x150.png", "china_palette.png"]
    images = [load(n) for n in names]
    fast = ConvNextImageProcessorFast(**HUB)
    out = fast(images, return_tensors="pt").pixel_values
    assert out.shape == (5, 3, 224, 224)
    for i, img in enumerate(images):
        assert torch.equal(out[i], fast(img, return_tensors="pt").pixel_values[0])
    listed = fast(images).pixel_values
    assert isinstance(listed, list) and all(torch.equal(a, b) for a, b in zip(listed, out))


def test_threaded_groups_equal_serial_and_leave_torch_threads_alone():
    rng = np.random.default_rng(7)
    arrays = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((97, 131), (300, 41), (64, 64), (97, 131))]
    before = torch.get_num_threads()
    serial = ConvNextImageProcessorFast(**HUB, num_threads=1)(arrays, return_tensors="pt").pixel_values
    threaded = ConvNextImageProcessorFast(**HUB, num_threads=3)(arrays, return_tensors="pt").pixel_values
    assert torch.equal(serial, threaded)
    assert torch.get_num_threads() == before


def test_input_kinds_agree():
    img = load("flower.png")
    hwc = np.asarray(img)
    fast = ConvNextImageProcessorFast(**HUB)
    want = fast(img, return_tensors="pt").pixel_values
    chw = torch.from_numpy(hwc.copy()).permute(2, 0, 1)
    for inp in (hwc, np.ascontiguousarray(hwc.transpose(2, 0, 1)), chw, chw.contiguous(), chw.float(),
                torch.from_numpy(hwc.copy()), chw[None], [chw], hwc.astype(np.float64)):
        assert torch.equal(fast(inp, return_tensors="pt").pixel_values, want)
    # views torch cannot wrap as they are: negative strides (cv2's BGR flipped to RGB) and read-only memory
    bgr = np.ascontiguousarray(hwc[..., ::-1])
    read_only = hwc.copy()
    read_only.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no warning about either
        for inp in (bgr[..., ::-1], read_only):
            assert torch.equal(fast(inp, return_tensors="pt").pixel_values, want)
    as_np = fast(img, return_tensors="np").pixel_values
    assert isinstance(as_np, np.ndarray) and np.array_equal(as_np, want.numpy())
    last = fast(img, return_tensors="pt", data_format="channels_last").pixel_values
    assert torch.equal(last, want.permute(0, 2, 3, 1))


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "1", "F"])
def test_pil_modes_match_slow(mode):
    base = load("china_rgba.png")
    img = Image.fromarray(np.asarray(base.convert("L")).astype(np.uint16) * 257) if mode == "I;16" \
        else base.convert(mode)
    slow = ConvNextImageProcessor(**HUB)(img).pixel_values[0]
    fast = ConvNextImageProcessorFast(**HUB)(img).pixel_values[0].numpy()
    d = np.abs(fast - slow)
    assert d.max() <= MAX_DIFF and d.mean() <= MEAN_DIFF


def test_float_and_grayscale_inputs_match_slow():
    rng = np.random.default_rng(3)
    x = rng.random((150, 110, 3)).astype(np.float32)
    gray = rng.integers(0, 256, (90, 70), dtype=np.uint8)
    for inp, kwargs in ((x, {"do_rescale": False}), (x, {}), (gray, {}), (gray[None], {}), (x, {"do_resize": False}),
                        (x.astype(np.float64), {"do_resize": False})):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "already rescaled" (checked below)
            slow = ConvNextImageProcessor(**HUB)(inp, **kwargs).pixel_values[0]
            fast = ConvNextImageProcessorFast(**HUB)(torch.from_numpy(np.array(inp)), **kwargs).pixel_values[0]
        assert fast.shape == slow.shape
        d = np.abs(fast.numpy() - slow)
        assert d.max() <= MAX_DIFF and d.mean() <= MEAN_DIFF, kwargs
    with pytest.warns(UserWarning, match="already rescaled"):
        ConvNextImageProcessorFast(**HUB)(torch.from_numpy(x))


def test_wide_unsigned_tensors_match_slow():
    """torch's uint16/32/64 tensors (no min/max kernels) are pixels like any integer type."""
    x = np.random.default_rng(4).integers(0, 256, (3, 40, 50))
    want = ConvNextImageProcessor(**HUB)(x.astype(np.uint8), return_tensors="np").pixel_values
    fast = ConvNextImageProcessorFast(**HUB)
    for dtype in (torch.uint16, torch.uint32, torch.uint64, torch.int32):
        got = fast(torch.from_numpy(x).to(dtype), return_tensors="np").pixel_values
        assert np.abs(got - want).max() <= MAX_DIFF, dtype
        np.testing.assert_array_equal(got, fast(torch.from_numpy(x.astype(np.uint8)), return_tensors="np").pixel_values)
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        fast(torch.full((3, 8, 8), 300, dtype=torch.uint16))


@pytest.mark.tf
def test_tensorflow_input_and_output(declared_tensor_types):
    tf = pytest.importorskip("tensorflow")
    hwc = np.asarray(load("tiny_17x23.png"))
    fast = ConvNextImageProcessorFast(**HUB)
    out = fast(tf.constant(hwc), return_tensors="tf").pixel_values
    assert isinstance(out, tf.Tensor)
    assert np.array_equal(out.numpy(), fast(hwc, return_tensors="np").pixel_values)


def test_device_argument_and_output_device():
    img = load("tiny_17x23.png")
    fast = ConvNextImageProcessorFast(**HUB, device="cpu")
    assert fast(img, return_tensors="pt").pixel_values.device.type == "cpu"
    assert fast(img, return_tensors="pt", device="cpu").pixel_values.device.type == "cpu"
    assert "device" not in fast.to_dict()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_is_exact():
    images = [load(n) for n in MANIFEST["hub_tiny_224"]["images"]]
    slow = ConvNextImageProcessor(**HUB)(images, return_tensors="np").pixel_values
    fast = ConvNextImageProcessorFast(**HUB, device="cuda")(images, return_tensors="pt").pixel_values
    assert fast.device.type == "cuda"
    assert np.abs(fast.cpu().numpy() - slow).max() <= 1e-5


def test_same_config_files(tmp_path):
    fast = ConvNextImageProcessorFast.from_pretrained(SETTINGS / "hub_tiny_224")
    slow = ConvNextImageProcessor.from_pretrained(SETTINGS / "hub_tiny_224")
    # the same settings; each saves under its own type, as transformers' two classes do
    assert fast.to_dict()["image_processor_type"] == "ConvNextImageProcessorFast" and fast.is_fast and not slow.is_fast
    assert {**fast.to_dict(), "image_processor_type": "ConvNextImageProcessor"} == slow.to_dict()
    fast.save_pretrained(tmp_path)
    assert ConvNextImageProcessor.from_pretrained(tmp_path).to_dict() == slow.to_dict()


@pytest.mark.badinput
def test_bad_input_errors():
    fast = ConvNextImageProcessorFast(**HUB)
    for images, message in (([], "empty"), (torch.zeros(4, 10, 10), "channel"), (torch.full((3, 8, 8), float("nan")),
                            "NaN"), (torch.full((3, 8, 8), 2.5), r"\[0, 1\]"), ("x", "unsupported image type")):
        with pytest.raises(ValueError, match=message):
            fast(images)
    with pytest.raises(ValueError, match="crop_pct"):
        ConvNextImageProcessorFast(crop_pct=0)
    with pytest.raises(ValueError, match="different sizes"):
        fast([torch.zeros(3, 8, 8, dtype=torch.uint8), torch.zeros(3, 9, 8, dtype=torch.uint8)],
             do_resize=False, return_tensors="pt")

"""Images of any channel count through both processors, against transformers 4.57's
``ConvNextImageProcessor`` (fixture written by scripts/make_processor_channels_fixtures.py) and,
where transformers refuses (more channels than a PIL mode holds), against PIL resizing each channel."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from convnext_common import ConvNextImageProcessor
from conftest import FIXTURES

FIXTURE = FIXTURES / "image-processor-channels" / "expected.npz"
REF = np.load(FIXTURE)
CASES = sorted(k for k in REF.files if f"{k}__kwargs" in REF.files)
DONE = [c for c in CASES if c in REF.files]


def case(name: str) -> tuple[np.ndarray, dict, dict]:
    spec = json.loads(str(REF[f"{name}__kwargs"]))
    return REF[f"{spec['image']}__input"], spec["init"], spec["call"]


@pytest.mark.filterwarnings("ignore:The images look already rescaled")  # transformers warns there too
@pytest.mark.parametrize("name", DONE)
def test_slow_matches_transformers(name):
    image, init, call = case(name)
    ours = ConvNextImageProcessor(**init)(image, return_tensors="np", **call).pixel_values
    want = REF[name]
    assert ours.shape == want.shape and ours.dtype == np.float32
    assert np.abs(ours - want).max() <= 1e-5


def test_alpha_is_premultiplied_in_resize_as_transformers():
    # the fixture's first 10 rows have alpha 0: PIL's RGBA resize loses their colour there, which a
    # per-channel resize would keep, so the fixture tells the two apart
    image, init, call = case("test_4_channels_last")
    ours = ConvNextImageProcessor(**init)(image, return_tensors="np", **call).pixel_values[0]
    per_channel = _per_channel_reference(image, init, call)
    assert np.abs(ours - per_channel).max() > 0.1
    assert np.abs(ours - REF["test_4_channels_last"][0]).max() <= 1e-5


@pytest.mark.parametrize("name", ["inferred_4", "mean_3_for_4"])
def test_inconsistent_input_refused_like_transformers(name):
    assert str(REF[f"{name}__error"]) == "ValueError"
    image, init, call = case(name)
    field = "input_data_format" if name == "inferred_4" else "image_mean"
    with pytest.raises(ValueError, match=field) as err:
        ConvNextImageProcessor(**init)(image, **call)
    assert "\n" not in str(err.value)


def test_numbers_given_to_the_constructor_apply_to_any_channel_count():
    # transformers keeps image_mean=0 a number, which fits any image; ours stores three values (the
    # file and RGB code read them so) and still applies the number to a 4-channel image
    image, init, call = case("test_4_channels_last")
    proc = ConvNextImageProcessor(**init, image_mean=call["image_mean"], image_std=call["image_std"])
    assert proc.image_mean == [0.0] * 3 and proc.image_std == [1.0] * 3
    out = proc(image, input_data_format="channels_last", return_tensors="np").pixel_values
    assert np.abs(out - REF["test_4_channels_last"]).max() <= 1e-5
    assert (proc.to_dict()["image_mean"], proc.to_dict()["image_std"]) == (0.0, 1.0)  # as transformers writes them
    reloaded = ConvNextImageProcessor.from_dict(proc.to_dict())
    assert np.array_equal(reloaded(image, input_data_format="channels_last", return_tensors="np").pixel_values, out)
    proc.image_mean = [0.1, 0.2, 0.3]  # a list assigned later is a list: three channels only
    with pytest.raises(ValueError, match="image_mean has 3 values"):
        proc(image, input_data_format="channels_last")


def test_std_of_wrong_length_names_image_std():
    image = np.zeros((8, 8, 4), np.uint8)
    with pytest.raises(ValueError, match=r"image_std has 2 values"):
        ConvNextImageProcessor()(image, input_data_format="channels_last", image_mean=0, image_std=[1, 2])
    # without normalising, the statistics are not used, so they do not have to fit
    out = ConvNextImageProcessor(size={"shortest_edge": 8})(image, input_data_format="channels_last",
                                                            do_normalize=False, return_tensors="np")
    assert out.pixel_values.shape == (1, 4, 8, 8)


def _per_channel_reference(image: np.ndarray, init: dict, call: dict) -> np.ndarray:
    """Closed form for a channels-last uint8 image: each channel resized by PIL as an L image (short
    side to int(shortest_edge / crop_pct), centre crop), then (x / 255 - mean) / std."""
    size = init["size"]["shortest_edge"]
    crop_pct = init.get("crop_pct", 224 / 256)
    resample = init.get("resample", 3)
    h, w = image.shape[:2]
    short = int(size / crop_pct)
    out_h, out_w = (int(short * h / w), short) if w <= h else (short, int(short * w / h))
    top, left = (out_h - size) // 2, (out_w - size) // 2
    c = image.shape[2]
    mean = np.broadcast_to(np.asarray(call["image_mean"], np.float64), (c,))
    std = np.broadcast_to(np.asarray(call["image_std"], np.float64), (c,))
    planes = []
    for k in range(c):
        plane = np.asarray(Image.fromarray(np.ascontiguousarray(image[:, :, k])).resize((out_w, out_h), resample))
        plane = plane[top:top + size, left:left + size].astype(np.float64) / 255
        planes.append((plane - mean[k]) / std[k])
    return np.stack(planes).astype(np.float32)


def test_five_channels_resized_channel_by_channel():
    # transformers' PIL processor cannot make a 5-channel PIL image (it raises TypeError); ours
    # resizes each channel with the same filter, which is what PIL does for each band of an RGB image
    assert str(REF["resize_5__error"]) == "TypeError"
    image = REF["hwc5__input"]
    init = {"size": {"shortest_edge": 20}, "resample": 2}
    call = {"input_data_format": "channels_last", "image_mean": [0.1, 0.2, 0.3, 0.4, 0.5], "image_std": 0.5}
    ours = ConvNextImageProcessor(**init)(image, return_tensors="np", **call).pixel_values
    assert ours.shape == (1, 5, 20, 20)
    assert np.abs(ours[0] - _per_channel_reference(image, init, call)).max() <= 1e-5


def test_three_channel_bands_equal_the_rgb_resize():
    # the per-channel path agrees with PIL's own RGB resize (the reference the 5-channel test rests on)
    image = REF["hwc5__input"][:, :, :3]
    init = {"size": {"shortest_edge": 20}, "resample": 3}
    call = {"image_mean": 0.5, "image_std": 0.5}
    ours = ConvNextImageProcessor(**init)(image, return_tensors="np", **call).pixel_values[0]
    assert np.abs(ours - _per_channel_reference(image, init, {**call, "input_data_format": "channels_last"})
                  ).max() <= 1e-5


def test_grayscale_still_gives_three_channels():
    gray = REF["hwc5__input"][:, :, 0]
    out = ConvNextImageProcessor(size={"shortest_edge": 20})(gray, return_tensors="np").pixel_values[0]
    assert out.shape == (3, 20, 20)
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[1], out[2])
    with pytest.raises(ValueError, match="image_mean has 4 values"):
        ConvNextImageProcessor(size={"shortest_edge": 20})(gray, image_mean=[0, 0, 0, 0], image_std=1)


def test_batch_of_mixed_channel_counts_as_list():
    proc = ConvNextImageProcessor(size={"shortest_edge": 20})
    images = [REF["hwc4__input"], REF["hwc5__input"]]
    out = proc(images, input_data_format="channels_last", image_mean=0, image_std=1).pixel_values
    assert [a.shape for a in out] == [(4, 20, 20), (5, 20, 20)]
    with pytest.raises(ValueError, match="different sizes"):
        proc(images, input_data_format="channels_last", image_mean=0, image_std=1, return_tensors="np")


def test_channels_last_output_with_four_channels():
    image, init, call = case("bicubic_4_means")
    proc = ConvNextImageProcessor(**init)
    last = proc(image, return_tensors="np", data_format="channels_last", **call).pixel_values
    assert np.array_equal(last, REF["bicubic_4_means"].transpose(0, 2, 3, 1))


# ---- the torch processor ---------------------------------------------------------------------------
torch = pytest.importorskip("torch")


def _fast():
    from convnext_pt import ConvNextImageProcessorFast
    return ConvNextImageProcessorFast


@pytest.mark.parametrize("name", ["no_resize_4", "no_resize_5"])
def test_fast_without_resize_matches_transformers(name):
    image, init, call = case(name)
    out = _fast()(**init)(torch.from_numpy(image), return_tensors="pt", **call).pixel_values
    assert tuple(out.shape) == REF[name].shape
    assert np.abs(out.numpy() - REF[name]).max() <= 1e-5


@pytest.mark.parametrize("channels,resample", [(4, 3), (5, 2), (2, 3)])
def test_fast_resizes_each_channel_on_its_own(channels, resample):
    # as transformers' torchvision processor: no alpha weighting, each channel resized with the filter;
    # bounded as docs/DESIGN.md bounds the fast processor against PIL
    image = np.random.default_rng(channels).integers(0, 256, (37, 52, channels), dtype=np.uint8)
    init = {"size": {"shortest_edge": 24}, "resample": resample}
    call = {"input_data_format": "channels_last", "image_mean": 0.5, "image_std": 0.25}
    out = _fast()(**init)(torch.from_numpy(image).permute(2, 0, 1), return_tensors="pt",
                          **{**call, "input_data_format": "channels_first"}).pixel_values
    want = _per_channel_reference(image, init, call)
    assert tuple(out.shape) == (1, channels, 24, 24)
    diff = np.abs(out[0].numpy() - want)
    assert diff.max() <= 0.05 and diff.mean() <= 0.005  # std 0.25: about ImageNet's, the units of the bound


def test_fast_refuses_what_the_slow_one_refuses():
    image = torch.zeros(10, 10, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="input_data_format"):
        _fast()()(image)
    with pytest.raises(ValueError, match="image_mean has 3 values"):
        _fast()()(image, input_data_format="channels_last")

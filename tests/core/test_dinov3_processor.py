"""The DINOv3 hub repos' image processor (transformers' DINOv3ViTImageProcessorFast: resize to a fixed
height and width, no crop, rescale, normalise) read from its preprocessor_config.json and reproduced
by both processors of this project.

Reference: tests/fixtures/dinov3-convnext/processor/ (scripts/make_dinov3_fixtures.py), transformers'
own outputs. transformers rescales first and resizes the float image with torch's antialiased
filter; these processors resize uint8 pixels as PIL does and rescale after, so they differ by the
rounding of each resized pixel to a level (at most 0.5/255, 0.0087 in normalised units) and by
the two filters' arithmetic; with bicubic, PIL also clips the filter's overshoot to [0, 255] where
a float resize keeps it. Measured on the four fixture images (docs/dinov3.md): bilinear (the hub
setting) max 0.0174, mean 0.0048; bicubic max 0.215, mean 0.0050.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import FIXTURES
from convnext_common import ConvNextImageProcessor
from convnext_pt import ConvNextImageProcessorFast

PROCESSOR = FIXTURES / "dinov3-convnext" / "processor"
#: setting -> (max, mean) bounds in normalised units (measured: see the module docstring)
BOUNDS = {"hub": (0.02, 0.0055), "wide_bicubic": (0.25, 0.0055)}
#: what the hub repos' preprocessor_config.json holds (transformers 4.56 wrote them)
HUB_CONFIG = {
    "crop_size": None, "data_format": "channels_first", "default_to_square": True, "device": None,
    "disable_grouping": None, "do_center_crop": None, "do_convert_rgb": None, "do_normalize": True,
    "do_rescale": True, "do_resize": True, "image_mean": [0.485, 0.456, 0.406],
    "image_processor_type": "DINOv3ViTImageProcessorFast", "image_std": [0.229, 0.224, 0.225],
    "input_data_format": None, "resample": 2, "rescale_factor": 0.00392156862745098, "return_tensors": None,
    "size": {"height": 224, "width": 224},
}


@pytest.mark.parametrize("cls", [ConvNextImageProcessor, ConvNextImageProcessorFast])
@pytest.mark.parametrize("setting", sorted(BOUNDS))
def test_reproduces_transformers_dinov3_processor(cls, setting):
    expected = np.load(PROCESSOR / setting / "expected.npz")
    processor = cls.from_pretrained(PROCESSOR / setting)
    max_bound, mean_bound = BOUNDS[setting]
    for name in expected.files:
        image = Image.open(FIXTURES / "images" / name).convert("RGB")
        ours = np.asarray(processor(image, return_tensors="np").pixel_values[0])
        assert ours.shape == expected[name].shape, name
        diff = np.abs(ours - expected[name])
        assert diff.max() <= max_bound and diff.mean() <= mean_bound, (setting, name, diff.max(), diff.mean())


def test_hub_config_reads_and_writes_back_for_transformers(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(HUB_CONFIG))
    processor = ConvNextImageProcessor.from_pretrained(tmp_path)
    assert processor.size == {"height": 224, "width": 224} and processor.resample == 2
    out = processor(Image.open(FIXTURES / "images" / "portrait_427x150.png"), return_tensors="np").pixel_values
    assert out.shape == (1, 3, 224, 224)  # warped: no crop, the aspect ratio is not kept
    saved = json.loads(Path(processor.save_pretrained(tmp_path / "out")[0]).read_text())
    # transformers' ConvNeXt processors read only shortest_edge: the file keeps the DINOv3 type
    assert saved["image_processor_type"] == "DINOv3ViTImageProcessorFast" and "crop_pct" not in saved
    assert saved["size"] == {"height": 224, "width": 224}


def test_a_crop_is_refused_in_one_line(tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {**HUB_CONFIG, "do_center_crop": True, "crop_size": {"height": 200, "width": 200}}))
    with pytest.raises(ValueError, match="do_center_crop") as e:
        ConvNextImageProcessor.from_pretrained(tmp_path)
    assert "\n" not in str(e.value)

"""One default preprocessing for a model folder without preprocessor_config.json.

`convnext predict`, `evaluate`, `train` (its validation pass and the folder it writes) and a folder
written by `convnext convert` from such a folder must turn the same image into the same pixels.
Each command runs for real; the processor calls it makes are recorded. (`convnext export` takes no
images: its graph's input is the normalised pixel_values.)
"""

import numpy as np
import pytest
from PIL import Image

from convnext_app import cli
from convnext_common import ConvNextConfig
from convnext_common.processing import PREPROCESSOR_CONFIG_NAME, ConvNextImageProcessor
from convnext_pt import ConvNextForImageClassification
from helpers import redraw_

LABELS = ["a", "b", "c"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A classifier folder without preprocessor_config.json (image_size 40) and an ImageFolder with
    train/ and val/ splits holding one odd-sized image per class."""
    root = tmp_path_factory.mktemp("default_processor")
    config = ConvNextConfig(depths=[1, 1], hidden_sizes=[8, 16], num_stages=2, num_labels=3, image_size=40,
                            id2label=dict(enumerate(LABELS)))
    model = ConvNextForImageClassification(config)
    redraw_(model)
    model.save_pretrained(root / "model")
    assert not (root / "model" / PREPROCESSOR_CONFIG_NAME).exists()
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (57 + 5 * i, 45, 3), dtype=np.uint8)) for i in range(3)]
    for split in ("train", "val"):
        for label, image in zip(LABELS, images):
            (root / "data" / split / label).mkdir(parents=True)
            image.save(root / "data" / split / label / f"{label}.png")
    return root, images[0]


@pytest.fixture
def recorded(monkeypatch):
    """Every (settings, pixel_values) a ConvNextImageProcessor produces while the test runs."""
    calls = []
    original = ConvNextImageProcessor.__call__

    def spy(self, images, *args, **kwargs):
        out = original(self, images, *args, **kwargs)
        calls.append((self.to_dict(), np.asarray(out["pixel_values"], dtype=np.float32)))
        return out

    monkeypatch.setattr(ConvNextImageProcessor, "__call__", spy)
    return calls


def pixels_of(recorded, image_count):
    """The pixels of the first image the recorded calls processed (all calls saw the same images)."""
    assert recorded, "the command ran no image processor"
    return np.concatenate([p for _, p in recorded])[:image_count]


def test_every_command_preprocesses_alike(setup, recorded, tmp_path, capsys):
    root, image = setup
    model, data = str(root / "model"), root / "data"
    image_a = data / "val" / "a" / "a.png"

    assert cli.main(["predict", str(image_a), "--model", model, "--framework", "pt", "--json"]) == 0
    predicted = pixels_of(recorded, 1)[0]
    recorded.clear()

    assert cli.main(["evaluate", "--data", str(data / "val"), "--model", model, "--framework", "pt"]) == 0
    evaluated = pixels_of(recorded, 1)[0]  # the folder's classes are sorted: "a" comes first
    recorded.clear()

    out = tmp_path / "trained"
    assert cli.main(["train", "--data", str(data), "--model", model, "--out", str(out), "--epochs", "1",
                     "--batch-size", "3", "--quiet", "--device", "cpu"]) == 0
    validated = pixels_of(recorded, 1)[0]  # the validation pass of `convnext train`
    recorded.clear()
    written = ConvNextImageProcessor.from_pretrained(out)(image, return_tensors="np")["pixel_values"][0]
    recorded.clear()

    converted = tmp_path / "converted"
    assert cli.main(["convert", model, str(converted), "--to", "pt", "--quiet"]) == 0
    assert cli.main(["predict", str(image_a), "--model", str(converted), "--framework", "pt", "--json"]) == 0
    after_convert = pixels_of(recorded, 1)[0]
    capsys.readouterr()

    assert predicted.shape == (3, 40, 40)
    for name, pixels in [("evaluate", evaluated), ("train (validation)", validated),
                         ("train (written preprocessor_config.json)", written), ("convert", after_convert)]:
        np.testing.assert_array_equal(pixels, predicted, err_msg=name)
    # and it is the documented default: the hub's ImageNet statistics at the config's image_size
    settings = ConvNextImageProcessor.from_pretrained(out).to_dict()
    assert settings["image_mean"] == [0.485, 0.456, 0.406] and settings["image_std"] == [0.229, 0.224, 0.225]
    assert settings["size"] == {"shortest_edge": 40}

"""`convnext pretrain`: a run stopped and resumed ends with the weights of the uninterrupted run (masks,
augmentation and drop path come from keyed streams), and its folder fine-tunes as any V2 model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from convnext_common.config import ConvNextV2Config
from convnext_pt import ConvNextV2ForImageClassification, ConvNextV2ForMaskedImageModeling


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("unlabeled")
    rng = np.random.default_rng(0)
    for i in range(6):
        folder = root / ("a" if i % 2 else "b/deeper")  # sub-folders are just more images
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((70, 90, 3)) * 255).astype("uint8")).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    folder = tmp_path_factory.mktemp("start")
    config = ConvNextV2Config(depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 16, 16], decoder_hidden_size=8,
                              drop_path_rate=0.1)
    torch.manual_seed(0)
    ConvNextV2ForMaskedImageModeling(config).save_pretrained(folder)
    return folder


def run(images, start, out, **extra):
    from convnext_app.training.pt.pretrain import PretrainOptions, pretrain

    settings = dict(epochs=3, batch_size=4, image_size=64, warmup_epochs=1, blr=1e-2, quiet=True, pictures=2,
                    drop_path=0.1)
    options = PretrainOptions(data=str(images), model=str(start), out=str(out), **{**settings, **extra})
    return pretrain(options, stream=open("/dev/null", "w"))


@pytest.mark.slow
def test_resume_is_bit_exact_and_the_folder_fine_tunes(images, start, tmp_path):
    full = run(images, start, tmp_path / "full")
    run(images, start, tmp_path / "part", stop_after=1)
    resumed = run(images, start, tmp_path / "part", resume=True)
    assert full["images"] == 6 and resumed["completed"]
    assert resumed["weights_sha256_per_rank"] == full["weights_sha256_per_rank"]
    assert [e["train_loss"] for e in resumed["epochs"]] == [e["train_loss"] for e in full["epochs"]]
    assert json.loads((tmp_path / "full" / "config.json").read_text())["architectures"] == [
        "ConvNextV2ForMaskedImageModeling"]
    assert (tmp_path / "full" / "reconstructions" / "epoch_0003.png").is_file()
    assert Image.open(tmp_path / "full" / "reconstructions" / "epoch_0003.png").size == (3 * 64, 2 * 64)
    with pytest.warns(UserWarning, match="classifier"):
        ConvNextV2ForImageClassification.from_pretrained(tmp_path / "full", num_labels=2)


def test_bad_options_are_refused(images, start, tmp_path):
    from convnext_app.training.common.pretraining import PretrainError

    with pytest.raises(PretrainError, match="multiple of the patch size 32"):
        run(images, start, tmp_path / "x", image_size=48)
    with pytest.raises(PretrainError, match="V2"):
        run(images, "convnext-atto", tmp_path / "y")


@pytest.mark.slow
@pytest.mark.tf
def test_keras_path_trains_with_fit_and_writes_a_folder_both_twins_load(images, start, tmp_path):
    pytest.importorskip("tensorflow")
    from convnext_app.training.keras.pretrain import pretrain_keras
    from convnext_app.training.common.pretraining import PretrainError, PretrainOptions

    options = PretrainOptions(data=str(images), model=str(start), out=str(tmp_path / "tf"), epochs=2, batch_size=4,
                              image_size=64, warmup_epochs=0.5, blr=0.1, quiet=True)
    metrics = pretrain_keras(options, stream=open("/dev/null", "w"))
    assert metrics["completed"] and len(metrics["epochs"]) == 2
    model = ConvNextV2ForMaskedImageModeling.from_pretrained(tmp_path / "tf")
    assert model.config.norm_pix_loss is True
    with pytest.raises(PretrainError, match="--resume"):
        pretrain_keras(PretrainOptions(data=str(images), model=str(start), out=str(tmp_path / "x"), resume=True))

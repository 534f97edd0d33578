"""`convnext train`: schedule, augmentation, data splits, single-process runs, resume and torchrun (2 CPU processes).

The data are held-out digits written as small PNGs into an ImageFolder (three classes); the model is a
tiny random ConvNeXt saved as a hub folder, fine-tuned with a new head, so every run takes seconds.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from app.conftest import CLASSES, torchrun, train_args
from convnext_app import cli
from convnext_common import ConvNextConfig
from convnext_app.imagefolder import ImageFolderError, find_splits, scan_image_folder, split_holdout
from convnext_common.processing import ConvNextImageProcessor
from convnext_pt import ConvNextForImageClassification, ConvNextV2ForImageClassification
from convnext_app.training.pt import (
    epoch_progress, TrainTransform, counted_samples, random_resized_crop_box, warmup_cosine, weights_digest,
)


# ---- pieces -------------------------------------------------------------------------------------
def test_warmup_cosine_schedule():
    lrs = [warmup_cosine(s, 100, 10, 1.0, 0.1) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)            # linear warmup
    assert lrs[10] == pytest.approx(1.0)                                              # cosine starts at the peak
    assert lrs[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))  # half way: the midpoint
    assert warmup_cosine(100, 100, 10, 1.0, 0.1) == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_random_resized_crop_box_stays_inside():
    g = torch.Generator().manual_seed(0)
    for h, w in [(40, 40), (30, 90), (224, 160), (5, 300)]:
        for _ in range(50):
            top, left, ch, cw = random_resized_crop_box(h, w, g, min_scale=0.25)
            assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w and ch > 0 and cw > 0


def test_train_transform_normalises_like_the_processor():
    """With the crop forced to the whole image and no resize, augmentation == processor output."""
    processor = ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0, image_mean=[0.2, 0.4, 0.6],
                                       image_std=[0.3, 0.2, 0.1])
    rng = np.random.default_rng(0)
    from PIL import Image

    image = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    t = TrainTransform(processor, 32, min_scale=1.0, flip=False)
    ours = t(image, torch.Generator().manual_seed(1)).numpy()
    ref = processor(image, return_tensors="np")["pixel_values"][0]
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_progress_bar_logs_one_line_per_epoch_off_a_terminal():
    import io

    stream = io.StringIO()
    bar = epoch_progress(4, "epoch 1/2", stream)
    for i in range(4):
        bar.update(1, loss=1.0 / (i + 1), acc=0.25 * i)
    assert stream.getvalue() == ""  # not a terminal: no redraws
    bar.close(loss=0.5, acc=0.75)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("epoch 1/2: 100%") and "4/4" in lines[0]
    assert "loss 0.5000" in lines[0] and "acc 0.7500" in lines[0]


def test_split_holdout_is_stratified_and_seeded(digit_folder):
    folder = scan_image_folder(digit_folder)
    assert folder.classes == CLASSES and len(folder) == 30
    train, val = split_holdout(folder, 0.2, seed=3)
    assert sorted(val.class_counts().values()) == [2, 2, 2]
    assert not {p for p, _ in train.samples} & {p for p, _ in val.samples}
    assert split_holdout(folder, 0.2, seed=3)[1].samples == val.samples
    assert split_holdout(folder, 0.2, seed=4)[1].samples != val.samples


def test_find_splits_and_folder_errors(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "val" / "a").mkdir(parents=True)
    assert find_splits(tmp_path) == (tmp_path / "train", tmp_path / "val")
    with pytest.raises(ImageFolderError, match="hold no images"):
        scan_image_folder(tmp_path / "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageFolderError, match="no class sub-folders"):
        scan_image_folder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        scan_image_folder(tmp_path / "nowhere")


# ---- runs ---------------------------------------------------------------------------------------
def logits_of(model, n=4, size=32):
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((n, 3, size, size)).astype(np.float32))
    with torch.no_grad():
        return model(x).logits.numpy()


def test_fine_tune_single_process_loads_in_both_twins(digit_folder, tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(train_args(digit_folder, tiny_model, out, "--epochs", "2", "--lr", "2e-3")) == 0
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "metrics.json"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "one", "1": "seven", "2": "zero"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2] and metrics["new_head"] is True
    assert metrics["images"] == {"train": 24, "val": 6}
    assert all(np.isfinite(e["train_loss"]) for e in metrics["epochs"])

    model = ConvNextForImageClassification.from_pretrained(out)
    assert model.config.num_labels == 3
    # the trunk moved away from the starting weights, and the head is new
    start = ConvNextForImageClassification.from_pretrained(tiny_model)
    assert not torch.equal(model.convnext.embeddings.patch_embeddings.weight,
                           start.convnext.embeddings.patch_embeddings.weight)
    tf_mod = pytest.importorskip("convnext_tf")
    tf_model = tf_mod.TFConvNextForImageClassification.from_pretrained(out)
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    ref = logits_of(model)
    got = np.asarray(tf_model(x, training=False).logits)
    assert np.abs(got - ref).max() / max(1.0, np.abs(ref).max()) <= 1e-4


@pytest.mark.slow
def test_resume_equals_an_uninterrupted_run(digit_folder, tiny_model, tmp_path, capsys):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert cli.main(train_args(digit_folder, tiny_model, straight, "--epochs", "2")) == 0
    assert cli.main(train_args(digit_folder, tiny_model, split, "--epochs", "2", "--stop-after", "1")) == 0
    assert json.loads((split / "metrics.json").read_text())["completed"] is False
    # a second run into the same folder must be explicit
    assert cli.main(train_args(digit_folder, tiny_model, split, "--epochs", "2")) == 1
    assert "--resume" in capsys.readouterr().err
    assert cli.main(train_args(digit_folder, tiny_model, split, "--epochs", "2", "--resume")) == 0
    a = ConvNextForImageClassification.from_pretrained(straight)
    b = ConvNextForImageClassification.from_pretrained(split)
    assert weights_digest(a) == weights_digest(b)
    def without_timing(path):
        return [{k: v for k, v in e.items() if k != "seconds"} for e in json.loads(path.read_text())["epochs"]]

    assert [e["epoch"] for e in without_timing(split / "metrics.json")] == [1, 2]
    assert without_timing(split / "metrics.json") == without_timing(straight / "metrics.json")


def test_variant_from_scratch_keeps_folder_labels(digit_folder, tmp_path, capsys):
    out = tmp_path / "v2"
    assert cli.main(train_args(digit_folder, "convnextv2-atto", out, "--epochs", "1", "--image-size", "32")) == 0
    model = ConvNextV2ForImageClassification.from_pretrained(out)
    assert model.config.hidden_sizes == [40, 80, 160, 320] and model.config.id2label == dict(enumerate(CLASSES))
    processor = json.loads((out / "preprocessor_config.json").read_text())
    assert processor["size"] == {"shortest_edge": 32}


@pytest.mark.slow
def test_torchrun_two_processes_end_with_identical_weights(digit_folder, tiny_model, tmp_path):
    out = tmp_path / "ddp"
    proc = torchrun(train_args(digit_folder, tiny_model, out, "--epochs", "2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    digests = metrics["weights_sha256_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1] and metrics["replicas_identical"]
    assert metrics["samples_per_process_per_epoch"] == 12  # 24 training images split over 2 ranks
    model = ConvNextForImageClassification.from_pretrained(out)
    assert weights_digest(model) == digests[0]  # what rank 0 saved is what both ranks held
    start = ConvNextForImageClassification.from_pretrained(tiny_model)
    assert not torch.equal(model.convnext.encoder.stages[0].layers[0].dwconv.weight,
                           start.convnext.encoder.stages[0].layers[0].dwconv.weight)


# ---- torchrun: each image counted once, one error message ------------------------------------------
@pytest.mark.parametrize("size", range(1, 12))
@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_counted_samples_are_each_image_once(size, world_size):
    """The leading counted_samples() of each rank's DistributedSampler shard cover every image once."""
    dataset = list(range(size))
    counted = []
    for rank in range(world_size):
        sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world_size, rank=rank, seed=3)
        sampler.set_epoch(1)
        counted += list(sampler)[:counted_samples(size, rank, world_size)]
    assert sorted(counted) == dataset


@pytest.mark.slow
def test_torchrun_metrics_over_an_uneven_split_equal_one_process(digit_folder, tiny_model, tmp_path, capsys):
    """21 training and 9 validation images on 2 processes: the sampler repeats one training image to
    give each process 11, and the metrics must still be those of one process over the 21 images.
    A learning rate of 1e-30 leaves the weights as they are, so the two runs' metrics are comparable
    (augmentation depends on the image and epoch only, not on the process layout)."""
    args = ("--epochs", "1", "--val-fraction", "0.3", "--lr", "1e-30")
    single, multi = tmp_path / "single", tmp_path / "multi"
    assert cli.main(train_args(digit_folder, tiny_model, single, *args)) == 0
    proc = torchrun(train_args(digit_folder, tiny_model, multi, *args))
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = json.loads((single / "metrics.json").read_text())
    two = json.loads((multi / "metrics.json").read_text())
    assert one["images"] == two["images"] == {"train": 21, "val": 9}
    assert two["world_size"] == 2 and two["samples_per_process_per_epoch"] == 11  # 22 samples for 21 images
    (a,), (b,) = one["epochs"], two["epochs"]
    for key in ("train_loss", "val_loss"):
        assert math.isclose(a[key], b[key], rel_tol=1e-5), key
    for key in ("train_accuracy", "val_accuracy"):  # k/21 and k/9: any miscounted image changes them
        assert a[key] == pytest.approx(b[key], abs=1e-12), key


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("convnext train: ")]


@pytest.mark.slow
def test_torchrun_error_of_every_rank_is_printed_once(tiny_model, tmp_path):
    proc = torchrun(train_args(tmp_path / "no-such-folder", tiny_model, tmp_path / "out", "--epochs", "1"))
    assert proc.returncode != 0
    (line,) = error_lines(proc.stderr)
    assert line.startswith("convnext train: error: rank 0 of 2: ") and "no-such-folder" in line
    assert "(2 of 2 ranks failed)" in line


@pytest.mark.slow
def test_torchrun_error_of_one_rank_is_printed_once_naming_it(digit_folder, tiny_model, tmp_path):
    """A corrupt image that only rank 1 reads (its first training sample) stops both processes at
    that step; rank 0 prints the error once, naming rank 1 and the file."""
    import shutil

    from convnext_app.training.pt import TrainOptions, load_data

    data = tmp_path / "data"
    shutil.copytree(digit_folder, data)
    train_folder, _ = load_data(TrainOptions(data=str(data), model="", out="", val_fraction=0.2))
    sampler = torch.utils.data.DistributedSampler(train_folder.samples, num_replicas=2, rank=1, seed=0)
    sampler.set_epoch(0)
    corrupt = Path(train_folder.samples[next(iter(sampler))][0])
    corrupt.write_bytes(corrupt.read_bytes()[:40])  # a PNG cut short
    proc = torchrun(train_args(data, tiny_model, tmp_path / "out", "--epochs", "1"))
    assert proc.returncode != 0
    (line,) = error_lines(proc.stderr)
    assert line.startswith("convnext train: error: rank 1 of 2: ") and corrupt.name in line
    assert "ranks failed" not in line


def test_train_and_predict_preprocess_a_folder_without_preprocessor_config_alike(tmp_path):
    # one default for such a folder: fine-tuning must see the pixels predict/evaluate will feed it
    from convnext_app.inference import load_processor
    from convnext_app.training.pt import prepare_model

    model = ConvNextForImageClassification(ConvNextConfig(depths=[1, 1], hidden_sizes=[8, 16], num_stages=2,
                                                          num_labels=2, image_size=48, id2label={0: "a", 1: "b"}))
    model.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m" / "preprocessor_config.json").exists()
    trained = prepare_model(str(tmp_path / "m"), ["a", "b"], None, None, 0).processor
    predicted = load_processor(tmp_path / "m")
    keys = ("image_mean", "image_std", "size", "crop_pct", "resample", "rescale_factor", "do_normalize")
    assert {k: trained.to_dict()[k] for k in keys} == {k: predicted.to_dict()[k] for k in keys}
    assert list(predicted.image_mean) == [0.485, 0.456, 0.406]  # the hub's ConvNeXt statistics, not 0.5

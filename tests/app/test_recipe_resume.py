"""`convnext train` with the recipe switched on: a run split at epoch boundaries (--stop-after +
--resume) ends bit-identical to a straight run, on one process and under torchrun; the output is the
EMA; a new head is scaled; the pictures are valid PNG files (or one line names the extra)."""

import json
import struct
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from convnext_app import cli
from convnext_app.training.pt import load_checkpoint, prepare_model, weights_digest
from convnext_pt import ConvNextForImageClassification
from app.conftest import torchrun, train_args

EVERYTHING = ("--drop-path", "0.2", "--mixup", "0.8", "--cutmix", "1.0", "--randaugment", "rand-m9-mstd0.5-inc1",
              "--reprob", "0.25", "--ema", "0.9", "--layer-decay", "0.8", "--accum-steps", "2", "--clip-grad", "1.0")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def without_timing(out):
    return [{k: v for k, v in e.items() if k != "seconds"} for e in json.loads((out / "metrics.json").read_text())
            ["epochs"]]


def saved_digest(out):
    return weights_digest(ConvNextForImageClassification.from_pretrained(out))


def run_split(make_args, runner, out, epochs, splits):
    """The run in pieces: stop after each of ``splits`` epochs, then resume to the end."""
    done = 0
    for i, stop in enumerate(splits + [epochs]):
        extra = (["--resume"] if i else []) + (["--stop-after", str(stop - done)] if stop < epochs else [])
        assert runner(make_args(out, *extra)) == 0
        done = stop


def single(argv):
    return cli.main(argv)


def assert_same_run(straight, split):
    assert saved_digest(split) == saved_digest(straight)
    assert without_timing(split) == without_timing(straight)
    a, b = load_checkpoint(straight / "last_checkpoint.pt"), load_checkpoint(split / "last_checkpoint.pt")
    for key in ("model", "ema"):
        if key in a:
            assert all(torch.equal(a[key][n], b[key][n]) for n in a[key]), key


@pytest.mark.slow
def test_resume_is_exact_with_drop_path(digit_folder, tiny_model, tmp_path, capsys):
    """Drop path draws from torch's global generator: keyed per step, a resumed run draws the same."""
    def args(out, *extra):
        return train_args(digit_folder, tiny_model, out, "--epochs", "2", "--drop-path", "0.3", *extra)

    straight, split = tmp_path / "straight", tmp_path / "split"
    assert cli.main(args(straight)) == 0
    run_split(args, single, split, 2, [1])
    assert_same_run(straight, split)


@pytest.mark.slow
def test_resume_is_exact_with_every_recipe_option(digit_folder, tiny_model, tmp_path, capsys):
    def args(out, *extra):
        return train_args(digit_folder, tiny_model, out, "--epochs", "3", "--lr", "2e-3", *EVERYTHING, *extra)

    straight, split = tmp_path / "straight", tmp_path / "split"
    assert cli.main(args(straight)) == 0
    run_split(args, single, split, 3, [1, 2])  # split at both epoch boundaries
    assert_same_run(straight, split)
    metrics = json.loads((straight / "metrics.json").read_text())
    assert {"raw_val_loss", "raw_val_accuracy"} <= set(metrics["epochs"][0])
    # the saved model is the EMA, the raw weights stay in the checkpoint
    state = load_checkpoint(straight / "last_checkpoint.pt")
    saved = ConvNextForImageClassification.from_pretrained(straight).state_dict()
    assert all(torch.equal(saved[n], state["ema"][n]) for n in saved)
    assert not all(torch.equal(saved[n], state["model"][n]) for n in saved)
    assert metrics["weights_sha256_per_rank"] == [saved_digest(straight)]
    # 24 images, batches of 8: 3 micro-batches, 2 optimizer steps per epoch
    assert state["step"] == 6
    groups = {g["name"] for g in state["optimizer"]["param_groups"]}
    assert "layer_0_decay" in groups and "layer_13_no_decay" in groups


@pytest.mark.slow
def test_torchrun_resume_is_exact_with_every_recipe_option(digit_folder, tiny_model, tmp_path):
    def args(out, *extra):
        return train_args(digit_folder, tiny_model, out, "--epochs", "2", "--lr", "2e-3", *EVERYTHING, *extra)

    def launch(argv):
        proc = torchrun(argv)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return 0

    straight, split = tmp_path / "straight", tmp_path / "split"
    launch(args(straight))
    run_split(args, launch, split, 2, [1])
    assert_same_run(straight, split)
    metrics = json.loads((split / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["replicas_identical"]


def test_head_init_scale_scales_the_new_head(digit_folder, tiny_model, tmp_path, capsys):
    """With a learning rate of 1e-30 the saved head is the initial one: the unscaled init times S."""
    out = tmp_path / "run"
    assert cli.main(train_args(digit_folder, tiny_model, out, "--epochs", "1", "--lr", "1e-30",
                               "--head-init-scale", "0.001")) == 0
    saved = ConvNextForImageClassification.from_pretrained(out)
    start = prepare_model(str(tiny_model), ["one", "seven", "zero"], None, 0.0, 0).model
    torch.testing.assert_close(saved.classifier.weight, start.classifier.weight * 0.001, rtol=1e-5, atol=1e-12)
    assert start.classifier.weight.abs().max() > 1e-3


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    with Image.open(path) as image:
        image.load()
        assert image.size == (width, height)
    return width, height


def test_pictures_are_valid_png(digit_folder, tiny_model, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    assert cli.main(train_args(digit_folder, tiny_model, out, "--epochs", "2", "--ema", "0.5")) == 0
    assert png_size(out / "curves.png") == (900, 360)  # 9 x 3.6 inches at 100 dpi
    picture = tmp_path / "confusion.png"
    capsys.readouterr()
    assert cli.main(["evaluate", "--data", str(digit_folder), "--model", str(out), "--framework", "pt",
                     "--confusion-png", str(picture)]) == 0
    width, height = png_size(picture)
    assert width >= 400 and height >= 400
    with Image.open(picture) as image:  # not blank: the matrix and its labels are drawn
        assert len(np.unique(np.asarray(image.convert("L")))) > 10


def test_without_matplotlib_one_line_names_the_extra(digit_folder, tiny_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = tmp_path / "run"
    assert cli.main(train_args(digit_folder, tiny_model, out, "--epochs", "1")) == 0
    assert (out / "model.safetensors").is_file() and not (out / "curves.png").exists()
    notes = [line for line in capsys.readouterr().err.splitlines() if "convnext-twins[plot]" in line]
    assert len(notes) == 1 and "curves.png" in notes[0]
    assert cli.main(["evaluate", "--data", str(digit_folder), "--model", str(out), "--framework", "pt",
                     "--confusion-png", str(tmp_path / "c.png")]) == 0
    err = capsys.readouterr().err
    assert err.count("convnext-twins[plot]") == 1 and not (tmp_path / "c.png").exists()


def test_resume_with_other_recipe_state_is_one_clear_error(digit_folder, tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(train_args(digit_folder, tiny_model, out, "--epochs", "2", "--stop-after", "1")) == 0
    capsys.readouterr()
    assert cli.main(train_args(digit_folder, tiny_model, out, "--epochs", "2", "--resume", "--ema", "0.9")) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("convnext train: error: --resume --ema:") and "last_checkpoint.pt" in line
    assert cli.main(train_args(digit_folder, tiny_model, out, "--epochs", "2", "--resume", "--layer-decay",
                               "0.8")) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "other parameter groups" in line

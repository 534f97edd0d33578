"""What the training tests of the application share: an ImageFolder of held-out digits, a tiny classifier
folder to fine-tune, the `convnext train` arguments that keep a run to seconds, and torchrun."""

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import FIXTURES, REPO

HELDOUT = FIXTURES / "digits_heldout.npz"
CLASSES = ["one", "seven", "zero"]  # folder names; sorted, so "one" is label 0


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory):
    """ImageFolder: 10 images per class, 36 px, written from held-out 8x8 digits 1, 7 and 0."""
    from convnext_app.digits import Rendering, load_heldout, render

    held = load_heldout(HELDOUT)
    root = tmp_path_factory.mktemp("digits_folder")
    for name, digit in zip(CLASSES, (1, 7, 0)):
        (root / name).mkdir()
        for k, i in enumerate(np.flatnonzero(held.labels == digit)[:10]):
            way = Rendering("nearest" if k % 2 else "bilinear", 36, "L")
            render(held.images[i], way).save(root / name / f"{k}.png")
    return root


def write_tiny_classifier(folder, **config):
    """A tiny random V1 classifier with 5 labels (so fine-tuning on 3 classes needs a new head), saved with
    its processor; ``config`` changes the ConvNextConfig."""
    import torch

    from convnext_common import ConvNextConfig
    from convnext_common.processing import ConvNextImageProcessor
    from convnext_pt import ConvNextForImageClassification

    torch.manual_seed(0)
    config = ConvNextConfig(**{**dict(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 32, 64], num_labels=5,
                                      image_size=32), **config})
    ConvNextForImageClassification(config).save_pretrained(folder)
    ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return write_tiny_classifier(tmp_path_factory.mktemp("tiny_model"))


def train_args(data, model, out, *extra):
    return ["train", "--data", str(data), "--model", str(model), "--out", str(out), "--batch-size", "8",
            "--no-flip", "--quiet", "--val-fraction", "0.2", "--drop-path", "0", *extra]


def torchrun(argv, processes: int = 2) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
           "-m", "convnext_common", *argv]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def one_line_error(capsys, argv: list, *fragments: str) -> None:
    """``convnext ARGV`` fails with status 1 and exactly one line on stderr holding every fragment."""
    from convnext_app import cli

    code = cli.main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1 and len(err) == 1, err
    for fragment in fragments:
        assert fragment in err[0], err[0]

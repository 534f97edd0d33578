"""Writes the README's example pictures (docs/images/curves.png, docs/images/confusion.png) from a
small run on the held-out digits: a tiny random ConvNeXt fine-tuned with part of the recipe, then
`convnext evaluate --confusion-png` on the validation images.

    python scripts/make_readme_pictures.py [--work /tmp/pictures]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from convnext_app import cli  # noqa: E402
from convnext_app.digits import Rendering, load_heldout, render  # noqa: E402
from convnext_common import ConvNextConfig  # noqa: E402
from convnext_common.processing import ConvNextImageProcessor  # noqa: E402
from convnext_pt import ConvNextForImageClassification  # noqa: E402


def write_folder(root: Path) -> None:
    """train/ and val/ with one folder per digit, 32 px renderings of the held-out 8x8 digits."""
    held = load_heldout(REPO / "tests" / "fixtures" / "digits_heldout.npz")
    for i, (image, label) in enumerate(zip(held.images, held.labels)):
        split = "val" if i % 4 == 0 else "train"
        folder = root / split / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        render(image, Rendering("bilinear" if i % 2 else "nearest", 32, "L")).save(folder / f"{i}.png")


def write_model(folder: Path) -> None:
    torch.manual_seed(0)
    config = ConvNextConfig(depths=[1, 1, 2, 1], hidden_sizes=[16, 32, 64, 128], num_labels=10, image_size=32)
    ConvNextForImageClassification(config).save_pretrained(folder)
    ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0, image_mean=[0.5] * 3,
                           image_std=[0.5] * 3).save_pretrained(folder)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/convnext-pictures")
    args = parser.parse_args()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    write_folder(work / "digits")
    write_model(work / "start")
    run = work / "run"
    code = cli.main(["train", "--data", str(work / "digits"), "--model", str(work / "start"), "--out", str(run),
                     "--epochs", "12", "--batch-size", "32", "--lr", "4e-3", "--no-flip", "--min-scale", "0.6",
                     "--drop-path", "0.1", "--randaugment", "rand-m5-mstd0.5-inc1", "--reprob", "0.1",
                     "--ema", "0.9", "--layer-decay", "0.9", "--quiet"])
    if code:
        return code
    images = REPO / "docs" / "images"
    images.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / "curves.png", images / "curves.png")
    return cli.main(["evaluate", "--data", str(work / "digits" / "val"), "--model", str(run), "--framework", "pt",
                     "--confusion-png", str(images / "confusion.png")])


if __name__ == "__main__":
    sys.exit(main())

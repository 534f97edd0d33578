"""The images every training path reads alike: the folders and the held-out split, the labels in the
model's order, and the name of the metrics file a run writes."""

from __future__ import annotations

from typing import Sequence

from convnext_app.imagefolder import ImageFolder, find_splits, scan_image_folder, split_holdout

#: the per-epoch record every run writes into its output folder
METRICS_NAME = "metrics.json"


def load_folders(data: str, val_fraction: float, seed: int) -> tuple[ImageFolder, ImageFolder]:
    """(train, val) folders, labels indexing the sorted folder names: ``train/`` + ``val/``, or a
    seeded, stratified held-out fraction. The split depends only on the files and the seed, so a
    resumed run validates on the same images."""
    train_dir, val_dir = find_splits(data)
    train_folder = scan_image_folder(train_dir)
    if val_dir is not None:
        return train_folder, scan_image_folder(val_dir, classes=train_folder.classes, allow_missing_classes=True)
    return split_holdout(train_folder, val_fraction, seed=seed)


def remap(folder: ImageFolder, classes: Sequence[str]) -> ImageFolder:
    """The same images with labels indexing ``classes`` (the model's order of the same names)."""
    index = {name: i for i, name in enumerate(classes)}
    return ImageFolder(folder.root, list(classes), [(p, index[folder.classes[label]]) for p, label in folder.samples])

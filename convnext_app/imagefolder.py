"""Image-classification folders: one sub-folder per class, the folder name is the label.

```
data/                     or     data/
  cat/ a.jpg b.png                 train/ cat/ ... dog/ ...
  dog/ c.jpg                       val/   cat/ ... dog/ ...
```

Framework-free (PIL only). Used by ``convnext train`` and ``convnext evaluate``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

#: file endings read as images (lower case); other files in class folders are ignored.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")


class ImageFolderError(ValueError):
    """A data folder is not usable as an image-classification folder; the message names it."""


@dataclass
class ImageFolder:
    """The images under ``root``: ``samples[i] = (path, class_index)``, ``classes[class_index]`` = label."""

    root: Path
    classes: list[str]
    samples: list[tuple[Path, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self.samples]

    def subset(self, indices: Iterable[int]) -> "ImageFolder":
        return ImageFolder(self.root, list(self.classes), [self.samples[i] for i in indices])

    def class_counts(self) -> dict[str, int]:
        counts = {c: 0 for c in self.classes}
        for _, label in self.samples:
            counts[self.classes[label]] += 1
        return counts


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def class_folders(root: str | os.PathLike) -> list[str]:
    """Names of the class sub-folders of ``root``, sorted (hidden folders are skipped)."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such data folder")
    if not root.is_dir():
        raise ImageFolderError(f"{root}: is a file, expected a folder with one sub-folder per class")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def scan_image_folder(root: str | os.PathLike, classes: Optional[Sequence[str]] = None,
                      allow_missing_classes: bool = False) -> ImageFolder:
    """List the images of ``root`` (searched recursively inside each class folder, in sorted order).

    ``classes`` fixes the class list and order (e.g. a model's labels, or the train split's classes
    when scanning ``val/``); a folder whose name is not among them is an error. Without it the
    sorted folder names are the classes. Every class folder must hold at least one image unless
    ``allow_missing_classes`` (then listed classes may also have no folder at all).
    """
    root = Path(root)
    found = class_folders(root)
    if not found:
        raise ImageFolderError(f"{root}: no class sub-folders (expected one folder of images per class)")
    if classes is None:
        classes = found
    else:
        classes = list(classes)
        unknown = [name for name in found if name not in classes]
        if unknown:
            shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise ImageFolderError(f"{root}: class folder(s) {shown} are not among the expected labels "
                                   f"({', '.join(classes[:10])}{' ...' if len(classes) > 10 else ''})")
    index = {name: i for i, name in enumerate(classes)}
    samples: list[tuple[Path, int]] = []
    empty = []
    for name in found:
        files = sorted(p for p in (root / name).rglob("*") if p.is_file() and is_image_file(p))
        if not files:
            empty.append(name)
        samples.extend((p, index[name]) for p in files)
    if empty and not allow_missing_classes:
        raise ImageFolderError(f"{root}: class folder(s) {', '.join(empty)} hold no images "
                               f"(looked for {', '.join(IMAGE_EXTENSIONS)})")
    if not samples:
        raise ImageFolderError(f"{root}: no images found")
    return ImageFolder(root, list(classes), samples)


def find_splits(root: str | os.PathLike) -> tuple[Path, Optional[Path]]:
    """``(train_dir, val_dir)`` when ``root`` has ``train/`` and ``val/`` (or ``validation/``) folders,
    else ``(root, None)``: the caller holds out a fraction itself."""
    root = Path(root)
    for val_name in ("val", "validation", "valid"):
        if (root / "train").is_dir() and (root / val_name).is_dir():
            return root / "train", root / val_name
    if (root / "train").is_dir() and len(class_folders(root)) == 1:
        return root / "train", None
    return root, None


def split_holdout(folder: ImageFolder, fraction: float, seed: int = 0) -> tuple[ImageFolder, ImageFolder]:
    """Stratified, seeded split: ``fraction`` of each class's images (at least one when the class has
    two or more) go to the second folder."""
    if not 0.0 < fraction < 1.0:
        raise ImageFolderError(f"val fraction must be between 0 and 1 (exclusive), got {fraction}")
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = {}
    for i, (_, label) in enumerate(folder.samples):
        by_class.setdefault(label, []).append(i)
    train_idx, val_idx = [], []
    for label in sorted(by_class):
        idx = by_class[label]
        order = rng.permutation(len(idx))
        n_val = int(round(len(idx) * fraction))
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        else:
            n_val = 0
        val_idx += [idx[j] for j in order[:n_val]]
        train_idx += [idx[j] for j in order[n_val:]]
    if not val_idx:
        raise ImageFolderError(f"{folder.root}: too few images to hold out a validation fraction of {fraction}")
    return folder.subset(sorted(train_idx)), folder.subset(sorted(val_idx))


def load_image(path: str | os.PathLike):
    """Open an image file fully (a PIL image in RGB); an unreadable file is an OSError naming it."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            return _to_8_bits(img, path).convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such image file") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image file PIL can read") from None
    except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt data
        raise ImageReadError(f"{path}: could not read the image ({e})") from None
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"{path}: {e}") from None


def _to_8_bits(img, path: Path):
    """16-bit grayscale (PNG, TIFF) scaled to 8 bits. PIL's own ``convert("RGB")`` clips such images
    at 255, which turns all but the darkest pixels white."""
    from PIL import Image

    if img.mode.startswith("I;16") or img.mode == "I":
        values = np.asarray(img, dtype=np.int64)
        if img.mode == "I" and values.min() >= 0 and values.max() <= 255:
            return img  # 8-bit data stored in a 32-bit image: nothing to scale
        if values.min() < 0 or values.max() > 65535:
            raise ImageReadError(f"{path}: a 32-bit integer image with values outside [0, 65535]; convert it to "
                                 f"8-bit RGB first")
        return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8))  # 2-D uint8: mode L
    return img


class ImageReadError(OSError):
    """An image file exists but cannot be decoded; the message names it."""

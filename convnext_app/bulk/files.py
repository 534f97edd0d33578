"""The image files a command names: files as given, folders walked recursively in sorted order.

The walk yields paths as it goes (one folder's listing in memory at a time); the caller keeps the
list of paths, which the resume and the sharding need, but nothing per image beyond its path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

from convnext_app.imagefolder import is_image_file


def walk_images(folder: Path) -> Iterator[str]:
    """Image files under ``folder``, depth first, each folder's entries in sorted name order
    (hidden files and folders skipped)."""
    with os.scandir(folder) as it:
        entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir():
            yield from walk_images(Path(entry.path))
        elif entry.is_file() and is_image_file(Path(entry.name)):
            yield entry.path


def image_paths(items: Sequence[str | os.PathLike]) -> list[str]:
    """The image files of ``items``: a file is taken as given (its content is checked when it is
    decoded), a folder contributes its image files; a folder without images or a missing path is an error."""
    paths: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            before = len(paths)
            paths.extend(walk_images(p))
            if len(paths) == before:
                raise FileNotFoundError(f"{p}: folder holds no image files")
        elif p.is_file():
            paths.append(str(p))
        else:
            raise FileNotFoundError(f"{p}: no such image file or folder")
    return paths

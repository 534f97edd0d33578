"""Find a file of a hub-layout model: a local folder, a direct file path, or a hub id.

Hub ids need ``huggingface_hub`` and a network; both are optional. Local folders use the same
layout the hub uses (config.json, model.safetensors, tf_model.h5, preprocessor_config.json).
"""

from __future__ import annotations

import os
from pathlib import Path


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(parts) and not name.startswith((".", "~")) and "\\" not in name


def resolve_file(path_or_id: str | os.PathLike, filename: str, required: bool = True) -> Path | None:
    """Path of ``filename`` for ``path_or_id`` (a folder, the file itself, or a hub id).

    Returns None when the file is absent and not ``required``; raises FileNotFoundError naming
    what was looked for otherwise.
    """
    p = Path(path_or_id)
    if p.is_dir():
        f = p / filename
        if f.is_file():
            return f
        if required:
            raise FileNotFoundError(f"{p}: no {filename} in this folder")
        return None
    if p.is_file():
        if p.name == filename or (p.suffix == ".json" and filename.endswith(".json")):
            return p  # the file itself, possibly under another name (my_config.json)
        # a weights file was named directly: its config lives beside it
        return resolve_file(p.parent, filename, required)
    name = str(path_or_id)
    if _looks_like_hub_id(name) and not p.exists():
        try:
            from huggingface_hub import hf_hub_download  # optional
        except ImportError:
            if required:
                raise FileNotFoundError(
                    f"{name}: no such folder (hub ids need `pip install huggingface_hub` and a network)") from None
            return None
        try:
            return Path(hf_hub_download(repo_id=name, filename=filename))
        except Exception as e:  # EntryNotFound, offline, no such repo
            if required:
                raise FileNotFoundError(f"{name}: could not get {filename} from the hub ({type(e).__name__}: {e})") from None
            return None
    if required:
        raise FileNotFoundError(f"{name}: no such file or folder (looking for {filename})")
    return None

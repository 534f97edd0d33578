"""Licences travel with the weights: which licence a checkpoint came with, the model card that carries it
in a written folder, and the one-line notice the commands print for a licence that is not permissive.

The hub's own convention is the record: a folder's ``README.md`` (its model card) starts with YAML
front matter whose ``license:`` is an SPDX-like id (``apache-2.0``, ``cc-by-nc-4.0``), or ``other``
with ``license_name`` / ``license_link`` (the DINOv3 repos: ``dinov3-license``). A timm folder names
its licence in ``config.json``'s ``pretrained_cfg.license``. Sources that carry none are known by their
library: DINOv3's weights are under the DINOv3 License, the official ConvNeXt-V2 weights under
CC-BY-NC 4.0, the official ConvNeXt (V1) ones under MIT.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

MODEL_CARD_NAME = "README.md"

#: licences that allow use, modification and redistribution, commercial included, without more than
#: attribution: no notice is printed for these.
PERMISSIVE = frozenset({"apache-2.0", "mit", "bsd-2-clause", "bsd-3-clause", "bsd", "cc-by-4.0", "cc0-1.0",
                        "unlicense", "isc", "bsl-1.0", "zlib"})

DINOV3_LICENCE_LINK = "https://ai.meta.com/resources/models-and-libraries/dinov3-license/"


@dataclass(frozen=True)
class Licence:
    """A licence id as the hub writes it (``license:``), with ``name`` / ``link`` for ``other`` ones,
    and where it was read (the source the weights came from)."""

    id: str
    source: str
    name: Optional[str] = None
    link: Optional[str] = None

    @property
    def label(self) -> str:
        return self.name if self.id == "other" and self.name else self.id

    @property
    def permissive(self) -> bool:
        return self.id.lower() in PERMISSIVE


def dinov3_licence(source: str) -> Licence:
    return Licence("other", source, "dinov3-license", DINOV3_LICENCE_LINK)


def licence_for_converted(source_format: str, model_type: str, timm_pretrained_cfg: Optional[dict],
                          hub_dir: Optional[Path], source: str) -> Optional[Licence]:
    """The licence of a converted checkpoint: a folder's model card, a timm pretrained_cfg's
    ``license``, or what the source library's weights are published under; None when unknown."""
    if hub_dir is not None:
        found = read_licence(hub_dir)
        if found is not None:
            return found
    if timm_pretrained_cfg and isinstance(timm_pretrained_cfg.get("license"), str):
        licence = timm_pretrained_cfg["license"]
        if licence == "dinov3-license":
            return dinov3_licence(source)
        return Licence(licence, source)
    if source_format in ("dinov3", "dinov3-official") or model_type == "dinov3_convnext":
        return dinov3_licence(source)
    if source_format == "official":
        return Licence("cc-by-nc-4.0" if model_type == "convnextv2" else "mit", source)
    return None


_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.S)


def _front_matter(text: str) -> dict[str, str]:
    """The top-level ``key: value`` lines of a model card's front matter (the fields read here are
    plain scalars; lists and nested maps are not needed)."""
    m = _FRONT_MATTER.match(text)
    if m is None:
        return {}
    fields = {}
    for line in m.group(1).splitlines():
        km = re.match(r"^([A-Za-z_][\w-]*):\s*(.*?)\s*$", line)
        if km and km.group(2):
            fields[km.group(1)] = km.group(2).strip("'\"")
    return fields


def read_licence(folder: Union[str, os.PathLike]) -> Optional[Licence]:
    """The licence a model folder carries: its model card's ``license:``, else a timm config.json's
    ``pretrained_cfg.license``; None when it names none."""
    folder = Path(folder)
    if folder.is_file():
        folder = folder.parent
    card = folder / MODEL_CARD_NAME
    if card.is_file():
        try:
            fields = _front_matter(card.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            fields = {}
        if "license" in fields:
            return Licence(fields["license"], fields.get("weights_source") or str(folder), fields.get("license_name"),
                           fields.get("license_link"))
    config = folder / "config.json"
    if config.is_file():
        try:
            d = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        cfg = d.get("pretrained_cfg") if isinstance(d, dict) else None
        if isinstance(cfg, dict) and isinstance(cfg.get("license"), str):
            if cfg["license"] == "dinov3-license":
                return dinov3_licence(str(folder))
            return Licence(cfg["license"], str(folder))
    return None


def model_card(licence: Licence, model_name: str) -> str:
    """A model card with the hub's licence front matter and the source named."""
    lines = ["---", f"license: {licence.id}"]
    if licence.name:
        lines.append(f"license_name: {licence.name}")
    if licence.link:
        lines.append(f"license_link: {licence.link}")
    lines += ["library_name: transformers", f"weights_source: {licence.source}", "---", "", f"# {model_name}", "",
              f"Weights from {licence.source}. The weights keep the licence they were published under: "
              f"{licence.label}" + (f" ({licence.link})" if licence.link else "") + ".", ""]
    return "\n".join(lines)


def write_model_card(directory: Union[str, os.PathLike], licence: Optional[Licence], model_name: str) -> Optional[Path]:
    """Write ``directory/README.md`` for ``licence`` (atomically); nothing for None."""
    if licence is None:
        return None
    from .fileio import atomic_write_text

    path = Path(directory) / MODEL_CARD_NAME
    atomic_write_text(path, model_card(licence, model_name))
    return path


def _hub_snapshot(name: Union[str, os.PathLike]) -> Optional[Path]:
    """The local snapshot folder of a hub id, with its model card and config fetched where they are to
    be had (the command is about to download the weights from there anyway); None when it is not a hub
    id or nothing can be had."""
    from .hub import HubError, is_hub_id, resolve_file

    if not is_hub_id(name):
        return None
    found = None
    for filename in (MODEL_CARD_NAME, "config.json"):
        try:
            found = resolve_file(name, filename, required=False) or found
        except (HubError, OSError):
            continue
    return found.parent if found is not None else None


def licence_notice(folder: Union[str, os.PathLike, None]) -> Optional[str]:
    """The one line a command prints before using a model whose licence is not permissive (None
    otherwise, or when the folder names no licence)."""
    if folder is None:
        return None
    shown = folder
    if not Path(folder).exists():
        folder = _hub_snapshot(folder)
        if folder is None:
            return None
    licence = read_licence(folder)
    if licence is None or licence.permissive:
        return None
    link = f", {licence.link}" if licence.link else ""
    return f"note: {shown}: the weights are licensed under {licence.label}{link}; check that your use is allowed"


__all__ = ["Licence", "PERMISSIVE", "MODEL_CARD_NAME", "licence_for_converted", "read_licence", "model_card",
           "write_model_card", "licence_notice", "dinov3_licence"]

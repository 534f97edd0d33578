"""Every checkpoint source the converter reads, one module each, listed in ``SOURCES``.

A source is everything particular to one library's checkpoints: its tensor names and the rules that
map them to the canonical ones (with the parts it refuses), how its files and the config beside
them are read, what it computes beyond its tensors, and the preprocessing its models expect
(``Source`` in base.py says which field holds what). The pipeline (``checkpoints/pipeline.py``)
asks the entries and knows no source by name.

- transformers.py: ``hf``, transformers' folders and files (already canonical; ``tf_model.h5``);
- timm.py: ``timm``, its names, its config.json (also for ``from_pretrained`` of timm folders and
  hub ids), its architectures' settings and its evaluation transform;
- official.py: ``official`` (facebookresearch ConvNeXt / ConvNeXt-V2) and ``fcmae`` (ConvNeXt-V2's
  MinkowskiEngine pre-training checkpoints);
- torchvision.py: ``torchvision``;
- keras_applications.py: ``keras``, keras-applications' h5 files;
- dinov3.py: ``dinov3`` and ``dinov3-official``, and the family of the written folder.

Adding a source: write its module (rules, refusals, readers, a ``Source``) and add it to ``SOURCES``
below. Detection, the ``source`` argument (``--from``), the mapping, the config and the preprocessing
follow from the entry.
"""

from __future__ import annotations

from . import dinov3, keras_applications, official, timm, torchvision, transformers
from .base import Source, SourceCheckpoint

SOURCES: tuple[Source, ...] = (
    transformers.SOURCE, timm.SOURCE, official.SOURCE, official.FCMAE_SOURCE, torchvision.SOURCE,
    keras_applications.SOURCE, dinov3.SOURCE, dinov3.OFFICIAL_SOURCE,
)
#: the names the ``source`` argument (``--from``) takes.
FORMATS: tuple[str, ...] = tuple(s.name for s in SOURCES)

__all__ = ["SOURCES", "FORMATS", "Source", "SourceCheckpoint", "get_source"]


def get_source(name: str) -> Source:
    """The entry of ``SOURCES`` called ``name``; ValueError listing the known ones."""
    for source in SOURCES:
        if source.name == name:
            return source
    raise ValueError(f"source={name!r} is not one of {', '.join(FORMATS)}")

"""What a checkpoint source is (``Source``), the checkpoint as it was read (``SourceCheckpoint``), and
the defaults a source keeps unless it says otherwise. Each source's module (timm.py, official.py, ...)
builds its ``Source``; ``SOURCES`` in this package's ``__init__`` lists them.

A ``Source`` says everything that is particular to one library's checkpoints:

- ``name``: the ``source`` argument of ``convert`` (``--from``), and the format name in results and
  messages; ``library``: the library, for messages;
- ``signature``: tensor names only that library writes (the pipeline scores every source's
  signature; the best match wins);
- ``rules`` / ``refusals``: its names -> canonical (transformers PyTorch) names and layouts, and the
  names that mean a part the hub layout cannot express (rules.py); no rules: already canonical;
- ``norms_have_bias``: its norms are LayerNorms with a bias, so a scale without a shift is another
  kind of norm (RMSNorm) and is refused;
- ``h5_layout`` / ``read_h5``: whether an HDF5 file is in its layout (given the file and its top-level
  layer names), and how such a file is read;
- ``metadata``: what is read beside the tensors (a timm folder's config.json, a training
  checkpoint's ``arch``);
- ``computation``: what the source computes beyond its tensors (computation.py), None when the
  config is already in hub terms;
- ``preprocessor``: the preprocessor_config.json the converted folder gets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from ...config import ConvNextConfig
from ..computation import Computation
from ..formats.torch_pickle import TorchCheckpoint
from ..preprocessing import fit_to_channels, imagenet_preprocessor_config
from .rules import Refusal, Rule


@dataclass
class SourceCheckpoint:
    """A checkpoint as read, in its source's names, with what was read beside it."""

    state: dict
    fmt: str
    weights_file: Path
    hub_dir: Optional[Path] = None  # a hub-layout folder: its config.json and preprocessor config
    keras: Any = None               # a keras-applications file: the roles of its other layers (KerasWeights)
    timm: Any = None                # a timm folder's config.json or train.py's arch and args (TimmHubConfig)
    entry: Optional[str] = None     # the training checkpoint's entry the weights came from
    other_entries: list[str] = field(default_factory=list)


def no_metadata(inp: SourceCheckpoint, ckpt: Optional[TorchCheckpoint]) -> None:
    return None


def fixed_computation(inp: SourceCheckpoint, state: Mapping, stated: Any) -> Computation:
    return Computation()  # GELU, LayerNorm eps 1e-6, average pooling: fixed in the library's code


def imagenet_preprocessor(inp: SourceCheckpoint, channels: int, notes: list[str]) -> Optional[dict]:
    # the ImageNet ConvNeXts of these libraries use it
    return fit_to_channels(imagenet_preprocessor_config(), channels, notes)


@dataclass(frozen=True)
class Source:
    """One library's checkpoints: see the module docstring."""

    name: str
    library: str
    signature: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    refusals: tuple[Refusal, ...] = ()
    norms_have_bias: bool = False
    h5_layout: Optional[Callable[[Path, list[str]], bool]] = None
    read_h5: Optional[Callable[[Path, Optional[Path], Optional[ConvNextConfig]], SourceCheckpoint]] = None
    metadata: Callable[[SourceCheckpoint, Optional[TorchCheckpoint]], None] = no_metadata
    #: ``stated``: what the caller's own timm config.json says (``config=``), or None
    computation: Callable[[SourceCheckpoint, Mapping, Any], Optional[Computation]] = fixed_computation
    preprocessor: Callable[[SourceCheckpoint, int, list[str]], Optional[dict]] = imagenet_preprocessor

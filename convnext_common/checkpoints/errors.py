"""The errors of checkpoint reading and conversion (one module that every reader imports, so that
the readers need not import each other)."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A weights file is unreadable, corrupt or does not fit the model; the message names the file."""


class UnsupportedCheckpointError(CheckpointError):
    """The weights are a ConvNeXt, but one that the hub layout cannot express."""

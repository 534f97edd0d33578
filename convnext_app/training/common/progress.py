"""The progress line of ``convnext train`` (stderr): the project's one progress display, counting
the batches of an epoch; off a terminal one line per epoch, so logs stay short."""

from __future__ import annotations

from typing import Optional, TextIO

from convnext_common.progress import Progress


def epoch_progress(steps: int, description: str, stream: Optional[TextIO] = None, enabled: bool = True) -> Progress:
    return Progress(description, steps, stream, enabled=enabled, unit="it", lines_off_terminal=1)

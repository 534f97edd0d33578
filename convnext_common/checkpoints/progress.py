"""A dependency-free progress bar on stderr for long conversions.

On a terminal it redraws one line (``\\r``); elsewhere (logs, CI) it prints a line at each
quarter so that logs stay short. Small jobs (under ``min_bytes``) print nothing.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

MiB = 1024 * 1024


class Progress:
    """``with Progress("writing tf_model.h5", total_bytes) as bar: bar.advance(n)``."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None, enabled: bool = True,
                 min_bytes: int = 64 * MiB, width: int = 30, interval_s: float = 0.1):
        self.label = label
        self.total = max(int(total), 1)
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and total >= min_bytes
        self.width = width
        self.interval_s = interval_s
        self.done = 0
        self._last_draw = 0.0
        self._last_quarter = -1
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __enter__(self) -> "Progress":
        self._draw(force=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.done = self.total
            self._draw(force=True)
        if self.enabled and self._tty:
            self.stream.write("\n")
            self.stream.flush()

    def advance(self, n: int) -> None:
        self.done = min(self.done + int(n), self.total)
        self._draw()

    def render(self) -> str:
        frac = self.done / self.total
        filled = int(round(frac * self.width))
        bar = "#" * filled + "." * (self.width - filled)
        return f"{self.label} [{bar}] {frac * 100:3.0f}% {self.done / MiB:.0f}/{self.total / MiB:.0f} MiB"

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        if self._tty:
            now = time.monotonic()
            if force or now - self._last_draw >= self.interval_s:
                self._last_draw = now
                self.stream.write("\r" + self.render())
                self.stream.flush()
            return
        quarter = (4 * self.done) // self.total
        if quarter > self._last_quarter:
            self._last_quarter = quarter
            self.stream.write(self.render() + "\n")
            self.stream.flush()

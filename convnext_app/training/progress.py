"""The progress line of ``convnext train`` (stderr)."""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


class ProgressBar:
    """A one-line progress bar on ``stream`` (stderr): redrawn in place on a terminal; elsewhere one
    line per epoch, so logs stay short."""

    def __init__(self, total: int, description: str, stream: Optional[TextIO] = None, enabled: bool = True):
        self.total = max(1, total)
        self.description = description
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.interactive = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.count = 0
        self.start = time.perf_counter()
        self._last_draw = 0.0

    def _line(self, metrics: dict[str, float]) -> str:
        width = 24
        filled = int(width * self.count / self.total)
        elapsed = time.perf_counter() - self.start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        parts = " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
        return (f"{self.description} [{'#' * filled}{'.' * (width - filled)}] {self.count}/{self.total} "
                f"{parts} {rate:.1f} it/s {elapsed:.0f}s")

    def update(self, n: int = 1, **metrics: float) -> None:
        self.count += n
        if self.interactive and (time.perf_counter() - self._last_draw > 0.1 or self.count >= self.total):
            self.stream.write("\r" + self._line(metrics) + "\x1b[K")
            self.stream.flush()
            self._last_draw = time.perf_counter()

    def close(self, **metrics: float) -> None:
        if not self.enabled:
            return
        line = self._line(metrics)
        self.stream.write(f"\r{line}\x1b[K\n" if self.interactive else f"{line}\n")
        self.stream.flush()

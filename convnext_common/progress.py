"""The project's one progress display (tqdm), for bytes written by the converter and for the
batches of a training epoch.

On a terminal tqdm redraws one line in place. Elsewhere (a log file, CI) redraws would fill the log,
so a fixed number of plain lines is written over the whole job: by default one per quarter, the last
at completion; ``lines_off_terminal=1`` writes only the final line (one line per training epoch).
Metrics given to ``update`` / ``close`` (loss, accuracy, ...) follow the bar as ``name value``.
"""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

from tqdm import tqdm

MiB = 1024 * 1024


def _format_metrics(metrics: dict) -> str:
    return " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())


class Progress:
    """``with Progress("writing tf_model.h5", total_bytes) as bar: bar.advance(n)``, or for counted
    items ``bar = Progress("epoch 1/3", steps, unit="it", lines_off_terminal=1)``, ``bar.update(1,
    loss=...)`` per step and ``bar.close(loss=..., acc=...)`` at the end.

    ``unit="B"`` counts bytes (shown in KiB/MiB); such a job under ``min_bytes`` shows nothing, since
    it ends before a bar would help. ``enabled=False`` shows nothing.
    """

    def __init__(self, description: str, total: int, stream: Optional[TextIO] = None, enabled: bool = True,
                 min_bytes: int = 64 * MiB, unit: str = "B", lines_off_terminal: int = 4):
        self.description = description
        self.total = max(int(total), 1)
        self.stream = stream if stream is not None else sys.stderr
        self.unit = unit
        self.enabled = enabled and (unit != "B" or total >= min_bytes)
        self.done = 0
        self.metrics: dict = {}
        self._lines = max(int(lines_off_terminal), 1)
        self._lines_written = 0
        self._closed = False
        self._start = time.monotonic()
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar: Optional[tqdm] = None
        if self.enabled and tty:
            self._bar = tqdm(total=self.total, desc=description, file=self.stream, mininterval=0.1, leave=True,
                             **self._units())

    def _units(self) -> dict:
        if self.unit == "B":
            return {"unit": "B", "unit_scale": True, "unit_divisor": 1024}
        return {"unit": self.unit}

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._bar is not None:  # leave the bar where it stopped
            self._bar.close()
            self._closed = True

    def advance(self, n: int) -> None:
        """``n`` more bytes (or items) done."""
        self.update(n)

    def update(self, n: int = 1, **metrics) -> None:
        """``n`` more items done; ``metrics`` (e.g. ``loss=0.3``) replace the ones shown."""
        n = min(int(n), self.total - self.done)
        self.done += n
        if metrics:
            self.metrics = metrics
        if self._bar is not None:
            if metrics:
                self._bar.set_postfix_str(_format_metrics(metrics), refresh=False)
            self._bar.update(n)
        elif self.enabled and self._lines > 1 and self.done < self.total:
            if (self._lines * self.done) // self.total > self._lines_written:
                self._write_line()

    def close(self, **metrics) -> None:
        """Finish: the final state (with ``metrics``) stays shown (a last line off a terminal)."""
        if self._closed:
            return
        self._closed = True
        if metrics:
            self.metrics = metrics
        if self._bar is not None:
            if metrics:
                self._bar.set_postfix_str(_format_metrics(metrics), refresh=False)
            self._bar.update(self.total - self.done if self.unit == "B" else 0)
            self._bar.close()
            return
        if self.unit == "B":
            self.done = self.total  # a write that returns has written everything
        if self.enabled:
            self._write_line()

    def render(self) -> str:
        """The current state as one plain line (what is written off a terminal)."""
        line = tqdm.format_meter(self.done, self.total, time.monotonic() - self._start, prefix=self.description,
                                 ascii=True, ncols=100, **self._units())
        return f"{line} {_format_metrics(self.metrics)}".rstrip()

    def _write_line(self) -> None:
        self._lines_written += 1
        self.stream.write(self.render() + "\n")
        self.stream.flush()

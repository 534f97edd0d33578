"""TensorFlow's log level applied to what TensorFlow's C++ code prints before its logging reads it.

``TF_CPP_MIN_LOG_LEVEL`` (0: everything, 1: no INFO, 2: no INFO or WARNING, 3: errors hidden too)
is TensorFlow's switch for its C++ log lines, but TensorFlow 2.21 prints a few start-up notices
(oneDNN, CPU features, absl's "All log messages before absl::InitializeLog()") before that switch
is read, and LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate" on its own. The
``convnext`` commands set the level to 2, so their output is their results; with the level unset
(a Python user's default) nothing is filtered.

The lines are written to file descriptor 2 by C++ code, below Python's ``sys.stderr``: the filter
sends descriptor 2 to a temporary file for the duration of a block and writes every line it does
not drop back to descriptor 2 afterwards, in order.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from types import ModuleType
from typing import Iterator, Optional

# absl's prefix: severity letter, MMDD, time ("I0000 00:00:1795880954.950515    6908 port.cc:153] ...").
_ABSL = re.compile(r"^([IWEF])\d{4} \d")
# LiteRT's and absl's bare prefixes ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.").
_BARE = re.compile(r"^(INFO|WARNING|ERROR): ")
# Lines that start a record of their own (anything else continues the record above it).
_STARTS = re.compile(r"^([IWEF]\d{4} \d|(INFO|WARNING|ERROR|DEBUG|CRITICAL)[: ]|Traceback |\S+:\d+: \w+)")
_SEVERITY = {"I": 0, "INFO": 0, "W": 1, "WARNING": 1, "E": 2, "ERROR": 2, "F": 3}


def tf_log_level() -> int:
    """``TF_CPP_MIN_LOG_LEVEL`` as TensorFlow reads it (0 when unset or not a number)."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def _severity(line: str) -> Optional[int]:
    """The severity of a TensorFlow/LiteRT log line's first line, None for any other line."""
    m = _ABSL.match(line) or _BARE.match(line)
    return _SEVERITY[m.group(1)] if m else None


def filter_log_lines(text: str, level: int) -> str:
    """``text`` less the TensorFlow/LiteRT log records below ``level`` (continuation lines included)."""
    kept, dropping = [], False
    for line in text.splitlines(keepends=True):
        if _STARTS.match(line):
            severity = _severity(line)
            dropping = severity is not None and severity < min(level, 3)
        if not dropping:
            kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def tf_notices_filtered() -> Iterator[None]:
    """Run the block with TensorFlow's C++ notices below ``TF_CPP_MIN_LOG_LEVEL`` dropped from
    descriptor 2; everything else written there comes out after the block, in order."""
    level = tf_log_level()
    try:
        saved = os.dup(2) if level > 0 else None
    except OSError:  # no descriptor 2 (a windowed process): nothing to filter
        saved = None
    if saved is None:
        yield
        return
    with tempfile.TemporaryFile() as capture:
        _flush_stderr()
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            _flush_stderr()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = filter_log_lines(capture.read().decode("utf-8", "replace"), level)
            if text:
                os.write(2, text.encode("utf-8"))


def _flush_stderr() -> None:
    with contextlib.suppress(Exception):
        sys.stderr.flush()


def import_keras() -> ModuleType:
    """``import keras``, with TensorFlow's start-up notices filtered where Keras' backend is
    TensorFlow (Keras imports its backend; the JAX and PyTorch backends load no TensorFlow)."""
    if "keras" not in sys.modules:
        with tf_notices_filtered():
            import keras  # noqa: F401
    return sys.modules["keras"]


def import_tensorflow() -> ModuleType:
    """``import tensorflow`` with its start-up notices filtered by ``TF_CPP_MIN_LOG_LEVEL``."""
    if "tensorflow" not in sys.modules:
        with tf_notices_filtered():
            import tensorflow  # noqa: F401
    return sys.modules["tensorflow"]

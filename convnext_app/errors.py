"""The one way every ``convnext`` command reports an error: a single line on stderr
(``convnext <command>: error: ...``), the traceback only with ``--debug``. The CLI uses it, and so do
the parts below it that report another process's error (the training ranks under torchrun)."""

from __future__ import annotations

import sys
from typing import Optional, TextIO

from convnext_common.fileio import write_failure


def one_line(error: BaseException) -> str:
    """An exception as a single line: the message for the usual errors, 'Type: message' otherwise. A
    failure to write (no space, no permission, a read-only filesystem) names the file and what it needed."""
    failure = write_failure(error, writing_only=False)  # a permission error here may be a read's
    if failure is not None:
        error = failure
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, (ValueError, OSError, ImportError, KeyError)) and str(error):
        return text.strip("'\"") if isinstance(error, KeyError) else text
    return f"{type(error).__name__}: {text}"


def report(label: str, error: BaseException, stream: Optional[TextIO] = None) -> int:
    """Print ``error`` as ``label: error: <one line>`` (``label``: the command, e.g. ``convnext train``)
    and return the exit status: 130 for Ctrl-C (``label: interrupted``), else 1."""
    stream = stream if stream is not None else sys.stderr
    if isinstance(error, KeyboardInterrupt):
        print(f"{label}: interrupted", file=stream)
        return 130
    print(f"{label}: error: {one_line(error)}", file=stream)
    return 1

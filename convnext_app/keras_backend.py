"""Which Keras backend the command's Keras paths run on, and the one place that imports Keras for them.

Keras picks its backend once per process (``KERAS_BACKEND``, else ``keras.json`` under
``KERAS_HOME`` or ``~/.keras``, else TensorFlow). predict, evaluate and ``train --framework tf`` run on
whichever it is; a SavedModel or TFLite export is traced by TensorFlow, so ``convnext export`` runs
itself again with ``KERAS_BACKEND=tensorflow`` (:func:`rerun_on_tensorflow`) when another backend is set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

BACKENDS = ("tensorflow", "jax", "torch")


def configured_backend() -> str:
    """The backend Keras runs (or will run) on in this process, without importing Keras when it is
    not imported yet."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    name = os.environ.get("KERAS_BACKEND")
    if not name:
        home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
        try:
            name = json.loads((home / "keras.json").read_text()).get("backend")
        except (OSError, ValueError, AttributeError):
            name = None
    return name or "tensorflow"


def import_keras(what: str) -> Any:
    """Keras for ``what`` (e.g. ``--framework tf``), TensorFlow's start-up notices filtered when it
    is the backend; a missing package is one line naming the extra that installs it."""
    backend = configured_backend()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter is not for CLI users
    try:
        if backend == "tensorflow":
            from convnext_tf.quiet import import_tensorflow

            import_tensorflow()
        import keras
    except ImportError as e:
        extra = "tf" if backend == "tensorflow" else backend
        raise ImportError(f"{what} runs the Keras twin on KERAS_BACKEND={backend}, which needs {e.name or 'keras'}: "
                          f"pip install 'convnext-twins[{extra}]' (or set KERAS_BACKEND to an installed backend)") \
            from None
    return keras


def rerun_on_tensorflow(argv: Sequence[str], why: str, stdout: Optional[Any] = None) -> int:
    """Run ``convnext ARGV`` again in a process whose Keras runs on TensorFlow; its exit status.
    A note on stderr says so first; the output goes to ``stdout`` (default: this process's)."""
    print(f"convnext: note: {why} needs Keras on TensorFlow, not {configured_backend()!r}; running "
          f"`KERAS_BACKEND=tensorflow convnext {' '.join(argv)}`", file=sys.stderr, flush=True)
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    capture = stdout is not None and stdout is not sys.stdout
    proc = subprocess.run([sys.executable, "-m", "convnext_app", *argv], env=env, text=True,
                          stdout=subprocess.PIPE if capture else None)
    if capture:
        stdout.write(proc.stdout)
    return proc.returncode

"""The ordinary commands print their results and nothing else (no framework warnings, start-up notices
or tracebacks), each run as a newcomer runs it: a fresh ``python -m convnext_app`` process, its
real stdout and stderr (file descriptors, where C++ libraries write too).

The Keras twin's first calls still log TensorFlow's "triggered tf.function retracing" warning from
the per-block tracing in convnext_tf/modeling.py; those lines are checked on their own (expected to
fail until that file's rewrite lands), every other line on stderr fails the main test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import FIXTURES, REPO
from convnext_app.digits import Rendering, load_heldout, render
from convnext_tf.quiet import filter_log_lines

def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


HAS_TF = _has("tensorflow")
HAS_ONNX = _has("onnx") and _has("onnxruntime") and _has("onnxscript")

# name -> (argv after "python -m convnext_app", needs TensorFlow, needs the ONNX packages)
COMMANDS = {
    "predict-pt": (["predict", "--framework", "pt"], False, False),
    "predict-tf": (["predict", "--framework", "tf"], True, False),
    "predict-both": (["predict", "--framework", "both"], True, False),
    "evaluate-pt": (["evaluate", "--data", "{data}", "--framework", "pt"], False, False),
    "evaluate-tf": (["evaluate", "--data", "{data}", "--framework", "tf"], True, False),
    "export-onnx": (["export", "--format", "onnx", "--out", "{out}/m.onnx"], False, True),
    "export-savedmodel": (["export", "--format", "savedmodel", "--out", "{out}/saved"], True, False),
    "export-tflite": (["export", "--format", "tflite", "--out", "{out}/m.tflite"], True, False),
    "convert": (["convert", str(FIXTURES / "timm-convnext" / "model.safetensors"), "{out}/converted"], False, False),
    "convert-verify": (["convert", str(FIXTURES / "timm-convnext" / "model.safetensors"), "{out}/verified",
                        "--verify"], True, False),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every command run once, lazily: name -> CompletedProcess (stdout, stderr as text)."""
    root = tmp_path_factory.mktemp("cli_output")
    data = root / "data"
    held = load_heldout(FIXTURES / "digits_heldout.npz")
    for digit in (3, 5):
        (data / str(digit)).mkdir(parents=True)
        for k, i in enumerate(np.flatnonzero(held.labels == digit)[:3]):
            render(held.images[i], Rendering("bilinear", 48, "L")).save(data / str(digit) / f"{k}.png")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")}
    env["PYTHONPATH"] = str(REPO)
    done: dict[str, subprocess.CompletedProcess] = {}

    def run(name: str) -> subprocess.CompletedProcess:
        argv, needs_tf, needs_onnx = COMMANDS[name]
        if needs_tf and not HAS_TF:
            pytest.skip("needs TensorFlow")
        if needs_onnx and not HAS_ONNX:
            pytest.skip("needs onnx, onnxruntime and onnxscript")
        if name not in done:
            args = [a.format(data=data, out=root) for a in argv]
            done[name] = subprocess.run([sys.executable, "-m", "convnext_common", *args], cwd=root, env=env,
                                        capture_output=True, text=True, timeout=600)
        return done[name]

    return run


@pytest.mark.slow
@pytest.mark.parametrize("name", list(COMMANDS))
def test_ordinary_command_prints_only_its_results(runs, name):
    # nothing on stderr: no start-up notices, no warnings, no tf.function retracing lines
    proc = runs(name)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip(), "no result printed"
    assert proc.stderr.splitlines() == []


# TensorFlow 2.21's and LiteRT's own lines, as they print them (abridged), between lines of other origins.
STDERR = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1795880954.950515    6908 port.cc:153] oneDNN custom operations are on. You may see slightly different
I0000 00:00:1795880956.406529    7373 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available
To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow.
/site-packages/x.py:12: UserWarning: a real problem
  warnings.warn("a real problem")
W0000 00:00:1795880957.000001    6908 op_kernel.cc:1857] a TensorFlow warning
E0000 00:00:1795880957.000002    6908 op_kernel.cc:1858] a TensorFlow error
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
Traceback (most recent call last):
  File "x.py", line 1, in <module>
ValueError: bad
"""


@pytest.mark.parametrize("level, dropped", [
    (0, []),
    (1, [1, 2, 3, 8]),            # INFO records, the continuation line of the multi-line one included
    (2, [0, 1, 2, 3, 6, 8]),      # and WARNING ones (absl's "All log messages before ..." is a warning)
    (3, [0, 1, 2, 3, 6, 7, 8]),   # errors too, as TensorFlow's level 3 means
])
def test_tf_log_level_filter_drops_only_lower_severities(level, dropped):
    lines = STDERR.splitlines(keepends=True)
    assert filter_log_lines(STDERR, level) == "".join(l for i, l in enumerate(lines) if i not in dropped)

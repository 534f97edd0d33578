"""The Keras twin's torch fast forms honour autocast, torch function and dispatch modes and module
hooks exactly as the PyTorch twin's do (one guard, ``convnext_torch_kernels``): the cases in
tests/tf/torch_guard_cases.py, run in a process of their own with KERAS_BACKEND=torch."""

from __future__ import annotations

import os
import subprocess
import sys
import pytest

from conftest import REPO

CASES = REPO / "tests" / "tf" / "torch_guard_cases.py"

pytestmark = pytest.mark.slow


def test_keras_twin_on_torch_steps_aside_where_the_pytorch_twin_does():
    pytest.importorskip("keras")
    env = dict(os.environ, KERAS_BACKEND="torch", PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", str(CASES)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    lines = proc.stdout.strip().splitlines()
    summary = lines[-1] if lines else "(no output)"
    assert proc.returncode == 0, f"KERAS_BACKEND=torch: {summary}\n" + "\n".join(lines[-150:]) + proc.stderr[-2000:]
    assert "skipped" not in summary, summary

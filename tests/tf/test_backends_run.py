"""The Keras twin under each Keras backend, each in its own process (Keras picks its backend once per
process, from KERAS_BACKEND): tests/tf/test_any_backend.py runs under KERAS_BACKEND=jax and
torch, with the files this (TensorFlow) process's twin writes, and the files each backend writes
load here; the README's Keras snippet gives the same logits on all three.

Both backend processes start together (their time overlaps); a failure names the backend and the
failing tests, with their output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, rel_err
from project.test_readme import python_block_after

CASES = REPO / "tests" / "tf" / "test_any_backend.py"
OTHER_BACKENDS = ("jax", "torch")
README_MARKER = "The same model on any Keras backend"

pytestmark = [pytest.mark.slow, pytest.mark.tf]
tf = pytest.importorskip("tensorflow")
cases = pytest.importorskip("tf.test_any_backend")


def backend_env(backend: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", **extra)
    if backend == "jax":  # XLA's compile time, not the run, is most of these small tests': LLVM's
        # optimisation level changes how fast the same computation runs, not what it computes
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
    return env


@pytest.fixture(scope="module")
def backend_runs(tmp_path_factory):
    """Start ``pytest tests/tf/test_any_backend.py`` under each other backend, all at once; each
    gets the files written here (CONVNEXT_FOREIGN_DIR) and a folder for its own (CONVNEXT_OUT_DIR)."""
    written_here = tmp_path_factory.mktemp("written-on-tensorflow")
    cases.write_cross_backend_files(written_here)
    runs = {}
    for backend in OTHER_BACKENDS:
        out = tmp_path_factory.mktemp(f"written-on-{backend}")
        env = backend_env(backend, CONVNEXT_FOREIGN_DIR=str(written_here), CONVNEXT_OUT_DIR=str(out))
        proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", str(CASES)],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        runs[backend] = (proc, out)
    yield runs
    for proc, _ in runs.values():
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_keras_twin_on_backend(backend, backend_runs):
    pytest.importorskip(backend)
    proc, out = backend_runs[backend]
    try:
        output, _ = proc.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"KERAS_BACKEND={backend}: tests/tf/test_any_backend.py did not finish in 900 s")
    lines = output.strip().splitlines()
    summary = lines[-1] if lines else "(no output)"
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR", "SKIPPED"))]
    assert proc.returncode == 0, (f"KERAS_BACKEND={backend}: {summary}\n" + "\n".join(failed) + "\n\n"
                                  + "\n".join(lines[-150:]))
    assert "skipped" not in summary, f"KERAS_BACKEND={backend}: {summary}\n" + "\n".join(failed)
    # what the Keras twin wrote on that backend (tf_model.h5, .keras) loads here with the same logits
    assert json.loads((out / "backend.json").read_text()) == {"backend": backend}
    cases.check_cross_backend_files(out)


def test_readme_keras_snippet_gives_the_same_logits_on_every_backend(tmp_path):
    """The README's backend-neutral Keras snippet runs unchanged under each backend, outside the
    repository, and prints the label; its logits agree across backends (rel <= 1e-4)."""
    code = python_block_after(README_MARKER) + "\nprint(json.dumps(logits.tolist()))\n"
    code = "import json\n" + code
    logits = {}
    for backend in ("tensorflow",) + OTHER_BACKENDS:
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=backend_env(backend),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"KERAS_BACKEND={backend}:\n{proc.stderr[-2000:]}"
        label, printed = proc.stdout.strip().splitlines()[-2:]
        assert label == "3", (backend, proc.stdout)
        logits[backend] = np.array(json.loads(printed))
    for backend in OTHER_BACKENDS:
        assert rel_err(logits[backend], logits["tensorflow"]) <= 1e-4, backend

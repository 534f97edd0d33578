"""The README's Python API snippet runs as written from any working directory (it finds the bundled
model and sample image through the package, not through paths relative to the repository)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO


def python_block_after(marker: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(marker)
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, start)
    assert match is not None, f"no python block after {marker!r}"
    return match.group(1)


@pytest.mark.slow
def test_python_api_snippet_runs_outside_the_repository(tmp_path):
    code = python_block_after("or a local folder, here the embedded one")  # the hub-id block needs the network
    if "convnext_tf" in code:
        pytest.importorskip("tensorflow")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["3"]  # the snippet's print: the label of the bundled digit_3 image

"""Shared pieces of the bad-input suite (imported as `badinput.support`): valid files to break, hostile pickles, and the one
assertion every case makes (the exception type, and a message that names the file or field and
says what is wrong).

The valid starting point is the transformers-written ``tests/fixtures/hf-convnext`` folder, so a
case breaks exactly one thing in a file that is otherwise what the hub serves.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
HF = FIXTURES / "hf-convnext"


def expect_error(fn: Callable[[], object], exc_type: type[BaseException], *fragments: str,
                 problem: str | None = None) -> BaseException:
    """Call ``fn``; it must raise ``exc_type`` whose message contains every fragment (verbatim: a
    path or a field name) and, when given, matches the regex ``problem`` (case-insensitive)."""
    with pytest.raises(exc_type) as info:
        fn()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"message does not name {fragment!r}: {message}"
    if problem is not None:
        assert re.search(problem, message, re.IGNORECASE), f"message does not say {problem!r}: {message}"
    return info.value


def hf_config() -> dict:
    return json.loads((HF / "config.json").read_text())


def hf_state() -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(HF / "model.safetensors"))


def write_folder(folder: Path, state: dict | None = None, config: dict | str | None = None,
                 weights: str = "model.safetensors") -> Path:
    """A hub-layout folder: ``config`` (a dict, raw text, or the fixture's) and ``state`` saved as ``weights``."""
    folder.mkdir(parents=True, exist_ok=True)
    if config is None:
        config = hf_config()
    (folder / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    if state is not None:
        save_weights(state, folder / weights)
    return folder


def save_weights(state: dict[str, np.ndarray], path: Path) -> Path:
    if path.suffix == ".safetensors":
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(path), metadata={"format": "pt"})
    elif path.suffix in (".bin", ".pth", ".pt"):
        import torch

        torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, str(path))
    else:
        raise ValueError(f"no writer for {path.suffix}")
    return path


# --- hostile pickles ------------------------------------------------------------------------------
class RunsShell:
    """Unpickling calls ``os.system("touch MARKER")``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


class RunsExec:
    """Unpickling calls ``exec`` on Python source that creates MARKER."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


class RunsOpen:
    """Unpickling calls ``open(MARKER, "w")`` directly: no shell, no exec."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def convert_leaving_nothing(source: Path, tmp_path: Path):
    """``convert(source -> tmp_path/converted, to="pt")``; on failure, also assert that no output
    folder was left behind."""
    from convnext_common.checkpoints.pipeline import convert

    out = tmp_path / "converted"
    try:
        return convert(source, out, to="pt", progress=False)
    finally:
        assert not out.exists(), "a failed conversion left its output folder behind"


def cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -m convnext_app ARGS`` (or a script path given as the first arg) from the repo."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, *args] if args and args[0].endswith(".py") else [sys.executable, "-m", "convnext_common", *args]
    return subprocess.run(cmd, cwd=cwd or REPO, env=env, capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str, problem: str | None = None) -> str:
    """A CLI failure: non-zero exit, no traceback, exactly one line on stderr naming ``fragments``."""
    assert proc.returncode != 0, f"exit 0 for a failure; stderr: {proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{proc.stderr}"
    for fragment in fragments:
        assert fragment in lines[0], f"stderr does not name {fragment!r}: {lines[0]}"
    if problem is not None:
        assert re.search(problem, lines[0], re.IGNORECASE), f"stderr does not say {problem!r}: {lines[0]}"
    return lines[0]


def has_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def copy_fixture(name: str, dest: Path) -> Path:
    shutil.copytree(FIXTURES / name, dest)
    return dest

"""Shared test setup.

torch is imported before tensorflow in every process: CUDA builds of torch crash when triton
loads after tensorflow. TensorFlow's log noise is silenced.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test reaches the network (hub ids resolve from caches)

import torch  # noqa: E402,F401  (must come first, see above)
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from helpers import make_torchvision_importable  # noqa: E402

make_torchvision_importable()  # before anything imports transformers, see the function

REPO = Path(__file__).resolve().parent.parent  # the checkout: cwd and PYTHONPATH of the processes tests start
FIXTURES = REPO / "tests" / "fixtures"
IMAGES = FIXTURES / "images"
PROCESSOR_FIXTURES = FIXTURES / "image-processor"  # transformers' processor outputs, one folder per setting
PROCESSOR_MANIFEST = json.loads((PROCESSOR_FIXTURES / "manifest.json").read_text())  # setting -> kwargs, images


def rel_err(ours, ref) -> float:
    """docs/DESIGN.md's measure: max|ours - ref| / max(1, max|ref|)."""
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, f"shape {ours.shape} != {ref.shape}"
    return float(np.abs(ours - ref).max() / max(1.0, np.abs(ref).max()))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def inputs():
    return dict(np.load(FIXTURES / "inputs.npz"))


def load_image(name: str):
    """An image of tests/fixtures/images, read in full (the file closed)."""
    from PIL import Image

    with Image.open(IMAGES / name) as im:
        im.load()
        return im


@pytest.fixture
def declared_tensor_types(tmp_path, monkeypatch):
    """This checkout's tensor types (pyproject.toml's entry points) visible to importlib.metadata, which
    may hold an older install's; what ``return_tensors`` finds without the twin being imported."""
    from tensor_types_support import project_entry_points, write_distribution

    monkeypatch.syspath_prepend(str(write_distribution(tmp_path / "site", project_entry_points())))

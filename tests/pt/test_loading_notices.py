"""The loading notices of from_pretrained (weights left newly initialised, weights not used): a
Python warning, and a log record on ``convnext_common.loading`` in transformers' wording (its
"the shapes did not match" notice, one line per key with both shapes), in both twins."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import torch

from convnext_common import ConvNextConfig
from convnext_common.notices import LOGGER_NAME
from conftest import REPO

ROOT = REPO
SMALL = dict(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from convnext_pt import ConvNextForImageClassification

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("three-classes")
    ConvNextForImageClassification(ConvNextConfig(**SMALL, num_labels=3)).save_pretrained(path)
    return path


def _classifier(framework: str):
    if framework == "pt":
        from convnext_pt import ConvNextForImageClassification
        return ConvNextForImageClassification
    from convnext_tf import TFConvNextForImageClassification
    return TFConvNextForImageClassification


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_mismatched_sizes_logged_as_transformers_words_them(folder, framework, caplog):
    cls = _classifier(framework)
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME), pytest.warns(UserWarning, match="newly initialised"):
        cls.from_pretrained(folder, num_labels=5, ignore_mismatched_sizes=True)
    records = [r for r in caplog.records if r.name == LOGGER_NAME]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    text = records[0].getMessage()
    assert f"Some weights of {cls.__name__} were not initialized from the model checkpoint at" in text
    assert "newly initialized because the shapes did not match:" in text
    assert "- classifier.weight: found shape (3, 32) in the checkpoint and (5, 32) in the model instantiated" in text
    assert "- classifier.bias: found shape (3,) in the checkpoint and (5,) in the model instantiated" in text


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_missing_and_unused_weights_logged(folder, framework, caplog):
    if framework == "pt":
        from convnext_pt import ConvNextBackbone as backbone_cls
    else:
        from convnext_tf import TFConvNextBackbone as backbone_cls
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME), pytest.warns(UserWarning):
        backbone_cls.from_pretrained(folder)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == LOGGER_NAME)
    # a backbone has norms the classifier's checkpoint lacks
    assert f"Some weights of {backbone_cls.__name__} were not initialized from the model checkpoint at" in text
    assert "hidden_states_norms.stage4.weight" in text and "and are newly initialized: [" in text


def test_silenced_through_logging_and_warnings(folder):
    # with logging left unconfigured, the record prints nothing (the package's NullHandler); the
    # warning is the one visible notice, and each channel is silenced by its own means
    code = (
        "import logging, warnings\n"
        "from convnext_pt import ConvNextForImageClassification\n"
        "warnings.filterwarnings('ignore', message='.*newly initialised')\n"
        f"ConvNextForImageClassification.from_pretrained({str(folder)!r}, num_labels=5, ignore_mismatched_sizes=True)\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "logging.getLogger('convnext_common').setLevel(logging.ERROR)\n"
        f"ConvNextForImageClassification.from_pretrained({str(folder)!r}, num_labels=5, ignore_mismatched_sizes=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "newly initiali" not in done.stderr and "shapes did not match" not in done.stderr

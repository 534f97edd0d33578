"""Files built to run code when opened: pickles whose ``__reduce__`` creates a marker file, and a
``.keras`` archive with a Lambda layer.

Every entry point that reads a pickle refuses each variant with an error naming the file, and the
marker never appears. A control test first proves that each file really is hostile: opened the
unsafe way (plain unpickling) it does create its marker.
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from badinput.support import (
    REPO, RunsExec, RunsOpen, RunsShell, assert_one_line_error, cli, expect_error, has_module, hf_config, hf_state,
    write_folder,
)
from convnext_common.checkpoints.pipeline import convert
from convnext_common.checkpoints.errors import CheckpointError
from convnext_common.checkpoints.formats.files import load_state_dict
from convnext_pt import ConvNextBackbone, ConvNextForImageClassification, ConvNextModel

# torch notes that raw protocol-5 pickles are unusual before refusing them; the refusal is what is tested
pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")


def _tensors() -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in hf_state().items()}


def _torch_zip(payload) -> bytes:
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def _torch_legacy(payload) -> bytes:
    buf = io.BytesIO()
    torch.save(payload, buf, _use_new_zipfile_serialization=False)
    return buf.getvalue()


def _raw(payload, protocol: int) -> bytes:
    return pickle.dumps(payload, protocol=protocol)


#: id -> writer(marker) -> file bytes. Each hides the payload differently.
VARIANTS = {
    "zip-state-dict-with-shell-call": lambda m: _torch_zip({**_tensors(), "extra": RunsShell(m)}),
    "zip-training-checkpoint-with-exec": lambda m: _torch_zip({"model": _tensors(), "epoch": RunsExec(m)}),
    # training checkpoints may hold their command line as an argparse.Namespace, but not what it carries
    "zip-training-checkpoint-with-namespace-exec":
        lambda m: _torch_zip({"model": _tensors(), "args": argparse.Namespace(lr=0.1, hook=RunsExec(m))}),
    "zip-payload-is-the-whole-file": lambda m: _torch_zip(RunsOpen(m)),
    "legacy-torch-format-with-exec": lambda m: _torch_legacy({"state_dict": {"w": RunsExec(m)}}),
    "raw-pickle-protocol-0-open": lambda m: _raw(RunsOpen(m), 0),
    "raw-pickle-protocol-2-shell": lambda m: _raw({"model": RunsShell(m)}, 2),
    "raw-pickle-protocol-5-exec": lambda m: _raw([RunsExec(m)], 5),
}


def _unsafe_load(data: bytes) -> None:
    """What a careless loader does (torch.load without weights_only, or pickle): the control that
    shows the payload runs."""
    try:
        torch.load(io.BytesIO(data), weights_only=False)
    except Exception:  # noqa: BLE001  a raw pickle: the payload may already have run, try plain pickle too
        pickle.loads(data)


@pytest.mark.parametrize("variant", VARIANTS)
def test_control_each_file_runs_code_when_unpickled_unsafely(tmp_path, variant):
    marker = tmp_path / "control-marker"
    try:
        _unsafe_load(VARIANTS[variant](marker))
    except Exception:  # noqa: BLE001  the payload runs during unpickling; what follows may fail
        pass
    assert marker.exists(), "the hostile test file does not run its payload; the refusal tests would prove nothing"


def _hub(tmp_path: Path, data: bytes, name: str = "pytorch_model.bin") -> tuple[Path, Path]:
    folder = write_folder(tmp_path / "model")
    (folder / name).write_bytes(data)
    return folder, folder / name


def _convert_refused(src: Path, tmp_path: Path):
    out = tmp_path / "converted"
    try:
        convert(src, out, progress=False)
    finally:
        assert not out.exists()


#: entry point -> callable(folder, weights file, tmp_path); each must raise CheckpointError.
ENTRY_POINTS = {
    "load_state_dict(file)": lambda folder, f, t: load_state_dict(f),
    "load_state_dict(folder)": lambda folder, f, t: load_state_dict(folder),
    "ConvNextForImageClassification.from_pretrained(folder)":
        lambda folder, f, t: ConvNextForImageClassification.from_pretrained(folder),
    "ConvNextForImageClassification.from_pretrained(file)":
        lambda folder, f, t: ConvNextForImageClassification.from_pretrained(f),
    "ConvNextModel.from_pretrained": lambda folder, f, t: ConvNextModel.from_pretrained(folder),
    "ConvNextBackbone.from_pretrained": lambda folder, f, t: ConvNextBackbone.from_pretrained(folder),
    "convert(file)": lambda folder, f, t: _convert_refused(f, t),
    "convert(folder)": lambda folder, f, t: _convert_refused(folder, t),
    "convert(file, source=official)": lambda folder, f, t: convert(f, t / "out", source="official", progress=False),
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_hostile_pickle_is_refused(tmp_path, variant, entry):
    marker = tmp_path / "marker"
    folder, file = _hub(tmp_path, VARIANTS[variant](marker))
    expect_error(lambda: ENTRY_POINTS[entry](folder, file, tmp_path), CheckpointError, str(file),
                 problem=r"refused|not a readable torch")
    assert not marker.exists(), "unpickling ran code"


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".ckpt", ""])
def test_hostile_pickle_under_other_names(tmp_path, suffix):
    """The check does not depend on the file name: an extension-less zip is also opened weights-only."""
    marker = tmp_path / "marker"
    path = tmp_path / f"checkpoint{suffix}"
    path.write_bytes(VARIANTS["zip-state-dict-with-shell-call"](marker))
    expect_error(lambda: load_state_dict(path), CheckpointError, str(path), problem=r"refused")
    assert not marker.exists()


def test_hostile_shard_behind_an_index(tmp_path):
    marker = tmp_path / "marker"
    folder = write_folder(tmp_path / "model")
    shard = folder / "pytorch_model-00001-of-00001.bin"
    shard.write_bytes(VARIANTS["zip-state-dict-with-shell-call"](marker))
    index = folder / "pytorch_model.bin.index.json"
    index.write_text(json.dumps({"weight_map": {k: shard.name for k in hf_state()}}))
    for fn in (lambda: load_state_dict(index), lambda: ConvNextForImageClassification.from_pretrained(folder)):
        expect_error(fn, CheckpointError, str(shard), problem=r"refused")
    assert not marker.exists()


def test_refusal_names_the_blocked_call(tmp_path):
    marker = tmp_path / "marker"
    folder, file = _hub(tmp_path, VARIANTS["zip-state-dict-with-shell-call"](marker))
    error = expect_error(lambda: load_state_dict(file), CheckpointError, str(file), problem=r"refused")
    assert "system" in str(error) and "weights_only=False" not in str(error), str(error)


# --- subprocesses: the command-line entry points ----------------------------------------------------
def _cli_cases():
    cases = {"tools/convert_weights.py": lambda src, out: cli(str(REPO / "tools" / "convert_weights.py"), str(src),
                                                                   str(out))}
    cases["convnext convert"] = lambda src, out: cli("convert", str(src), str(out))
    return cases


@pytest.mark.parametrize("command", list(_cli_cases()))
def test_hostile_pickle_through_the_command_line(tmp_path, command):
    if command == "convnext convert" and not has_module("convnext_app.__main__"):
        pytest.skip("convnext_common/__main__.py (the convnext command) is not present")
    marker = tmp_path / "marker"
    folder, file = _hub(tmp_path, VARIANTS["raw-pickle-protocol-2-shell"](marker))
    out = tmp_path / "out"
    proc = _cli_cases()[command](file, out)
    assert_one_line_error(proc, str(file), problem=r"refused")
    assert not marker.exists() and not out.exists()


def test_hostile_training_checkpoint_is_refused_on_resume(tmp_path):
    if not has_module("convnext_app.training.pt"):
        pytest.skip("convnext_pt/training.py is not present")
    from convnext_app.training import pt as training

    if not hasattr(training, "load_checkpoint"):
        pytest.skip("convnext_app.training.pt has no load_checkpoint")
    marker = tmp_path / "marker"
    path = tmp_path / "last_checkpoint.pt"
    path.write_bytes(VARIANTS["zip-training-checkpoint-with-exec"](marker))
    expect_error(lambda: training.load_checkpoint(path), ValueError, str(path))
    assert not marker.exists()


# --- .keras archives --------------------------------------------------------------------------------
def _keras_with_lambda(path: Path, marker: Path) -> Path:
    """A model whose Lambda layer creates ``marker`` when called. A lambda (unlike a named function)
    is stored as Python bytecode in the archive: loading it means running code from the file."""
    import keras

    inputs = keras.Input((4,))
    # the path is a constant of the lambda's code (Keras cannot reload a lambda's default arguments)
    function = eval(f"lambda x: (open({str(marker)!r}, 'w').close(), x)[1]")  # noqa: S307  our own source
    hostile = keras.layers.Lambda(function)
    model = keras.Model(inputs, hostile(keras.layers.Dense(2)(inputs)))
    model.save(path)
    marker.unlink(missing_ok=True)  # building the model ran the lambda once
    return path


@pytest.mark.tf
def test_keras_archive_with_a_lambda_layer_is_refused_in_safe_mode(tmp_path):
    import keras

    marker = tmp_path / "marker"
    path = _keras_with_lambda(tmp_path / "model.keras", marker)
    expect_error(lambda: keras.models.load_model(path), ValueError, problem=r"lambda")
    assert not marker.exists()
    # control: the same archive, opened unsafely, does run the lambda
    model = keras.models.load_model(path, safe_mode=False)
    model(np.zeros((1, 4), np.float32))
    assert marker.exists()


@pytest.mark.tf
def test_keras_archive_with_a_lambda_layer_is_refused_by_our_loaders(tmp_path):
    """Whatever in this project opens a ``.keras`` file must keep Keras's safe mode on."""
    if not has_module("convnext_tf.hub"):
        pytest.skip("convnext_tf.hub (the TF twin's loader) is not present")
    import convnext_tf

    marker = tmp_path / "marker"
    path = _keras_with_lambda(tmp_path / "model.keras", marker)
    (tmp_path / "config.json").write_text(json.dumps(hf_config()))
    for cls in (convnext_tf.TFConvNextForImageClassification, convnext_tf.TFConvNextModel):
        expect_error(lambda: cls.from_pretrained(path), CheckpointError, str(path))
    assert not marker.exists()


@pytest.mark.tf
@pytest.mark.parametrize("variant", ["zip-state-dict-with-shell-call", "raw-pickle-protocol-2-shell"])
def test_hostile_pickle_is_refused_by_the_tf_twin(tmp_path, variant):
    import convnext_tf

    marker = tmp_path / "marker"
    folder, file = _hub(tmp_path, VARIANTS[variant](marker))
    expect_error(lambda: convnext_tf.TFConvNextForImageClassification.from_pretrained(folder), CheckpointError,
                 str(file), problem=r"refused")
    assert not marker.exists()

"""Loading streams: ``from_pretrained`` reads a checkpoint tensor by tensor into the model it built,
never a whole second copy of the weights (the memory a ConvNeXt-L load adds is bench/memory.py's).

Memory is counted with tracemalloc, which sees numpy's buffers and Python objects but not torch's or
TensorFlow's own allocations (the model's parameters): what it counts during a load beyond what
building the model costs is the loader's own copies of the checkpoint.
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from convnext_common import ConvNextConfig
from convnext_common.checkpoints.formats.tf_h5 import save_hf_tf_h5, stream_h5_state_dict
from convnext_common.checkpoints.errors import CheckpointError
from convnext_common.checkpoints.formats.files import load_state_dict
from convnext_common.checkpoints.formats.lazy import LazyArray
from convnext_common.checkpoints.formats.safetensors import stream_safetensors, write_safetensors
from convnext_pt import ConvNextForImageClassification
from helpers import redraw_

#: 18 blocks of equal width: the largest tensor is ~3% of the checkpoint, so holding a few tensors
#: at once stays far below holding the checkpoint; wide enough (~38 MB) that the framework's own
#: Python objects during a load (a few MB, varying from run to run) stay small beside it.
WIDE_FLAT = dict(depths=[2, 2, 12, 2], hidden_sizes=[256, 256, 256, 256], num_stages=4, num_labels=10)


def _folder(tmp_path: Path, weights: str) -> tuple[Path, ConvNextConfig, int]:
    """A hub folder of a randomly drawn WIDE_FLAT model holding only ``weights``; its file size."""
    config = ConvNextConfig(**WIDE_FLAT)
    model = ConvNextForImageClassification(config)
    redraw_(model)
    folder = tmp_path / weights
    folder.mkdir()
    state = model.numpy_state_dict()
    if weights == "model.safetensors":
        write_safetensors(state, folder / weights)
    else:
        save_hf_tf_h5(state, config, folder / weights, architecture="ConvNextForImageClassification")
    config.save_pretrained(folder)
    return folder, config, (folder / weights).stat().st_size


def _transient_peak(fn) -> int:
    """How far traced memory rose above what ``fn``'s result still holds at its end: the copies made on
    the way. (What the result keeps is not counted: TensorFlow may hand a converted array's buffer to
    the variable it is assigned to, so a Keras model's weights can end up in traced memory.)"""
    gc.collect()
    tracemalloc.start()
    try:
        result = fn()
        current, peak = tracemalloc.get_traced_memory()
        del result
        return peak - current
    finally:
        tracemalloc.stop()


def _classes(twin: str):
    if twin == "pt":
        return ConvNextForImageClassification
    convnext_tf = pytest.importorskip("convnext_tf")
    return convnext_tf.TFConvNextForImageClassification


@pytest.mark.parametrize("weights", ["model.safetensors", "tf_model.h5"])
@pytest.mark.parametrize("twin", ["pt", pytest.param("tf", marks=pytest.mark.tf)])
def test_from_pretrained_holds_no_second_copy_of_the_checkpoint(tmp_path, twin, weights):
    cls = _classes(twin)
    folder, config, size = _folder(tmp_path, weights)
    cls.from_pretrained(folder)  # first use: imports and one-time caches are not the loader's
    building = _transient_peak(lambda: cls(config))
    loading = _transient_peak(lambda: cls.from_pretrained(folder))
    # a loader holding the checkpoint whole adds >= 1.0x; streaming, a few tensors of ~0.03x each
    assert loading - building < 0.3 * size, (loading - building) / size


def test_loaded_weights_are_the_file_s(tmp_path):
    folder, _, _ = _folder(tmp_path, "model.safetensors")
    model = ConvNextForImageClassification.from_pretrained(folder)
    reference = load_state_dict(folder)
    got = model.numpy_state_dict()
    assert set(got) == set(reference)
    for k, v in reference.items():
        np.testing.assert_array_equal(got[k], v)


def test_stream_reader_matches_the_library(tmp_path):
    from safetensors.torch import save_file

    tensors = {"w": torch.randn(4, 3), "h": torch.randn(5).half(), "b": torch.randn(2, 2).bfloat16(),
               "i": torch.arange(6, dtype=torch.int64).reshape(2, 3)}
    save_file(tensors, str(tmp_path / "t.safetensors"))
    streamed = stream_safetensors(tmp_path / "t.safetensors")
    assert all(isinstance(v, LazyArray) for v in streamed.values())
    assert streamed["b"].dtype == np.float32 and streamed["h"].shape == (5,) and streamed["i"].nbytes == 48
    for k, t in tensors.items():
        first, second = np.asarray(streamed[k]), np.asarray(streamed[k])
        np.testing.assert_array_equal(first, t.float().numpy() if k == "b" else t.numpy())
        assert first is not second and first.flags.writeable  # a fresh array per read, freed by its user
    np.testing.assert_array_equal(np.asarray(streamed["w"].reshape(12)), tensors["w"].numpy().reshape(12))
    (tmp_path / "empty.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.safetensors: the file is empty"):
        stream_safetensors(tmp_path / "empty.safetensors")
    raw = (tmp_path / "t.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[:-10])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors: not a readable safetensors file"):
        stream_safetensors(tmp_path / "cut.safetensors")


@pytest.mark.parametrize("name", ["hf-convnext", "hf-convnextv2", "hf-convnext-base"])
def test_streamed_h5_reader_gives_the_pytorch_checkpoints_tensors(fixtures_dir, name):
    """transformers wrote each fixture's tf_model.h5 and model.safetensors from the same weights: the
    h5 read lazily gives the PyTorch file's names, shapes and values."""
    path = fixtures_dir / name / "tf_model.h5"
    if not path.is_file():
        pytest.skip(f"{name} has no tf_model.h5")
    config = ConvNextConfig.from_json_file(fixtures_dir / name / "config.json") if name != "hf-convnextv2" else None
    whole = load_state_dict(fixtures_dir / name / "model.safetensors")
    streamed = stream_h5_state_dict(path, config=config)
    assert sorted(streamed) == sorted(whole)
    for k, v in whole.items():
        assert streamed[k].shape == v.shape and streamed[k].dtype == v.dtype
        np.testing.assert_allclose(np.asarray(streamed[k]), v, rtol=0, atol=1e-7)


def test_streamed_h5_reader_refuses_the_other_version(fixtures_dir):
    from convnext_common import ConvNextV2Config

    with pytest.raises(CheckpointError, match="holds a convnext checkpoint"):
        stream_h5_state_dict(fixtures_dir / "hf-convnext" / "tf_model.h5", config=ConvNextV2Config())


def test_refused_checkpoint_leaves_the_model_unchanged():
    config = ConvNextConfig(depths=[1, 1], hidden_sizes=[8, 16], num_stages=2, num_labels=3)
    model = ConvNextForImageClassification(config)
    redraw_(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = {k: np.full(v.shape, 0.5, np.float32) for k, v in before.items()}
    last = list(state)[-1]
    state[last] = state[last].astype(np.int32)  # checked after every other tensor would be copied
    with pytest.raises(CheckpointError, match=f"{last} has dtype int32, expected floating point"):
        model.load_numpy_state_dict(state)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())

"""transformers' tf_model.h5 <-> canonical arrays (convnext_common.checkpoints.formats.tf_h5: numpy + h5py, no TensorFlow).

The references are the fixtures' tf_model.h5 files, written by transformers' TFConvNext* classes,
and the model.safetensors files written beside them by the PyTorch classes from the same weights.
"""

import h5py
import numpy as np
import pytest
import torch

from conftest import rel_err
from convnext_common import ConvNextV2Config, load_config
from convnext_common.checkpoints.errors import CheckpointError
from convnext_common.checkpoints.formats.files import load_state_dict
from convnext_common.checkpoints.formats.tf_h5 import is_transformers_tf_h5, load_h5_state_dict, save_hf_tf_h5
from convnext_pt import (
    ConvNextBackbone, ConvNextForImageClassification, ConvNextModel, ConvNextV2ForImageClassification,
)

H5_FIXTURES = ["hf-convnext", "hf-convnext-base", "hf-convnextv2"]


def h5_layout(path):
    """Everything transformers' loader reads from a tf_model.h5: layer_names, then per layer its
    weight_names in order and each array."""
    with h5py.File(path, "r") as f:
        layers = [str(n) for n in f.attrs["layer_names"]]
        out = {"layer_names": layers, "backend": str(f.attrs["backend"])}
        for layer in layers:
            names = [str(n) for n in f[layer].attrs["weight_names"]]
            out[layer] = [(n, f[layer][n][()]) for n in names]
        return out


@pytest.mark.parametrize("folder", H5_FIXTURES)
def test_reads_transformers_h5_as_the_pytorch_checkpoint(fixtures_dir, folder):
    src = fixtures_dir / folder
    ours = load_h5_state_dict(src / "tf_model.h5", config=load_config(src))
    theirs = load_state_dict(src / "model.safetensors")
    assert set(ours) == set(theirs)  # base models unprefixed, V2 under convnextv2.
    for k, v in theirs.items():
        assert ours[k].shape == v.shape, k
        np.testing.assert_array_equal(ours[k], v, err_msg=k)


@pytest.mark.parametrize("folder", H5_FIXTURES)
def test_writes_the_file_transformers_writes(fixtures_dir, folder, tmp_path):
    src = fixtures_dir / folder
    config = load_config(src)
    save_hf_tf_h5(load_state_dict(src / "model.safetensors"), config, tmp_path / "tf_model.h5",
                  architecture=config.architectures[0])
    ours, theirs = h5_layout(tmp_path / "tf_model.h5"), h5_layout(src / "tf_model.h5")
    assert ours["layer_names"] == theirs["layer_names"] and ours["backend"] == theirs["backend"]
    for layer in theirs["layer_names"]:
        assert [n for n, _ in ours[layer]] == [n for n, _ in theirs[layer]], layer  # names and Keras' order
        for (name, a), (_, b) in zip(ours[layer], theirs[layer]):
            assert a.dtype == b.dtype and a.shape == b.shape, name
            np.testing.assert_array_equal(a, b, err_msg=name)
    assert is_transformers_tf_h5(tmp_path / "tf_model.h5")


@pytest.mark.parametrize("folder, cls", [("hf-convnext", ConvNextForImageClassification),
                                         ("hf-convnext-base", ConvNextModel),
                                         ("hf-convnextv2", ConvNextV2ForImageClassification)])
def test_pytorch_twin_loads_a_folder_with_only_tf_model_h5(fixtures_dir, inputs, folder, cls, tmp_path):
    src = fixtures_dir / folder
    for name in ("config.json", "tf_model.h5"):
        (tmp_path / name).write_bytes((src / name).read_bytes())
    model = cls.from_pretrained(tmp_path)
    expected = np.load(src / "expected.npz")
    with torch.no_grad():
        out = model(torch.from_numpy(inputs["pixel_values_odd"]), output_hidden_states=True)
    main = "logits" if "logits_odd" in expected.files else "pooler_output"
    assert rel_err(getattr(out, main).numpy(), expected[main + "_odd"]) <= 1e-4
    assert rel_err(out.hidden_states[-1].numpy(), expected["hidden_states_4_odd"]) <= 1e-4


def test_backbone_round_trips_through_h5(fixtures_dir, inputs, tmp_path):
    """transformers has no TF backbone; ours writes one (embeddings, encoder, hidden_states_norms.*)."""
    src = fixtures_dir / "hf-convnext-backbone"
    config = load_config(src)
    state = load_state_dict(src / "model.safetensors")
    save_hf_tf_h5(state, config, tmp_path / "tf_model.h5")
    layout = h5_layout(tmp_path / "tf_model.h5")
    assert layout["layer_names"][:2] == ["embeddings", "encoder"]
    assert "hidden_states_norms.stage2" in layout["layer_names"]
    back = load_h5_state_dict(tmp_path / "tf_model.h5")
    assert set(back) == set(state)
    for k in state:
        np.testing.assert_array_equal(back[k], state[k])
    (tmp_path / "config.json").write_bytes((src / "config.json").read_bytes())
    model = ConvNextBackbone.from_pretrained(tmp_path)  # reads our tf_model.h5
    expected = np.load(src / "expected.npz")
    with torch.no_grad():
        maps = model(torch.from_numpy(inputs["pixel_values"])).feature_maps
    for i, f in enumerate(maps):
        assert rel_err(f.numpy(), expected[f"feature_maps_{i}"]) <= 1e-4


def test_classification_file_for_a_base_state_gets_the_prefix(fixtures_dir, tmp_path):
    src = fixtures_dir / "hf-convnext-base"
    state = load_state_dict(src / "model.safetensors")  # unprefixed trunk
    save_hf_tf_h5(state, load_config(src), tmp_path / "tf_model.h5", architecture="TFConvNextModel")
    with h5py.File(tmp_path / "tf_model.h5", "r") as f:
        names = [str(n) for n in f["convnext"].attrs["weight_names"]]
    assert names[0] == "tf_conv_next_model/convnext/embeddings/patch_embeddings/kernel:0"
    assert set(load_h5_state_dict(tmp_path / "tf_model.h5")) == set(state)


# --- refusals --------------------------------------------------------------------------------------
def write_keras_applications_like(path):
    """A Keras 2 weights file of another model (keras-applications' layer names): not ours to read."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([b"convnext_tiny_stem"])
        g = f.create_group("convnext_tiny_stem")
        g.attrs["weight_names"] = np.array([b"convnext_tiny_stem/kernel:0"])
        g.create_dataset("convnext_tiny_stem/kernel:0", data=np.zeros((4, 4, 3, 8), np.float32))


def test_refuses_other_h5_files_naming_the_file(tmp_path):
    other = tmp_path / "keras_app.h5"
    write_keras_applications_like(other)
    with pytest.raises(CheckpointError, match="keras_app.h5.*not a transformers TF ConvNeXt checkpoint"):
        load_h5_state_dict(other)
    assert not is_transformers_tf_h5(other)

    bare = tmp_path / "bare.h5"
    with h5py.File(bare, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(CheckpointError, match="bare.h5.*no 'layer_names'"):
        load_h5_state_dict(bare)

    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(CheckpointError, match="text.h5: not a readable HDF5 file"):
        load_h5_state_dict(text)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        load_h5_state_dict(tmp_path / "missing.h5")


def test_refuses_a_checkpoint_of_the_other_version(fixtures_dir):
    with pytest.raises(CheckpointError, match="holds a convnext checkpoint.*convnextv2"):
        load_h5_state_dict(fixtures_dir / "hf-convnext/tf_model.h5", config=ConvNextV2Config())


def test_refuses_a_truncated_file_and_keeps_no_partial_output(fixtures_dir, tmp_path):
    data = (fixtures_dir / "hf-convnext/tf_model.h5").read_bytes()
    cut = tmp_path / "tf_model.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="tf_model.h5"):
        load_h5_state_dict(cut)
    # a failed write leaves nothing behind
    target = tmp_path / "out" / "tf_model.h5"
    with pytest.raises(CheckpointError, match="not a ConvNeXt parameter"):
        save_hf_tf_h5({"convnext.embeddings.patch_embeddings.weight": np.zeros((8, 3, 4, 4), np.float32),
                       "something.else": np.zeros(3, np.float32)}, load_config(fixtures_dir / "hf-convnext"), target)
    assert not target.exists() and not list(target.parent.glob(".*tmp"))

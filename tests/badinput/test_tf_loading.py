"""The Keras twin refuses the same bad files as the PyTorch twin, with the same messages: both go
through convnext_common (load_state_dict, load_h5_state_dict, match_state_dict)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from badinput.support import HF, expect_error, hf_config, hf_state, write_folder
from convnext_common.checkpoints.errors import CheckpointError
from convnext_common.config import ConfigError

pytestmark = pytest.mark.tf

PW1 = "convnext.encoder.stages.0.layers.0.pwconv1.weight"


@pytest.fixture(scope="module")
def tf_classes():
    import torch  # noqa: F401  (before tensorflow)

    convnext_tf = pytest.importorskip("convnext_tf")
    return convnext_tf.TFConvNextForImageClassification, convnext_tf.TFConvNextV2ForImageClassification


def _poisoned(value):
    state = hf_state()
    state[PW1] = state[PW1].copy()
    state[PW1][1, 2] = value
    return state


def _nan_in_safetensors(folder):
    write_folder(folder, _poisoned(np.nan))
    return "model.safetensors"


def _inf_in_bin(folder):
    write_folder(folder, _poisoned(np.inf), weights="pytorch_model.bin")
    return "pytorch_model.bin"


def _nan_in_h5(folder):
    import h5py

    write_folder(folder)
    shutil.copy(HF / "tf_model.h5", folder / "tf_model.h5")
    with h5py.File(folder / "tf_model.h5", "r+") as f:
        dataset = f["convnext/tf_conv_next_for_image_classification/convnext/encoder/stages.0/layers.0/pwconv1/kernel:0"]
        values = dataset[...]
        values[2, 1] = np.nan
        dataset[...] = values
    return "tf_model.h5"


def _truncated_h5(folder):
    write_folder(folder)
    (folder / "tf_model.h5").write_bytes((HF / "tf_model.h5").read_bytes()[:5000])
    return "tf_model.h5"


def _config_wider_than_weights(folder):
    write_folder(folder, hf_state(), {**hf_config(), "hidden_sizes": [32, 64, 128, 256]})
    return "model.safetensors"


def _config_not_json(folder):
    write_folder(folder, hf_state(), "{not json")
    return "config.json"


#: id -> (prepare(folder) -> the file the message must name, exception, other names, problem regex)
CASES = {
    "nan-in-model-safetensors": (_nan_in_safetensors, CheckpointError, [PW1], r"NaN or inf"),
    "inf-in-pytorch-model-bin": (_inf_in_bin, CheckpointError, [PW1], r"NaN or inf"),
    "nan-in-tf-model-h5": (_nan_in_h5, CheckpointError, [PW1], r"NaN or inf"),
    "truncated-tf-model-h5": (_truncated_h5, CheckpointError, [], r"not a readable HDF5"),
    "config-wider-than-weights": (_config_wider_than_weights, CheckpointError, ["patch_embeddings.weight"],
                                  r"mismatched shapes"),
    "config-not-json": (_config_not_json, ConfigError, [], r"not valid JSON"),
}


@pytest.mark.parametrize("case", CASES)
def test_tf_twin_refuses(tmp_path, tf_classes, case):
    prepare, exc, names, problem = CASES[case]
    folder = tmp_path / "model"
    file_name = prepare(folder)
    tf_cls = tf_classes[0]
    expect_error(lambda: tf_cls.from_pretrained(folder), exc, str(folder / file_name), *names, problem=problem)


def test_tf_v2_class_refuses_a_v1_config(tmp_path, tf_classes):
    folder = write_folder(tmp_path / "model", hf_state())
    expect_error(lambda: tf_classes[1].from_pretrained(folder), ConfigError, str(folder / "config.json"),
                 "model_type")

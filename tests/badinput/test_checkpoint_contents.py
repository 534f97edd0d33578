"""Readable weights that do not fit: another architecture, shapes that disagree with config.json,
missing and unexpected tensors, NaN/inf values, shard indexes that lie, folders without weights.

Policy for non-finite weights (README, "Bad input and safety"): refused, never loaded with a
warning; one NaN reaches every output. The refusal lives in convnext_common (``require_finite``,
called by ``match_state_dict`` and ``check_state_fits``), so the PyTorch twin, the TF twin and
the converter refuse the same files with the same message.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from badinput.support import (
    FIXTURES, HF, convert_leaving_nothing, expect_error, hf_config, hf_state, save_weights, write_folder,
)
from convnext_common.checkpoints.pipeline import convert
from convnext_common.checkpoints.errors import CheckpointError
from convnext_common.checkpoints.formats.files import load_state_dict
from convnext_common.config import ConfigError
from convnext_pt import ConvNextForImageClassification, ConvNextV2ForImageClassification

PW1 = "convnext.encoder.stages.0.layers.0.pwconv1.weight"
STEM = "convnext.embeddings.patch_embeddings.weight"


def _resnet_like() -> dict[str, np.ndarray]:
    """The first tensors of a torchvision ResNet-50 state dict: a real checkpoint of another architecture."""
    z = np.zeros
    return {"conv1.weight": z((64, 3, 7, 7), np.float32), "bn1.weight": z(64, np.float32),
            "bn1.bias": z(64, np.float32), "bn1.running_mean": z(64, np.float32),
            "layer1.0.conv1.weight": z((64, 64, 1, 1), np.float32), "fc.weight": z((1000, 2048), np.float32),
            "fc.bias": z(1000, np.float32)}


def _edit(state_fn=None, config_fn=None):
    def build():
        state, config = hf_state(), hf_config()
        if state_fn is not None:
            state = state_fn(state)
        if config_fn is not None:
            config_fn(config)
        return state, config
    return build


def _drop(name):
    return lambda s: {k: v for k, v in s.items() if k != name}


def _add(name, value):
    return lambda s: {**s, name: value}


def _replace(name, fn):
    return lambda s: {**s, name: fn(s[name])}


def _poison(name, value):
    def fn(a):
        a = a.copy()
        a.flat[len(a.flat) // 2] = value
        return a
    return _replace(name, fn)


def _set(**fields):
    return lambda c: c.update(fields)


def _v2_state(_):
    from safetensors.numpy import load_file

    return load_file(str(FIXTURES / "hf-convnextv2" / "model.safetensors"))


#: id -> (builder of (state, config), weights file name, problem regex, names the message must contain)
CASES = {
    "another-architecture-resnet": (lambda: (_resnet_like(), hf_config()), "model.safetensors",
                                    r"does not fit|cannot tell which library", ["conv1.weight"]),
    "config-wider-than-weights": (_edit(config_fn=_set(hidden_sizes=[32, 64, 128, 256])), "model.safetensors",
                                  r"mismatched shapes|wrong shape", [STEM]),
    "config-deeper-than-weights": (_edit(config_fn=_set(depths=[2, 2, 4, 2])), "model.safetensors",
                                   r"missing", ["convnext.encoder.stages.2.layers.3."]),
    "config-shallower-than-weights": (_edit(config_fn=_set(depths=[2, 2, 2, 2])), "model.safetensors",
                                      r"unexpected|not in the model", ["convnext.encoder.stages.2.layers.2."]),
    "config-patch-size-disagrees": (_edit(config_fn=_set(patch_size=2)), "model.safetensors",
                                    r"mismatched shapes|wrong shape", [STEM]),
    "config-one-input-channel": (_edit(config_fn=_set(num_channels=1)), "model.safetensors",
                                 r"mismatched shapes|wrong shape", [STEM]),
    "missing-tensor": (_edit(_drop(PW1)), "model.safetensors", r"missing", [PW1]),
    "missing-tensor-in-bin": (_edit(_drop(STEM)), "pytorch_model.bin", r"missing", [STEM]),
    "unexpected-tensor": (_edit(_add("convnext.encoder.stages.0.layers.0.attn.qkv.weight",
                                     np.zeros((48, 16), np.float32))),
                          "model.safetensors", r"unexpected|not in the model", ["attn.qkv.weight"]),
    "transposed-linear-weight": (_edit(_replace(PW1, lambda a: np.ascontiguousarray(a.T))), "model.safetensors",
                                 r"mismatched shapes|wrong shape", [PW1]),
    "v2-weights-with-v1-config": (_edit(_v2_state), "model.safetensors", r"missing|unexpected|does not fit|not in the model",
                                  ["convnextv2.encoder.stages.0.layers.0."]),
    "nan-in-safetensors": (_edit(_poison(PW1, np.nan)), "model.safetensors", r"NaN or inf", [PW1]),
    "inf-in-bin": (_edit(_poison(STEM, np.inf)), "pytorch_model.bin", r"NaN or inf", [STEM]),
    "neg-inf-in-fp16-weights": (_edit(lambda s: {k: v.astype(np.float16) for k, v in _poison("classifier.bias", -np.inf)(s).items()}),
                                "model.safetensors", r"NaN or inf", ["classifier.bias"]),
    "nan-in-final-norm": (_edit(_poison("convnext.layernorm.weight", np.nan)), "model.safetensors", r"NaN or inf",
                          ["convnext.layernorm.weight"]),
}


def _from_pretrained(folder: Path, tmp_path: Path):
    return ConvNextForImageClassification.from_pretrained(folder)


def _convert(folder: Path, tmp_path: Path):
    return convert_leaving_nothing(folder, tmp_path)


ENTRY_POINTS = {"from_pretrained": _from_pretrained, "convert": _convert}


#: cases transformers' ``from_pretrained`` loads with a warning (the keys named stay at their initial
#: values and are reported); the ``convnext`` commands refuse them
LOADED_WITH_A_WARNING = ("another-architecture-resnet", "config-deeper-than-weights", "config-shallower-than-weights",
                         "missing-tensor", "missing-tensor-in-bin", "unexpected-tensor", "v2-weights-with-v1-config")


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("case", CASES)
def test_weights_that_do_not_fit(tmp_path, case, entry):
    build, weights_name, problem, names = CASES[case]
    state, config = build()
    folder = write_folder(tmp_path / "model", state, config, weights=weights_name)
    if entry == "from_pretrained" and case in LOADED_WITH_A_WARNING:
        with pytest.warns(UserWarning) as caught:
            _, info = ConvNextForImageClassification.from_pretrained(folder, output_loading_info=True)
        said = " ".join(str(w.message) for w in caught)
        reported = " ".join(info["missing_keys"] + info["unexpected_keys"])
        for name in names:
            assert name in said and name in reported
        return
    expect_error(lambda: ENTRY_POINTS[entry](folder, tmp_path), CheckpointError, str(folder / weights_name), *names,
                 problem=problem)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_nan_in_tf_model_h5_is_refused(tmp_path, entry):
    import h5py

    folder = write_folder(tmp_path / "model")
    shutil.copy(HF / "tf_model.h5", folder / "tf_model.h5")
    with h5py.File(folder / "tf_model.h5", "r+") as f:
        dataset = f["convnext/tf_conv_next_for_image_classification/convnext/encoder/stages.1/layers.0/dwconv/kernel:0"]
        values = dataset[...]
        values[3, 3, 0, 5] = np.nan
        dataset[...] = values
    expect_error(lambda: ENTRY_POINTS[entry](folder, tmp_path), CheckpointError, str(folder / "tf_model.h5"),
                 "convnext.encoder.stages.1.layers.0.dwconv.weight", problem=r"NaN or inf")


def test_nan_in_a_foreign_checkpoint_is_refused_by_the_converter(tmp_path):
    from safetensors.numpy import load_file

    state = load_file(str(FIXTURES / "timm-convnext" / "model.safetensors"))
    state["stages.1.blocks.0.mlp.fc1.weight"][0, 0] = np.nan
    path = save_weights(state, tmp_path / "timm.safetensors")
    expect_error(lambda: convert(path, tmp_path / "out", progress=False), CheckpointError, str(path),
                 "convnext.encoder.stages.1.layers.0.pwconv1.weight", problem=r"NaN or inf")
    assert not (tmp_path / "out").exists()


def test_finite_weights_with_large_values_still_load(tmp_path):
    """The NaN check does not refuse merely large (finite) values: the refusal is about NaN/inf only."""
    state = _replace(PW1, lambda a: a * 1e30)(hf_state())
    folder = write_folder(tmp_path / "model", state)
    model = ConvNextForImageClassification.from_pretrained(folder)
    assert float(model.state_dict()[PW1].abs().max()) > 1e29


def test_v1_config_given_to_the_v2_class(tmp_path):
    folder = write_folder(tmp_path / "model", hf_state())
    expect_error(lambda: ConvNextV2ForImageClassification.from_pretrained(folder), ConfigError,
                 str(folder / "config.json"), "model_type", problem=r"convnextv2")


def test_new_head_without_ignore_mismatched_sizes_is_refused(tmp_path):
    folder = write_folder(tmp_path / "model", hf_state())
    expect_error(lambda: ConvNextForImageClassification.from_pretrained(folder, num_labels=4), CheckpointError,
                 str(folder / "model.safetensors"), "classifier.weight", "ignore_mismatched_sizes",
                 problem=r"mismatched shapes")


# --- folders and shard indexes ----------------------------------------------------------------------
def _index(folder: Path, text: str, shards: dict[str, dict] | None = None) -> Path:
    for name, state in (shards or {}).items():
        save_weights(state, folder / name)
    path = folder / "model.safetensors.index.json"
    path.write_text(text)
    return path


def _split(state: dict) -> tuple[dict, dict]:
    names = sorted(state)
    return {k: state[k] for k in names[::2]}, {k: state[k] for k in names[1::2]}


def _index_cases():
    a, b = _split(hf_state())
    shard_names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    weight_map = {**{k: shard_names[0] for k in a}, **{k: shard_names[1] for k in b}}
    return {
        "index-not-json": ("{'weight_map': oops", {}, r"not a valid shard index", []),
        "index-without-weight-map": (json.dumps({"metadata": {}}), {}, r"not a valid shard index", ["weight_map"]),
        "index-weight-map-is-a-list": (json.dumps({"weight_map": shard_names}), {}, r"not a valid shard index", []),
        "index-names-a-missing-shard": (json.dumps({"weight_map": weight_map}), {shard_names[0]: a},
                                        r"missing", [shard_names[1]]),
        "index-lists-tensors-no-shard-has": (json.dumps({"weight_map": {**weight_map, "convnext.extra.weight":
                                                                        shard_names[0]}}),
                                             {shard_names[0]: a, shard_names[1]: b}, r"absent", ["convnext.extra.weight"]),
    }


INDEX_CASES = list(_index_cases())


@pytest.mark.parametrize("entry", ["load_state_dict", "from_pretrained"])
@pytest.mark.parametrize("case", INDEX_CASES)
def test_bad_shard_index(tmp_path, case, entry):
    text, shards, problem, names = _index_cases()[case]
    folder = write_folder(tmp_path / "model")
    index = _index(folder, text, shards)
    fn = (lambda: load_state_dict(index)) if entry == "load_state_dict" else \
        (lambda: ConvNextForImageClassification.from_pretrained(folder))
    expect_error(fn, CheckpointError, str(index), *names, problem=problem)


def test_folder_with_config_but_no_weights(tmp_path):
    folder = write_folder(tmp_path / "model")
    for fn in (lambda: ConvNextForImageClassification.from_pretrained(folder), lambda: load_state_dict(folder),
               lambda: convert(folder, tmp_path / "out", progress=False)):
        expect_error(fn, FileNotFoundError, str(folder), "model.safetensors", problem=r"no weights file")
    assert not (tmp_path / "out").exists()


def test_empty_folder(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    expect_error(lambda: ConvNextForImageClassification.from_pretrained(folder), FileNotFoundError, str(folder),
                 "config.json")
    expect_error(lambda: load_state_dict(folder), FileNotFoundError, str(folder), problem=r"no weights file")


def test_weights_without_config(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(HF / "model.safetensors", folder)
    expect_error(lambda: ConvNextForImageClassification.from_pretrained(folder), FileNotFoundError, str(folder),
                 "config.json")


def test_path_that_does_not_exist(tmp_path):
    missing = tmp_path / "no" / "such" / "model"
    for fn in (lambda: ConvNextForImageClassification.from_pretrained(missing), lambda: load_state_dict(missing),
               lambda: convert(missing, tmp_path / "out", progress=False)):
        expect_error(fn, FileNotFoundError, str(missing))


def test_unknown_file_format(tmp_path):
    path = tmp_path / "weights.txt"
    path.write_text("conv1: 0.1 0.2 0.3\n")
    expect_error(lambda: load_state_dict(path), CheckpointError, str(path), problem=r"unknown weights format")


def test_numpy_archive_is_not_taken_for_weights(tmp_path):
    path = tmp_path / "weights.npz"  # a zip file, like torch's; must not half-load
    np.savez(path, w=np.zeros(3))
    expect_error(lambda: load_state_dict(path), CheckpointError, str(path), problem=r"not a readable torch checkpoint")


def test_pickle_of_a_list_is_not_a_state_dict(tmp_path):
    import torch

    path = tmp_path / "weights.pth"
    torch.save([torch.zeros(3)], path)
    expect_error(lambda: load_state_dict(path), CheckpointError, str(path), problem=r"not a state dict")


def test_pickle_without_tensors(tmp_path):
    import torch

    path = tmp_path / "weights.pth"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    expect_error(lambda: load_state_dict(path), CheckpointError, str(path), problem=r"no tensors")

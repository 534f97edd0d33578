"""Converting every fixture format into a hub folder: the twins reproduce the writers' logits.

Ground truth: tests/fixtures/*/expected.npz, written by timm, the official repos, torchvision,
keras-applications and transformers on tests/fixtures/inputs.npz.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from conftest import FIXTURES, rel_err
from convnext_common.checkpoints.pipeline import convert
from convnext_common.checkpoints.canonical import imagenet1k_labels
from convnext_common.checkpoints.formats.files import load_state_dict
import convnext_pt


HAS_H5 = importlib.util.find_spec("convnext_common.checkpoints.formats.tf_h5") is not None
needs_h5 = pytest.mark.skipif(not HAS_H5,
                              reason="convnext_common.checkpoints.formats.tf_h5 (TF checkpoint I/O) not present")

#: fixture -> (input path inside it, detected format, V2?, layer scale?)
FOREIGN = {
    "timm-convnext": ("model.safetensors", "timm", False, True),
    "timm-convnext-convmlp": ("model.safetensors", "timm", False, True),
    "timm-convnextv2": ("model.safetensors", "timm", True, False),
    "official-convnext": ("checkpoint.pth", "official", False, True),
    "official-convnextv2": ("checkpoint.pth", "official", True, False),
    "torchvision-convnext": ("convnext.pth", "torchvision", False, True),
    "keras-applications-convnext": ("convnext_fixture.h5", "keras", False, True),
}
HF = {
    "hf-convnext": ("", "hf", False, True),
    "hf-convnextv2": ("", "hf", True, False),
    "hf-convnext-base": ("", "hf", False, True),
    "hf-convnext-backbone": ("", "hf", False, True),
}
ALL = {**FOREIGN, **HF}
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def model_inputs(name: str, inputs: dict) -> dict[str, np.ndarray]:
    """The NCHW inputs the fixture's logits belong to. keras-applications normalises [0, 255] NHWC
    pixels inside its model; our models take (x / 255 - mean) / std, channels first."""
    if not name.startswith("keras"):
        return inputs
    raw = np.load(FIXTURES / name / "inputs_nhwc_0_255.npz")
    return {k: ((raw[k] / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2).astype(np.float32)
            for k in raw}


def main_output(out, expected: dict, suffix: str):
    if "logits" + suffix in expected:
        return out.logits, expected["logits" + suffix]
    if "pooler_output" + suffix in expected:
        return out.pooler_output, expected["pooler_output" + suffix]
    return out.feature_maps[-1], expected[f"feature_maps_2{suffix}"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Each fixture converted once (PT and, when available, TF) for the tests below."""
    root = tmp_path_factory.mktemp("converted")
    results = {}
    for name, (rel, _, _, _) in ALL.items():
        src = FIXTURES / name / rel if rel else FIXTURES / name
        results[name] = convert(src, root / name, to="all" if HAS_H5 else "pt", progress=False)
    return results


@pytest.mark.parametrize("name", list(ALL))
def test_detects_format_and_infers_config(converted, name):
    _, fmt, v2, layer_scale = ALL[name]
    result = converted[name]
    cfg = result.config
    assert result.source_format == fmt
    assert cfg.depths == [2, 2, 3, 2] and cfg.hidden_sizes == [16, 32, 64, 128]
    assert cfg.model_type == ("convnextv2" if v2 else "convnext")
    assert (cfg.layer_scale_init_value > 0) == layer_scale
    if name in FOREIGN:
        assert cfg.num_labels == 10
        assert cfg.layer_norm_eps == 1e-6  # foreign libraries' final norm
        pre = json.loads((result.output_dir / "preprocessor_config.json").read_text())
        assert pre["image_mean"] == list(IMAGENET_MEAN) and pre["image_std"] == list(IMAGENET_STD)
    else:  # a hub folder keeps its own config
        assert cfg == type(cfg).from_json_file(FIXTURES / name / "config.json")


@pytest.mark.parametrize("name", list(ALL))
def test_pytorch_twin_reproduces_source_logits(converted, inputs, name):
    result = converted[name]
    model = getattr(convnext_pt, result.config.architectures[0]).from_pretrained(result.output_dir)
    expected = np.load(FIXTURES / name / "expected.npz")
    for key, x in model_inputs(name, inputs).items():
        with torch.no_grad():
            got, ref = main_output(model(torch.from_numpy(x)), expected, "" if key == "pixel_values" else "_odd")
        assert rel_err(got.numpy(), ref) <= 1e-4, (name, key)


@pytest.mark.tf
@pytest.mark.parametrize("name", list(ALL))
def test_tf_twin_reproduces_source_logits(converted, inputs, name):
    convnext_tf = pytest.importorskip("convnext_tf")
    if not HAS_H5:
        pytest.skip("no TF checkpoint writer")
    result = converted[name]
    cls = getattr(convnext_tf, "TF" + result.config.architectures[0], None)
    if cls is None:
        pytest.skip(f"convnext_tf has no TF{result.config.architectures[0]} yet")
    model = cls.from_pretrained(result.output_dir)
    expected = np.load(FIXTURES / name / "expected.npz")
    for key, x in model_inputs(name, inputs).items():
        got, ref = main_output(model(x, training=False), expected, "" if key == "pixel_values" else "_odd")
        assert rel_err(np.asarray(got), ref) <= 1e-4, (name, key)


@needs_h5
@pytest.mark.parametrize("name", list(ALL))
def test_pt_tf_pt_round_trip_is_exact(converted, tmp_path, name):
    first = converted[name].output_dir
    back = convert(first / "tf_model.h5", tmp_path / "back", to="pt", progress=False)
    a, b = load_state_dict(first / "model.safetensors"), load_state_dict(back.output_dir / "model.safetensors")
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
    assert back.config.depths == converted[name].config.depths


@needs_h5
def test_transformers_tf_h5_converts_to_the_safetensors_transformers_wrote(tmp_path):
    result = convert(FIXTURES / "hf-convnextv2" / "tf_model.h5", tmp_path / "out", to="pt", progress=False)
    ours = load_state_dict(result.output_dir / "model.safetensors")
    theirs = load_state_dict(FIXTURES / "hf-convnextv2" / "model.safetensors")
    assert sorted(ours) == sorted(theirs)
    for k in theirs:
        np.testing.assert_array_equal(ours[k], theirs[k].reshape(ours[k].shape), err_msg=k)
    # the h5 sits in a hub folder: its config.json (labels, eps) is kept
    assert result.config.id2label[3] == "digit_3" and result.config.layer_norm_eps == 1e-12


def test_timm_1000_classes_get_imagenet_labels(tmp_path):
    state = load_state_dict(FIXTURES / "timm-convnext" / "model.safetensors")
    rng = np.random.default_rng(0)
    state["head.fc.weight"] = rng.standard_normal((1000, 128)).astype(np.float32)
    state["head.fc.bias"] = np.zeros(1000, np.float32)
    from safetensors.numpy import save_file

    save_file(state, str(tmp_path / "in1k.safetensors"))
    result = convert(tmp_path / "in1k.safetensors", tmp_path / "out", to="pt", progress=False)
    labels = result.config.id2label
    assert len(labels) == 1000 and labels == dict(enumerate(imagenet1k_labels()))
    assert labels[0] == "tench, Tinca tinca" and labels[999] == "toilet tissue, toilet paper, bathroom tissue"
    saved = json.loads((result.output_dir / "config.json").read_text())
    assert saved["id2label"]["207"] == "golden retriever" and saved["label2id"]["golden retriever"] == 207


def test_timm_hub_folder_normalisation_comes_from_its_pretrained_cfg(tmp_path):
    """timm's CLIP-trained ConvNeXts use CLIP's mean/std, stated in the folder's config.json."""
    folder = tmp_path / "timm-hub"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes((FIXTURES / "timm-convnext" / "model.safetensors").read_bytes())
    clip_mean, clip_std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    (folder / "config.json").write_text(json.dumps({"architecture": "convnext_tiny", "num_classes": 10, "pretrained_cfg": {
        "input_size": [3, 256, 256], "interpolation": "bicubic", "crop_pct": 1.0, "mean": clip_mean, "std": clip_std}}))
    result = convert(folder, tmp_path / "out", to="pt", progress=False)
    assert result.source_format == "timm"
    pre = json.loads((result.output_dir / "preprocessor_config.json").read_text())
    assert pre["image_mean"] == clip_mean and pre["image_std"] == clip_std
    assert pre["size"] == {"shortest_edge": 256} and pre["crop_pct"] == 1.0


@pytest.mark.tf
def test_verify_compares_the_two_twins(tmp_path):
    convnext_tf = pytest.importorskip("convnext_tf")
    if not HAS_H5 or not hasattr(convnext_tf, "TFConvNextV2ForImageClassification"):
        pytest.skip("needs the TF twin")
    from convnext_app.convert import verify_folder

    result = convert(FIXTURES / "official-convnextv2" / "checkpoint.pth", tmp_path / "out", verify=verify_folder,
                     progress=False)
    assert result.verify_max_diff is not None and result.verify_max_diff < 1e-4
    assert any(n.startswith("verify: PT vs TF max |diff|") for n in result.notes)


@pytest.mark.parametrize("name", list(HF))
def test_config_inferred_from_hf_weights_alone_matches_the_written_config(name):
    from convnext_common.checkpoints.canonical import head_of_state, infer_config
    from convnext_common.config import load_config

    state = load_state_dict(FIXTURES / name / "model.safetensors")
    ours, theirs = infer_config(state, name), load_config(FIXTURES / name)
    for field in ("model_type", "depths", "hidden_sizes", "num_channels", "patch_size", "num_stages",
                  "layer_scale_init_value", "layer_norm_eps"):
        assert getattr(ours, field) == getattr(theirs, field), field
    if head_of_state(state) == "classification":
        assert ours.num_labels == theirs.num_labels
    if head_of_state(state) == "backbone":
        assert ours.out_features == theirs.out_features
    assert ours.architectures == theirs.architectures

"""The converter and DINOv3's ConvNeXt: facebookresearch/dinov3's .pth files, timm's dinov3 tags and
transformers' dinov3_convnext folders in, DINOv3 or ConvNeXt folders out, with transformers' outputs.

Fixtures (scripts/make_dinov3_fixtures.py): ``official-tiny.pth`` and ``timm-tiny/`` hold the tensors
of transformers' ``tiny/`` folder in the official repository's and timm's layouts; the reference is
transformers' outputs for ``tiny/`` (``tiny/expected.npz``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import FIXTURES, rel_err
from convnext_common.checkpoints.pipeline import convert
from convnext_common.checkpoints.errors import CheckpointError
from convnext_common.checkpoints.formats.safetensors import stream_safetensors
from convnext_pt import AutoModel, ConvNextModel, DINOv3ConvNextModel
from helpers import outputs_by_name

DINOV3 = FIXTURES / "dinov3-convnext"
TOL = 1e-4


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(DINOV3 / "tiny" / "expected.npz"))


def check_dinov3_folder(folder, reference) -> None:
    model, info = AutoModel.from_pretrained(folder, output_loading_info=True)
    assert type(model) is DINOv3ConvNextModel
    assert not info["missing_keys"] and not info["unexpected_keys"]
    # the names transformers writes, so that transformers loads the folder as its own
    assert set(stream_safetensors(folder / "model.safetensors")) == set(
        stream_safetensors(DINOV3 / "tiny" / "model.safetensors"))
    for suffix in ("", "_odd"):
        with torch.no_grad():
            ours = outputs_by_name(model(torch.from_numpy(reference["pixel_values" + suffix]),
                                         output_hidden_states=True))
        for name, value in ours.items():
            assert rel_err(value, reference[name + suffix]) <= TOL, (folder, name, suffix)


@pytest.mark.parametrize("source, fmt, processor", [
    ("official-tiny.pth", "dinov3-official", "DINOv3ViTImageProcessorFast"),
    ("timm-tiny", "timm", "ConvNextImageProcessor"),  # timm's own evaluation transform
])
def test_official_and_timm_dinov3_convert_to_transformers_folders(tmp_path, reference, source, fmt, processor):
    result = convert(DINOV3 / source, tmp_path / "out", progress=False)
    assert result.source_format == fmt and result.files[0] == "model.safetensors"
    assert "tf_model.h5" not in result.files  # transformers has no TF DINOv3 ConvNeXt
    check_dinov3_folder(tmp_path / "out", reference)
    pre = json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())
    assert pre["image_processor_type"] == processor


def test_both_directions_between_families(tmp_path, reference):
    convert(DINOV3 / "tiny", tmp_path / "v1", family="convnext", progress=False)
    v1 = AutoModel.from_pretrained(tmp_path / "v1")
    assert type(v1) is ConvNextModel
    with torch.no_grad():
        pooled = v1(torch.from_numpy(reference["pixel_values"])).pooler_output.numpy()
    assert rel_err(pooled, reference["pooler_output"]) <= TOL  # DINOv3's pooled token
    convert(tmp_path / "v1", tmp_path / "back", family="dinov3", to="pt", progress=False)
    check_dinov3_folder(tmp_path / "back", reference)


def test_what_a_family_cannot_express_is_refused(tmp_path):
    with pytest.raises(ValueError, match='to="tf"'):
        convert(DINOV3 / "official-tiny.pth", tmp_path / "a", to="tf", progress=False)
    # transformers' ConvNeXt: final norm eps 1e-12, inner 1e-6; DINOv3 has one epsilon
    with pytest.raises(CheckpointError, match="epsilon"):
        convert(FIXTURES / "hf-convnext-base", tmp_path / "b", family="dinov3", progress=False)
    with pytest.raises(CheckpointError, match="1e-05"):  # small's norms all use 1e-5
        convert(DINOV3 / "small", tmp_path / "c", family="convnext", progress=False)
    assert not any(tmp_path.iterdir())


def test_official_output_norms_must_copy_the_final_norm(tmp_path):
    state = torch.load(DINOV3 / "official-tiny.pth", weights_only=True)
    state["norms.3.weight"] = state["norms.3.weight"] + 1
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="norms.3.weight is not a copy"):
        convert(tmp_path / "bad.pth", tmp_path / "out", progress=False)


@pytest.mark.slow
@pytest.mark.tf
def test_converted_folder_runs_in_the_keras_twin(tmp_path, reference):
    pytest.importorskip("tensorflow")
    import convnext_tf

    convert(DINOV3 / "official-tiny.pth", tmp_path / "out", progress=False)
    model = convnext_tf.TFAutoModel.from_pretrained(tmp_path / "out")
    out = model(reference["pixel_values"])
    assert rel_err(np.asarray(out.last_hidden_state), reference["last_hidden_state"]) <= TOL


def test_official_file_without_output_norms_is_named_with_from(tmp_path, reference):
    """Without ``norms.3`` the file's names are those of the official ConvNeXt (V1) layout: detected as
    that, and read as DINOv3's with ``--from dinov3-official``."""
    state = torch.load(DINOV3 / "official-tiny.pth", weights_only=True)
    del state["norms.3.weight"], state["norms.3.bias"]
    torch.save(state, tmp_path / "bare.pth")
    assert convert(tmp_path / "bare.pth", tmp_path / "v1", to="pt", progress=False).source_format == "official"
    result = convert(tmp_path / "bare.pth", tmp_path / "out", source="dinov3-official", progress=False)
    assert result.source_format == "dinov3-official"
    check_dinov3_folder(tmp_path / "out", reference)

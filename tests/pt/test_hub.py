"""Hub-layout loading and saving for the PyTorch twin."""

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from convnext_common import ConvNextConfig
from convnext_common.checkpoints.errors import CheckpointError
from convnext_pt import (
    ConvNextBackbone, ConvNextForImageClassification, ConvNextModel, ConvNextV2ForImageClassification,
)
from helpers import redraw_


def tiny_model(cls=ConvNextForImageClassification, **kw):
    config = ConvNextConfig(depths=[1, 1], hidden_sizes=[8, 16], num_stages=2, num_labels=3, **kw)
    model = cls(config).eval()
    redraw_(model)
    return model


def same_outputs(a, b, x=None):
    x = torch.randn(2, 3, 32, 32) if x is None else x
    with torch.no_grad():
        oa, ob = a(x), b(x)
    key = "logits" if hasattr(oa, "logits") else "pooler_output"
    return torch.equal(getattr(oa, key), getattr(ob, key))


@pytest.mark.parametrize("safe", [True, False])
def test_save_load_round_trip_is_exact(tmp_path, safe):
    model = tiny_model()
    model.save_pretrained(tmp_path, safe_serialization=safe)
    assert (tmp_path / ("model.safetensors" if safe else "pytorch_model.bin")).is_file()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["ConvNextForImageClassification"] and config["model_type"] == "convnext"
    loaded = ConvNextForImageClassification.from_pretrained(tmp_path)
    assert same_outputs(model, loaded)
    assert not loaded.training


def test_saved_file_has_transformers_names(tmp_path, fixtures_dir):
    model = ConvNextForImageClassification.from_pretrained(fixtures_dir / "hf-convnext")
    model.save_pretrained(tmp_path)
    ours, theirs = load_file(tmp_path / "model.safetensors"), load_file(fixtures_dir / "hf-convnext/model.safetensors")
    assert set(ours) == set(theirs)
    for k in theirs:
        np.testing.assert_array_equal(ours[k], theirs[k])


def test_sharded_checkpoint(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path, max_shard_size=5_000)
    shards = sorted(tmp_path.glob("model-*-of-*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "model.safetensors.index.json").is_file()
    assert same_outputs(model, ConvNextForImageClassification.from_pretrained(tmp_path))


def test_base_checkpoint_into_classifier_and_back(tmp_path):
    base = tiny_model(ConvNextModel)
    base.save_pretrained(tmp_path / "base")
    with pytest.warns(UserWarning, match="classifier"):
        clf = ConvNextForImageClassification.from_pretrained(tmp_path / "base")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(clf.convnext(x).pooler_output, base(x).pooler_output)
    clf.save_pretrained(tmp_path / "clf")
    again = ConvNextModel.from_pretrained(tmp_path / "clf")  # the classifier is dropped
    assert same_outputs(base, again)


def test_backbone_from_classification_checkpoint(tmp_path, fixtures_dir):
    with pytest.warns(UserWarning, match="hidden_states_norms"):
        bb = ConvNextBackbone.from_pretrained(fixtures_dir / "hf-convnext", out_features=["stage1", "stage3"])
    clf = ConvNextForImageClassification.from_pretrained(fixtures_dir / "hf-convnext")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        maps = bb(x).feature_maps
        hs = clf(x, output_hidden_states=True).hidden_states
    # fresh norms are the identity-initialised LayerNorm of the stage output
    ln = torch.nn.functional.layer_norm(hs[3].permute(0, 2, 3, 1), (64,), eps=1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(maps[1], ln)


def test_mismatched_head_needs_opt_in(fixtures_dir):
    with pytest.raises(CheckpointError, match=r"classifier.weight \(checkpoint \[10, 128\], model \[5, 128\]\)"):
        ConvNextForImageClassification.from_pretrained(fixtures_dir / "hf-convnext", num_labels=5)
    with pytest.warns(UserWarning, match="classifier"):
        model = ConvNextForImageClassification.from_pretrained(
            fixtures_dir / "hf-convnext", num_labels=5, ignore_mismatched_sizes=True)
    assert model.classifier.out_features == 5 and model.config.num_labels == 5


def test_missing_and_unexpected_keys_are_listed(tmp_path, fixtures_dir):
    state = load_file(fixtures_dir / "hf-convnext/model.safetensors")
    state.pop("convnext.encoder.stages.1.layers.0.dwconv.weight")
    state["convnext.encoder.stages.9.layers.0.extra.weight"] = np.zeros(3, np.float32)
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    (tmp_path / "config.json").write_bytes((fixtures_dir / "hf-convnext/config.json").read_bytes())
    # as transformers: loaded, the missing key left at its initial value, both warned about and reported
    with pytest.warns(UserWarning) as caught:
        _, info = ConvNextForImageClassification.from_pretrained(tmp_path, output_loading_info=True)
    msg = " ".join(str(w.message) for w in caught)
    assert "model.safetensors" in msg
    assert "convnext.encoder.stages.1.layers.0.dwconv.weight" in msg
    assert "convnext.encoder.stages.9.layers.0.extra.weight" in msg
    assert info["missing_keys"] == ["convnext.encoder.stages.1.layers.0.dwconv.weight"]
    assert info["unexpected_keys"] == ["convnext.encoder.stages.9.layers.0.extra.weight"]


def test_v2_config_refused_by_v1_class(fixtures_dir):
    with pytest.raises(ValueError, match="model_type"):
        ConvNextForImageClassification.from_pretrained(fixtures_dir / "hf-convnextv2")
    assert ConvNextV2ForImageClassification.from_pretrained(fixtures_dir / "hf-convnextv2").config.model_type == "convnextv2"


@pytest.mark.parametrize("dtype, expected", [(torch.bfloat16, torch.bfloat16), ("float16", torch.float16),
                                             ("auto", torch.float32)])
def test_torch_dtype(fixtures_dir, dtype, expected):
    model = ConvNextForImageClassification.from_pretrained(fixtures_dir / "hf-convnext", torch_dtype=dtype)
    assert next(model.parameters()).dtype == expected


def test_save_bfloat16_round_trip(tmp_path):
    model = tiny_model().to(torch.bfloat16)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    loaded = ConvNextForImageClassification.from_pretrained(tmp_path, torch_dtype="auto")
    assert next(loaded.parameters()).dtype == torch.bfloat16
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k


def test_no_weights_is_a_clear_error(tmp_path):
    ConvNextConfig().save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no weights file"):
        ConvNextModel.from_pretrained(tmp_path)


def test_hub_id_offline_and_not_cached_is_a_clear_error(tmp_path, monkeypatch):
    # no network access: offline mode and an empty cache (tests/core/test_hub.py covers the other cases)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match="facebook/convnext-tiny-224.*HF_HUB_OFFLINE"):
        ConvNextModel.from_pretrained("facebook/convnext-tiny-224", cache_dir=tmp_path)

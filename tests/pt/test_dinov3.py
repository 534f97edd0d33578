"""DINOv3's ConvNeXt: the core config and the PyTorch twin against transformers' DINOv3ConvNextModel.

The reference is tests/fixtures/dinov3-convnext/ (scripts/make_dinov3_fixtures.py): folders that
transformers' ``save_pretrained`` wrote for the four DINOv3 sizes (their depths, 1/16 of their
widths, every parameter re-drawn) and transformers' outputs for a 64x64 and a 71x97 input. The
Keras twin runs the same fixtures on every backend (tests/tf/test_any_backend.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import FIXTURES, rel_err
from convnext_common import DINOv3ConvNextConfig, load_config
from convnext_common.checkpoints.formats.safetensors import stream_safetensors
from convnext_common.config import ConfigError
from convnext_pt import AutoBackbone, AutoModel, AutoModelForImageClassification, DINOv3ConvNextBackbone
from convnext_pt import DINOv3ConvNextModel, model_class
from helpers import outputs_by_name

DINOV3 = FIXTURES / "dinov3-convnext"
SIZES = ("tiny", "small", "base", "large")
TOL = 1e-4
INPUTS = ("", "_odd")


def expected(folder: str) -> dict[str, np.ndarray]:
    return dict(np.load(DINOV3 / folder / "expected.npz"))


def assert_matches(out, ref: dict, suffix: str, what: str) -> None:
    ours = outputs_by_name(out)
    names = {k[:len(k) - len(suffix)] if suffix else k for k in ref
             if not k.startswith("pixel_values") and k.endswith(suffix) and (suffix or not k.endswith("_odd"))}
    assert set(ours) == names, (what, sorted(ours), sorted(names))
    for name in names:
        err = rel_err(ours[name], ref[name + suffix])
        assert err <= TOL, f"{what}{suffix}: {name} rel {err:.2e}"


# tiny and small (the epsilon) in the default suite; the 27-block base and large are marked slow
@pytest.mark.parametrize("size", [s if s in ("tiny", "small") else pytest.param(s, marks=pytest.mark.slow)
                                  for s in SIZES])
def test_transformers_folder_loads_with_its_outputs(size):
    model, info = AutoModel.from_pretrained(DINOV3 / size, output_loading_info=True)
    assert type(model) is DINOv3ConvNextModel
    assert info == {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": [], "error_msgs": []}
    ref = expected(size)
    for suffix in INPUTS:
        with torch.no_grad():
            out = model(torch.from_numpy(ref["pixel_values" + suffix]), output_hidden_states=True)
        assert_matches(out, ref, suffix, size)
        h, w = ref["pixel_values" + suffix].shape[2:]
        assert out.last_hidden_state.shape[1] == 1 + (h // 32) * (w // 32)


def test_backbone_gives_transformers_feature_maps():
    ref = expected("tiny-backbone")
    model = AutoBackbone.from_pretrained(DINOV3 / "tiny-backbone")
    assert type(model) is DINOv3ConvNextBackbone and model.channels == [3, 12, 48]
    for suffix in INPUTS:
        with torch.no_grad():
            assert_matches(model(torch.from_numpy(ref["pixel_values" + suffix]), output_hidden_states=True),
                           ref, suffix, "backbone")
    # the base model's folder gives the backbone the same maps (its final norm is left out)
    from_base = AutoBackbone.from_pretrained(DINOV3 / "tiny", out_features=["stem", "stage2", "stage4"])
    with torch.no_grad():
        maps = from_base(torch.from_numpy(ref["pixel_values"])).feature_maps
    for i, m in enumerate(maps):
        assert rel_err(m.numpy(), ref[f"feature_maps_{i}"]) <= TOL


def test_names_are_transformers_in_files_and_state_dict(tmp_path):
    model = DINOv3ConvNextModel.from_pretrained(DINOV3 / "tiny")
    theirs = set(stream_safetensors(DINOV3 / "tiny" / "model.safetensors"))
    assert set(model.state_dict()) == theirs
    model.save_pretrained(tmp_path)
    assert set(stream_safetensors(tmp_path / "model.safetensors")) == theirs
    saved = json.loads((tmp_path / "config.json").read_text())
    written = json.loads((DINOV3 / "tiny" / "config.json").read_text())
    assert saved["architectures"] == ["DINOv3ConvNextModel"] and saved["model_type"] == "dinov3_convnext"
    assert "num_stages" not in saved and "patch_size" not in saved  # not fields of transformers' config
    for key in set(written) - {"transformers_version"}:
        assert saved[key] == written[key], key
    # transformers 5 keeps the stages under "model." in memory: such a state dict loads too
    state = {("model." + k if k.startswith("stages.") else k): v for k, v in model.state_dict().items()}
    fresh = DINOv3ConvNextModel(model.config)
    fresh.load_state_dict(state)
    x = torch.from_numpy(expected("tiny")["pixel_values"])
    with torch.no_grad():
        assert torch.equal(fresh(x).pooler_output, model(x).pooler_output)
    reloaded = AutoModel.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(reloaded(x).last_hidden_state, model(x).last_hidden_state)


def test_every_norm_uses_layer_norm_eps():
    """The small fixture has layer_norm_eps 1e-5; with 1e-6 in the inner norms its outputs move."""
    model = DINOv3ConvNextModel.from_pretrained(DINOV3 / "small")
    assert model.config.layer_norm_eps == 1e-5
    eps = {m.eps for m in model.modules() if hasattr(m, "eps")}
    assert eps == {1e-5}


def test_config_fields_and_defaults_are_transformers():
    config = DINOv3ConvNextConfig()
    assert (config.hidden_sizes, config.depths, config.layer_norm_eps, config.layer_scale_init_value,
            config.hidden_act) == ([96, 192, 384, 768], [3, 3, 9, 3], 1e-6, 1e-6, "gelu")
    assert config.stage_names == ["stem", "stage1", "stage2", "stage3", "stage4"]
    assert type(load_config(DINOV3 / "large")) is DINOv3ConvNextConfig
    assert DINOv3ConvNextConfig.from_variant("base").hidden_sizes == [128, 256, 512, 1024]
    with pytest.raises(ConfigError, match="patch_size"):
        DINOv3ConvNextConfig(patch_size=8)


def test_no_classifier_head_is_a_clear_error():
    with pytest.raises(ValueError, match="no classification head"):
        AutoModelForImageClassification.from_pretrained(DINOV3 / "tiny")
    assert model_class(DINOv3ConvNextConfig()) is DINOv3ConvNextModel  # no architectures: the base model


def test_zero_layer_scale_keeps_gamma_as_transformers():
    model = DINOv3ConvNextModel(DINOv3ConvNextConfig(depths=[1, 1], hidden_sizes=[8, 16], layer_scale_init_value=0.0))
    gammas = {k: v for k, v in model.state_dict().items() if k.endswith(".gamma")}
    assert len(gammas) == 2 and all(float(v.abs().max()) == 0.0 for v in gammas.values())


@pytest.mark.parametrize("dtype, bound", [(torch.bfloat16, 0.05),
                                          pytest.param(torch.float16, 0.01, marks=pytest.mark.slow)])
def test_low_precision_stays_close_to_float32(dtype, bound):
    ref = expected("tiny")
    model = DINOv3ConvNextModel.from_pretrained(DINOV3 / "tiny", torch_dtype=dtype)
    x = torch.from_numpy(ref["pixel_values"]).to(dtype)
    try:
        with torch.no_grad():
            out = model(x, output_hidden_states=True)
    except RuntimeError as e:  # a CPU without float16 kernels
        pytest.skip(f"{dtype} not supported here: {e}")
    assert out.last_hidden_state.dtype == dtype
    ours = {"last_hidden_state": out.last_hidden_state, "pooler_output": out.pooler_output,
            "hidden_states_4": out.hidden_states[4]}
    for name, value in ours.items():
        err = rel_err(value.float().numpy(), ref[name])
        assert err <= bound, f"{name} rel {err:.3g} in {dtype}"

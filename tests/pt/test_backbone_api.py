"""transformers' backbone API on both twins' backbones, against transformers 4.57's ConvNeXt
backbones (fixture written by scripts/make_backbone_api_fixtures.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from convnext_common import ConvNextConfig, ConvNextV2Config
from convnext_common.config import ConfigError
from conftest import FIXTURES

REF = json.loads((FIXTURES / "transformers-api" / "backbone.json").read_text())
SMALL = dict(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32])
CONFIG_KWARGS = {
    "default": {}, "out_features": {"out_features": ["stage1", "stage3"]}, "out_indices": {"out_indices": [0, 2, 4]},
    "both": {"out_features": ["stem", "stage4"], "out_indices": [0, 4]}, "negative": {"out_indices": [-2, -1]},
}
X = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)


def pt_backbone(version: str, kwargs: dict):
    from convnext_pt import ConvNextBackbone, ConvNextV2Backbone
    cls, config_cls = (ConvNextBackbone, ConvNextConfig) if version == "v1" else (ConvNextV2Backbone, ConvNextV2Config)
    return cls(config_cls(**SMALL, **kwargs)).eval()


def tf_backbone(version: str, kwargs: dict):
    from convnext_tf import TFConvNextBackbone, TFConvNextV2Backbone
    cls, config_cls = (TFConvNextBackbone, ConvNextConfig) if version == "v1" else (TFConvNextV2Backbone,
                                                                                    ConvNextV2Config)
    return cls(config_cls(**SMALL, **kwargs))


def attributes(model) -> dict:
    return {"out_features": list(model.out_features), "out_indices": list(model.out_indices),
            "stage_names": list(model.stage_names), "num_features": list(model.num_features),
            "out_feature_channels": dict(model.out_feature_channels), "channels": list(model.channels)}


def run(model, framework: str, **kwargs):
    if framework == "pt":
        with torch.no_grad():
            return model(torch.from_numpy(X), **kwargs)
    return model(X, **kwargs)


def shapes(maps) -> list:
    return [list(m.shape) for m in maps]


@pytest.mark.parametrize("framework", ["pt", "tf"])
@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("name", sorted(CONFIG_KWARGS))
def test_backbone_api_as_transformers(framework, version, name):
    ref = REF[version][name]
    model = (pt_backbone if framework == "pt" else tf_backbone)(version, CONFIG_KWARGS[name])
    assert attributes(model) == ref["attributes"]
    assert {"out_features": model.config.out_features, "out_indices": list(model.config.out_indices)} == ref["config"]
    assert model.has_attentions is ref["has_attentions"]
    # transformers' enum class cannot be returned without depending on transformers; its value can
    assert model.backbone_type.value == ref["backbone_type"]
    assert model.use_timm_backbone is ref["use_timm_backbone"]
    assert shapes(run(model, framework).feature_maps) == ref["maps"]
    filtered = model.forward_with_filtered_kwargs(torch.from_numpy(X) if framework == "pt" else X,
                                                  output_attentions=True, output_hidden_states=True)
    assert shapes(filtered.feature_maps) == ref["filtered"]["maps"]
    assert len(filtered.hidden_states) == ref["filtered"]["hidden_states"]
    assert [len(run(model, framework, return_dict=False)),
            len(run(model, framework, output_hidden_states=True, return_dict=False))] == ref["tuple_lengths"]


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_selection_changes_on_the_model_not_the_config(framework):
    ref = REF["setters"]
    model = (pt_backbone if framework == "pt" else tf_backbone)("v1", {"out_features": ["stage1", "stage2", "stage4"]})
    full = run(model, framework).feature_maps
    model.out_features = ["stage2", "stage4"]
    assert attributes(model) == ref["set_out_features"]["attributes"]
    assert model.config.out_features == ref["set_out_features"]["config_out_features"]
    maps = run(model, framework).feature_maps
    assert shapes(maps) == ref["set_out_features"]["maps"]
    # the same maps as before (the same norms), only fewer
    np.testing.assert_allclose(np.asarray(maps[0]), np.asarray(full[1]), rtol=0, atol=1e-6)
    model.out_indices = [1]
    assert attributes(model) == ref["set_out_indices"]["attributes"]
    assert model.config.out_features == ref["set_out_indices"]["config_out_features"]
    assert shapes(run(model, framework).feature_maps) == ref["set_out_indices"]["maps"]
    # transformers builds no norm for stage3 either and fails in the next forward (KeyError);
    # here the assignment itself is refused, naming the field, and the selection stays
    assert ref["set_unbuilt_stage"] == "KeyError"
    with pytest.raises(ValueError, match="out_features: .*stage3") as err:
        model.out_features = ["stage3"]
    assert "\n" not in str(err.value)
    assert model.out_features == ["stage1"]
    with pytest.raises(ValueError, match="out_indices"):
        model.out_indices = [9]


def test_bad_selection_in_config_refused_like_transformers():
    assert REF["setters"]["bad_feature"] == REF["setters"]["bad_index"] == "ValueError"
    with pytest.raises(ConfigError, match="out_features"):
        ConvNextConfig(**SMALL, out_features=["stage9"])
    with pytest.raises(ConfigError, match="out_indices"):
        ConvNextConfig(**SMALL, out_indices=[7])
    with pytest.raises(ConfigError, match="order"):
        ConvNextConfig(**SMALL, out_indices=[-1, -2])


@pytest.mark.parametrize("twin", ["pt", "tf"])
def test_backbone_type_is_transformers_enum_where_transformers_is_loaded(twin):
    """Code written for transformers compares ``backbone.backbone_type`` with its own enum."""
    pytest.importorskip("transformers")
    import importlib.util

    for name in ("transformers.backbone_utils", "transformers.utils.backbone_utils"):  # 5.x, 4.x
        backbone_utils = importlib.import_module(name) if importlib.util.find_spec(name) else None
        if backbone_utils is not None and hasattr(backbone_utils, "BackboneType"):
            break
    else:
        pytest.skip("this transformers has no BackboneType")
    if twin == "tf":
        pytest.importorskip("keras")
    model = (pt_backbone if twin == "pt" else tf_backbone)("v1", {})
    assert model.backbone_type is backbone_utils.BackboneType.TRANSFORMERS
    assert isinstance(model.backbone_type, backbone_utils.BackboneType)


def test_backbone_type_without_transformers_loads_nothing_of_it():
    import subprocess
    import sys

    code = ("import sys; from convnext_common import ConvNextConfig; from convnext_pt import ConvNextBackbone; "
            "m = ConvNextBackbone(ConvNextConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32])); "
            "print(m.backbone_type.value, 'transformers' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["transformers", "False"]

"""ConvNextConfig / ConvNextV2Config: defaults, config.json compatibility, validation."""

import json

import pytest

from convnext_common import ConfigError, ConvNextConfig, ConvNextV2Config, load_config

TRANSFORMERS_DEFAULTS = dict(
    num_channels=3, patch_size=4, num_stages=4, hidden_sizes=[96, 192, 384, 768], depths=[3, 3, 9, 3],
    hidden_act="gelu", initializer_range=0.02, layer_norm_eps=1e-12, layer_scale_init_value=1e-6,
    drop_path_rate=0.0, image_size=224, out_features=["stage4"], out_indices=[4],
    stage_names=["stem", "stage1", "stage2", "stage3", "stage4"], num_labels=2, problem_type=None,
)


def test_defaults_match_transformers():
    c = ConvNextConfig()
    for k, v in TRANSFORMERS_DEFAULTS.items():
        assert getattr(c, k) == v, k
    assert c.id2label == {0: "LABEL_0", 1: "LABEL_1"}
    assert c.label2id == {"LABEL_0": 0, "LABEL_1": 1}
    assert c.model_type == "convnext"


@pytest.mark.parametrize("name", ["hf-convnext", "hf-convnext-base", "hf-convnext-backbone", "hf-convnextv2"])
def test_reads_transformers_config_and_writes_it_back(fixtures_dir, tmp_path, name):
    original = json.loads((fixtures_dir / name / "config.json").read_text())
    c = load_config(fixtures_dir / name)
    assert c.model_type == original["model_type"]
    assert c.depths == original["depths"] and c.hidden_sizes == original["hidden_sizes"]
    assert c.out_features == original["out_features"]
    c.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    # every key transformers wrote (unknown ones like transformers_version/dtype included) survives
    assert {k: v for k, v in written.items() if k in original} == original
    assert set(original) <= set(written)


def test_transformers_5_style_config_keeps_unknown_keys(tmp_path):
    d = {"model_type": "convnext", "depths": [1, 1], "hidden_sizes": [8, 16], "num_stages": 2,
         "dtype": "bfloat16", "transformers_version": "5.0.0", "some_future_field": {"a": 1}}
    (tmp_path / "config.json").write_text(json.dumps(d))
    c = ConvNextConfig.from_pretrained(tmp_path / "config.json")
    assert c.some_future_field == {"a": 1} and c.extra["dtype"] == "bfloat16"
    assert ConvNextConfig.from_dict(c.to_dict()) == c
    assert c.to_dict()["some_future_field"] == {"a": 1}


def test_out_features_and_indices_align():
    c = ConvNextConfig(out_indices=[1, 3])
    assert c.out_features == ["stage1", "stage3"]
    c = ConvNextConfig(out_features=["stem", "stage2"])
    assert c.out_indices == [0, 2]
    c = ConvNextConfig(depths=[1, 1, 1], hidden_sizes=[4, 8, 16], num_stages=3)
    assert c.stage_names == ["stem", "stage1", "stage2", "stage3"] and c.out_features == ["stage3"]


def test_labels():
    c = ConvNextConfig(id2label={"0": "cat", "1": "dog", "2": "bird"})
    assert c.num_labels == 3 and c.label2id == {"cat": 0, "dog": 1, "bird": 2}
    c.num_labels = 5
    assert c.id2label[4] == "LABEL_4"
    assert ConvNextConfig(num_labels=7).num_labels == 7


@pytest.mark.parametrize("kwargs, field", [
    (dict(depths=[3, 3, 9], hidden_sizes=[8, 16, 32]), "num_stages"),
    (dict(hidden_sizes=[96, 192, 384]), "hidden_sizes"),
    (dict(hidden_sizes=[96, 0, 384, 768]), "hidden_sizes[1]"),
    (dict(depths=[3, -1, 9, 3]), "depths[1]"),
    (dict(num_channels=0), "num_channels"),
    (dict(patch_size=-4), "patch_size"),
    (dict(hidden_act="bogus"), "hidden_act"),
    (dict(out_features=["stage9"]), "out_features"),
    (dict(out_features=["stage2"], out_indices=[3]), "out_features"),
    (dict(out_indices=[7]), "out_indices"),
    (dict(layer_norm_eps=0.0), "layer_norm_eps"),
    (dict(drop_path_rate=1.5), "drop_path_rate"),
    (dict(problem_type="ranking"), "problem_type"),
    (dict(id2label={"0": "a"}, num_labels=3), "num_labels"),
    (dict(depths="333"), "depths"),
])
def test_invalid_values_name_the_field(kwargs, field):
    # as transformers' configs, construction accepts most values (backbone stages excepted);
    # validate() (called where a model is built and where a file is read) names the field
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        ConvNextConfig(**kwargs).validate()


def test_bad_json_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="config.json"):
        ConvNextConfig.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="config.json"):
        ConvNextConfig.from_pretrained(tmp_path / "nowhere")


def test_wrong_model_type_is_refused(fixtures_dir):
    with pytest.raises(ConfigError, match="model_type"):
        ConvNextConfig.from_pretrained(fixtures_dir / "hf-convnextv2")


def test_v2_has_no_layer_scale():
    c = ConvNextV2Config(layer_scale_init_value=0.5)
    assert c.layer_scale_init_value == 0.0 and "layer_scale_init_value" not in c.to_dict()
    assert c.model_type == "convnextv2"


@pytest.mark.parametrize("name, depths, widths", [
    ("convnext-tiny", [3, 3, 9, 3], [96, 192, 384, 768]),
    ("convnext-base", [3, 3, 27, 3], [128, 256, 512, 1024]),
    ("convnextv2-huge", [3, 3, 27, 3], [352, 704, 1408, 2816]),
])
def test_from_variant(name, depths, widths):
    c = (ConvNextV2Config if "v2" in name else ConvNextConfig).from_variant(name)
    assert c.depths == depths and c.hidden_sizes == widths


def test_round_trip_dict():
    c = ConvNextConfig(depths=[2, 2], hidden_sizes=[8, 16], num_stages=2, hidden_act="relu",
                       layer_scale_init_value=0.0, problem_type="multi_label_classification", num_labels=4)
    assert ConvNextConfig.from_dict(c.to_dict()) == c

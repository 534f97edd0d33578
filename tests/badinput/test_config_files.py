"""config.json files that are not JSON, have wrong types, or contradict themselves.

Every case is read through ``load_config``, the PyTorch twin's ``from_pretrained`` and the
converter; each raises ConfigError (a ValueError) naming the config file and the field.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from badinput.support import HF, convert_leaving_nothing, expect_error, hf_config
from convnext_common.checkpoints.pipeline import convert
from convnext_common.config import ConfigError, ConvNextConfig, load_config
from convnext_pt import ConvNextForImageClassification


def _changed(**fields) -> str:
    config = hf_config()
    config.update(fields)
    return json.dumps(config)


def _without_labels(**fields) -> str:
    config = hf_config()
    config.pop("label2id")
    config.update(fields)
    return json.dumps(config)


VALID = json.dumps(hf_config(), indent=2)

#: id -> (file bytes, field the message must name (or None for whole-file problems), problem regex)
CASES: dict[str, tuple[bytes, str | None, str]] = {
    # not JSON at all
    "not-json": (b"depths: [2, 2, 3, 2]\nhidden_sizes: [16, 32, 64, 128]\n", None, r"not valid JSON"),
    "truncated-json": (VALID[: len(VALID) // 2].encode(), None, r"not valid JSON"),
    "empty-file": (b"", None, r"not valid JSON"),
    "trailing-comma": (b'{"depths": [2, 2, 3, 2],}', None, r"not valid JSON"),
    "not-utf8": (b"\xff\xfe{\x00}\x00", None, r"UTF-8"),
    "json-array": (b"[2, 2, 3, 2]", None, r"JSON object"),
    "json-string": (b'"convnext-tiny"', None, r"JSON object"),
    # wrong types
    "depths-is-a-string": (_changed(depths="2,2,3,2").encode(), "depths", r"non-empty list"),
    "depths-has-negative": (_changed(depths=[2, -2, 3, 2]).encode(), "depths[1]", r"non-negative int"),
    "depths-empty": (_changed(depths=[], hidden_sizes=[], num_stages=0, stage_names=None, out_features=None,
                              out_indices=None).encode(), "num_stages", r"positive int"),
    "hidden-sizes-float": (_changed(hidden_sizes=[16.0, 32, 64, 128]).encode(), "hidden_sizes[0]", r"positive int"),
    "hidden-sizes-null-entry": (_changed(hidden_sizes=[16, None, 64, 128]).encode(), "hidden_sizes[1]",
                                r"positive int"),
    "hidden-act-unknown": (_changed(hidden_act="swishy").encode(), "hidden_act", r"not one of"),
    "hidden-act-number": (_changed(hidden_act=3).encode(), "hidden_act", r"not one of"),
    "layer-norm-eps-string": (_changed(layer_norm_eps="1e-6").encode(), "layer_norm_eps", r"must be a number"),
    "layer-norm-eps-negative": (_changed(layer_norm_eps=-1e-6).encode(), "layer_norm_eps", r"> 0"),
    "drop-path-rate-above-one": (_changed(drop_path_rate=1.5).encode(), "drop_path_rate", r"\[0, 1\)"),
    "num-channels-zero": (_changed(num_channels=0).encode(), "num_channels", r"positive int"),
    "patch-size-bool": (_changed(patch_size=True).encode(), "patch_size", r"positive int"),
    "image-size-string": (_changed(image_size="224").encode(), "image_size", r"positive int"),
    "layer-scale-string": (_changed(layer_scale_init_value="small").encode(), "layer_scale_init_value",
                           r"must be a number"),
    "initializer-range-null": (_changed(initializer_range=None).encode(), "initializer_range", r"must be a number"),
    "id2label-is-a-list": (_without_labels(id2label=["a", "b"]).encode(), "id2label", r"must be a dict"),
    "id2label-keys-not-integers": (_without_labels(id2label={"cat": "0"}).encode(), "id2label", r"integers"),
    "label2id-is-a-list": (_changed(label2id=["digit_0"]).encode(), "label2id", r"must be a dict"),
    "label2id-values-not-integers": (_changed(label2id={"digit_0": "zero"}).encode(), "label2id", r"integers"),
    "problem-type-unknown": (_changed(problem_type="ranking").encode(), "problem_type", r"not one of"),
    "out-indices-string": (_changed(out_features=None, out_indices="4").encode(), "out_indices", r"list of ints"),
    "out-indices-out-of-range": (_changed(out_features=None, out_indices=[7]).encode(), "out_indices",
                                 r"out of range"),
    "out-features-unknown-stage": (_changed(out_features=["stage9"], out_indices=None).encode(), "out_features",
                                   r"not in stage_names"),
    "model-type-of-another-architecture": (_changed(model_type="resnet").encode(), "model_type", r"resnet"),
    # self-contradictory
    "hidden-sizes-shorter-than-depths": (_changed(hidden_sizes=[16, 32, 64]).encode(), "hidden_sizes",
                                         r"depths has 4"),
    "num-stages-disagrees-with-depths": (_changed(num_stages=3).encode(), "num_stages", r"depths has 4"),
    "stage-names-disagree-with-depths": (_changed(stage_names=["stem", "stage1"]).encode(), "stage_names",
                                         r"do not match depths"),
    "out-features-disagree-with-out-indices": (_changed(out_features=["stage2"], out_indices=[3]).encode(),
                                               "out_features", r"disagree"),
    "out-features-out-of-order": (_changed(out_features=["stage3", "stage2"], out_indices=None).encode(),
                                  "out_features", r"order"),
    "num-labels-disagrees-with-id2label": (_changed(num_labels=3).encode(), "num_labels", r"disagrees with id2label"),
}


def _load_config(folder: Path, tmp_path: Path):
    return load_config(folder)


def _config_from_pretrained(folder: Path, tmp_path: Path):
    return ConvNextConfig.from_pretrained(folder)


def _model_from_pretrained(folder: Path, tmp_path: Path):
    return ConvNextForImageClassification.from_pretrained(folder)


def _convert(folder: Path, tmp_path: Path):
    return convert_leaving_nothing(folder, tmp_path)


ENTRY_POINTS = {"load_config": _load_config, "ConvNextConfig.from_pretrained": _config_from_pretrained,
                "model.from_pretrained": _model_from_pretrained, "convert": _convert}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("case", CASES)
def test_bad_config_json(tmp_path, case, entry):
    text, field, problem = CASES[case]
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_bytes(text)
    (folder / "model.safetensors").write_bytes((HF / "model.safetensors").read_bytes())
    names = [str(folder / "config.json")] + ([field] if field else [])
    expect_error(lambda: ENTRY_POINTS[entry](folder, tmp_path), ConfigError, *names, problem=problem)


def test_the_valid_config_loads_through_every_entry_point(tmp_path):
    """The cases above differ from this file in one field each."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(VALID)
    (folder / "model.safetensors").write_bytes((HF / "model.safetensors").read_bytes())
    for name, entry in ENTRY_POINTS.items():
        if name != "convert":
            assert entry(folder, tmp_path) is not None
    assert convert(folder, tmp_path / "converted", to="pt", progress=False).output_dir.is_dir()


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize("field, value", [("depths", "3"), ("hidden_sizes", 96), ("hidden_act", None),
                                          ("num_labels", -1), ("drop_path_rate", "0.1")])
def test_bad_keyword_overrides_name_the_field(field, value):
    # checked where a model is built or a file is read (a config itself is an attribute bag, as transformers')
    expect_error(lambda: ConvNextConfig(**{field: value}).validate(), ConfigError, field)

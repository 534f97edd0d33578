"""The transformers API around the model, against transformers 4.57's own behaviour recorded in
tests/fixtures/transformers-api/reference.json (scripts/make_transformers_api_fixtures.py): config
attributes and serialisation, output flags from the config, the generic model API, backbone
attributes, and from_pretrained's loading rules."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from convnext_common.config import GENERIC_DEFAULTS
from convnext_pt import (
    ConvNextBackbone, ConvNextConfig, ConvNextForImageClassification, ConvNextModel, ConvNextV2Config,
)

from conftest import FIXTURES
from helpers import redraw_

REF = json.loads((FIXTURES / "transformers-api" / "reference.json").read_text())
SMALL = dict(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32], num_labels=3)


def _jsonable(value):
    if isinstance(value, torch.dtype):
        return {"torch_dtype": str(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return list(value) if isinstance(value, tuple) else value


# --- config ------------------------------------------------------------------------------------------
def test_generic_attributes_and_defaults():
    config = ConvNextConfig()
    assert {k: _jsonable(getattr(config, k)) for k in REF["config"]["generic_defaults"]} == \
        REF["config"]["generic_defaults"]
    assert _jsonable(config.id2label) == REF["config"]["default_id2label"]


def test_odd_values_as_transformers_keeps_them():
    ref = REF["config"]["odd"]
    config = ConvNextConfig(id2label={0: "label"}, label2id={"label": "0"}, dtype="float16", output_hidden_states=True,
                            return_dict=False, torchscript=False, pruned_heads={"a": 1}, max_length=50)
    assert [type(k).__name__ for k in config.id2label] == ref["id2label_keys"]
    assert config.label2id == ref["label2id"] and config.num_labels == ref["num_labels"]
    assert str(config.dtype) == ref["dtype"] and str(config.torch_dtype) == ref["torch_dtype"]
    assert config.use_return_dict == ref["use_return_dict"] and config.max_length == ref["max_length"]
    assert config.to_dict()["dtype"] == ref["to_dict_dtype"]
    # the project writes the architecture's fields even at their defaults; the generic ones as transformers
    diff = set(config.to_diff_dict())
    assert {k for k in ref["to_diff_dict_keys"] if k in GENERIC_DEFAULTS or k == "max_length"} == \
        {k for k in diff if k in GENERIC_DEFAULTS or k == "max_length"}
    assert set(ref["to_diff_dict_keys"]) <= diff


def test_generic_attributes_in_to_dict_and_diff_dict():
    config = ConvNextConfig()
    generic = set(REF["config"]["generic_defaults"])
    in_to_dict = set(REF["config"]["generic_names_in_to_dict"]) - {"_name_or_path"}  # private here
    assert set(config.to_dict()) & generic == in_to_dict
    assert set(config.to_diff_dict()) & generic == set(REF["config"]["generic_names_in_diff_dict"])


def test_assignment_accepts_any_value_and_the_model_build_checks_it():
    ref = REF["config"]["assigned"]
    config = ConvNextConfig(**SMALL)
    config.num_labels = 5
    config.output_hidden_states = True
    config.hidden_act = "not-an-activation"
    assert _jsonable(config.id2label) == ref["id2label"] and config.label2id == ref["label2id"]
    assert config.hidden_act == ref["hidden_act"]
    with pytest.raises(ValueError, match="hidden_act"):
        ConvNextModel(config)
    v2 = ConvNextV2Config()
    v2.layer_scale_init_value = 0.5  # transformers' V2 config has no such field: accepted, meaningless
    assert hasattr(v2, "layer_scale_init_value") is True and REF["config"]["v2_has_layer_scale_init_value"] is False


def test_to_json_file_round_trip(tmp_path):
    config = ConvNextConfig(**SMALL, output_hidden_states=True)
    config.to_json_file(tmp_path / "c.json")
    again = ConvNextConfig.from_json_file(tmp_path / "c.json")
    assert again == config and again.output_hidden_states is True
    assert "return_dict" not in json.loads((tmp_path / "c.json").read_text())  # at its default


# --- output flags from the config ----------------------------------------------------------------------
def test_output_flags_come_from_the_config_when_the_call_leaves_them_none():
    ref = REF["model"]
    model = ConvNextForImageClassification(ConvNextConfig(**SMALL)).eval()
    x = torch.randn(2, 3, 32, 32)
    model.config.output_hidden_states = True
    with torch.no_grad():
        assert list(model(x)) == ref["flag_from_config_keys"]
        assert list(model(x, output_hidden_states=False)) == ["logits"]  # the call's keyword wins
    trunk = ConvNextModel(ConvNextConfig(**SMALL, return_dict=False)).eval()
    with torch.no_grad():
        out = trunk(x)
    assert type(out).__name__ == ref["return_dict_false_type"] and len(out) == ref["return_dict_false_len"]


# --- the generic model API ------------------------------------------------------------------------------
def test_generic_model_api():
    ref = REF["model"]
    model = ConvNextForImageClassification(ConvNextConfig(**SMALL))
    assert model.num_parameters() == ref["num_parameters"]
    assert model.num_parameters(only_trainable=True) == ref["num_parameters_trainable"]
    model.classifier.requires_grad_(False)
    assert model.num_parameters(only_trainable=True) == ref["num_parameters"] - 3 * 32 - 3
    assert model.supports_gradient_checkpointing is ref["supports_gradient_checkpointing"]
    with pytest.raises(ValueError, match="does not support gradient checkpointing"):
        model.gradient_checkpointing_enable()
    assert model.can_generate() is ref["can_generate"]
    assert (model.get_output_embeddings() is None) is ref["output_embeddings_is_none"]
    with pytest.raises(NotImplementedError):
        ConvNextModel(ConvNextConfig(**SMALL)).get_input_embeddings()
    assert model.main_input_name == ref["main_input_name"] and model.base_model_prefix == ref["base_model_prefix"]


def test_loading_class_attributes_as_transformers():
    for name, expected in REF["model"]["loading_class_attributes"].items():
        for cls in (ConvNextModel, ConvNextForImageClassification, ConvNextBackbone):
            assert getattr(cls, name) == expected, (cls.__name__, name)


def test_attention_implementation_is_eager_only():
    ref = REF["model"]["attn_implementation"]
    config = ConvNextConfig(**SMALL)
    assert config._attn_implementation == ref["config_before_build"]
    model = ConvNextModel(config)
    assert config._attn_implementation == ref["config_after_build"]
    assert ConvNextModel._can_set_attn_implementation() is ref["can_set"]
    for choice in ("eager", "sdpa", "flash_attention_2", "foo"):
        try:
            model.set_attn_implementation(choice)
            outcome = "ok"
        except ValueError as e:
            outcome = "ValueError" if choice != "foo" else f"ValueError: {str(e).split('. ')[0]}"
        assert outcome == ref[choice], choice
    assert model.config._attn_implementation == "eager"


def test_private_from_config_builds_in_the_requested_dtype():
    ref = REF["model"]["_from_config"]
    assert type(ConvNextModel._from_config(ConvNextConfig(**SMALL))).__name__ == ref["type"]
    assert type(ConvNextModel._from_config(ConvNextConfig(**SMALL), attn_implementation="eager")).__name__ == \
        ref["attn_implementation_eager"]
    half = ConvNextModel._from_config(ConvNextConfig(**SMALL), dtype=torch.float16)
    assert str(half.dtype) == ref["dtype_kwarg"]
    assert all(p.dtype == torch.float16 for p in half.parameters())
    assert str(torch.get_default_dtype()) == ref["default_dtype_after"]  # the process default is restored


def test_returned_hidden_states_lie_on_the_path_to_the_output():
    # retain_grad() on a returned map gets a gradient, as in transformers (saliency / feature attribution)
    model = ConvNextForImageClassification(ConvNextConfig(**SMALL))
    redraw_(model)
    x = torch.randn(2, 3, 32, 32)
    out = model(x, output_hidden_states=True)
    for state in out.hidden_states:
        assert state.is_contiguous()  # .view works as on transformers' maps
        state.retain_grad()
    out.logits.sum().backward()
    assert [s.grad is not None for s in out.hidden_states] == REF["model"]["retain_grad_hidden_states"]
    # the last map's gradient is that of the head alone (pooling, norm, classifier) recomputed from it
    last = out.hidden_states[-1].detach().requires_grad_(True)
    pooled = model.convnext.layernorm(last.mean(dim=(-2, -1)))
    expected, = torch.autograd.grad(model.classifier(pooled).sum(), last)
    torch.testing.assert_close(out.hidden_states[-1].grad, expected)
    with torch.no_grad():  # and the outputs are those of a call without hidden states
        torch.testing.assert_close(model(x).logits, out.logits)


def test_backbone_attributes():
    ref = REF["model"]["backbone"]
    backbone = ConvNextBackbone(ConvNextConfig(**{**SMALL, "out_features": ["stage2", "stage4"]}))
    for name, expected in ref.items():
        assert _jsonable(getattr(backbone, name)) == expected, name


# --- from_pretrained ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = ConvNextForImageClassification(ConvNextConfig(**SMALL)).eval()
    folder = tmp_path_factory.mktemp("saved")
    model.save_pretrained(folder)
    model.save_pretrained(folder / "sub")
    return model, folder


def test_size_mismatch_is_a_runtime_error_and_ignoring_it_reports_names(saved):
    ref = REF["loading"]
    _, folder = saved
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        ConvNextForImageClassification.from_pretrained(folder, num_labels=5)
    assert ref["size_mismatch"] == ["RuntimeError"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, info = ConvNextForImageClassification.from_pretrained(folder, num_labels=5, ignore_mismatched_sizes=True,
                                                                     output_loading_info=True)
    assert sorted(info) == ref["mismatched_info_keys"]
    assert sorted(info["mismatched_keys"]) == ref["mismatched_keys"]
    assert model.classifier.weight.shape == (5, 32)


def test_dtype_keyword_and_config_dtype(saved):
    ref = REF["loading"]
    _, folder = saved
    half = ConvNextForImageClassification.from_pretrained(folder, dtype=torch.float16)
    assert str(half.dtype) == ref["dtype_kwarg"] and str(half.config.dtype) == ref["dtype_config_after_load"]
    assert ConvNextForImageClassification.from_pretrained(folder, torch_dtype="float16").dtype == torch.float16


def test_missing_and_unexpected_keys_load_with_a_warning(saved):
    ref = REF["loading"]
    model, folder = saved
    base, info = ConvNextModel.from_pretrained(folder, output_loading_info=True)  # a head is dropped quietly
    assert sorted(info["unexpected_keys"]) == ref["base_from_classifier_unexpected"]
    trunk = {k: v for k, v in model.state_dict().items() if not k.startswith("classifier.")}
    with pytest.warns(UserWarning, match="classifier"):
        rebuilt, info = ConvNextForImageClassification.from_pretrained(None, config=model.config, state_dict=trunk,
                                                                       output_loading_info=True)
    assert sorted(info["missing_keys"]) == ref["state_dict_missing"]
    torch.testing.assert_close(rebuilt.convnext.embeddings.patch_embeddings.weight,
                               model.convnext.embeddings.patch_embeddings.weight)


def test_subfolder_and_meta_device(saved):
    ref = REF["loading"]
    model, folder = saved
    loaded = ConvNextForImageClassification.from_pretrained(folder, subfolder="sub")
    assert type(loaded).__name__ == ref["subfolder_loads"]
    torch.testing.assert_close(loaded.classifier.weight, model.classifier.weight)
    assert ref["meta"] == "RuntimeError"
    with pytest.raises(RuntimeError) as refused, torch.device("meta"):
        ConvNextForImageClassification.from_pretrained(folder)
    assert str(refused.value).splitlines()[0] == ref["meta_message_first_line"]  # code matching on it keeps working


def test_saved_config_records_generic_attributes_only_off_default(saved):
    _, folder = saved
    saved_keys = set(json.loads((folder / "config.json").read_text()))
    assert saved_keys & set(REF["config"]["generic_defaults"]) == set(REF["loading"]["saved_config_generic_keys"])


def test_shard_sizes_as_transformers_spells_them():
    from convnext_common.fileio import size_in_bytes

    assert size_in_bytes("5GB") == 5 * 10**9 and size_in_bytes("5GiB") == 5 * 2**30
    assert size_in_bytes("150kB") == 150_000 and size_in_bytes("10Mb") == 10**7 // 8 and size_in_bytes(123) == 123
    with pytest.raises(ValueError, match="max_shard_size"):
        size_in_bytes("lots")


def test_construction_accepts_what_transformers_accepts_and_the_model_build_refuses_it(tmp_path):
    config = ConvNextConfig(num_channels=0, hidden_sizes=1)  # transformers' ConfigTester constructs these
    assert config.num_channels == 0 and config.hidden_sizes == 1 and config.get_text_config() is config
    with pytest.raises(ValueError, match="num_channels"):
        ConvNextModel(config)
    good = ConvNextConfig(**SMALL)
    good.save_pretrained(tmp_path / "sub")
    assert ConvNextConfig.from_pretrained(tmp_path, subfolder="sub") == good

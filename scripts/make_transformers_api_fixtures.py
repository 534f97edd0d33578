"""Write tests/fixtures/transformers-api/reference.json: how transformers' ConvNeXt classes behave as
objects (config attributes and serialisation, output containers, the generic model API, backbone
attributes, loading), for tests/pt/test_transformers_api.py to compare ours against.

Run in a separate environment with transformers 4.57 (not a dependency of this project)::

    python -m venv /tmp/venv-hf457 && /tmp/venv-hf457/bin/pip install torch==2.13.0 "transformers==4.57.*"
    /tmp/venv-hf457/bin/python scripts/make_transformers_api_fixtures.py
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import torch
import transformers
from transformers import (
    ConvNextBackbone, ConvNextConfig, ConvNextForImageClassification, ConvNextModel, ConvNextV2Config, PretrainedConfig,
)

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "transformers-api" / "reference.json"

#: a small model: the same shapes as the project's test configs
SMALL = dict(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32], num_labels=3)

GENERIC = ("output_hidden_states", "output_attentions", "return_dict", "torchscript", "is_encoder_decoder", "is_decoder",
           "add_cross_attention", "cross_attention_hidden_size", "tie_word_embeddings", "tie_encoder_decoder",
           "chunk_size_feed_forward", "pruned_heads", "use_bfloat16", "tf_legacy_loss", "finetuning_task",
           "tokenizer_class", "prefix", "bos_token_id", "pad_token_id", "eos_token_id", "sep_token_id",
           "decoder_start_token_id", "task_specific_params", "problem_type", "architectures", "_commit_hash",
           "_name_or_path", "use_return_dict")


def jsonable(value):
    if isinstance(value, torch.dtype):
        return {"torch_dtype": str(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def config_reference() -> dict:
    default = ConvNextConfig()
    odd = ConvNextConfig(id2label={0: "label"}, label2id={"label": "0"}, dtype="float16", output_hidden_states=True,
                         return_dict=False, torchscript=False, pruned_heads={"a": 1}, max_length=50)
    assigned = ConvNextConfig(**SMALL)
    assigned.num_labels = 5
    assigned.output_hidden_states = True
    assigned.hidden_act = "not-an-activation"  # a plain attribute bag: anything is accepted here
    v2 = ConvNextV2Config()
    return {
        "generic_defaults": {name: jsonable(getattr(default, name)) for name in GENERIC},
        "default_id2label": jsonable(default.id2label),
        "odd": {"id2label_keys": [type(k).__name__ for k in odd.id2label], "label2id": odd.label2id,
                "num_labels": odd.num_labels, "dtype": str(odd.dtype), "torch_dtype": str(odd.torch_dtype),
                "use_return_dict": odd.use_return_dict, "max_length": odd.max_length,
                "to_diff_dict_keys": sorted(k for k in odd.to_diff_dict() if k != "transformers_version"),
                "to_dict_dtype": odd.to_dict()["dtype"]},
        "assigned": {"id2label": jsonable(assigned.id2label), "label2id": assigned.label2id,
                     "hidden_act": assigned.hidden_act},
        "v2_has_layer_scale_init_value": hasattr(v2, "layer_scale_init_value"),
        "generic_names_in_to_dict": sorted(set(default.to_dict()) & set(GENERIC)),
        "generic_names_in_diff_dict": sorted(set(default.to_diff_dict()) & set(GENERIC)),
    }


#: class attributes transformers' loading code and tests read (None: nothing special for ConvNeXt)
LOADING_ATTRIBUTES = ("_keys_to_ignore_on_load_missing", "_keys_to_ignore_on_load_unexpected",
                      "_keys_to_ignore_on_save", "_keep_in_fp32_modules")


def model_reference() -> dict:
    torch.manual_seed(0)
    config = ConvNextConfig(**SMALL)
    model = ConvNextForImageClassification(config).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x, labels=torch.tensor([0, 2]), output_hidden_states=True)
        config.output_hidden_states = True
        from_config_flag = model(x)
        config.output_hidden_states = False
        base_config = ConvNextConfig(**SMALL)
        base_config.return_dict = False  # (4.57's classifier then fails reading its trunk's tuple: use the trunk)
        tuple_out = ConvNextModel(base_config).eval()(x)
    try:
        model.gradient_checkpointing_enable()
        checkpointing = "enabled"
    except ValueError as e:
        checkpointing = f"ValueError: {e}"
    try:
        ConvNextModel(config).get_input_embeddings()
        input_embeddings = "returned"
    except NotImplementedError:
        input_embeddings = "NotImplementedError"
    backbone = ConvNextBackbone(ConvNextConfig(**{**SMALL, "out_features": ["stage2", "stage4"]}))
    from_config_half = ConvNextModel._from_config(ConvNextConfig(**SMALL), dtype=torch.float16)
    grad_model = ConvNextForImageClassification(ConvNextConfig(**SMALL))
    grad_out = grad_model(torch.randn(2, 3, 32, 32), output_hidden_states=True)
    for state in grad_out.hidden_states:
        state.retain_grad()
    grad_out.logits.sum().backward()
    hidden_state_grads = [state.grad is not None for state in grad_out.hidden_states]
    unbuilt = ConvNextConfig(**SMALL)
    attn = {"config_before_build": unbuilt._attn_implementation}
    attn_model = ConvNextModel(unbuilt)
    attn["config_after_build"] = unbuilt._attn_implementation
    attn["can_set"] = ConvNextModel._can_set_attn_implementation()
    for choice in ("eager", "sdpa", "flash_attention_2", "foo"):
        try:
            attn_model.set_attn_implementation(choice)
            attn[choice] = "ok"
        except ValueError as e:
            attn[choice] = "ValueError" if choice != "foo" else f"ValueError: {str(e).split('. ')[0]}"
    return {
        "attn_implementation": attn,
        "retain_grad_hidden_states": hidden_state_grads,
        "loading_class_attributes": {name: getattr(ConvNextForImageClassification, name) for name in LOADING_ATTRIBUTES},
        "_from_config": {"type": type(ConvNextModel._from_config(ConvNextConfig(**SMALL))).__name__,
                         "dtype_kwarg": str(from_config_half.dtype),
                         "default_dtype_after": str(torch.get_default_dtype()),
                         "attn_implementation_eager": type(ConvNextModel._from_config(
                             ConvNextConfig(**SMALL), attn_implementation="eager")).__name__},
        "output_keys": list(out), "output_keys_method": list(out.keys()), "len": len(out),
        "in": {"loss": "loss" in out, "pooler_output": "pooler_output" in out},
        "index0_is_loss": out[0] is out.loss, "slice_len": len(out[1:]),
        "flag_from_config_keys": list(from_config_flag), "return_dict_false_type": type(tuple_out).__name__,
        "return_dict_false_len": len(tuple_out),
        "num_parameters": model.num_parameters(), "num_parameters_trainable": model.num_parameters(only_trainable=True),
        "supports_gradient_checkpointing": model.supports_gradient_checkpointing,
        "gradient_checkpointing_enable": checkpointing.split(":")[0],
        "can_generate": model.can_generate(), "output_embeddings_is_none": model.get_output_embeddings() is None,
        "input_embeddings": input_embeddings,
        "main_input_name": model.main_input_name, "base_model_prefix": model.base_model_prefix,
        "backbone": {"out_features": backbone.out_features, "out_indices": list(backbone.out_indices),
                     "num_features": backbone.num_features, "channels": backbone.channels,
                     "out_feature_channels": backbone.out_feature_channels, "stage_names": backbone.stage_names},
    }


def loading_reference() -> dict:
    torch.manual_seed(0)
    model = ConvNextForImageClassification(ConvNextConfig(**SMALL))
    result = {}
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        try:
            ConvNextForImageClassification.from_pretrained(d, num_labels=5)
            result["size_mismatch"] = "loaded"
        except Exception as e:  # noqa: BLE001 (the class is the reference)
            result["size_mismatch"] = [c.__name__ for c in type(e).__mro__ if c.__name__ in ("RuntimeError", "ValueError")]
        resized, info = ConvNextForImageClassification.from_pretrained(
            d, num_labels=5, ignore_mismatched_sizes=True, output_loading_info=True)
        result["mismatched_info_keys"] = sorted(info)
        result["mismatched_keys"] = sorted(info["mismatched_keys"])
        half = ConvNextForImageClassification.from_pretrained(d, dtype=torch.float16)
        result["dtype_kwarg"] = str(half.dtype)
        result["dtype_config_after_load"] = str(half.config.dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            base, info = ConvNextModel.from_pretrained(d, output_loading_info=True)
        result["base_from_classifier_unexpected"] = sorted(info["unexpected_keys"])
        sub = Path(d) / "sub"
        model.save_pretrained(sub)
        result["subfolder_loads"] = type(ConvNextForImageClassification.from_pretrained(d, subfolder="sub")).__name__
        state = {k: v for k, v in model.state_dict().items() if not k.startswith("classifier.")}
        m, info = ConvNextForImageClassification.from_pretrained(None, config=model.config, state_dict=state,
                                                                output_loading_info=True)
        result["state_dict_missing"] = sorted(info["missing_keys"])
        try:
            with torch.device("meta"):
                ConvNextForImageClassification.from_pretrained(d)
            result["meta"] = "loaded"
        except RuntimeError as e:
            result["meta"] = "RuntimeError"
            result["meta_message_first_line"] = str(e).splitlines()[0]
        saved = json.loads((Path(d) / "config.json").read_text())
        result["saved_config_generic_keys"] = sorted(set(saved) & set(GENERIC))
    return result


def main() -> None:
    reference = {"writer": f"transformers {transformers.__version__}, torch {torch.__version__}",
                 "config": config_reference(), "model": model_reference(), "loading": loading_reference()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(reference, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

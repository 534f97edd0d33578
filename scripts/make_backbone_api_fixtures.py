"""Write tests/fixtures/transformers-api/backbone.json: how transformers' ConvNeXt backbones answer the
backbone API (out_features, out_indices, stage_names, num_features, out_feature_channels, channels,
has_attentions, forward_with_filtered_kwargs, setting out_features / out_indices on a built model), for
tests/pt/test_backbone_api.py to compare both twins against.

Run in a separate environment with transformers 4.57 (not a dependency of this project)::

    python -m venv /tmp/venv-hf457 && /tmp/venv-hf457/bin/pip install torch==2.13.0 "transformers==4.57.*"
    /tmp/venv-hf457/bin/python scripts/make_backbone_api_fixtures.py
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers
from transformers import ConvNextBackbone, ConvNextConfig, ConvNextV2Backbone, ConvNextV2Config

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "transformers-api" / "backbone.json"
SMALL = dict(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32])

CONFIGS = {
    "default": {},
    "out_features": {"out_features": ["stage1", "stage3"]},
    "out_indices": {"out_indices": [0, 2, 4]},
    "both": {"out_features": ["stem", "stage4"], "out_indices": [0, 4]},
    "negative": {"out_indices": [-2, -1]},
}


def attributes(model) -> dict:
    return {"out_features": list(model.out_features), "out_indices": list(model.out_indices),
            "stage_names": list(model.stage_names), "num_features": list(model.num_features),
            "out_feature_channels": dict(model.out_feature_channels), "channels": list(model.channels)}


def maps(model, x) -> list:
    with torch.no_grad():
        return [list(m.shape) for m in model(x).feature_maps]


def describe(cls, config_cls, kwargs: dict) -> dict:
    torch.manual_seed(0)
    model = cls(config_cls(**SMALL, **kwargs)).eval()
    x = torch.randn(1, 3, 64, 64)
    entry = {"attributes": attributes(model), "config": {"out_features": model.config.out_features,
                                                           "out_indices": list(model.config.out_indices)},
             "maps": maps(model, x), "has_attentions": model.has_attentions,
             "backbone_type": model.backbone_type.value, "use_timm_backbone": model.use_timm_backbone}
    with torch.no_grad():
        filtered = model.forward_with_filtered_kwargs(x, output_attentions=True, output_hidden_states=True)
    entry["filtered"] = {"maps": [list(m.shape) for m in filtered.feature_maps],
                         "hidden_states": len(filtered.hidden_states)}
    with torch.no_grad():
        entry["tuple_lengths"] = [len(model(x, return_dict=False)),
                                  len(model(x, output_hidden_states=True, return_dict=False))]
    return entry


def setters() -> dict:
    out = {}
    model = ConvNextBackbone(ConvNextConfig(**SMALL, out_features=["stage1", "stage2", "stage4"])).eval()
    x = torch.randn(1, 3, 64, 64)
    model.out_features = ["stage2", "stage4"]
    out["set_out_features"] = {"attributes": attributes(model), "maps": maps(model, x),
                               "config_out_features": model.config.out_features}
    model.out_indices = [1]
    out["set_out_indices"] = {"attributes": attributes(model), "maps": maps(model, x),
                              "config_out_features": model.config.out_features}
    model.out_features = ["stage3"]  # a stage the model built no norm for
    try:
        maps(model, x)
        out["set_unbuilt_stage"] = "ok"
    except Exception as e:  # noqa: BLE001 -- the failure itself is recorded
        out["set_unbuilt_stage"] = type(e).__name__
    for name, bad in (("bad_feature", {"out_features": ["stage9"]}), ("bad_index", {"out_indices": [7]})):
        try:
            ConvNextConfig(**SMALL, **bad)
            out[name] = "ok"
        except Exception as e:  # noqa: BLE001
            out[name] = type(e).__name__
    return out


def main() -> None:
    ref = {"transformers_version": transformers.__version__,
           "v1": {name: describe(ConvNextBackbone, ConvNextConfig, kw) for name, kw in CONFIGS.items()},
           "v2": {name: describe(ConvNextV2Backbone, ConvNextV2Config, kw) for name, kw in CONFIGS.items()},
           "setters": setters()}
    OUT.write_text(json.dumps(ref, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

"""The config matrix of the twin-parity tests (tests/tf/test_parity.py on TensorFlow,
tests/tf/test_any_backend.py on every Keras backend) and how their outputs are compared.

Imports neither TensorFlow nor Keras: the backend tests run it under KERAS_BACKEND=jax / torch.
"""

from __future__ import annotations

import numpy as np

from convnext_common import ConvNextConfig, ConvNextV2Config

TOL = 1e-4  # DESIGN.md's bound, rel = max|ours - ref| / max(1, max|ref|)

# (name, config class, config kwargs, input (C, H, W)): 2-4 stages, 1/3/4 channels, several
# activations, layer scale off, V2; odd sizes
CONFIGS = [
    ("v1-4-stages", ConvNextConfig, dict(depths=[1, 1, 2, 1], hidden_sizes=[8, 16, 24, 32], num_labels=5), (3, 70, 90)),
    ("v1-2-stages-gelu_new", ConvNextConfig,
     dict(depths=[2, 1], hidden_sizes=[12, 20], num_stages=2, hidden_act="gelu_new", num_labels=3), (3, 45, 37)),
    ("v1-3-stages-1ch-relu-no-layer-scale", ConvNextConfig,
     dict(depths=[1, 2, 1], hidden_sizes=[6, 10, 14], num_stages=3, num_channels=1, hidden_act="relu",
          layer_scale_init_value=0.0, num_labels=4), (1, 70, 90)),
    ("v1-4ch-patch2-silu", ConvNextConfig,
     dict(depths=[1, 1, 1], hidden_sizes=[8, 12, 16], num_stages=3, num_channels=4, patch_size=2, hidden_act="silu",
          num_labels=2), (4, 33, 41)),
    ("v2-4-stages", ConvNextV2Config, dict(depths=[1, 1, 2, 1], hidden_sizes=[8, 16, 24, 32], num_labels=5),
     (3, 70, 90)),
    ("v2-3-stages-quick_gelu", ConvNextV2Config,
     dict(depths=[2, 1, 1], hidden_sizes=[6, 10, 16], num_stages=3, hidden_act="quick_gelu", num_labels=3),
     (3, 50, 66)),
]
CONFIG_IDS = [c[0] for c in CONFIGS]
TASKS = ["Model", "ForImageClassification", "Backbone"]


def make_config(config_cls, kwargs: dict, task: str):
    config = config_cls(**kwargs)
    if task == "Backbone":  # several maps, the stem included where the config allows
        config.out_features = config.stage_names[:: max(1, len(config.stage_names) // 3)]
    return config


def pt_class(config, task: str):
    import convnext_pt

    return getattr(convnext_pt, ("ConvNextV2" if config.model_type == "convnextv2" else "ConvNext") + task)


def to_numpy(t) -> np.ndarray:
    """A tensor of any framework (a torch tensor that requires grad too) as numpy."""
    if hasattr(t, "detach"):
        t = t.detach().cpu()
        return (t.float() if str(t.dtype) == "torch.bfloat16" else t).numpy()  # numpy has no bfloat16
    return np.asarray(t)


def named_outputs(out, channels_last: bool = False) -> dict[str, np.ndarray]:
    """Every tensor of a model output by name (logits, hidden_states_0, ...); ``channels_last`` maps
    are transposed to NCHW."""
    named = {}
    for field in ("logits", "last_hidden_state", "pooler_output", "loss"):
        if getattr(out, field, None) is not None:
            named[field] = getattr(out, field)
    for group in ("feature_maps", "hidden_states"):
        for i, t in enumerate(getattr(out, group, None) or ()):
            named[f"{group}_{i}"] = t
    named = {k: to_numpy(v) for k, v in named.items()}
    if channels_last:
        named = {k: v.transpose(0, 3, 1, 2) if v.ndim == 4 else v for k, v in named.items()}
    return named

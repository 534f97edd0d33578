"""What a timm hub folder's ``config.json`` says besides the weights (as timm's ``save_for_hf`` writes it).

timm's layout: ``architecture`` (e.g. ``convnext_tiny``), ``num_classes``, ``num_features``,
``global_pool``, optional ``label_names`` (a list, or a dict ``{index: name}`` when there are gaps),
``model_args`` and ``pretrained_cfg`` with the preprocessing timm applies at evaluation:
``input_size`` (C, H, W), ``interpolation``, ``mean``, ``std``, ``crop_pct`` and ``crop_mode``.
No ``model_type``: that is how it differs from a transformers config.json.

:func:`timm_preprocessor_config` turns ``pretrained_cfg`` into the transformers
``preprocessor_config.json`` that reproduces timm's default evaluation transform
(``timm.data.resolve_data_config`` + ``create_transform``: resize the short side to
``floor(size / crop_pct)``, centre-crop ``size``, rescale to [0, 1], normalise), as far as
``ConvNextImageProcessor`` can express it (see :func:`timm_preprocessor_config`).
"""

from __future__ import annotations

from typing import Any, Optional

#: timm's interpolation names and PIL's filter numbers (what preprocessor_config.json stores).
PIL_FILTERS = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}
#: timm's defaults (timm.data.constants) for a pretrained_cfg that leaves a field out.
TIMM_DEFAULTS = {"input_size": (3, 224, 224), "interpolation": "bicubic", "crop_pct": 0.875,
                 "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def is_timm_config(d: Any) -> bool:
    """A timm ``config.json``: an ``architecture`` name and no transformers ``model_type``."""
    return isinstance(d, dict) and isinstance(d.get("architecture"), str) and "model_type" not in d


def timm_architecture(d: dict) -> str:
    """``convnext_tiny`` for ``convnext_tiny`` or ``convnext_tiny.fb_in1k`` (the tag is not the model)."""
    return d["architecture"].split(".")[0]


def is_timm_convnext(d: dict) -> bool:
    """timm's ConvNeXt family: convnext_*, convnextv2_* (all built by timm's ConvNeXt class)."""
    return timm_architecture(d).startswith("convnext")


def _pretrained_cfg(d: dict) -> dict:
    cfg = d.get("pretrained_cfg")
    return cfg if isinstance(cfg, dict) else {}


def timm_input_size(d: dict) -> int:
    """The side of timm's default evaluation input (``pretrained_cfg.input_size[-1]``)."""
    size = _pretrained_cfg(d).get("input_size") or TIMM_DEFAULTS["input_size"]
    return int(size[-1])


def timm_preprocessor_config(d: dict) -> dict:
    """transformers' ``preprocessor_config.json`` for timm's default evaluation transform of ``d``.

    Limits of ConvNextImageProcessor (it is transformers' processor): a non-square ``input_size``
    uses its last side; from 384 px up it warps the image to a square instead of resizing and
    cropping (timm's ``crop_mode="squash"``); its centre crop rounds an odd margin down where
    torchvision rounds half to even, so images whose margin is odd come out shifted by one pixel;
    timm's ``crop_mode`` other than ``center`` is not expressed.
    """
    cfg = _pretrained_cfg(d)
    mean = [float(v) for v in (cfg.get("mean") or TIMM_DEFAULTS["mean"])]
    std = [float(v) for v in (cfg.get("std") or TIMM_DEFAULTS["std"])]
    crop_pct = cfg.get("crop_pct")
    crop_pct = float(crop_pct) if isinstance(crop_pct, (int, float)) and crop_pct > 0 else TIMM_DEFAULTS["crop_pct"]
    interpolation = cfg.get("interpolation") or TIMM_DEFAULTS["interpolation"]
    size = timm_input_size(d)
    return {"crop_pct": crop_pct, "do_normalize": True, "do_rescale": True, "do_resize": True,
            "image_mean": mean, "image_processor_type": "ConvNextImageProcessor", "image_std": std,
            "resample": PIL_FILTERS.get(str(interpolation), PIL_FILTERS["bicubic"]),
            "rescale_factor": 1 / 255, "size": {"shortest_edge": size}}


def timm_label_names(d: dict, num_labels: int) -> Optional[dict[int, str]]:
    """``label_names`` as id2label when they name exactly the model's ``num_labels`` outputs."""
    names = d.get("label_names")
    if isinstance(names, (list, tuple)):
        labels = {i: str(v) for i, v in enumerate(names)}
    elif isinstance(names, dict):
        try:
            labels = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            return None
    else:
        return None
    if num_labels < 1 or sorted(labels) != list(range(num_labels)):
        return None
    return labels


def apply_timm_metadata(config, d: dict):
    """Label names and the evaluation input size of timm's config.json, on a converted ConvNextConfig."""
    labels = timm_label_names(d, config.num_labels)
    changes: dict[str, Any] = {"image_size": timm_input_size(d)}
    if labels is not None:
        changes.update(id2label=labels, label2id={v: k for k, v in labels.items()})
    return config.copy(**changes)

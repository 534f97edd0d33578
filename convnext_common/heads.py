"""Which model a checkpoint or folder holds, in one vocabulary.

A ConvNeXt comes with one of three heads: ``"classification"`` (the trunk, the pooled norm and a
linear classifier), ``"base"`` (the trunk and the pooled norm) or ``"backbone"`` (the trunk and a
norm per returned stage). With the family, V1, V2 or DINOv3 (``config.model_type``; DINOv3 has no
classifier), the head names the class, spelled as transformers spells it in ``config.json``'s
``architectures``. Each twin maps these names to its classes in one place (``convnext_pt.auto``,
``convnext_tf.auto``).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, Union

from .config import ConvNextConfig, load_config

HEADS = ("classification", "base", "backbone")
DEFAULT_HEAD = "classification"
#: the FCMAE pre-training model (ConvNeXt V2 only): the trunk plus the masked-image decoder. Kept out
#: of HEADS, which lists the heads of both families.
MASKED_IMAGE_MODELING = "masked-image-modeling"
V2_HEADS = HEADS + (MASKED_IMAGE_MODELING,)

_CLASS_SUFFIX = {"classification": "ForImageClassification", "base": "Model", "backbone": "Backbone",
                 MASKED_IMAGE_MODELING: "ForMaskedImageModeling"}
#: the prefix transformers gives its TensorFlow classes (``TFConvNextModel``); a config written by
#: either framework names the same model.
TF_PREFIX = "TF"


#: class-name families by ``model_type``; longest names first, so that prefixes are told apart
FAMILIES = {"dinov3_convnext": "DINOv3ConvNext", "convnextv2": "ConvNextV2", "convnext": "ConvNext"}
#: heads a family lacks (transformers has no DINOv3 ConvNeXt classifier; FCMAE is ConvNeXt V2's)
MISSING_HEADS = {"DINOv3ConvNext": ("classification", MASKED_IMAGE_MODELING), "ConvNext": (MASKED_IMAGE_MODELING,)}


def family(config: ConvNextConfig) -> str:
    """``"ConvNextV2"``, ``"DINOv3ConvNext"`` or ``"ConvNext"``, from ``config.model_type``."""
    return FAMILIES.get(config.model_type, "ConvNext")


def default_head(config: ConvNextConfig) -> str:
    """The head of a config without ``architectures``: a classifier, or the base model for a family
    without one (DINOv3)."""
    return "base" if DEFAULT_HEAD in MISSING_HEADS.get(family(config), ()) else DEFAULT_HEAD


def check_head(head: str) -> str:
    if head not in V2_HEADS:
        raise ValueError(f"head {head!r} is not one of {', '.join(V2_HEADS)}")
    return head


def class_name(config: ConvNextConfig, head: str) -> str:
    """transformers' PyTorch class name of this config with this head (``config.architectures``' form);
    ValueError for a head the family does not have."""
    fam = family(config)
    if check_head(head) in MISSING_HEADS.get(fam, ()):
        others = ", ".join(h for h in V2_HEADS if h not in MISSING_HEADS[fam])
        raise ValueError(f"a {config.model_type} model has no {head} head (transformers has no {fam}"
                         f"{_CLASS_SUFFIX[head]}): use {others}")
    return fam + _CLASS_SUFFIX[head]


def head_of_class_name(name: str) -> Optional[str]:
    """The head a class name stands for (``TFConvNextV2Backbone`` -> ``"backbone"``), None if it is
    not a ConvNeXt class name."""
    bare = name[len(TF_PREFIX):] if name.startswith(TF_PREFIX) and name[len(TF_PREFIX):].startswith(
        tuple(FAMILIES.values())) else name
    for fam in sorted(FAMILIES.values(), key=len, reverse=True):
        if bare.startswith(fam):
            suffix = bare[len(fam):]
            return next((h for h, s in _CLASS_SUFFIX.items() if s == suffix), None)
    return None


def head_of(config: ConvNextConfig) -> str:
    """The head ``config.architectures[0]`` names; a config without ``architectures`` is a classifier
    (transformers' default for ConvNeXt folders). Raises ValueError for a name that is not a ConvNeXt."""
    if not config.architectures:
        return default_head(config)
    head = head_of_class_name(config.architectures[0])
    if head is None:
        raise ValueError(f"config.json's architectures names {config.architectures[0]!r}, not a ConvNeXt class "
                         f"({'/'.join(reversed(FAMILIES.values()))} + {', '.join(_CLASS_SUFFIX.values())})")
    return head


class AutoClass:
    """transformers-style Auto class: ``from_pretrained`` / ``from_config`` pick the class of one head
    (``_head``; None: the config's own) and V1 or V2 by ``config.model_type``. Each twin subclasses it
    once with its lookup (``_lookup = staticmethod(model_class)``) and then once per head."""

    _head: Optional[str] = None
    _lookup: Callable[[ConvNextConfig, Optional[str]], type]

    def __init__(self, *args: Any, **kwargs: Any):
        raise TypeError(f"{type(self).__name__} is not instantiated: use {type(self).__name__}.from_pretrained(...) "
                        f"or {type(self).__name__}.from_config(config)")

    @classmethod
    def class_for(cls, config: ConvNextConfig) -> type:
        return cls._lookup(config, cls._head)

    @classmethod
    def from_config(cls, config: ConvNextConfig) -> Any:
        """A randomly initialised model of this head for ``config``."""
        return cls.class_for(config)(config)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike], **kwargs: Any) -> Any:
        """Load a folder or hub id (transformers or timm) into the class :meth:`class_for` picks; the
        keyword arguments are those of the twin's ``from_pretrained``."""
        config = kwargs.pop("config", None)
        if config is None:
            hub = {k: kwargs[k] for k in ("revision", "cache_dir", "local_files_only", "token") if k in kwargs}
            config = load_config(pretrained_model_name_or_path, **hub)
        return cls.class_for(config).from_pretrained(pretrained_model_name_or_path, config=config, **kwargs)

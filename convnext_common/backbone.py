"""transformers' backbone API (``BackboneMixin``), shared by both twins' backbones.

A backbone reports and selects its feature maps by stage: ``stage_names`` ("stem", "stage1", ...),
``out_features`` / ``out_indices`` (either gives the other), ``num_features`` (channels of every
stage), ``out_feature_channels`` and ``channels`` (of the selected maps). As in transformers, the
selection starts as the config's and can be changed on the built model (the config keeps its own);
a model can only return maps whose norm it built, so a selection beyond those is refused here
(transformers fails with a KeyError in the next forward).
"""

from __future__ import annotations

import importlib
import sys
from enum import Enum
from typing import Any, Sequence

from .config import _align_out_features


class BackboneType(Enum):
    """transformers' ``BackboneType`` values (a backbone of transformers' own code, or timm's), for
    processes without transformers; where transformers is loaded, backbones answer with its enum."""

    TIMM = "timm"
    TRANSFORMERS = "transformers"


def transformers_backbone_type() -> Any:
    """``BackboneType.TRANSFORMERS``: transformers' own member where transformers is already imported
    (code written for it compares with its enum, by identity), else this module's. transformers is
    never imported here: a process that has not loaded it cannot hold its enum to compare with."""
    if "transformers" in sys.modules:
        for module in ("transformers.backbone_utils", "transformers.utils.backbone_utils"):  # 5.x, 4.x
            try:
                return importlib.import_module(module).BackboneType.TRANSFORMERS
            except (ImportError, AttributeError):
                continue
    return BackboneType.TRANSFORMERS


class BackboneAPI:
    """Mixin: the twin's backbone sets ``stage_names``, ``num_features`` and calls
    :meth:`_init_backbone_api` with the stages it built a norm for."""

    #: a ConvNeXt returns no attentions (transformers' flag for ``forward_with_filtered_kwargs``)
    has_attentions = False
    use_timm_backbone = False
    stage_names: list[str]
    num_features: list[int]

    def _init_backbone_api(self, out_features: Sequence[str], out_indices: Sequence[int]) -> None:
        self._built_features = tuple(out_features)
        self._out_features, self._out_indices = list(out_features), list(out_indices)

    def _select(self, out_features: Sequence[str] | None, out_indices: Sequence[int] | None, field: str) -> None:
        try:
            features, indices = _align_out_features(out_features, out_indices, list(self.stage_names))
        except ValueError as e:
            raise ValueError(f"{field}: {e}") from None
        unbuilt = [f for f in features if f not in self._built_features]
        if unbuilt:
            raise ValueError(f"{field}: this backbone was built with norms for {list(self._built_features)} only, not "
                             f"{unbuilt}; build one from a config with out_features={features}")
        self._out_features, self._out_indices = features, indices

    @property
    def backbone_type(self) -> Any:
        """The model is a backbone of its library's own code, as transformers' ConvNeXt backbones say
        of theirs (:func:`transformers_backbone_type`)."""
        return transformers_backbone_type()

    @property
    def out_features(self) -> list[str]:
        return list(self._out_features)

    @out_features.setter
    def out_features(self, out_features: Sequence[str]) -> None:
        self._select(out_features, None, "out_features")

    @property
    def out_indices(self) -> list[int]:
        return list(self._out_indices)

    @out_indices.setter
    def out_indices(self, out_indices: Sequence[int]) -> None:
        self._select(None, out_indices, "out_indices")

    @property
    def out_feature_channels(self) -> dict[str, int]:
        """Channels of every stage's map (selected or not), as transformers reports them."""
        return {stage: self.num_features[i] for i, stage in enumerate(self.stage_names)}

    @property
    def channels(self) -> list[int]:
        return [self.out_feature_channels[name] for name in self.out_features]

    def forward_with_filtered_kwargs(self, *args: Any, **kwargs: Any) -> Any:
        """Call the model without ``output_attentions`` (a ConvNeXt has none), as transformers' heads call
        a backbone."""
        kwargs.pop("output_attentions", None)
        return self(*args, **kwargs)

"""ConvNeXt V1 and V2 in PyTorch, with transformers' module names (they are the checkpoint format).

Read a block top to bottom against Fig. 4 of the paper: 7x7 depthwise conv -> LayerNorm ->
1x1 expand (Linear, 4x) -> GELU -> [GRN, V2] -> 1x1 project (Linear) -> [layer scale, V1] ->
drop path -> residual add. Tensors between modules are NCHW; a block works channels-last inside
so that the 1x1 convs are plain matrix multiplies.

``convnext_tf/modeling.py`` is the Keras translation of this file, class for class. The fast CPU
form of the block's Linears lives in ``fused.py``, deployment in ``export.py``.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from convnext_common.architecture import (
    DWCONV_KERNEL, GRN_EPS, MLP_RATIO, NORM_EPS, backbone_channels, infer_problem_type, stage_specs, uses_grn,
)
from convnext_common.config import ConvNextConfig, ConvNextV2Config

from . import fused
from .activations import get_activation
from .hub import PreTrainedMixin
from .outputs import BackboneOutput, BaseModelOutputWithPoolingAndNoAttention, ImageClassifierOutputWithNoAttention


@torch.fx.wrap
def layer_norm_float32(x: torch.Tensor, normalized_shape: tuple[int, ...], weight: torch.Tensor,
                       bias: torch.Tensor, eps: float) -> torch.Tensor:
    """``F.layer_norm`` with float32 statistics for float16/bfloat16 inputs (output in the input's dtype).

    A leaf for torch.fx (its dtype test cannot be traced symbolically); torch.export and
    torch.compile trace through it.
    """
    if x.dtype in (torch.float16, torch.bfloat16):
        return F.layer_norm(x.float(), normalized_shape, weight.float(), bias.float(), eps).to(x.dtype)
    return F.layer_norm(x, normalized_shape, weight, bias, eps)


@torch.fx.wrap
def check_pixel_values(pixel_values: torch.Tensor, num_channels: int) -> None:
    """A clear error for input of the wrong rank or channel count (a leaf for torch.fx)."""
    if pixel_values.ndim != 4 or pixel_values.shape[1] != num_channels:
        raise ValueError(f"pixel_values must be (batch, {num_channels}, height, width), got {tuple(pixel_values.shape)}")


class ConvNextLayerNorm(nn.Module):
    """LayerNorm over channels for NHWC (``channels_last``) or NCHW (``channels_first``) tensors.

    Statistics are computed in float32 whatever the input dtype: in float16 the variance of
    large activations overflows (the original channels-first LayerNorm returns inf there).
    """

    def __init__(self, normalized_shape: int, eps: float = NORM_EPS, data_format: str = "channels_last"):
        super().__init__()
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"data_format must be channels_last or channels_first, got {data_format!r}")
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))
        self.eps = eps
        self.data_format = data_format
        self.normalized_shape = (normalized_shape,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.data_format == "channels_first":
            x = x.permute(0, 2, 3, 1)
        x = layer_norm_float32(x, self.normalized_shape, self.weight, self.bias, self.eps)
        if self.data_format == "channels_first":
            x = x.permute(0, 3, 1, 2)
        return x

    def extra_repr(self) -> str:
        return f"{self.normalized_shape[0]}, eps={self.eps}, data_format={self.data_format}"


class ConvNextDropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch of a sample with probability ``drop_prob``."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.drop_prob}"


class ConvNextV2GRN(nn.Module):
    """Global Response Normalization (ConvNeXt V2) on NHWC tensors: each channel's spatial L2 norm,
    divided by the mean norm over channels, re-weights the features (``weight``/``bias`` (1, 1, 1, C))."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.bias = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # float32 statistics: the sum of squares over H*W overflows float16.
        g = torch.linalg.vector_norm(x.float(), ord=2, dim=(1, 2), keepdim=True)
        n = (g / (g.mean(dim=-1, keepdim=True) + GRN_EPS)).to(x.dtype)
        return self.weight * (x * n) + self.bias + x


class ConvNextEmbeddings(nn.Module):
    """The paper's "patchify" stem: a patch_size x patch_size conv with the same stride, then LayerNorm.
    (B, num_channels, H, W) -> (B, hidden_sizes[0], H/patch, W/patch)."""

    def __init__(self, config: ConvNextConfig):
        super().__init__()
        self.patch_embeddings = nn.Conv2d(config.num_channels, config.hidden_sizes[0], kernel_size=config.patch_size,
                                          stride=config.patch_size)
        self.layernorm = ConvNextLayerNorm(config.hidden_sizes[0], eps=NORM_EPS, data_format="channels_first")
        self.num_channels = config.num_channels

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        check_pixel_values(pixel_values, self.num_channels)
        # Work channels-last in memory from here on: each block's NCHW <-> NHWC permute is then a
        # free view instead of a copy before every Linear. Shapes stay NCHW.
        pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        return self.layernorm(self.patch_embeddings(pixel_values))


class ConvNextLayer(nn.Module):
    """One ConvNeXt block, Fig. 4 of the paper: dwconv 7x7 -> LayerNorm -> pwconv1 (4x) -> GELU ->
    [GRN, V2] -> pwconv2 -> [layer scale, V1] -> drop path -> residual. (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, config: ConvNextConfig, dim: int, drop_path: float = 0.0):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=DWCONV_KERNEL, padding=DWCONV_KERNEL // 2, groups=dim)
        self.layernorm = ConvNextLayerNorm(dim, eps=NORM_EPS)
        self.pwconv1 = nn.Linear(dim, MLP_RATIO * dim)
        self.act = get_activation(config.hidden_act)
        self.grn = ConvNextV2GRN(MLP_RATIO * dim) if uses_grn(config) else None
        self.pwconv2 = nn.Linear(MLP_RATIO * dim, dim)
        scale = config.layer_scale_init_value
        self.layer_scale_parameter = nn.Parameter(scale * torch.ones(dim)) if scale > 0 else None
        self.drop_path = ConvNextDropPath(drop_path)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        residual = hidden_states
        x = self.dwconv(hidden_states)
        x = x.permute(0, 2, 3, 1)  # NCHW -> NHWC
        x = self.layernorm(x)
        # self.act(self.pwconv1(x)) and self.pwconv2(x); one oneDNN call each where that is
        # provably the same computation (no-grad CPU inference on unmodified modules, see fused.py)
        x = fused.linear_act(self.pwconv1, self.act, x)
        if self.grn is not None:
            x = self.grn(x)
        x = fused.linear_act(self.pwconv2, None, x)
        if self.layer_scale_parameter is not None:
            x = self.layer_scale_parameter * x
        x = x.permute(0, 3, 1, 2)  # NHWC -> NCHW
        return residual + self.drop_path(x)


class ConvNextStage(nn.Module):
    """The paper's separate downsampling layer (LayerNorm + 2x2 stride-2 conv), if any, then ``depth`` blocks."""

    def __init__(self, config: ConvNextConfig, in_channels: int, out_channels: int, stride: int = 2,
                 depth: int = 2, drop_path_rates: Optional[list[float]] = None):
        super().__init__()
        if in_channels != out_channels or stride > 1:
            self.downsampling_layer = nn.Sequential(
                ConvNextLayerNorm(in_channels, eps=NORM_EPS, data_format="channels_first"),
                nn.Conv2d(in_channels, out_channels, kernel_size=stride, stride=stride),
            )
        else:
            self.downsampling_layer = nn.Identity()
        rates = drop_path_rates or [0.0] * depth
        self.layers = nn.Sequential(*[ConvNextLayer(config, out_channels, rates[j]) for j in range(depth)])

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.layers(self.downsampling_layer(hidden_states))


class ConvNextEncoder(nn.Module):
    """The stages in order; optionally returns every intermediate map (NCHW here)."""

    def __init__(self, config: ConvNextConfig):
        super().__init__()
        self.stages = nn.ModuleList([
            ConvNextStage(config, s.in_channels, s.out_channels, s.stride, s.depth, s.drop_path_rates)
            for s in stage_specs(config)
        ])

    def forward(self, hidden_states: torch.Tensor, output_hidden_states: bool = False):
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        for stage in self.stages:
            hidden_states = stage(hidden_states)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
        return hidden_states, all_hidden_states


def optional_arg(value):
    """``value``, or None while torch.fx traces the model: its optional arguments then arrive as
    Proxies, which cannot steer Python control flow, so the traced graph is the default call's."""
    return None if isinstance(value, torch.fx.Proxy) else value


def nchw_contiguous(maps: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Returned maps in the default NCHW memory layout, so that ``.view`` works on them as on
    transformers' outputs (the trunk computes channels-last, see ConvNextEmbeddings)."""
    return tuple(m.contiguous() for m in maps)


class ConvNextPreTrainedModel(PreTrainedMixin, nn.Module):
    """Weight init as transformers', and hub-layout loading/saving (see hub.py)."""

    config_class = ConvNextConfig
    base_model_prefix = "convnext"
    main_input_name = "pixel_values"

    def __init__(self, config: ConvNextConfig):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        config.validate()  # a config is a plain attribute bag: its values are checked where a model is built
        self.config = config

    def _output_flags(self, output_hidden_states: Optional[bool], return_dict: Optional[bool]) -> tuple[bool, bool]:
        """The call's flags, the config's where the call leaves them None (as transformers)."""
        output_hidden_states, return_dict = optional_arg(output_hidden_states), optional_arg(return_dict)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if return_dict is None:
            return_dict = self.config.use_return_dict
        return bool(output_hidden_states), bool(return_dict)

    # --- transformers' generic model API --------------------------------------------------------------
    supports_gradient_checkpointing = False  # as transformers' ConvNeXt

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def name_or_path(self) -> str:
        return self.config._name_or_path

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Parameters counted as transformers counts them (``exclude_embeddings``: there are no
        token embeddings here, so it changes nothing)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not only_trainable)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: Optional[dict] = None) -> None:
        raise ValueError(f"{type(self).__name__} does not support gradient checkpointing.")

    def gradient_checkpointing_disable(self) -> None:
        pass  # never enabled

    @property
    def is_gradient_checkpointing(self) -> bool:
        return False

    @classmethod
    def can_generate(cls) -> bool:
        return False

    def get_input_embeddings(self) -> nn.Module:
        base = getattr(self, self.base_model_prefix, self)
        if base is not self:
            return base.get_input_embeddings()
        raise NotImplementedError(f"{type(self).__name__} has no token embeddings (its input is pixel_values)")

    def get_output_embeddings(self) -> None:
        return None  # no language-model head

    def tie_weights(self) -> None:
        pass  # nothing to tie

    def init_weights(self) -> None:
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, ConvNextLayerNorm)):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, ConvNextV2GRN):
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, ConvNextLayer) and module.layer_scale_parameter is not None:
            nn.init.constant_(module.layer_scale_parameter, self.config.layer_scale_init_value)

    def post_init(self) -> None:
        self.apply(self._init_weights)


class ConvNextModel(ConvNextPreTrainedModel):
    """The trunk: stem, stages, and a pooled, normalised feature vector.

    ``pixel_values`` (B, num_channels, H, W), H and W >= 32 ->
    ``last_hidden_state`` (B, hidden_sizes[-1], H/32, W/32) (for 4 stages, before the final norm),
    ``pooler_output`` (B, hidden_sizes[-1]).
    """

    def __init__(self, config: ConvNextConfig):
        super().__init__(config)
        self.embeddings = ConvNextEmbeddings(config)
        self.encoder = ConvNextEncoder(config)
        self.layernorm = ConvNextLayerNorm(config.hidden_sizes[-1], eps=config.layer_norm_eps)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: Optional[bool] = None,
                return_dict: Optional[bool] = None) -> Union[tuple, BaseModelOutputWithPoolingAndNoAttention]:
        output_hidden_states, return_dict = self._output_flags(output_hidden_states, return_dict)
        embedding_output = self.embeddings(pixel_values)
        last_hidden_state, hidden_states = self.encoder(embedding_output, bool(output_hidden_states))
        pooled_output = self.layernorm(last_hidden_state.mean(dim=(-2, -1)))
        out = BaseModelOutputWithPoolingAndNoAttention(
            last_hidden_state.contiguous(), pooled_output,
            nchw_contiguous(hidden_states) if hidden_states is not None else None)
        return out if return_dict else out.to_tuple()


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, config: ConvNextConfig) -> torch.Tensor:
    """MSE for regression, cross-entropy for single-label, BCE-with-logits for multi-label."""
    is_int = labels.dtype in (torch.long, torch.int, torch.int16, torch.int8, torch.uint8)
    problem_type = infer_problem_type(config, is_int)
    num_labels = logits.shape[-1]
    if problem_type == "regression":
        labels = labels.to(logits.dtype)
        if num_labels == 1:
            return F.mse_loss(logits.squeeze(), labels.squeeze())
        return F.mse_loss(logits, labels)
    if problem_type == "single_label_classification":
        return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1).long())
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


class ConvNextForImageClassification(ConvNextPreTrainedModel):
    """The trunk plus a linear classifier on the pooled features. ``logits`` (B, num_labels)."""

    trunk_class = ConvNextModel

    def __init__(self, config: ConvNextConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        setattr(self, self.base_model_prefix, self.trunk_class(config))
        self.classifier = (nn.Linear(config.hidden_sizes[-1], config.num_labels)
                           if config.num_labels > 0 else nn.Identity())
        self.post_init()

    @property
    def base_model(self) -> ConvNextModel:
        return getattr(self, self.base_model_prefix)

    def forward(self, pixel_values: torch.Tensor, labels: Optional[torch.Tensor] = None,
                output_hidden_states: Optional[bool] = None,
                return_dict: Optional[bool] = None) -> Union[tuple, ImageClassifierOutputWithNoAttention]:
        labels = optional_arg(labels)
        output_hidden_states, return_dict = self._output_flags(output_hidden_states, return_dict)
        outputs = self.base_model(pixel_values, output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.classifier(outputs.pooler_output)
        loss = classification_loss(logits, labels, self.config) if labels is not None else None
        out = ImageClassifierOutputWithNoAttention(loss, logits, outputs.hidden_states)
        return out if return_dict else out.to_tuple()


class ConvNextBackbone(ConvNextPreTrainedModel):
    """Multi-scale features for detection/segmentation heads: one normalised map per ``out_features``.

    ``feature_maps[i]``: (B, channels[i], H / stride_i, W / stride_i), NCHW.
    """

    def __init__(self, config: ConvNextConfig):
        super().__init__(config)
        self.embeddings = ConvNextEmbeddings(config)
        self.encoder = ConvNextEncoder(config)
        self.stage_names = list(config.stage_names)
        self.num_features = [config.hidden_sizes[0]] + list(config.hidden_sizes)
        self.hidden_states_norms = nn.ModuleDict({
            stage: ConvNextLayerNorm(c, eps=NORM_EPS, data_format="channels_first")
            for stage, c in zip(config.out_features, backbone_channels(config))
        })
        self.post_init()

    # transformers' backbone attributes: the stages come from the config, as the norms were built
    @property
    def out_features(self) -> list[str]:
        return self.config.out_features

    @property
    def out_indices(self) -> list[int]:
        return self.config.out_indices

    @property
    def out_feature_channels(self) -> dict[str, int]:
        return dict(zip(self.stage_names, self.num_features))

    @property
    def channels(self) -> list[int]:
        return [self.out_feature_channels[stage] for stage in self.out_features]

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: Optional[bool] = None,
                return_dict: Optional[bool] = None) -> Union[tuple, BackboneOutput]:
        output_hidden_states, return_dict = self._output_flags(output_hidden_states, return_dict)
        _, hidden_states = self.encoder(self.embeddings(pixel_values), output_hidden_states=True)
        feature_maps = tuple(self.hidden_states_norms[stage](h)
                             for stage, h in zip(self.stage_names, hidden_states) if stage in self.out_features)
        out = BackboneOutput(nchw_contiguous(feature_maps), nchw_contiguous(hidden_states) if output_hidden_states else None)
        return out if return_dict else out.to_tuple()


# ConvNeXt V2: the same modules; the config's model_type switches layer scale for GRN.
class ConvNextV2PreTrainedModel(ConvNextPreTrainedModel):
    config_class = ConvNextV2Config
    base_model_prefix = "convnextv2"


class ConvNextV2Model(ConvNextV2PreTrainedModel, ConvNextModel):
    pass


class ConvNextV2ForImageClassification(ConvNextV2PreTrainedModel, ConvNextForImageClassification):
    trunk_class = ConvNextV2Model


class ConvNextV2Backbone(ConvNextV2PreTrainedModel, ConvNextBackbone):
    pass

"""ConvNeXt V1 and V2 in PyTorch, with transformers' module names (they are the checkpoint format).

Read a block top to bottom against Fig. 4 of the paper: 7x7 depthwise conv -> LayerNorm ->
1x1 expand (Linear, 4x) -> GELU -> [GRN, V2] -> 1x1 project (Linear) -> [layer scale, V1] ->
drop path -> residual add. Tensors between modules are NCHW; a block works channels-last inside
so that the 1x1 convs are plain matrix multiplies.

``convnext_tf/modeling.py`` is the Keras translation of this file, class for class. The fast CPU
form of the block's Linears and the trunk's memory layout live in ``fused.py`` (the stem hands its
input to the trunk's layout, returned maps leave in transformers' NCHW-contiguous layout), deployment
in ``export.py``. torch.fx traces one choice of the optional arguments, given as ``concrete_args``.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from convnext_common.architecture import (
    DWCONV_KERNEL, GRN_EPS, MLP_RATIO, NORM_EPS, backbone_channels, infer_problem_type, stage_specs, uses_grn,
)
from convnext_common.backbone import BackboneAPI
from convnext_common.config import ConvNextConfig, ConvNextV2Config
from convnext_common.masked_image import NORM_PIX_EPS, check_masked_image_config, num_kept, patch_grid, total_stride
from convnext_common.dinov3 import (
    DINOv3ConvNextConfig, block_layer_scale, file_names, from_dinov3_name, to_dinov3_name,
)

from . import fused
from .activations import get_activation
from .hub import PreTrainedMixin
from .outputs import (
    BackboneOutput, BaseModelOutputWithPoolingAndNoAttention, ImageClassifierOutputWithNoAttention,
    MaskedImageModelingOutput,
)


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

    def forward(self, x: torch.Tensor, visible: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``visible`` (B, H, W, 1), 1 at the sites that exist (FCMAE's masked trunk): the norms are
        then taken over the visible sites of the whole batch, as the official sparse GRN takes them
        over every row of its sparse tensor; the output at other sites is meaningless."""
        # float32 statistics: the sum of squares over H*W overflows float16.
        if visible is None:
            g = torch.linalg.vector_norm(x.float(), ord=2, dim=(1, 2), keepdim=True)
        else:
            g = torch.linalg.vector_norm((x * visible).float(), ord=2, dim=(0, 1, 2), keepdim=True)
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
        pixel_values = fused.to_trunk_layout(pixel_values)  # the trunk's memory layout; shapes stay NCHW
        return self.layernorm(self.patch_embeddings(pixel_values))


def upsample_patch_mask(mask: torch.Tensor, scale: int) -> torch.Tensor:
    """A (B, 1, rows, cols) patch mask at ``scale`` times its resolution (each patch a scale x scale square)."""
    return mask.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3) if scale > 1 else mask


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

    def forward(self, hidden_states: torch.Tensor, visible: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``visible`` (B, 1, H, W), 1 at the sites that exist (FCMAE's masked trunk, where the input is
        zero at the others): the block then computes what the official sparse block computes at the
        visible sites (GRN statistics from them only) and leaves zeros elsewhere."""
        residual = hidden_states
        x = self.dwconv(hidden_states)
        x = x.permute(0, 2, 3, 1)  # NCHW -> NHWC
        x = self.layernorm(x)
        # self.act(self.pwconv1(x)) and self.pwconv2(x); one oneDNN call each where that is
        # provably the same computation (no-grad CPU inference on unmodified modules, see fused.py)
        x = fused.linear_act(self.pwconv1, self.act, x)
        visible_nhwc = visible.permute(0, 2, 3, 1) if visible is not None else None
        if self.grn is not None:
            x = self.grn(x) if visible_nhwc is None else self.grn(x, visible_nhwc)
        x = fused.linear_act(self.pwconv2, None, x)
        if self.layer_scale_parameter is not None:
            x = self.layer_scale_parameter * x
        if visible_nhwc is not None:
            x = x * visible_nhwc  # the removed sites stay zero
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

    def forward(self, hidden_states: torch.Tensor, visible_patches: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``visible_patches`` (B, 1, rows, cols) of FCMAE's patch grid (1 = visible): every output at a
        removed site is discarded (zero), as the official sparse stage computes none there."""
        if visible_patches is None:
            return self.layers(self.downsampling_layer(hidden_states))
        hidden_states = self.downsampling_layer(hidden_states)
        visible = upsample_patch_mask(visible_patches, hidden_states.shape[-2] // visible_patches.shape[-2])
        hidden_states = hidden_states * visible
        for layer in self.layers:
            hidden_states = layer(hidden_states, visible)
        return hidden_states


class ConvNextEncoder(nn.Module):
    """The stages in order; optionally returns every intermediate map (NCHW here)."""

    def __init__(self, config: ConvNextConfig):
        super().__init__()
        self.stages = nn.ModuleList([
            ConvNextStage(config, s.in_channels, s.out_channels, s.stride, s.depth, s.drop_path_rates)
            for s in stage_specs(config)
        ])

    def forward(self, hidden_states: torch.Tensor, output_hidden_states: bool = False,
                visible_patches: Optional[torch.Tensor] = None):
        all_hidden_states = None
        if output_hidden_states:
            recorded, hidden_states = fused.record_map(hidden_states)
            all_hidden_states = (recorded,)
        for stage in self.stages:
            hidden_states = stage(hidden_states) if visible_patches is None else stage(hidden_states, visible_patches)
            if output_hidden_states:
                recorded, hidden_states = fused.record_map(hidden_states)
                all_hidden_states += (recorded,)
        return hidden_states, all_hidden_states


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
        if config._attn_implementation is None:
            config._attn_implementation = "eager"  # as transformers records it for a model without attention
        self.config = config

    def _output_flags(self, output_hidden_states: Optional[bool], return_dict: Optional[bool]) -> tuple[bool, bool]:
        """The call's flags, the config's where the call leaves them None (as transformers). torch.fx
        traces one choice of them: give it as ``concrete_args``."""
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if return_dict is None:
            return_dict = self.config.use_return_dict
        return bool(output_hidden_states), bool(return_dict)

    # --- transformers' generic model API --------------------------------------------------------------
    supports_gradient_checkpointing = False  # as transformers' ConvNeXt
    # read by code written for transformers' loading; None as on transformers' ConvNeXt (nothing to skip or pin)
    _keys_to_ignore_on_load_missing: Optional[list[str]] = None
    _keys_to_ignore_on_load_unexpected: Optional[list[str]] = None
    _keys_to_ignore_on_save: Optional[list[str]] = None
    _keep_in_fp32_modules: Optional[list[str]] = None

    @classmethod
    def _can_set_attn_implementation(cls) -> bool:
        return True  # transformers' answer for a model without attention layers ("eager" is the one choice)

    def set_attn_implementation(self, attn_implementation: Union[str, dict]) -> None:
        """As transformers: ``"eager"`` is the only implementation a model without attention takes."""
        if isinstance(attn_implementation, dict):
            attn_implementation = attn_implementation.get("", "eager")
        if attn_implementation != "eager":
            if attn_implementation == "sdpa" or str(attn_implementation).startswith("flash_attention"):
                raise ValueError(f"{type(self).__name__} does not support attn_implementation="
                                 f"{attn_implementation!r}: it has no attention layers (only 'eager')")
            raise ValueError(f'Specified `attn_implementation="{attn_implementation}"` is not supported. '
                             'The only possible arguments are `attn_implementation="eager"`.')
        self.config._attn_implementation = "eager"

    @classmethod
    def _from_config(cls, config: ConvNextConfig, dtype: Optional[torch.dtype] = None,
                     torch_dtype: Optional[torch.dtype] = None, attn_implementation: Optional[str] = None):
        """A fresh model for ``config`` as transformers' ``_from_config``: ``dtype`` (or
        ``torch_dtype``) is the parameters' dtype; there is no attention, so only ``"eager"``
        (or None) is an attention implementation it takes."""
        if attn_implementation not in (None, "eager"):
            raise ValueError(f"{cls.__name__} has no attention layers: attn_implementation={attn_implementation!r} "
                             "is not supported (only 'eager')")
        dtype = dtype if dtype is not None else torch_dtype
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        if dtype is None:
            return cls(config)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            return cls(config)
        finally:
            torch.set_default_dtype(previous)

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
        elif isinstance(module, ConvNextV2MaskedImageDecoder):
            nn.init.normal_(module.mask_token, std=self.config.initializer_range)

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
        out = BaseModelOutputWithPoolingAndNoAttention(fused.to_output_layout(last_hidden_state), pooled_output,
                                                       hidden_states)
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
        output_hidden_states, return_dict = self._output_flags(output_hidden_states, return_dict)
        outputs = self.base_model(pixel_values, output_hidden_states=output_hidden_states, return_dict=True)
        logits = self.classifier(outputs.pooler_output)
        loss = classification_loss(logits, labels, self.config) if labels is not None else None
        out = ImageClassifierOutputWithNoAttention(loss, logits, outputs.hidden_states)
        return out if return_dict else out.to_tuple()


class ConvNextBackbone(BackboneAPI, ConvNextPreTrainedModel):
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
        # transformers' backbone attributes (BackboneAPI): the config's selection, changeable on the model
        self._init_backbone_api(config.out_features, config.out_indices)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: Optional[bool] = None,
                return_dict: Optional[bool] = None) -> Union[tuple, BackboneOutput]:
        output_hidden_states, return_dict = self._output_flags(output_hidden_states, return_dict)
        _, hidden_states = self.encoder(self.embeddings(pixel_values), output_hidden_states=True)
        feature_maps = tuple(self.hidden_states_norms[stage](h)
                             for stage, h in zip(self.stage_names, hidden_states) if stage in self.out_features)
        out = BackboneOutput(tuple(fused.to_output_layout(f) for f in feature_maps),
                             hidden_states if output_hidden_states else None)
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



# FCMAE pre-training (ConvNeXt V2's masked autoencoder): the V2 trunk, run on the visible patches only,
# and the official dense decoder. See docs/pretraining.md.
def patchify(pixel_values: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, num_patches, patch_size**2 * C): patches row-major over the grid, each one's
    pixels row by row with the channels innermost (the official ``patchify`` order)."""
    b, c, h, w = pixel_values.shape
    x = pixel_values.reshape(b, c, h // patch_size, patch_size, w // patch_size, patch_size)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch_size) * (w // patch_size), patch_size**2 * c)


def unpatchify(patches: torch.Tensor, patch_size: int, height: int, width: int) -> torch.Tensor:
    """The inverse of :func:`patchify`: (B, num_patches, patch_size**2 * C) -> (B, C, height, width)."""
    b, _, d = patches.shape
    c, rows, cols = d // patch_size**2, height // patch_size, width // patch_size
    x = patches.reshape(b, rows, cols, patch_size, patch_size, c)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, c, height, width)


def masked_patch_loss(pixel_values: torch.Tensor, logits: torch.Tensor, removed: torch.Tensor, patch_size: int,
                      norm_pix_loss: bool) -> torch.Tensor:
    """The official FCMAE loss (float32): each patch's mean squared error, averaged over the removed
    patches; with ``norm_pix_loss`` each target patch is first normalised by its own mean and
    (unbiased) variance + 1e-6. ``removed`` (B, num_patches), 1 = removed."""
    target = patchify(pixel_values.float(), patch_size)
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + NORM_PIX_EPS).sqrt()
    per_patch = (logits.float() - target).pow(2).mean(dim=-1)
    removed = removed.float()
    return (per_patch * removed).sum() / removed.sum().clamp(min=1.0)


def random_patch_mask(batch_size: int, num_patches: int, mask_ratio: float,
                      generator: Optional[torch.Generator] = None, device=None) -> torch.Tensor:
    """The official ``gen_random_mask``: per image, the ``int(L * (1 - mask_ratio))`` patches with the
    smallest Gaussian noise stay visible. Returns (B, num_patches) bool, True = removed."""
    noise_device = generator.device if generator is not None else device
    noise = torch.randn(batch_size, num_patches, generator=generator, device=noise_device)
    rank = torch.argsort(torch.argsort(noise, dim=1), dim=1)
    return (rank >= num_kept(num_patches, mask_ratio)).to(device)


class ConvNextV2MaskedImageDecoder(nn.Module):
    """FCMAE's dense decoder: a 1x1 conv to ``decoder_hidden_size``, the mask token at removed
    patches, ``decoder_num_hidden_layers`` V2 blocks, and a 1x1 conv to each patch's pixels.
    (B, hidden_sizes[-1], rows, cols) -> (B, patch_size**2 * num_channels, rows, cols)."""

    def __init__(self, config: ConvNextV2Config):
        super().__init__()
        dim = config.decoder_hidden_size
        self.proj = nn.Conv2d(config.hidden_sizes[-1], dim, kernel_size=1)
        self.mask_token = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.layers = nn.Sequential(*[ConvNextLayer(config, dim) for _ in range(config.decoder_num_hidden_layers)])
        self.pred = nn.Conv2d(dim, total_stride(config) ** 2 * config.num_channels, kernel_size=1)

    def forward(self, hidden_states: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
        """``removed`` (B, 1, rows, cols), 1 = removed."""
        x = self.proj(hidden_states)
        x = x * (1.0 - removed) + self.mask_token * removed
        return self.pred(self.layers(x))


class ConvNextV2ForMaskedImageModeling(ConvNextV2PreTrainedModel):
    """FCMAE pre-training: the V2 trunk (``convnextv2.``, the names of ConvNextV2Model, so a trained
    folder loads as any V2 model) sees only the visible patches, and the decoder reconstructs the
    removed ones. Equal to the official sparse forward (facebookresearch/ConvNeXt-V2,
    ``models/fcmae.py``), computed densely: removed sites are zero wherever a convolution reads them
    and every output there is discarded, so norms and GRN take their statistics from visible sites only.

    ``pixel_values`` (B, C, H, W), H and W multiples of the patch size (the trunk's stride, 32);
    ``bool_masked_pos`` (B, num_patches), True = removed, row-major over the (H/32, W/32) grid, or
    None for a random mask with ``config.mask_ratio`` (``generator`` makes it reproducible).
    """

    def __init__(self, config: ConvNextV2Config):
        super().__init__(config)
        check_masked_image_config(config)
        self.convnextv2 = ConvNextV2Model(config)
        self.decoder = ConvNextV2MaskedImageDecoder(config)
        self.patch_size = total_stride(config)
        self.post_init()
        # The pooled norm takes no part in pre-training: frozen, so that optimizers and DDP see no
        # parameter without a gradient (it is saved, and a fine-tuned model trains it).
        self.convnextv2.layernorm.requires_grad_(False)

    @property
    def base_model(self) -> ConvNextV2Model:
        return self.convnextv2

    def random_mask(self, batch_size: int, num_patches: int, generator: Optional[torch.Generator] = None,
                    device=None) -> torch.Tensor:
        """(B, num_patches) bool, True = removed: ``config.mask_ratio`` of the patches of each image."""
        return random_patch_mask(batch_size, num_patches, self.config.mask_ratio, generator, device)

    def forward(self, pixel_values: torch.Tensor, bool_masked_pos: Optional[torch.Tensor] = None,
                output_hidden_states: Optional[bool] = None, return_dict: Optional[bool] = None,
                generator: Optional[torch.Generator] = None) -> Union[tuple, MaskedImageModelingOutput]:
        output_hidden_states, return_dict = self._output_flags(output_hidden_states, return_dict)
        check_pixel_values(pixel_values, self.config.num_channels)
        batch, _, height, width = pixel_values.shape
        rows, cols = patch_grid(self.config, height, width)
        if bool_masked_pos is None:
            bool_masked_pos = self.random_mask(batch, rows * cols, generator, pixel_values.device)
        elif tuple(bool_masked_pos.shape) != (batch, rows * cols):
            raise ValueError(f"bool_masked_pos must be (batch, num_patches) = ({batch}, {rows * cols}) for "
                             f"{height}x{width} images, got {tuple(bool_masked_pos.shape)}")
        removed = bool_masked_pos.to(device=pixel_values.device, dtype=pixel_values.dtype)
        removed_grid = removed.reshape(batch, 1, rows, cols)
        visible = 1.0 - removed_grid

        trunk = self.base_model
        embeddings = trunk.embeddings(pixel_values)
        embeddings = embeddings * upsample_patch_mask(visible, embeddings.shape[-2] // rows)
        last_hidden_state, hidden_states = trunk.encoder(embeddings, bool(output_hidden_states),
                                                         visible_patches=visible)
        pred = self.decoder(last_hidden_state, removed_grid)
        logits = pred.flatten(2).transpose(1, 2)
        loss = masked_patch_loss(pixel_values, logits, removed, self.patch_size, self.config.norm_pix_loss)
        out = MaskedImageModelingOutput(loss, logits, removed, hidden_states)
        return out if return_dict else out.to_tuple()

    def unpatchify(self, logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The reconstruction as images: (B, num_patches, patch_size**2 * C) -> (B, C, height, width)."""
        return unpatchify(logits, self.patch_size, height, width)
# DINOv3's ConvNeXt (transformers' DINOv3ConvNext*): the V1 stem, stages and blocks above, every norm
# with config.layer_norm_eps, token outputs, and transformers' DINOv3 checkpoint names. The modules
# keep their ConvNeXt names; state_dict() and load_state_dict() speak transformers' names.
def _dinov3_state_dict_names(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    """state_dict hook: this model's entries under transformers' DINOv3 names, in place and in order
    (a parent module passes its own dict and ignores a returned one)."""
    own = [k for k in state_dict if k.startswith(prefix)]
    values = [state_dict.pop(k) for k in own]
    for k, v in zip(own, values):
        state_dict[prefix + to_dinov3_name(k[len(prefix):])] = v


def _dinov3_load_names(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """load_state_dict pre-hook: transformers' DINOv3 names back to the modules' names."""
    for k in [k for k in state_dict if k.startswith(prefix)]:
        ours = prefix + from_dinov3_name(k[len(prefix):])
        if ours != k:
            state_dict[ours] = state_dict.pop(k)


class DINOv3ConvNextPreTrainedModel(ConvNextPreTrainedModel):
    config_class = DINOv3ConvNextConfig
    base_model_prefix = "model"

    def __init__(self, config: DINOv3ConvNextConfig):
        super().__init__(config)
        self._register_state_dict_hook(_dinov3_state_dict_names)
        self.register_load_state_dict_pre_hook(_dinov3_load_names)

    def load_numpy_state_dict(self, state, *args, **kwargs) -> None:
        super().load_numpy_state_dict(file_names(state), *args, **kwargs)

    def _build_trunk(self) -> None:
        """The ConvNeXt stem and stages, every norm with ``layer_norm_eps`` as in DINOv3."""
        trunk = self.config.copy(layer_scale_init_value=block_layer_scale(self.config))
        self.embeddings = ConvNextEmbeddings(trunk)
        self.encoder = ConvNextEncoder(trunk)
        for module in (self.embeddings, self.encoder):
            for norm in module.modules():
                if isinstance(norm, ConvNextLayerNorm):
                    norm.eps = self.config.layer_norm_eps

    def _trunk(self, pixel_values: torch.Tensor, output_hidden_states: bool):
        """The last map and, if asked, transformers' DINOv3 hidden states: the input pixels, then each
        stage's map."""
        last, hidden_states = self.encoder(self.embeddings(pixel_values), output_hidden_states)
        if hidden_states is not None:
            hidden_states = (pixel_values,) + hidden_states[1:]
        return last, hidden_states


class DINOv3ConvNextModel(DINOv3ConvNextPreTrainedModel):
    """The DINOv3 trunk and its token outputs.

    ``pixel_values`` (B, num_channels, H, W) -> ``last_hidden_state`` (B, 1 + h*w, C): the mean of the
    last (B, C, h, w) map, then its positions row by row, all through the final LayerNorm;
    ``pooler_output`` (B, C) its first token; ``hidden_states`` the pixels and each stage's map (NCHW).
    """

    def __init__(self, config: DINOv3ConvNextConfig):
        super().__init__(config)
        self._build_trunk()
        self.layernorm = ConvNextLayerNorm(config.hidden_sizes[-1], eps=config.layer_norm_eps)
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: Optional[bool] = None,
                return_dict: Optional[bool] = None) -> Union[tuple, BaseModelOutputWithPoolingAndNoAttention]:
        output_hidden_states, return_dict = self._output_flags(output_hidden_states, return_dict)
        last, hidden_states = self._trunk(pixel_values, bool(output_hidden_states))
        tokens = last.flatten(2).transpose(1, 2)  # (B, h*w, C), row by row
        tokens = self.layernorm(torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1))
        out = BaseModelOutputWithPoolingAndNoAttention(tokens, tokens[:, 0], hidden_states)
        return out if return_dict else out.to_tuple()


class DINOv3ConvNextBackbone(DINOv3ConvNextPreTrainedModel):
    """Maps for dense heads, as transformers' DINOv3ConvNextBackbone: the ``out_features`` entries of
    the hidden states ("stem" is the input pixels, "stage{i}" a stage's map), without extra norms.
    ``feature_maps[i]``: (B, channels[i], H / stride_i, W / stride_i), NCHW."""

    def __init__(self, config: DINOv3ConvNextConfig):
        super().__init__(config)
        self._build_trunk()
        self.stage_names = list(config.stage_names)
        self.out_features = config.out_features
        num_features = [config.num_channels] + list(config.hidden_sizes)
        self.channels = [num_features[i] for i in config.out_indices]
        self.post_init()

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: Optional[bool] = None,
                return_dict: Optional[bool] = None) -> Union[tuple, BackboneOutput]:
        output_hidden_states, return_dict = self._output_flags(output_hidden_states, return_dict)
        _, hidden_states = self._trunk(pixel_values, True)
        feature_maps = tuple(h for stage, h in zip(self.stage_names, hidden_states) if stage in self.out_features)
        out = BackboneOutput(feature_maps, hidden_states if output_hidden_states else None)
        return out if return_dict else out.to_tuple()

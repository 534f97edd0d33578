"""ConvNeXt V1 and V2 in Keras 3 on any backend (keras.ops and Keras layers), with transformers' layer names
(they are the checkpoint format; ``stages.0`` is the layer ``stages_0`` here, see hub.py).

Read a block top to bottom against Fig. 4 of the paper: 7x7 depthwise conv -> LayerNorm ->
1x1 expand (Dense, 4x) -> GELU -> [GRN, V2] -> 1x1 project (Dense) -> [layer scale, V1] ->
drop path -> residual add. Tensors between layers are NHWC (channels-last); a block works on rows
of channels inside so that the 1x1 convs are plain matrix multiplies. The models take NCHW
``pixel_values`` like transformers and return NCHW maps, transposing once at the input and once per
returned map; ``data_format="channels_last"`` takes and returns NHWC instead.

``convnext_pt/modeling.py`` is the PyTorch original of this file, class for class. The fast CPU
forms live in ``fused.py``, the SavedModel endpoint in ``serving.py``, Keras' view of the outputs in
``outputs.py``. DINOv3's ConvNeXt (last) is built from the same stem, stages and blocks (see
``convnext_common/dinov3.py``).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import keras
from keras import ops

from convnext_common.architecture import (
    DWCONV_KERNEL, GRN_EPS, MLP_RATIO, NORM_EPS, backbone_channels, infer_problem_type, stage_specs, uses_grn,
)
from convnext_common.backbone import BackboneAPI
from convnext_common.checkpoints.formats.tf_h5 import tf_model_name
from convnext_common.checkpoints.formats.files import PT_WEIGHT_FILES, save_sharded_safetensors
from convnext_common.config import ConvNextConfig, ConvNextV2Config, config_class_for
from convnext_common.masked_image import NORM_PIX_EPS, check_masked_image_config, num_kept, patch_grid, total_stride
from convnext_common.dinov3 import DINOv3ConvNextConfig, block_layer_scale, file_names, to_dinov3_name

from . import fused, quantization
from .activations import get_activation
from .hub import TFPreTrainedMixin, building_for_checkpoint, keras_layer_name
from .outputs import (
    OUTPUT_CLASSES, BackboneOutput, BaseModelOutputWithPoolingAndNoAttention, ImageClassifierOutputWithNoAttention,
    MaskedImageModelingOutput,
)

DATA_FORMATS = ("channels_first", "channels_last")
#: the layers ``enable_lora`` adapts by default: each block's two 1x1 convs
LORA_TARGETS = ("pwconv1", "pwconv2")
#: the .keras config field recording ``enable_lora``'s arguments
LORA_RECORD_KEY = "keras_lora"
_PACKAGE = "convnext_tf"


def _check_data_format(data_format: str) -> str:
    if data_format not in DATA_FORMATS:
        raise ValueError(f"data_format must be channels_first or channels_last, got {data_format!r}")
    return data_format


def _kernel_initializer(config: ConvNextConfig) -> keras.initializers.Initializer:
    """transformers' PyTorch init for conv and dense kernels: N(0, initializer_range); biases start at 0.
    Zeros while ``from_pretrained`` builds a model that a checkpoint fills next (``hub.py``)."""
    if building_for_checkpoint():
        return keras.initializers.Zeros()
    return keras.initializers.RandomNormal(stddev=config.initializer_range)


def _as_config(config: Union[ConvNextConfig, dict]) -> ConvNextConfig:
    if isinstance(config, dict):  # as stored by get_config()
        return config_class_for(config.get("model_type", "convnext")).from_dict(config)
    return config


class _ConfiguredLayer(keras.layers.Layer):
    """A layer built from a ConvNextConfig; serialises the config as its dict."""

    def __init__(self, config: Union[ConvNextConfig, dict], **kwargs):
        super().__init__(**kwargs)
        self.config = _as_config(config)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "config": self.config.to_dict()}


def layer_norm_float32(x, gamma, beta, eps: float, axis: int = -1):
    """LayerNorm over ``axis`` with float32 statistics and parameters whatever the input dtype
    (output in the input's dtype); on a oneDNN CPU graph as one kernel (see fused.py)."""
    dtype = x.dtype
    x = fused.layer_norm(ops.cast(x, "float32"), ops.cast(gamma, "float32"), ops.cast(beta, "float32"), eps, axis)
    return ops.cast(x, dtype)


def require_tensorflow_backend(what: str, error: type[Exception] = RuntimeError) -> None:
    """A SavedModel (and TFLite from it) is traced by TensorFlow: a clear error on another backend."""
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise error(
            f"{what} writes a TensorFlow SavedModel and needs KERAS_BACKEND=tensorflow; this process runs Keras on "
            f"{backend!r}: save the model (save_pretrained or .keras, both load on every backend) and export it "
            "in a process started with KERAS_BACKEND=tensorflow (or run `convnext export`)")


def _strided(size: Optional[int], stride: int) -> Optional[int]:
    return None if size is None else size // stride


def _nhwc_map(shape, channels: int, stride: int = 1) -> tuple:
    """The NHWC shape of a map of ``channels`` from an NHWC input shape, ``stride`` times smaller."""
    shape = tuple(shape) if shape is not None else (None, None, None, None)
    return (shape[0], _strided(shape[1], stride), _strided(shape[2], stride), channels)


def check_pixel_values(pixel_values, num_channels: int, data_format: str) -> None:
    """A clear error for input of the wrong rank or channel count."""
    channel_axis = 1 if data_format == "channels_first" else -1
    shape = tuple(pixel_values.shape)
    if len(shape) != 4 or (shape[channel_axis] is not None and shape[channel_axis] != num_channels):
        layout = ("(batch, {c}, height, width)" if channel_axis == 1 else "(batch, height, width, {c})")
        raise ValueError(f"pixel_values must be {layout.format(c=num_channels)} "
                         f"(data_format={data_format!r}), got {shape}")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TFConvNextLayerNorm(keras.layers.Layer):
    """LayerNorm over channels for NHWC (``channels_last``) or NCHW (``channels_first``) tensors.

    Statistics are computed in float32 whatever the input dtype: in float16 the variance of
    large activations overflows. The variables (``gamma``, ``beta``) stay float32 under mixed
    precision; the output has the input's dtype.
    """

    def __init__(self, normalized_shape: int, eps: float = NORM_EPS, data_format: str = "channels_last", **kwargs):
        kwargs["autocast"] = False  # keep float32 variables; inputs are cast explicitly in call()
        super().__init__(**kwargs)
        self.normalized_shape = int(normalized_shape)
        self.eps = float(eps)
        self.data_format = _check_data_format(data_format)

    def build(self, input_shape=None):
        self.gamma = self.add_weight(shape=(self.normalized_shape,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(self.normalized_shape,), initializer="zeros", name="beta")

    def call(self, x):
        axis = -1 if self.data_format == "channels_last" else 1
        return layer_norm_float32(x, self.gamma, self.beta, self.eps, axis)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("autocast", None)
        return {**config, "normalized_shape": self.normalized_shape, "eps": self.eps,
                "data_format": self.data_format}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TFConvNextDropPath(keras.layers.Layer):
    """Stochastic depth: drop the whole residual branch of a sample with probability ``drop_prob``."""

    def __init__(self, drop_prob: float = 0.0, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.drop_prob = float(drop_prob)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if self.drop_prob > 0 else None

    def call(self, x, training=None):
        if self.drop_prob == 0.0 or not training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        mask = ops.floor(keep + keras.random.uniform(shape, dtype=x.dtype, seed=self.seed_generator))
        return x * mask / keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "drop_prob": self.drop_prob, "seed": self.seed}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TFConvNextV2GRN(keras.layers.Layer):
    """Global Response Normalization (ConvNeXt V2) on NHWC tensors: each channel's spatial L2 norm,
    divided by the mean norm over channels, re-weights the features (``weight``/``bias`` (1, 1, 1, C))."""

    def __init__(self, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)

    def build(self, input_shape=None):
        self.weight = self.add_weight(shape=(1, 1, 1, self.dim), initializer="zeros", name="weight")
        self.bias = self.add_weight(shape=(1, 1, 1, self.dim), initializer="zeros", name="bias")

    def call(self, x, visible=None):
        """``visible`` (B, H, W, 1), 1 at the sites that exist (FCMAE's masked trunk): the norms are
        then taken over the visible sites of the whole batch, as the official sparse GRN takes them
        over every row of its sparse tensor; the output at other sites is meaningless."""
        # float32 statistics: the sum of squares over H*W overflows float16.
        x32 = ops.cast(x, "float32")
        if visible is None:
            squares = ops.sum(ops.square(x32), axis=(1, 2), keepdims=True)
        else:
            squares = ops.sum(ops.square(x32 * ops.cast(visible, "float32")), axis=(0, 1, 2), keepdims=True)
        # The norm of an all-zero channel is 0 with gradient 0, as torch.linalg.vector_norm's: sqrt's
        # own gradient there is inf, which makes the gradients NaN (a ReLU channel can be all zero).
        nonzero = squares > 0
        g = ops.where(nonzero, ops.sqrt(ops.where(nonzero, squares, 1.0)), 0.0)
        n = ops.cast(g / (ops.mean(g, axis=-1, keepdims=True) + GRN_EPS), x.dtype)
        return self.weight * (x * n) + self.bias + x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dim": self.dim}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TFConvNextEmbeddings(_ConfiguredLayer):
    """The paper's "patchify" stem: a patch_size x patch_size conv with the same stride, then LayerNorm.
    (B, num_channels, H, W) (NHWC with ``data_format="channels_last"``) -> NHWC (B, H/patch, W/patch, C0)."""

    def __init__(self, config: ConvNextConfig, data_format: str = "channels_first", **kwargs):
        super().__init__(config, **kwargs)
        config = self.config
        self.patch_embeddings = keras.layers.Conv2D(
            config.hidden_sizes[0], kernel_size=config.patch_size, strides=config.patch_size,
            kernel_initializer=_kernel_initializer(config), name="patch_embeddings", dtype=self.dtype_policy)
        self.layernorm = TFConvNextLayerNorm(config.hidden_sizes[0], eps=NORM_EPS, name="layernorm",
                                             dtype=self.dtype_policy)
        self.num_channels = config.num_channels
        self.data_format = _check_data_format(data_format)

    def build(self, input_shape=None):
        self.patch_embeddings.build((None, None, None, self.num_channels))
        self.layernorm.build((None, None, None, self.config.hidden_sizes[0]))

    def compute_output_shape(self, input_shape):
        if input_shape is not None and self.data_format == "channels_first":
            input_shape = (input_shape[0], input_shape[2], input_shape[3], input_shape[1])
        return _nhwc_map(input_shape, self.config.hidden_sizes[0], self.config.patch_size)

    def call(self, pixel_values):
        check_pixel_values(pixel_values, self.num_channels, self.data_format)
        if self.data_format == "channels_first":
            pixel_values = ops.transpose(pixel_values, (0, 2, 3, 1))  # the only input transpose
        return self.layernorm(self.patch_embeddings(pixel_values))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format}


def upsample_patch_mask(mask, scale: int):
    """A (B, rows, cols, 1) patch mask at ``scale`` times its resolution (each patch a scale x scale square)."""
    return ops.repeat(ops.repeat(mask, scale, axis=1), scale, axis=2) if scale > 1 else mask


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TFConvNextLayer(_ConfiguredLayer):
    """One ConvNeXt block, Fig. 4 of the paper: dwconv 7x7 -> LayerNorm -> pwconv1 (4x) -> GELU ->
    [GRN, V2] -> pwconv2 -> [layer scale, V1] -> drop path -> residual. NHWC (B, H, W, C) -> (B, H, W, C)."""

    def __init__(self, config: ConvNextConfig, dim: int, drop_path: float = 0.0, **kwargs):
        super().__init__(config, **kwargs)
        config = self.config
        self.dim = int(dim)
        self.drop_path_rate = float(drop_path)
        init = _kernel_initializer(config)
        # TensorFlow's own depthwise kernel, not the grouped Conv2D of transformers' TF model and
        # keras.applications (a generic grouped convolution, far slower on CPU, forward and
        # backward); its kernel layout is converted at load and save (hub.py, OWN_LAYOUTS).
        self.dwconv = keras.layers.DepthwiseConv2D(DWCONV_KERNEL, padding="same", depthwise_initializer=init,
                                                   name="dwconv", dtype=self.dtype_policy)
        self.layernorm = TFConvNextLayerNorm(dim, eps=NORM_EPS, name="layernorm", dtype=self.dtype_policy)
        self.pwconv1 = keras.layers.Dense(MLP_RATIO * dim, kernel_initializer=init, name="pwconv1",
                                          dtype=self.dtype_policy)
        self.act = get_activation(config.hidden_act, name="act", dtype=self.dtype_policy)
        self.grn = (TFConvNextV2GRN(MLP_RATIO * dim, name="grn", dtype=self.dtype_policy)
                    if uses_grn(config) else None)
        self.pwconv2 = keras.layers.Dense(dim, kernel_initializer=init, name="pwconv2", dtype=self.dtype_policy)
        self.layer_scale_init_value = float(config.layer_scale_init_value)
        self.drop_path = TFConvNextDropPath(drop_path, name="drop_path", dtype=self.dtype_policy)

    def build(self, input_shape=None):
        # Created first, as transformers does, so that Keras lists it before the sub-layers' weights.
        scale = self.layer_scale_init_value
        self.layer_scale_parameter = (
            self.add_weight(shape=(self.dim,), initializer=keras.initializers.Constant(scale),
                            name="layer_scale_parameter") if scale > 0 else None)
        self.dwconv.build((None, None, None, self.dim))
        self.layernorm.build((None, None, None, self.dim))
        self.pwconv1.build((None, self.dim))
        self.act.build((None, MLP_RATIO * self.dim))
        if self.grn is not None:
            self.grn.build((None, None, None, MLP_RATIO * self.dim))
        self.pwconv2.build((None, MLP_RATIO * self.dim))
        self.drop_path.build((None, None, None, self.dim))

    def call(self, hidden_states, training=None, visible=None):
        """``visible`` (B, H, W, 1), 1 at the sites that exist (FCMAE's masked trunk, where the input is
        zero at the others): the block then computes what the official sparse block computes at the
        visible sites (GRN statistics from them only) and leaves zeros elsewhere."""
        residual = hidden_states
        x = fused.depthwise_conv(self.dwconv, hidden_states)  # on JAX as shifted multiply-adds (fused.py)
        shape = ops.shape(x)
        x = ops.reshape(x, (-1, self.dim))  # NHWC -> rows of channels (the PyTorch original permutes)
        x = self.layernorm(x)
        # self.act(self.pwconv1(x)) and self.pwconv2(x); on rows TensorFlow's graph optimizer fuses
        # each Dense with its bias add and activation (see fused.py)
        x = fused.linear_act(self.pwconv1, self.act, x)
        if self.grn is not None:  # GRN needs the spatial layout back: it pools over H and W
            x = ops.reshape(x, (shape[0], shape[1], shape[2], MLP_RATIO * self.dim))
            x = self.grn(x) if visible is None else self.grn(x, visible=visible)
            x = ops.reshape(x, (-1, MLP_RATIO * self.dim))
        x = fused.linear_act(self.pwconv2, None, x)
        if self.layer_scale_parameter is not None:
            x = self.layer_scale_parameter * x
        x = ops.reshape(x, shape)
        if visible is not None:
            x = x * ops.cast(visible, x.dtype)  # the removed sites stay zero
        return residual + self.drop_path(x, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dim": self.dim, "drop_path": self.drop_path_rate}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TFConvNextStage(_ConfiguredLayer):
    """The paper's separate downsampling layer (LayerNorm + 2x2 stride-2 conv), if any, then ``depth`` blocks."""

    def __init__(self, config: ConvNextConfig, in_channels: int, out_channels: int, stride: int = 2,
                 depth: int = 2, drop_path_rates: Optional[list[float]] = None, **kwargs):
        super().__init__(config, **kwargs)
        config = self.config
        self.in_channels, self.out_channels, self.stride, self.depth = in_channels, out_channels, stride, depth
        self.drop_path_rates = list(drop_path_rates or [0.0] * depth)
        if in_channels != out_channels or stride > 1:
            self.downsampling_layer = [
                TFConvNextLayerNorm(in_channels, eps=NORM_EPS, name=keras_layer_name("downsampling_layer", 0),
                                    dtype=self.dtype_policy),
                keras.layers.Conv2D(out_channels, kernel_size=stride, strides=stride,
                                    kernel_initializer=_kernel_initializer(config),
                                    name=keras_layer_name("downsampling_layer", 1),
                                    dtype=self.dtype_policy),
            ]
        else:
            self.downsampling_layer = []
        self.layers = [TFConvNextLayer(config, out_channels, self.drop_path_rates[j],
                                       name=keras_layer_name("layers", j), dtype=self.dtype_policy)
                       for j in range(depth)]

    def build(self, input_shape=None):
        if self.downsampling_layer:
            self.downsampling_layer[0].build((None, None, None, self.in_channels))
            self.downsampling_layer[1].build((None, None, None, self.in_channels))
        for layer in self.layers:
            layer.build((None, None, None, self.out_channels))

    def compute_output_shape(self, input_shape):
        return _nhwc_map(input_shape, self.out_channels, self.stride if self.downsampling_layer else 1)

    def call(self, hidden_states, training=None, visible_patches=None):
        """``visible_patches`` (B, rows, cols, 1) of FCMAE's patch grid (1 = visible): every output at a
        removed site is discarded (zero), as the official sparse stage computes none there."""
        for layer in self.downsampling_layer:
            hidden_states = layer(hidden_states)
        visible = None
        if visible_patches is not None:
            visible = upsample_patch_mask(visible_patches, hidden_states.shape[1] // visible_patches.shape[1])
            hidden_states = hidden_states * ops.cast(visible, hidden_states.dtype)
        for layer in self.layers:
            hidden_states = (layer(hidden_states, training=training) if visible is None
                             else layer(hidden_states, training=training, visible=visible))
        return hidden_states

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "in_channels": self.in_channels, "out_channels": self.out_channels,
                "stride": self.stride, "depth": self.depth, "drop_path_rates": self.drop_path_rates}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TFConvNextEncoder(_ConfiguredLayer):
    """The stages in order; optionally returns every intermediate map (NHWC here)."""

    def __init__(self, config: ConvNextConfig, **kwargs):
        super().__init__(config, **kwargs)
        self.stages = [
            TFConvNextStage(self.config, s.in_channels, s.out_channels, s.stride, s.depth, s.drop_path_rates,
                            name=keras_layer_name("stages", i), dtype=self.dtype_policy)
            for i, s in enumerate(stage_specs(self.config))
        ]

    def build(self, input_shape=None):
        for stage in self.stages:
            stage.build((None, None, None, stage.in_channels))

    def compute_output_shape(self, input_shape):
        """The last stage's map (``call`` also returns the intermediate maps when asked)."""
        for stage in self.stages:
            input_shape = stage.compute_output_shape(input_shape)
        return input_shape

    def call(self, hidden_states, output_hidden_states: bool = False, training=None, visible_patches=None):
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        for stage in self.stages:
            hidden_states = (stage(hidden_states, training=training) if visible_patches is None
                             else stage(hidden_states, training=training, visible_patches=visible_patches))
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
        return hidden_states, all_hidden_states


def _backend_neutral_compile_config(config: dict[str, Any]) -> dict[str, Any]:
    """A compile config whose ``jit_compile`` each backend resolves for itself ("auto")."""
    if not isinstance(config, dict) or "jit_compile" not in config:
        return config
    config = dict(config)
    if isinstance(config.get("config"), dict) and "jit_compile" in config["config"]:  # a serialised SerializableDict
        config["config"] = {**config["config"], "jit_compile": "auto"}
    else:
        config["jit_compile"] = "auto"
    return config


def called_as_keras_layer(args: tuple, kwargs: dict) -> bool:
    """True when a model is called on symbolic Keras tensors (a functional graph being built) or
    runs inside a ``keras.Sequential`` or functional model (the outermost layer being called)."""
    inputs = list(args[:1]) + [kwargs.get("pixel_values")]
    if any(isinstance(x, keras.KerasTensor) for x in inputs):
        return True
    from keras.src.backend.common import global_state
    from keras.src.models.functional import Functional

    context = global_state.get_global_attribute("current_call_ctx")
    return isinstance(getattr(context, "entry_layer", None), (keras.Sequential, Functional))


class TFConvNextPreTrainedModel(TFPreTrainedMixin, keras.Model):
    """Hub-layout loading/saving (see hub.py), Keras serialisation, and Keras training hooks.

    Weight init is transformers' PyTorch one, given to each layer as its initializer: kernels
    N(0, ``initializer_range``), biases 0, norms 1/0, layer scale ``layer_scale_init_value``, GRN 0.
    ``data_format``: ``"channels_first"`` (default) takes NCHW ``pixel_values`` and returns NCHW
    maps like transformers; ``"channels_last"`` takes and returns NHWC.
    """

    config_class = ConvNextConfig
    base_model_prefix = "convnext"
    main_input_name = "pixel_values"

    def __init__(self, config: ConvNextConfig, data_format: str = "channels_first", **kwargs):
        config = _as_config(config)
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        kwargs.setdefault("name", tf_model_name(type(self).__name__))  # as transformers' TF models: tf_conv_next_model
        super().__init__(**kwargs)
        config.validate()  # a config is a plain attribute bag: its values are checked where a model is built
        self.config = config
        self.data_format = _check_data_format(data_format)

    def prepare_tf_dataset(self, dataset, batch_size: int = 8, shuffle: bool = True, tokenizer=None, collate_fn=None,
                           collate_fn_args=None, drop_remainder=None, prefetch: bool = True):
        """A ``datasets.Dataset`` as a ``tf.data.Dataset`` of this model's inputs (and labels), as
        transformers' TF models provide it (see ``convnext_tf/tf_dataset.py``)."""
        from .tf_dataset import prepare_tf_dataset
        return prepare_tf_dataset(self, dataset, batch_size, shuffle, tokenizer, collate_fn, collate_fn_args,
                                  drop_remainder, prefetch)

    @classmethod
    def can_generate(cls) -> bool:
        """transformers' flag (read by its pipelines): a ConvNeXt does not generate text."""
        return False

    def _call_arguments(self, pixel_values, output_hidden_states, return_dict, **named):
        """transformers' calling conventions: a dict (or the model's input as a keyword inside it) as
        the first argument, and the config's output flags where the call leaves them None."""
        if isinstance(pixel_values, dict):
            inputs = dict(pixel_values)
            pixel_values = inputs.pop(self.main_input_name)
            output_hidden_states = inputs.pop("output_hidden_states", output_hidden_states)
            return_dict = inputs.pop("return_dict", return_dict)
            named = {k: inputs.pop(k, v) for k, v in named.items()}
            if inputs:
                raise ValueError(f"{type(self).__name__} got unknown inputs {sorted(inputs)}")
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if return_dict is None:
            return_dict = self.config.use_return_dict
        return pixel_values, bool(output_hidden_states), bool(return_dict), named

    # --- transformers' TF model API ---------------------------------------------------------------------
    @property
    def input_signature(self) -> dict[str, Any]:
        """``{"pixel_values": tf.TensorSpec}`` as transformers' TF models give it: any batch, the
        config's channels and image size, in the model's data_format. Needs TensorFlow."""
        require_tensorflow_backend("input_signature", ImportError)
        from .serving import input_signature  # TensorFlow's own types live with the endpoint

        return input_signature(self)

    @property
    def dummy_inputs(self) -> dict[str, Any]:
        """One batch of ones shaped as :attr:`input_signature` (batch 1), as transformers builds it."""
        return {name: ops.ones((1,) + tuple(spec.shape[1:]), dtype="float32")
                for name, spec in self.input_signature.items()}

    def _draw_kernels(self, variables: Sequence) -> None:
        """Give ``variables`` (kernels, FCMAE's mask token) their initial draw N(0, initializer_range)."""
        init = _kernel_initializer(self.config)
        for variable in variables:
            variable.assign(init(tuple(variable.shape), dtype=variable.dtype))

    def _serving_output_names(self) -> tuple[str, ...]:
        """The outputs the SavedModel endpoint returns (``serving.py``); the classes with an endpoint
        name theirs."""
        raise TypeError("export needs a TFConvNext(V2)Model, ForImageClassification or Backbone, "
                        f"got {type(self).__name__}")

    def _serving_outputs(self, outputs) -> dict[str, Any]:
        return {name: getattr(outputs, name) for name in self._serving_output_names()}

    def serving_output(self, output):
        """The output a serving signature returns: hidden states only where the config asks for them."""
        if "hidden_states" in output and not self.config.output_hidden_states:
            return type(output)(**{k: v for k, v in output.items() if k != "hidden_states"})
        return output

    # --- two callers: transformers-style code and Keras' graphs --------------------------------------
    def __call__(self, *args, **kwargs):
        """Called by the user or its own ``fit``/``predict``, a model returns transformers' outputs
        (``out.logits``, ``out[0]``, ``return_dict=False``). Called as a layer of a Keras graph (on a
        ``keras.Input``, inside a ``keras.Sequential`` or a functional model) without ``return_dict``,
        it returns its one main tensor (:meth:`_keras_layer_output`), as every Keras layer does, so
        that the layers, losses and metrics after it see a tensor."""
        as_layer = kwargs.get("return_dict") is None and called_as_keras_layer(args, kwargs)
        previous, self._as_keras_layer = self._as_keras_layer, as_layer
        try:
            out = super().__call__(*args, **kwargs)
        finally:
            self._as_keras_layer = previous
        if as_layer and isinstance(out, keras.KerasTensor):
            setattr(out, self._keras_layer_field, out)  # model(inputs).logits / .pooler_output, as transformers'
        return out

    _keras_layer_field = ""

    _as_keras_layer = False

    def _returned(self, out, return_dict: Optional[bool]):
        if self._as_keras_layer:
            return self._keras_layer_output(out)
        return out if return_dict or return_dict is None else out.to_tuple()

    def _keras_layer_output(self, out):
        """The tensor a Keras graph gets from this model (see ``__call__``)."""
        raise NotImplementedError

    def _maps_out(self, x):
        """An NHWC map in the model's output layout."""
        return ops.transpose(x, (0, 3, 1, 2)) if self.data_format == "channels_first" else x

    def input_shape_of(self) -> tuple:
        """The input a model takes: any batch and image size, ``num_channels`` channels."""
        c = self.config.num_channels
        return (None, c, None, None) if self.data_format == "channels_first" else (None, None, None, c)

    def build(self, input_shape=None):
        # Shapes do not depend on the image size: every variable is created here, at construction.
        for layer in self.layers:
            if not layer.built:
                layer.build(self._input_shape_of_layer(layer))

    def _input_shape_of_layer(self, layer) -> Optional[tuple]:
        if isinstance(layer, TFConvNextEmbeddings):
            return self.input_shape_of()
        if isinstance(layer, TFConvNextEncoder):
            return (None, None, None, self.config.hidden_sizes[0])
        if isinstance(layer, TFConvNextLayerNorm):  # the pooled norm
            return (None, layer.normalized_shape)
        return None  # a whole model: it builds itself

    def compute_output_spec(self, *args, **kwargs):
        # traced through call(): what a model returns depends on return_dict and on its caller
        # (see __call__), which compute_output_shape (the transformers outputs, for summary()) cannot say
        return super(keras.layers.Layer, self).compute_output_spec(*args, **kwargs)

    def _default_save_signature(self):
        # TensorFlow's SavedModel writer would trace a default endpoint from the build shape, returning
        # the output container it cannot serialise; export() writes the model's endpoint (serving.py).
        return None

    def _map_shape(self, nhwc: tuple) -> tuple:
        return (nhwc[0], nhwc[3], nhwc[1], nhwc[2]) if self.data_format == "channels_first" else nhwc

    def _trunk_shape(self, input_shape) -> tuple:
        """The NHWC shape of the last stage's map for an input of ``input_shape``."""
        return self.encoder.compute_output_shape(self.embeddings.compute_output_shape(input_shape))

    def with_preprocessing(self, image_size=None, processor=None) -> keras.Sequential:
        """This model behind its image processor as Keras layers: a Sequential taking uint8 RGB images
        (B, H, W, 3) of ``image_size`` (default ``config.image_size``); see ``preprocessing.py``."""
        from .preprocessing import with_preprocessing

        return with_preprocessing(self, image_size, processor)

    # --- LoRA -------------------------------------------------------------------------------------
    _lora: Optional[dict[str, Any]] = None

    def enable_lora(self, rank: int, target_names: Sequence[str] = LORA_TARGETS, alpha: Optional[float] = None) -> None:
        """Low-rank adapters on the blocks' 1x1 convs (Dense ``pwconv1``/``pwconv2``, as KerasHub's
        backbones' ``enable_lora``): everything else in the trunk is frozen, the adapters train, and
        a classifier's head stays trainable. ``.keras`` and ``save_pretrained`` store each adapted
        kernel merged (kernel + A·B·alpha/rank, what the model computes); a ``.keras`` file loads with
        LoRA enabled again on the merged kernels (fresh zero adapters, as Keras' Dense does),
        ``from_pretrained`` loads a plain model (call ``enable_lora`` again to go on adapting)."""
        if int(rank) < 1:
            raise ValueError(f"rank must be a positive integer, got {rank!r}")
        head = getattr(self, "classifier", None)
        targets = []
        for layer in self._flatten_layers(include_self=False):
            if layer is head:
                continue
            layer.trainable = False
            if layer.name in target_names and isinstance(layer, keras.layers.Dense):
                targets.append(layer)
        if not targets:
            raise ValueError(f"no Dense layer named {list(target_names)} below {type(self).__name__}")
        for layer in targets:
            layer.trainable = True  # its kernel is frozen by enable_lora; the bias trains, as in KerasHub
            layer.enable_lora(int(rank), lora_alpha=alpha)
        self._lora = {"rank": int(rank), "target_names": list(target_names), "alpha": alpha}

    # --- Keras serialisation --------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        config = self.config.to_dict()
        config.pop(quantization.RECORD_KEY, None)
        record = quantization.quantization_record(self)
        if record:  # which layers model.quantize() changed: from_config quantizes them again (quantization.py)
            config[quantization.RECORD_KEY] = record
        if self._lora:
            config[LORA_RECORD_KEY] = dict(self._lora)
        return {"config": config, "data_format": self.data_format, "name": self.name,
                "trainable": self.trainable, "dtype": keras.dtype_policies.serialize(self.dtype_policy)}

    @classmethod
    def from_config(cls, config: Union[ConvNextConfig, dict[str, Any]], custom_objects=None, **kwargs: Any):
        """Keras' ``from_config`` (the dict ``get_config`` returns) or transformers' (a ConvNextConfig or
        its dict: a randomly initialised model)."""
        if isinstance(config, ConvNextConfig):
            return cls(config, **kwargs)
        config = dict(config)
        if "config" not in config:  # transformers' form: a model config's to_dict()
            return cls(cls.config_class.from_dict(config), **kwargs)
        model = cls(cls.config_class.from_dict(config.pop("config")), **{**config, **kwargs})
        quantization.quantize_as_recorded(model, model.config.extra.get(quantization.RECORD_KEY), cls.__name__)
        lora = model.config.extra.pop(LORA_RECORD_KEY, None)
        if lora:
            model.enable_lora(**lora)
        return model

    # --- compiling: the backend's compiler is chosen where the model runs ---------------------------
    # Keras resolves compile(jit_compile="auto") per backend (XLA on JAX, and on TensorFlow with a
    # GPU; eager on PyTorch) and stores the resolved value with the compile arguments a .keras file
    # keeps; load_model compiles with it again, so a file saved on JAX (True) would turn on
    # torch.compile when loaded on PyTorch. A model's files therefore record "auto", and a compile
    # config read back (ours or another writer's) is resolved again on the backend that loads it;
    # compile(jit_compile=...) after loading chooses otherwise.
    def get_compile_config(self) -> dict[str, Any]:
        return _backend_neutral_compile_config(super().get_compile_config())

    def compile_from_config(self, config: dict[str, Any]) -> None:
        super().compile_from_config(_backend_neutral_compile_config(config))

    # --- Keras training: fit / evaluate / predict on the model's outputs ---------------------------
    def _keras_outputs(self, outputs):
        """What Keras' losses, metrics and ``predict`` see: a dict of the output fields."""
        return {k: v for k, v in zip(outputs.keys(), outputs.to_tuple())}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if isinstance(y_pred, OUTPUT_CLASSES):
            y_pred = self._keras_outputs(y_pred)
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, OUTPUT_CLASSES):
            y_pred = self._keras_outputs(y_pred)
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def predict_step(self, *args):
        """Keras' predict step (``(data)``; on JAX the stateless ``(state, data)``), returning what
        Keras' losses and metrics see (:meth:`_keras_outputs`) instead of the output container."""
        result = super().predict_step(*args)
        if keras.backend.backend() == "jax":  # (outputs, non-trainable variables)
            return self._keras_outputs(result[0]), result[1]
        return self._keras_outputs(result)

    def export(self, filepath, format: str = "tf_saved_model", verbose: bool = False, input_signature=None,
               **kwargs) -> None:
        """A SavedModel whose ``serve`` endpoint maps a float32 batch in the model's data_format
        (NCHW by default) to a dict of outputs (``logits`` for a classifier). ``verbose=True`` lists
        the endpoint and its captured variables, as Keras prints them by default.
        ``convnext_tf.export.export_saved_model`` writes the same and checks it against the model."""
        if format != "tf_saved_model":
            raise ValueError(f"format must be 'tf_saved_model', got {format!r}")
        require_tensorflow_backend("export()")
        from .serving import write_serving_archive  # TensorFlow code, imported when used

        write_serving_archive(self, filepath, verbose=verbose, input_signature=input_signature)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TFConvNextModel(TFConvNextPreTrainedModel):
    """The trunk: stem, stages, and a pooled, normalised feature vector.

    ``pixel_values`` (B, num_channels, H, W), H and W >= 32 ->
    ``last_hidden_state`` (B, hidden_sizes[-1], H/32, W/32) (for 4 stages, before the final norm),
    ``pooler_output`` (B, hidden_sizes[-1]).
    """

    def __init__(self, config: ConvNextConfig, data_format: str = "channels_first", **kwargs):
        super().__init__(config, data_format, **kwargs)
        self.embeddings = TFConvNextEmbeddings(self.config, data_format=self.data_format, name="embeddings",
                                               dtype=self.dtype_policy)
        self.encoder = TFConvNextEncoder(self.config, name="encoder", dtype=self.dtype_policy)
        self.layernorm = TFConvNextLayerNorm(self.config.hidden_sizes[-1], eps=self.config.layer_norm_eps,
                                             name="layernorm", dtype=self.dtype_policy)
        self.build(self.input_shape_of())

    def _serving_output_names(self) -> tuple[str, ...]:
        return ("last_hidden_state", "pooler_output")

    def call(self, pixel_values, output_hidden_states: Optional[bool] = None, return_dict: Optional[bool] = None,
             training=None) -> Union[tuple, BaseModelOutputWithPoolingAndNoAttention]:
        pixel_values, output_hidden_states, return_dict, _ = self._call_arguments(
            pixel_values, output_hidden_states, return_dict)
        embedding_output = self.embeddings(pixel_values)
        last_hidden_state, hidden_states = self.encoder(
            embedding_output, output_hidden_states=bool(output_hidden_states), training=training)
        pooled_output = self.layernorm(ops.mean(last_hidden_state, axis=(1, 2)))
        hidden_states = tuple(self._maps_out(h) for h in hidden_states) if hidden_states else None
        out = BaseModelOutputWithPoolingAndNoAttention(self._maps_out(last_hidden_state), pooled_output,
                                                       hidden_states)
        return self._returned(out, return_dict)

    _keras_layer_field = "pooler_output"

    def _keras_layer_output(self, out):
        return out.pooler_output  # the features a head takes, as keras.applications' pooling="avg"

    def compute_output_shape(self, input_shape):
        last = self._trunk_shape(input_shape)
        return {"last_hidden_state": self._map_shape(last), "pooler_output": (last[0], last[3])}


def classification_loss(logits, labels, config: ConvNextConfig):
    """MSE for regression, cross-entropy for single-label, BCE-with-logits for multi-label (float32)."""
    labels = ops.convert_to_tensor(labels)
    is_int = keras.backend.standardize_dtype(labels.dtype).startswith(("int", "uint"))
    problem_type = infer_problem_type(config, is_int)
    logits = ops.cast(logits, "float32")
    num_labels = logits.shape[-1]
    if problem_type == "regression":
        labels = ops.cast(labels, "float32")
        if num_labels == 1:
            return ops.mean(ops.square(ops.squeeze(logits) - ops.squeeze(labels)))
        return ops.mean(ops.square(logits - labels))
    if problem_type == "single_label_classification":
        return ops.mean(ops.sparse_categorical_crossentropy(
            ops.reshape(ops.cast(labels, "int32"), (-1,)), ops.reshape(logits, (-1, num_labels)), from_logits=True))
    return ops.mean(ops.binary_crossentropy(ops.cast(labels, "float32"), logits, from_logits=True))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TFConvNextForImageClassification(TFConvNextPreTrainedModel):
    """The trunk plus a linear classifier on the pooled features. ``logits`` (B, num_labels).

    Keras training: ``compile(optimizer)`` without a loss trains on the model's own loss
    (``classification_loss`` with ``y`` as labels); with a Keras loss, it sees the logits.
    """

    trunk_class = TFConvNextModel

    def __init__(self, config: ConvNextConfig, data_format: str = "channels_first", **kwargs):
        super().__init__(config, data_format, **kwargs)
        self.num_labels = self.config.num_labels
        setattr(self, self.base_model_prefix,
                self.trunk_class(self.config, data_format=self.data_format, name=self.base_model_prefix,
                                 dtype=self.dtype_policy))
        self.classifier = (
            keras.layers.Dense(self.num_labels, kernel_initializer=_kernel_initializer(self.config), name="classifier",
                               dtype=self.dtype_policy)
            if self.num_labels > 0 else keras.layers.Identity(name="classifier", dtype=self.dtype_policy))
        self.build(self.input_shape_of())

    def build(self, input_shape=None):
        if not self.classifier.built:
            self.classifier.build((None, self.config.hidden_sizes[-1]))
        super().build(input_shape)

    @property
    def base_model(self) -> TFConvNextModel:
        return getattr(self, self.base_model_prefix)

    def _serving_output_names(self) -> tuple[str, ...]:
        return ("logits",)

    def call(self, pixel_values, labels=None, output_hidden_states: Optional[bool] = None,
             return_dict: Optional[bool] = None, training=None) -> Union[tuple, ImageClassifierOutputWithNoAttention]:
        pixel_values, output_hidden_states, return_dict, named = self._call_arguments(
            pixel_values, output_hidden_states, return_dict, labels=labels)
        labels = named["labels"]
        outputs = self.base_model(pixel_values, output_hidden_states=output_hidden_states, return_dict=True,
                                  training=training)
        logits = self.classifier(outputs.pooler_output)
        loss = classification_loss(logits, labels, self.config) if labels is not None else None
        out = ImageClassifierOutputWithNoAttention(loss, logits, outputs.hidden_states)
        return self._returned(out, return_dict)

    _keras_layer_field = "logits"

    def _keras_layer_output(self, out):
        return out.logits

    def compute_output_shape(self, input_shape):
        return {"logits": (None if input_shape is None else input_shape[0], self.config.num_labels)}

    def _keras_outputs(self, outputs):
        return outputs.logits

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if self._compile_loss is None and y is not None and isinstance(y_pred, ImageClassifierOutputWithNoAttention):
            # compile() without a loss: the model's own loss, as transformers' TF models do.
            loss = classification_loss(y_pred.logits, y, self.config)
            for extra in self.losses:
                loss = loss + ops.cast(extra, loss.dtype)
            return loss
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TFConvNextBackbone(BackboneAPI, TFConvNextPreTrainedModel):
    """Multi-scale features for detection/segmentation heads: one normalised map per ``out_features``.

    ``feature_maps[i]``: (B, channels[i], H / stride_i, W / stride_i), NCHW (NHWC with channels_last).
    """

    def __init__(self, config: ConvNextConfig, data_format: str = "channels_first", **kwargs):
        super().__init__(config, data_format, **kwargs)
        config = self.config
        self.embeddings = TFConvNextEmbeddings(config, data_format=self.data_format, name="embeddings",
                                               dtype=self.dtype_policy)
        self.encoder = TFConvNextEncoder(config, name="encoder", dtype=self.dtype_policy)
        self.stage_names = list(config.stage_names)
        self.num_features = [config.hidden_sizes[0]] + list(config.hidden_sizes)
        self.hidden_states_norms = {
            stage: TFConvNextLayerNorm(c, eps=NORM_EPS, name=keras_layer_name("hidden_states_norms", stage),
                                       dtype=self.dtype_policy)
            for stage, c in zip(config.out_features, backbone_channels(config))
        }
        # transformers' backbone attributes (BackboneAPI): the config's selection, changeable on the model
        self._init_backbone_api(config.out_features, config.out_indices)
        self.build(self.input_shape_of())

    def build(self, input_shape=None):
        for norm in self.hidden_states_norms.values():
            if not norm.built:
                norm.build((None, None, None, norm.normalized_shape))
        super().build(input_shape)

    def _serving_output_names(self) -> tuple[str, ...]:
        return tuple(f"feature_maps_{i}" for i in range(len(self.out_features)))

    def _serving_outputs(self, outputs) -> dict[str, Any]:
        return {f"feature_maps_{i}": f for i, f in enumerate(outputs.feature_maps)}

    def call(self, pixel_values, output_hidden_states: Optional[bool] = None, return_dict: Optional[bool] = None,
             training=None) -> Union[tuple, BackboneOutput]:
        pixel_values, output_hidden_states, return_dict, _ = self._call_arguments(
            pixel_values, output_hidden_states, return_dict)
        _, hidden_states = self.encoder(self.embeddings(pixel_values), output_hidden_states=True, training=training)
        feature_maps = tuple(self._maps_out(self.hidden_states_norms[stage](h))
                             for stage, h in zip(self.stage_names, hidden_states) if stage in self.out_features)
        hidden_states = tuple(self._maps_out(h) for h in hidden_states) if output_hidden_states else None
        out = BackboneOutput(feature_maps, hidden_states)
        return self._returned(out, return_dict)

    def _keras_layer_output(self, out):
        return out  # several maps: the container (``.feature_maps``) in Keras graphs too

    def compute_output_shape(self, input_shape):
        shape = self.embeddings.compute_output_shape(input_shape)
        maps = []
        for name, stage in zip(self.stage_names, [None, *self.encoder.stages]):  # "stem" is the embeddings' map
            shape = shape if stage is None else stage.compute_output_shape(shape)
            if name in self.out_features:
                maps.append(self._map_shape(shape))
        return {"feature_maps": maps}


# ConvNeXt V2: the same layers; the config's model_type switches layer scale for GRN.
class TFConvNextV2PreTrainedModel(TFConvNextPreTrainedModel):
    config_class = ConvNextV2Config
    base_model_prefix = "convnextv2"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TFConvNextV2Model(TFConvNextV2PreTrainedModel, TFConvNextModel):
    pass


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TFConvNextV2ForImageClassification(TFConvNextV2PreTrainedModel, TFConvNextForImageClassification):
    trunk_class = TFConvNextV2Model


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TFConvNextV2Backbone(TFConvNextV2PreTrainedModel, TFConvNextBackbone):
    pass




# FCMAE pre-training (ConvNeXt V2's masked autoencoder): the V2 trunk, run on the visible patches only,
# and the official dense decoder. See docs/pretraining.md.
def patchify(pixel_values_nhwc, patch_size: int):
    """(B, H, W, C) -> (B, num_patches, patch_size**2 * C): patches row-major over the grid, each one's
    pixels row by row with the channels innermost (the official ``patchify`` order)."""
    _, h, w, c = pixel_values_nhwc.shape
    rows, cols = h // patch_size, w // patch_size
    x = ops.reshape(pixel_values_nhwc, (-1, rows, patch_size, cols, patch_size, c))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, rows * cols, patch_size * patch_size * c))


def unpatchify(patches, patch_size: int, height: int, width: int, data_format: str = "channels_first"):
    """The inverse of :func:`patchify`: (B, num_patches, patch_size**2 * C) -> images in ``data_format``."""
    c = patches.shape[-1] // patch_size**2
    rows, cols = height // patch_size, width // patch_size
    x = ops.reshape(patches, (-1, rows, cols, patch_size, patch_size, c))
    x = ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (-1, height, width, c))
    return ops.transpose(x, (0, 3, 1, 2)) if data_format == "channels_first" else x


def masked_patch_loss(pixel_values_nhwc, logits, removed, patch_size: int, norm_pix_loss: bool):
    """The official FCMAE loss (float32): each patch's mean squared error, averaged over the removed
    patches; with ``norm_pix_loss`` each target patch is first normalised by its own mean and
    (unbiased) variance + 1e-6. ``removed`` (B, num_patches), 1 = removed."""
    target = patchify(ops.cast(pixel_values_nhwc, "float32"), patch_size)
    if norm_pix_loss:
        n = target.shape[-1]
        mean = ops.mean(target, axis=-1, keepdims=True)
        var = ops.sum(ops.square(target - mean), axis=-1, keepdims=True) / (n - 1)
        target = (target - mean) / ops.sqrt(var + NORM_PIX_EPS)
    per_patch = ops.mean(ops.square(ops.cast(logits, "float32") - target), axis=-1)
    removed = ops.cast(removed, "float32")
    return ops.sum(per_patch * removed) / ops.maximum(ops.sum(removed), 1.0)


def random_patch_mask(batch_size, num_patches: int, mask_ratio: float, seed=None):
    """The official ``gen_random_mask``: per image, the ``int(L * (1 - mask_ratio))`` patches with the
    smallest Gaussian noise stay visible. Returns (B, num_patches) bool, True = removed."""
    noise = keras.random.normal((batch_size, num_patches), seed=seed)
    rank = ops.argsort(ops.argsort(noise, axis=1), axis=1)
    return rank >= num_kept(num_patches, mask_ratio)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TFConvNextV2MaskedImageDecoder(_ConfiguredLayer):
    """FCMAE's dense decoder: a 1x1 conv to ``decoder_hidden_size``, the mask token at removed
    patches, ``decoder_num_hidden_layers`` V2 blocks, and a 1x1 conv to each patch's pixels.
    NHWC (B, rows, cols, hidden_sizes[-1]) -> (B, rows, cols, patch_size**2 * num_channels)."""

    def __init__(self, config: ConvNextConfig, **kwargs):
        super().__init__(config, **kwargs)
        config = self.config
        self.dim = config.decoder_hidden_size
        init = _kernel_initializer(config)
        self.proj = keras.layers.Conv2D(self.dim, kernel_size=1, kernel_initializer=init, name="proj",
                                        dtype=self.dtype_policy)
        self.layers = [TFConvNextLayer(config, self.dim, name=keras_layer_name("layers", j), dtype=self.dtype_policy)
                       for j in range(config.decoder_num_hidden_layers)]
        self.pred = keras.layers.Conv2D(total_stride(config) ** 2 * config.num_channels, kernel_size=1,
                                        kernel_initializer=init, name="pred", dtype=self.dtype_policy)

    def build(self, input_shape=None):
        # the canonical (PyTorch) shape (1, D, 1, 1), so that no layout changes at load and save
        self.mask_token = self.add_weight(shape=(1, self.dim, 1, 1), initializer=_kernel_initializer(self.config),
                                          name="mask_token")
        self.proj.build((None, None, None, self.config.hidden_sizes[-1]))
        for layer in self.layers:
            layer.build((None, None, None, self.dim))
        self.pred.build((None, None, None, self.dim))

    def call(self, hidden_states, removed, training=None):
        """``removed`` (B, rows, cols, 1), 1 = removed."""
        x = self.proj(hidden_states)
        removed = ops.cast(removed, x.dtype)
        token = ops.cast(ops.reshape(self.mask_token, (1, 1, 1, self.dim)), x.dtype)
        x = x * (1.0 - removed) + token * removed
        for layer in self.layers:
            x = layer(x, training=training)
        return self.pred(x)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TFConvNextV2ForMaskedImageModeling(TFConvNextV2PreTrainedModel):
    """FCMAE pre-training: the V2 trunk (``convnextv2``, the names of TFConvNextV2Model, so a trained
    folder loads as any V2 model) sees only the visible patches, and the decoder reconstructs the
    removed ones. Equal to the official sparse forward (facebookresearch/ConvNeXt-V2,
    ``models/fcmae.py``), computed densely: removed sites are zero wherever a convolution reads them
    and every output there is discarded, so norms and GRN take their statistics from visible sites only.

    ``pixel_values`` (B, C, H, W) (NHWC with ``channels_last``), H and W multiples of the patch size
    (the trunk's stride, 32); ``bool_masked_pos`` (B, num_patches), True = removed, row-major over the
    (H/32, W/32) grid, or None for a random mask with ``config.mask_ratio`` (``seed``: an int or a
    ``keras.random.SeedGenerator`` makes it reproducible; by default the model's own generator).
    Keras training: ``compile(optimizer)`` without a loss and ``fit(images)`` train on the model's loss.
    """

    def __init__(self, config: ConvNextConfig, data_format: str = "channels_first", **kwargs):
        super().__init__(config, data_format, **kwargs)
        check_masked_image_config(self.config)
        self.convnextv2 = TFConvNextV2Model(self.config, data_format=self.data_format, name="convnextv2",
                                            dtype=self.dtype_policy)
        self.decoder = TFConvNextV2MaskedImageDecoder(self.config, name="decoder", dtype=self.dtype_policy)
        self.patch_size = total_stride(self.config)
        self.mask_seed_generator = keras.random.SeedGenerator()
        self.build()
        # The pooled norm takes no part in pre-training: frozen, so that optimizers see no variable
        # without a gradient (it is saved, and a fine-tuned model trains it).
        self.convnextv2.layernorm.trainable = False

    @property
    def base_model(self) -> TFConvNextV2Model:
        return self.convnextv2

    def call(self, pixel_values, bool_masked_pos=None, output_hidden_states: Optional[bool] = None,
             return_dict: Optional[bool] = None, training=None, seed=None) -> Union[tuple, MaskedImageModelingOutput]:
        pixel_values, output_hidden_states, return_dict, named = self._call_arguments(
            pixel_values, output_hidden_states, return_dict, bool_masked_pos=bool_masked_pos)
        bool_masked_pos = named["bool_masked_pos"]
        check_pixel_values(pixel_values, self.config.num_channels, self.data_format)
        nhwc = ops.transpose(pixel_values, (0, 2, 3, 1)) if self.data_format == "channels_first" else pixel_values
        height, width = nhwc.shape[1], nhwc.shape[2]
        if height is None or width is None:
            raise ValueError("masked-image modeling needs the image height and width known when the model is called")
        rows, cols = patch_grid(self.config, height, width)
        batch = ops.shape(nhwc)[0]
        if bool_masked_pos is None:
            bool_masked_pos = random_patch_mask(batch, rows * cols, self.config.mask_ratio,
                                                self.mask_seed_generator if seed is None else seed)
        else:
            bool_masked_pos = ops.convert_to_tensor(bool_masked_pos)
            if len(bool_masked_pos.shape) != 2 or bool_masked_pos.shape[-1] != rows * cols:
                raise ValueError(f"bool_masked_pos must be (batch, num_patches) with num_patches = {rows * cols} "
                                 f"for {height}x{width} images, got {tuple(bool_masked_pos.shape)}")
        removed = ops.cast(bool_masked_pos, "float32")
        removed_grid = ops.reshape(removed, (-1, rows, cols, 1))
        visible = 1.0 - removed_grid

        trunk = self.base_model
        embeddings = trunk.embeddings(pixel_values)
        embeddings = embeddings * ops.cast(upsample_patch_mask(visible, embeddings.shape[1] // rows), embeddings.dtype)
        last_hidden_state, hidden_states = trunk.encoder(embeddings, output_hidden_states=bool(output_hidden_states),
                                                         training=training, visible_patches=visible)
        pred = self.decoder(last_hidden_state, removed_grid, training=training)
        logits = ops.reshape(pred, (-1, rows * cols, pred.shape[-1]))
        loss = masked_patch_loss(nhwc, logits, removed, self.patch_size, self.config.norm_pix_loss)
        hidden_states = tuple(self._maps_out(h) for h in hidden_states) if hidden_states else None
        out = MaskedImageModelingOutput(loss, logits, removed, hidden_states)
        return out if return_dict else out.to_tuple()

    def unpatchify(self, logits, height: int, width: int):
        """The reconstruction as images in the model's data_format."""
        return unpatchify(logits, self.patch_size, height, width, self.data_format)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if self._compile_loss is None and isinstance(y_pred, MaskedImageModelingOutput):
            # compile() without a loss: the model's own reconstruction loss (the images need no labels)
            loss = y_pred.loss
            for extra in self.losses:
                loss = loss + ops.cast(extra, loss.dtype)
            return loss
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
# DINOv3's ConvNeXt (transformers' DINOv3ConvNext*; transformers has no Keras form): the V1 stem,
# stages and blocks above, every norm with config.layer_norm_eps, token outputs, and transformers'
# DINOv3 checkpoint names. Weights are written as model.safetensors, the file transformers reads.
class TFDINOv3ConvNextPreTrainedModel(TFConvNextPreTrainedModel):
    config_class = DINOv3ConvNextConfig
    base_model_prefix = "model"
    weight_files = PT_WEIGHT_FILES

    def _build_trunk(self) -> None:
        """The ConvNeXt stem and stages, every norm with ``layer_norm_eps`` as in DINOv3."""
        trunk = self.config.copy(layer_scale_init_value=block_layer_scale(self.config))
        self.embeddings = TFConvNextEmbeddings(trunk, data_format=self.data_format, name="embeddings",
                                               dtype=self.dtype_policy)
        self.encoder = TFConvNextEncoder(trunk, name="encoder", dtype=self.dtype_policy)
        norms = [self.embeddings.layernorm]
        for stage in self.encoder.stages:
            norms += stage.downsampling_layer[:1] + [block.layernorm for block in stage.layers]
        for norm in norms:
            norm.eps = float(self.config.layer_norm_eps)

    def _init_layer_scale(self) -> None:
        """transformers' DINOv3 block keeps ``gamma`` at a layer scale <= 0 (see dinov3.block_layer_scale)."""
        if self.config.layer_scale_init_value <= 0:
            for stage in self.encoder.stages:
                for block in stage.layers:
                    gamma = block.layer_scale_parameter
                    gamma.assign(ops.zeros(tuple(gamma.shape), dtype=gamma.dtype))

    def _trunk(self, pixel_values, output_hidden_states: bool, training=None):
        """The last map (NHWC) and, if asked, transformers' DINOv3 hidden states: the input pixels,
        then each stage's map (in the model's data_format)."""
        last, hidden_states = self.encoder(self.embeddings(pixel_values), output_hidden_states=output_hidden_states,
                                           training=training)
        if hidden_states:
            hidden_states = (ops.convert_to_tensor(pixel_values),) + tuple(self._maps_out(h) for h in hidden_states[1:])
        return last, hidden_states

    # transformers' DINOv3 names for the ConvNeXt variables' canonical names
    def _weight_slots(self):
        return {to_dinov3_name(k): slot for k, slot in super()._weight_slots().items()}

    def numpy_state_dict(self):
        return {to_dinov3_name(k): v for k, v in super().numpy_state_dict().items()}

    def load_numpy_state_dict(self, state, *args, **kwargs) -> None:
        super().load_numpy_state_dict(file_names(state), *args, **kwargs)

    def save_pretrained(self, save_directory, safe_serialization: bool = True, max_shard_size: int = 5 * 1024**3,
                        image_processor: Any = None):
        """Write config.json and model.safetensors (transformers has no DINOv3 tf_model.h5), each file
        atomically, and preprocessor_config.json from ``image_processor`` or ``self.preprocessor_config``."""
        if not safe_serialization:
            raise ValueError("a DINOv3 ConvNeXt is saved as model.safetensors (transformers has no TensorFlow "
                             "DINOv3 ConvNeXt to read a tf_model.h5): pass safe_serialization=True")
        return self._save_pretrained(save_directory, image_processor, max_shard_size=max_shard_size)

    def _write_weights(self, directory, config, *, max_shard_size: int, **_: Any) -> None:
        save_sharded_safetensors(self.numpy_state_dict(), directory, max_shard_bytes=max_shard_size)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TFDINOv3ConvNextModel(TFDINOv3ConvNextPreTrainedModel):
    """The DINOv3 trunk and its token outputs.

    ``pixel_values`` (B, num_channels, H, W) -> ``last_hidden_state`` (B, 1 + h*w, C): the mean of the
    last map, then its positions row by row, all through the final LayerNorm; ``pooler_output``
    (B, C) its first token; ``hidden_states`` the pixels and each stage's map (NCHW; NHWC with
    channels_last).
    """

    def __init__(self, config: DINOv3ConvNextConfig, data_format: str = "channels_first", **kwargs):
        super().__init__(config, data_format, **kwargs)
        self._build_trunk()
        self.layernorm = TFConvNextLayerNorm(self.config.hidden_sizes[-1], eps=self.config.layer_norm_eps,
                                             name="layernorm", dtype=self.dtype_policy)
        self.build()
        self._init_layer_scale()

    def call(self, pixel_values, output_hidden_states: Optional[bool] = None, return_dict: Optional[bool] = None,
             training=None) -> Union[tuple, BaseModelOutputWithPoolingAndNoAttention]:
        pixel_values, output_hidden_states, return_dict, _ = self._call_arguments(
            pixel_values, output_hidden_states, return_dict)
        last, hidden_states = self._trunk(pixel_values, bool(output_hidden_states), training)
        tokens = ops.reshape(last, (ops.shape(last)[0], -1, self.config.hidden_sizes[-1]))  # row by row
        tokens = self.layernorm(ops.concatenate([ops.mean(tokens, axis=1, keepdims=True), tokens], axis=1))
        out = BaseModelOutputWithPoolingAndNoAttention(tokens, tokens[:, 0], hidden_states or None)
        return out if return_dict else out.to_tuple()


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TFDINOv3ConvNextBackbone(TFDINOv3ConvNextPreTrainedModel):
    """Maps for dense heads, as transformers' DINOv3ConvNextBackbone: the ``out_features`` entries of
    the hidden states ("stem" is the input pixels, "stage{i}" a stage's map), without extra norms.
    ``feature_maps[i]``: (B, channels[i], H / stride_i, W / stride_i), NCHW (NHWC with channels_last)."""

    def __init__(self, config: DINOv3ConvNextConfig, data_format: str = "channels_first", **kwargs):
        super().__init__(config, data_format, **kwargs)
        self._build_trunk()
        self.stage_names = list(self.config.stage_names)
        self.out_features = self.config.out_features
        num_features = [self.config.num_channels] + list(self.config.hidden_sizes)
        self.channels = [num_features[i] for i in self.config.out_indices]
        self.build()
        self._init_layer_scale()

    def call(self, pixel_values, output_hidden_states: Optional[bool] = None, return_dict: Optional[bool] = None,
             training=None) -> Union[tuple, BackboneOutput]:
        pixel_values, output_hidden_states, return_dict, _ = self._call_arguments(
            pixel_values, output_hidden_states, return_dict)
        _, hidden_states = self._trunk(pixel_values, True, training)
        feature_maps = tuple(h for stage, h in zip(self.stage_names, hidden_states) if stage in self.out_features)
        out = BackboneOutput(feature_maps, hidden_states if output_hidden_states else None)
        return out if return_dict else out.to_tuple()

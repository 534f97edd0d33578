"""ConvNeXt configurations, read and written as the ``config.json`` of a hub-layout folder.

The fields, defaults and JSON keys are those of transformers' ``ConvNextConfig`` and
``ConvNextV2Config`` (4.x and 5.x), so a folder written by either library loads in the other.
Keys this module does not know are kept verbatim and written back.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from .variant_sizes import V1_VARIANTS, V2_VARIANTS, parse_variant

CONFIG_NAME = "config.json"

#: activations both twins implement (names as in transformers' ACT2FN).
SUPPORTED_ACTIVATIONS = (
    "gelu", "gelu_new", "gelu_fast", "gelu_pytorch_tanh", "quick_gelu",
    "relu", "relu6", "silu", "swish", "sigmoid", "tanh", "mish", "leaky_relu", "linear",
)

PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


#: transformers' ``PretrainedConfig`` attributes every config has, with their defaults. They do not
#: shape a ConvNeXt; code written for transformers reads them (and pipelines, Trainer, the test mixins).
GENERIC_DEFAULTS: dict[str, Any] = {
    "output_hidden_states": False, "output_attentions": False, "return_dict": True, "torchscript": False,
    "is_encoder_decoder": False, "is_decoder": False, "add_cross_attention": False,
    "cross_attention_hidden_size": None, "tie_word_embeddings": True, "tie_encoder_decoder": False,
    "chunk_size_feed_forward": 0, "pruned_heads": {}, "use_bfloat16": False, "tf_legacy_loss": False,
    "finetuning_task": None, "tokenizer_class": None, "prefix": None, "bos_token_id": None,
    "pad_token_id": None, "eos_token_id": None, "sep_token_id": None, "decoder_start_token_id": None,
    "task_specific_params": None,
}

#: private attributes transformers' code reads; never serialised
PRIVATE_DEFAULTS: dict[str, Any] = {"_commit_hash": None, "_name_or_path": "", "_attn_implementation": None}

#: dtype names config.json may record, as torch spells them
DTYPE_NAMES = ("float32", "float16", "bfloat16", "float64")


def _dtype_name(value: Any) -> Any:
    """``torch.float16`` -> ``"float16"``; strings and None unchanged (what config.json records)."""
    if value is None or isinstance(value, str):
        return value
    return str(value).rsplit(".", 1)[-1]


class ConfigError(ValueError):
    """A config value is invalid; the message names the field."""


def _as_list(value: Any, default: list[int]) -> Any:
    """A list of a list or tuple, ``default`` for None; anything else is kept for validate() to name."""
    if value is None:
        return list(default)
    return list(value) if isinstance(value, (list, tuple)) else value


def _stage_names(num_stages: int) -> list[str]:
    return ["stem"] + [f"stage{i}" for i in range(1, num_stages + 1)]


def _align_out_features(out_features, out_indices, stage_names):
    """transformers' backbone rule: either list gives the other; neither means the last stage."""
    if out_features is not None:
        if not isinstance(out_features, (list, tuple)):
            raise ConfigError(f"out_features must be a list of stage names, got {out_features!r}")
        unknown = [f for f in out_features if f not in stage_names]
        if unknown:
            raise ConfigError(f"out_features {unknown} not in stage_names {stage_names}")
        if list(out_features) != sorted(out_features, key=stage_names.index):
            raise ConfigError(f"out_features {list(out_features)} must follow the order of stage_names")
    if out_indices is not None:
        if not isinstance(out_indices, (list, tuple)) or not all(isinstance(i, int) for i in out_indices):
            raise ConfigError(f"out_indices must be a list of ints, got {out_indices!r}")
        n = len(stage_names)
        bad = [i for i in out_indices if not -n <= i < n]
        if bad:
            raise ConfigError(f"out_indices {bad} out of range for {n} stage_names")
        positions = [i % n for i in out_indices]  # negative indices are kept as given, as transformers keeps them
        if positions != sorted(positions):
            raise ConfigError(f"out_indices {list(out_indices)} must follow the order of stage_names")
    if out_features is None and out_indices is None:
        return [stage_names[-1]], [len(stage_names) - 1]
    if out_features is None:
        return [stage_names[i] for i in out_indices], list(out_indices)
    if out_indices is None:
        return list(out_features), [stage_names.index(f) for f in out_features]
    if [stage_names[i] for i in out_indices] != list(out_features):
        raise ConfigError(f"out_features {list(out_features)} and out_indices {list(out_indices)} disagree")
    return list(out_features), list(out_indices)


class ConvNextConfig:
    """Hyper-parameters of a ConvNeXt (V1) model.

    Args mirror transformers' ``ConvNextConfig``: ``hidden_sizes[i]`` channels and ``depths[i]``
    blocks in stage ``i``; ``layer_norm_eps`` is used by the final pooled LayerNorm only (every
    other norm uses 1e-6); ``layer_scale_init_value <= 0`` builds blocks without layer scale.
    """

    model_type = "convnext"
    has_layer_scale = True
    # transformers' PretrainedConfig class attributes: a ConvNeXt config has no nested configs
    sub_configs: dict[str, type] = {}
    is_composition = False
    has_no_defaults_at_init = False
    base_config_key = ""
    attribute_map: dict[str, str] = {}
    keys_to_ignore_at_inference: list[str] = []

    def __init__(
        self,
        num_channels: int = 3,
        patch_size: int = 4,
        num_stages: int = 4,
        hidden_sizes: list[int] | None = None,
        depths: list[int] | None = None,
        hidden_act: str = "gelu",
        initializer_range: float = 0.02,
        layer_norm_eps: float = 1e-12,
        layer_scale_init_value: float = 1e-6,
        drop_path_rate: float = 0.0,
        image_size: int = 224,
        out_features: list[str] | None = None,
        out_indices: list[int] | None = None,
        id2label: dict[int, str] | None = None,
        label2id: dict[str, int] | None = None,
        num_labels: int | None = None,
        problem_type: str | None = None,
        architectures: list[str] | None = None,
        **kwargs: Any,
    ):
        self.num_channels = num_channels
        self.patch_size = patch_size
        self.num_stages = num_stages
        self.hidden_sizes = _as_list(hidden_sizes, [96, 192, 384, 768])
        self.depths = _as_list(depths, [3, 3, 9, 3])
        self.hidden_act = hidden_act
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        if self.has_layer_scale:
            self.layer_scale_init_value = layer_scale_init_value
        self.drop_path_rate = drop_path_rate
        self.image_size = image_size
        self.problem_type = problem_type
        self.architectures = list(architectures) if architectures is not None else None
        # A config is a plain attribute bag, as transformers': values are checked by validate() where a
        # model is built and where a file is read, not here.
        # stage_names always follows depths; a stored one is only checked.
        stored_stage_names = kwargs.pop("stage_names", None)
        if not isinstance(self.depths, list):  # the stages derive from it: nothing sensible can follow
            raise ConfigError(f"depths must be a non-empty list, got {self.depths!r}")
        self.stage_names = _stage_names(len(self.depths))
        if stored_stage_names is not None and list(stored_stage_names) != self.stage_names:
            raise ConfigError(f"stage_names {stored_stage_names} do not match depths {self.depths}")
        self._out_features, self._out_indices = _align_out_features(out_features, out_indices, self.stage_names)
        self._set_labels(id2label, label2id, num_labels)
        for name, default in {**GENERIC_DEFAULTS, **PRIVATE_DEFAULTS}.items():
            object.__setattr__(self, name, kwargs.pop(name, copy.deepcopy(default)))
        # transformers 5 writes "dtype", 4.x "torch_dtype": keep whichever came, like any unknown key.
        self.extra: dict[str, Any] = dict(kwargs)
        for key in ("dtype", "torch_dtype"):
            if key in self.extra:
                self.extra[key] = _dtype_name(self.extra[key])

    # --- labels --------------------------------------------------------------------------------
    def _set_labels(self, id2label, label2id, num_labels):
        if id2label is not None:
            if not isinstance(id2label, dict):
                raise ConfigError(f"id2label must be a dict, got {type(id2label).__name__}")
            try:
                id2label = {int(k): v for k, v in id2label.items()}
            except (TypeError, ValueError) as e:
                raise ConfigError(f"id2label keys must be integers: {e}") from None
            if num_labels is not None and num_labels != len(id2label):
                raise ConfigError(f"num_labels={num_labels} disagrees with id2label ({len(id2label)} entries)")
        else:
            n = 2 if num_labels is None else num_labels
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise ConfigError(f"num_labels must be a non-negative int, got {num_labels!r}")
            id2label = {i: f"LABEL_{i}" for i in range(n)}
        self.id2label = id2label
        if label2id is None:
            label2id = {v: k for k, v in id2label.items()}
        elif not isinstance(label2id, dict):
            raise ConfigError(f"label2id must be a dict, got {type(label2id).__name__}")
        self.label2id = dict(label2id)  # values as given, as transformers

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, n: int) -> None:
        if n != self.num_labels:
            self._set_labels(None, None, n)

    # --- transformers' generic attributes ------------------------------------------------------------
    @property
    def use_return_dict(self) -> bool:
        return bool(self.return_dict) and not self.torchscript

    @property
    def dtype(self) -> Any:
        """The dtype config.json records: a ``torch.dtype`` where torch is loaded (as transformers
        holds it), else its name; None when none is recorded."""
        name = self.extra.get("dtype", self.extra.get("torch_dtype"))
        torch = sys.modules.get("torch")
        if isinstance(name, str) and name in DTYPE_NAMES and torch is not None:
            return getattr(torch, name)
        return name

    @dtype.setter
    def dtype(self, value: Any) -> None:
        key = "torch_dtype" if "torch_dtype" in self.extra and "dtype" not in self.extra else "dtype"
        if value is None:
            self.extra.pop(key, None)
        else:
            self.extra[key] = _dtype_name(value)

    torch_dtype = dtype

    @property
    def name_or_path(self) -> str:
        return self._name_or_path

    @name_or_path.setter
    def name_or_path(self, value: Any) -> None:
        self._name_or_path = str(value)

    def get_text_config(self, decoder: bool = False, encoder: bool = False) -> "ConvNextConfig":
        """transformers' accessor of a composite config's text part: a ConvNeXt config is its own."""
        return self

    def update(self, config_dict: dict[str, Any]) -> None:
        """Set attributes from a dict, as transformers' ``PretrainedConfig.update``."""
        for key, value in config_dict.items():
            setattr(self, key, value)

    # --- backbone -------------------------------------------------------------------------------
    @property
    def out_features(self) -> list[str]:
        return list(self._out_features)

    @out_features.setter
    def out_features(self, value) -> None:
        self._out_features, self._out_indices = _align_out_features(value, None, self.stage_names)

    @property
    def out_indices(self) -> list[int]:
        return list(self._out_indices)

    @out_indices.setter
    def out_indices(self, value) -> None:
        self._out_features, self._out_indices = _align_out_features(None, value, self.stage_names)

    # --- validation -----------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ConfigError (a ValueError) naming the first invalid field."""

        def positive_int(name, v):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"{name} must be a positive int, got {v!r}")

        for name in ("num_channels", "patch_size", "num_stages", "image_size"):
            positive_int(name, getattr(self, name))
        for name in ("hidden_sizes", "depths"):
            values = getattr(self, name)
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{name} must be a non-empty list, got {values!r}")
            for i, v in enumerate(values):
                if name == "depths":  # a stage without blocks only downsamples (transformers builds it too)
                    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                        raise ConfigError(f"depths[{i}] must be a non-negative int, got {v!r}")
                else:
                    positive_int(f"{name}[{i}]", v)
        if len(self.hidden_sizes) != len(self.depths):
            raise ConfigError(
                f"hidden_sizes has {len(self.hidden_sizes)} entries but depths has {len(self.depths)}")
        if self.num_stages != len(self.depths):
            raise ConfigError(f"num_stages={self.num_stages} but depths has {len(self.depths)} entries")
        if not isinstance(self.hidden_act, str) or self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise ConfigError(f"hidden_act {self.hidden_act!r} is not one of {', '.join(SUPPORTED_ACTIVATIONS)}")
        for name in ("initializer_range", "layer_norm_eps", "drop_path_rate"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise ConfigError(f"{name} must be a number, got {v!r}")
        if self.layer_norm_eps <= 0:
            raise ConfigError(f"layer_norm_eps must be > 0, got {self.layer_norm_eps}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ConfigError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        if self.has_layer_scale:
            v = self.layer_scale_init_value
            if v is None:
                self.layer_scale_init_value = 0.0
            elif not isinstance(v, (int, float)) or isinstance(v, bool):
                raise ConfigError(f"layer_scale_init_value must be a number, got {v!r}")
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            raise ConfigError(f"problem_type {self.problem_type!r} is not one of {PROBLEM_TYPES}")

    # --- (de)serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = copy.deepcopy(self.extra)
        d.update(
            architectures=self.architectures, depths=list(self.depths), drop_path_rate=self.drop_path_rate,
            hidden_act=self.hidden_act, hidden_sizes=list(self.hidden_sizes),
            id2label={str(k): v for k, v in self.id2label.items()}, image_size=self.image_size,
            initializer_range=self.initializer_range, label2id=dict(self.label2id),
            layer_norm_eps=self.layer_norm_eps, model_type=self.model_type, num_channels=self.num_channels,
            num_stages=self.num_stages, out_features=self.out_features, out_indices=self.out_indices,
            patch_size=self.patch_size, stage_names=list(self.stage_names),
        )
        if self.has_layer_scale:
            d["layer_scale_init_value"] = self.layer_scale_init_value
        d["problem_type"] = self.problem_type
        for name in GENERIC_DEFAULTS:
            d[name] = copy.deepcopy(getattr(self, name))
        known = set(d) | {"extra", "layer_scale_init_value", "problem_type", "num_labels", "architectures"}
        for name, value in self.__dict__.items():  # attributes set on the instance, as transformers saves them
            if not name.startswith("_") and name not in known:
                d[name] = copy.deepcopy(value)
        return dict(sorted(d.items()))

    def to_diff_dict(self) -> dict[str, Any]:
        """``to_dict`` without the generic attributes that hold their default (what config.json records)."""
        return {k: v for k, v in self.to_dict().items()
                if not (k in GENERIC_DEFAULTS and v == GENERIC_DEFAULTS[k])
                and not (k in ("architectures", "problem_type") and v is None)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], **overrides: Any) -> "ConvNextConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(d).__name__}")
        d = copy.deepcopy(d)
        # overriding one of a linked pair replaces the stored other one
        for a, b in (("out_features", "out_indices"), ("out_indices", "out_features")):
            if a in overrides and b not in overrides:
                d.pop(b, None)
        d.update(overrides)
        model_type = d.pop("model_type", cls.model_type)
        if model_type != cls.model_type:
            raise ConfigError(f"model_type is {model_type!r}, expected {cls.model_type!r}")
        if "num_labels" in d and "id2label" in d and d["num_labels"] != len(d["id2label"]):
            d.pop("id2label")  # an explicit num_labels override asks for a new head
            d.pop("label2id", None)
        try:
            return cls(**d)
        except TypeError as e:  # e.g. a non-iterable where a list belongs
            raise ConfigError(f"invalid config: {e}") from None

    def to_json_string(self, use_diff: bool = True) -> str:
        return json.dumps(self.to_diff_dict() if use_diff else self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: str | os.PathLike, use_diff: bool = True) -> None:
        from .fileio import atomic_write_text

        atomic_write_text(Path(json_file_path), self.to_json_string(use_diff=use_diff))

    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **overrides: Any) -> "ConvNextConfig":
        from .fileio import read_json_file

        path = Path(path)
        d = read_json_file(path, "config file", ConfigError)
        if isinstance(d, dict) and isinstance(d.get("id2label"), dict) and "num_labels" in d \
                and d["num_labels"] != len(d["id2label"]):  # the file contradicts itself (overrides may not)
            raise ConfigError(f"{path}: num_labels={d['num_labels']!r} disagrees with id2label "
                              f"({len(d['id2label'])} entries)")
        label2id = d.get("label2id") if isinstance(d, dict) else None
        if isinstance(label2id, dict):  # a file's labels must be usable; in Python, values are kept as given
            try:
                [int(v) for v in label2id.values()]
            except (TypeError, ValueError) as e:
                raise ConfigError(f"{path}: label2id values must be integers: {e}") from None
        try:
            config = cls.from_dict(d, **overrides)
            config.validate()
            return config
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **overrides: Any) -> "ConvNextConfig":
        """Read ``config.json`` from a hub-layout folder, a file path, or a hub id (transformers or
        timm layout; a timm checkpoint's config comes from converting its weights).

        ``revision``, ``cache_dir``, ``local_files_only`` and ``token`` are passed to the hub as in
        transformers; other keyword arguments override fields.
        """
        return _source_reader()(path, cls, **overrides)

    def save_pretrained(self, directory: str | os.PathLike, push_to_hub: bool = False, **kwargs: Any) -> Path:
        from .fileio import atomic_write_text

        if push_to_hub:
            raise ValueError("push_to_hub is not supported: save to a folder and upload it")
        directory = Path(directory) / kwargs.get("subfolder", "")
        directory.mkdir(parents=True, exist_ok=True)
        out = directory / CONFIG_NAME
        atomic_write_text(out, self.to_json_string())
        return out

    # --- conveniences ---------------------------------------------------------------------------
    @classmethod
    def from_variant(cls, name: str, **overrides: Any) -> "ConvNextConfig":
        """Config of a published size, e.g. ``"convnext-tiny"`` or ``"tiny"`` (see variant_sizes.py)."""
        v, size = parse_variant(name, version=2 if cls.model_type == "convnextv2" else 1)
        spec = (V2_VARIANTS if v == 2 else V1_VARIANTS)[size]
        fields: dict[str, Any] = dict(depths=list(spec.depths), hidden_sizes=list(spec.hidden_sizes),
                                      num_stages=len(spec.depths))
        return cls(**{**fields, **overrides})

    def copy(self, **changes: Any) -> "ConvNextConfig":
        return type(self).from_dict(self.to_dict(), **changes)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()  # type: ignore[union-attr]

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"

    def __getattr__(self, name: str) -> Any:
        # Unknown keys from config.json read back as attributes, as in transformers.
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")


class ConvNextV2Config(ConvNextConfig):
    """ConvNeXt V2: the V1 fields without layer scale (blocks use GRN instead)."""

    model_type = "convnextv2"
    has_layer_scale = False

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.pop("layer_scale_init_value", None)
        super().__init__(*args, **kwargs)

    @property
    def layer_scale_init_value(self) -> float:  # V2 blocks never have layer scale
        return 0.0

    @layer_scale_init_value.setter
    def layer_scale_init_value(self, value: Any) -> None:
        pass  # transformers' V2 config has no such field: an assignment is accepted and means nothing


def _stored_field(name: str, default: Any) -> property:
    """A field kept in ``extra``: read with its default, written only once it is set (so that a
    config.json without it is written back unchanged)."""

    def get(self: ConvNextConfig) -> Any:
        return self.extra.get(name, default)

    def set_(self: ConvNextConfig, value: Any) -> None:
        self.extra[name] = value

    return property(get, set_, doc=f"{name} (default {default!r})")


#: FCMAE pre-training (``ConvNextV2ForMaskedImageModeling``), named as transformers' ViTMAEConfig names
#: them; the values are checked by ``convnext_common.masked_image.check_masked_image_config``.
MASKED_IMAGE_DEFAULTS: dict[str, Any] = {
    "mask_ratio": 0.6, "norm_pix_loss": False, "decoder_hidden_size": 512, "decoder_num_hidden_layers": 1,
}
for _name, _default in MASKED_IMAGE_DEFAULTS.items():
    setattr(ConvNextV2Config, _name, _stored_field(_name, _default))


def config_for_model(config_class: type[ConvNextConfig], path: str | os.PathLike,
                     config: ConvNextConfig | None, overrides: dict[str, Any], model_name: str) -> ConvNextConfig:
    """The config a model class's ``from_pretrained(path, config=..., **overrides)`` builds from:
    the given one (with overrides) or the folder's config.json; refused unless it is a
    ``config_class`` (a V2 config for a V1 model, say)."""
    if config is None:
        config = config_class.from_pretrained(path, **overrides)
    elif overrides:
        config = config.copy(**overrides)
    if not isinstance(config, config_class) or config.model_type != config_class.model_type:  # V2 subclasses V1
        raise ConfigError(f"{path}: config is a {type(config).__name__} ({config.model_type}); "
                          f"{model_name} needs {config_class.__name__}")
    return config


#: config classes of other ConvNeXt-trunk families (DINOv3's), registered by their own core modules
_REGISTERED_CONFIG_CLASSES: list[type[ConvNextConfig]] = []


def register_config_class(cls: type[ConvNextConfig]) -> None:
    """Make ``config_class_for`` (and so ``load_config``) know another ``model_type``."""
    if cls not in _REGISTERED_CONFIG_CLASSES:
        _REGISTERED_CONFIG_CLASSES.append(cls)


def config_class_for(model_type: str) -> type[ConvNextConfig]:
    for cls in (ConvNextConfig, ConvNextV2Config, *_REGISTERED_CONFIG_CLASSES):
        if cls.model_type == model_type:
            return cls
    known = ", ".join(repr(c.model_type) for c in (ConvNextConfig, ConvNextV2Config, *_REGISTERED_CONFIG_CLASSES))
    raise ConfigError(f"model_type {model_type!r} is not a ConvNeXt ({known})")


def load_config(path: str | os.PathLike, **overrides: Any) -> ConvNextConfig:
    """Read a config of either version, choosing the class by its ``model_type``, from a config.json,
    a hub-layout folder or a hub id (a timm one: its weights are converted; hub arguments as in
    ``from_pretrained``)."""
    return _source_reader()(path, None, **overrides)


# --- model sources ---------------------------------------------------------------------------------
# Reading the config of a model *source* (a hub id, a timm checkpoint whose config.json does not give
# the model's shape) needs the hub and the converter, which are built on this module. So the reader
# is installed from above, by convnext_common.pretrained when the package is imported, and this
# module stays at the bottom of the core.
SourceReader = Callable[..., ConvNextConfig]
_SOURCE_READER: list[SourceReader] = []


def install_source_reader(reader: SourceReader) -> None:
    """Set how ``from_pretrained`` / ``load_config`` read a model source:
    ``reader(path_or_id, config_class_or_None, **overrides_and_hub_options)``."""
    _SOURCE_READER[:] = [reader]


def _source_reader() -> SourceReader:
    if not _SOURCE_READER:  # only if the package's __init__ did not run to its end
        raise RuntimeError("convnext_common.pretrained was not imported: no reader for model sources")
    return _SOURCE_READER[0]

"""Everything a ``from_pretrained`` needs from one model source, whatever its layout.

A source is a hub-layout folder, a weights file, or a hub id (see hub.py). Two layouts:

- transformers' (``config.json`` with ``model_type`` convnext / convnextv2): config, weights and
  ``preprocessor_config.json`` are read as they are;
- timm's (``config.json`` with ``architecture``, as timm's ``save_for_hf`` writes it): the
  weights are converted in memory by the converter (checkpoints/pipeline.py), the labels, input
  size and preprocessing come from timm's config.json (checkpoints/sources/timm.py).

Anything else (a ViT, a ResNet, ...) is refused before its weights are downloaded, with a
:class:`NotAConvNextError` that says what it is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional, Sequence, TypeVar, Union

import numpy as np

from .checkpoints.errors import CheckpointError
from .checkpoints.matching import LoadReport, match_state_dict
from .config import CONFIG_NAME, ConfigError, ConvNextConfig, config_class_for, config_for_model, install_source_reader
from .fileio import read_json_file
from .hub import PREPROCESSOR_NAME, HubOptions, is_hub_id, model_folder, resolve_file
from .identify import NotAConvNextError, check_convnext_config, read_config_dict  # noqa: F401 (re-exported)
from .licences import Licence, read_licence, write_model_card
from .checkpoints.sources.timm import is_timm_config, timm_preprocessor_config

def is_timm_folder(folder: Union[str, os.PathLike]) -> bool:
    config = resolve_file(folder, CONFIG_NAME, required=False)
    return config is not None and is_timm_config(read_config_dict(config))


@dataclass
class Pretrained:
    """A model source read for loading: weights in canonical names and what goes with them.

    ``state``'s values are arrays or :class:`~.checkpoints.formats.lazy.LazyArray` (read when used), so that
    a load can copy them into a model one at a time."""

    config: ConvNextConfig
    state: Mapping[str, Any]
    weights_file: Path
    preprocessor_config: Optional[dict]
    licence: Optional[Licence] = None  # the licence the folder's model card (or timm config) names


def load_pretrained(path_or_id: Union[str, os.PathLike], weight_files: Sequence[str],
                    config_class: type[ConvNextConfig], config: Optional[ConvNextConfig] = None,
                    overrides: Optional[dict[str, Any]] = None, model_name: str = "the model",
                    options: Optional[HubOptions] = None) -> Pretrained:
    """Config, weights and preprocessing of ``path_or_id`` for a ``config_class`` model.

    ``weight_files``: the twin's order of preference (only the first one a hub repo has is
    downloaded). ``config`` replaces the source's config; ``overrides`` change its fields.
    """
    from .checkpoints.formats.files import open_canonical

    overrides = dict(overrides or {})
    refuse_variant_name(path_or_id, model_name, options)
    folder = model_folder(path_or_id, weight_files, options, check_convnext_config)
    if is_timm_folder(folder):
        from .checkpoints.pipeline import load_converted

        converted = load_converted(folder)
        config = config_for_model(config_class, path_or_id, config or converted.config, overrides, model_name)
        return Pretrained(config, converted.state, converted.weights_file, converted.preprocessor_config,
                          read_licence(folder))
    config = config_for_model(config_class, folder, config, overrides, model_name)
    state, file = open_canonical(folder, tuple(weight_files), config=config)
    return Pretrained(config, state, file, read_preprocessor_config(folder), read_licence(folder))


class VariantNameError(FileNotFoundError):
    """``from_pretrained`` was given a size name (``convnext-atto``) that is no folder and no cached repo."""


def refuse_variant_name(path_or_id: Union[str, os.PathLike], model_name: Optional[str] = None,
                        options: Optional[HubOptions] = None) -> None:
    """A named size is a config, not weights: say how to build it instead of asking the hub for a
    repo of that name (no such repo exists; the hub client would retry before failing)."""
    from .hub import cached_config
    from .variant_sizes import parse_variant

    name = str(path_or_id)
    if Path(name).exists() or "/" in name or not name.lower().replace("_", "-").startswith("convnext"):
        return
    try:
        version, _ = parse_variant(name)
    except ValueError:
        return
    if cached_config(name, options) is not None:
        return
    config = f"{'ConvNextV2Config' if version == 2 else 'ConvNextConfig'}.from_variant({name!r})"
    build = (f"{model_name}.from_config({config})" if model_name
             else f"the model class's from_config({config}), e.g. AutoModelForImageClassification")
    raise VariantNameError(f"{name}: a ConvNeXt size, not a folder or a hub repo; build it randomly initialised "
                           f"with {build}")


def read_preprocessor_config(folder: Union[str, os.PathLike]) -> Optional[dict]:
    """The preprocessor_config.json of a local folder (None when it has none); timm folders get the
    one that reproduces timm's evaluation transform."""
    folder = Path(folder)
    if folder.is_file():
        folder = folder.parent
    file = folder / PREPROCESSOR_NAME
    if file.is_file():
        d = read_json_file(file, "preprocessor config file")
        if not isinstance(d, dict):
            raise ValueError(f"{file}: an image processor config must be a JSON object")
        return d
    config = folder / CONFIG_NAME
    if config.is_file():
        d = read_config_dict(config)
        if is_timm_config(d):
            return timm_preprocessor_config(d)
    return None


def preprocessor_config_of(path_or_id: Union[str, os.PathLike],
                           options: Optional[HubOptions] = None) -> Optional[dict]:
    """The preprocessing of a model source (folder or hub id) without loading its weights; None
    when it has no preprocessor_config.json (and is not a timm source)."""
    return read_preprocessor_config(model_folder(path_or_id, (), options, check_convnext_config))


def preprocessor_source(path_or_id: Union[str, os.PathLike],
                        options: Optional[HubOptions] = None) -> Union[Path, dict]:
    """Where a processor's settings are: a preprocessor_config.json (or any JSON file named
    directly), or for a timm source the settings derived from its config.json."""
    p = Path(path_or_id)
    if p.is_file() and p.suffix == ".json":
        return p
    folder = model_folder(path_or_id, (), options, check_convnext_config)
    if (folder / PREPROCESSOR_NAME).is_file():
        return folder / PREPROCESSOR_NAME
    timm = read_preprocessor_config(folder)
    if timm is not None:
        return timm
    return resolve_file(path_or_id, PREPROCESSOR_NAME, options=options)  # raises, naming what is missing


def config_of(path_or_id: Union[str, os.PathLike], config_class: Optional[type[ConvNextConfig]] = None,
              options: Optional[HubOptions] = None, **overrides: Any) -> ConvNextConfig:
    """The config of a model source: read as ``config_class`` (by its ``model_type`` when None).
    A timm source's comes from converting its weights (timm's config.json does not give the
    model's shape)."""
    folder = model_folder(path_or_id, (), options, check_convnext_config, optional_files=())
    if not is_timm_folder(folder):
        if config_class is None:
            return _read_hub_config(folder, None, **overrides)
        return config_class.from_json_file(resolve_file(folder, CONFIG_NAME), **overrides)
    from .checkpoints.pipeline import load_converted
    from .checkpoints.formats.files import PT_WEIGHT_FILES

    config = load_converted(model_folder(path_or_id, PT_WEIGHT_FILES, options, optional_files=())).config
    config = config.copy(**overrides) if overrides else config
    if config_class is not None and not isinstance(config, config_class):
        raise ConfigError(f"{path_or_id}: a {config.model_type} checkpoint, not a {config_class.model_type} one")
    return config


def _read_hub_config(path: Union[str, os.PathLike], options: Optional[HubOptions], **overrides: Any) -> ConvNextConfig:
    """A config.json of either version (a file, a folder or a hub id), the class chosen by its
    ``model_type``; a timm config.json is handed to :func:`config_of`."""
    refuse_variant_name(path, None, options)
    file = resolve_file(path, CONFIG_NAME, options=options)
    d = read_json_file(file, "config file", ConfigError)
    if not isinstance(d, dict):
        raise ConfigError(f"{file}: a config must be a JSON object")
    check_convnext_config(file, str(path) if is_hub_id(path) else str(file))  # a ViT, say, is named as such
    if is_timm_config(d):
        return config_of(path, None, options, **overrides)
    try:
        cls = config_class_for(d.get("model_type", "convnext"))
    except ConfigError as e:
        raise ConfigError(f"{file}: {e}") from None
    return cls.from_json_file(file, **overrides)


def read_config(path_or_id: Union[str, os.PathLike], config_class: Optional[type[ConvNextConfig]] = None,
                **overrides: Any) -> ConvNextConfig:
    """``ConvNextConfig.from_pretrained`` (``config_class`` given) and ``load_config`` (None): hub
    arguments (revision, cache_dir, local_files_only, token) are taken out, the rest override fields."""
    options = HubOptions.pop_from(overrides)
    subfolder = overrides.pop("subfolder", "")
    if subfolder:
        if is_hub_id(path_or_id):
            raise ValueError(f"{path_or_id}: subfolder= is supported for local folders only")
        path_or_id = Path(path_or_id) / subfolder
    if config_class is not None:
        return config_of(path_or_id, config_class, options, **overrides)
    return _read_hub_config(path_or_id, options, **overrides)


install_source_reader(read_config)


# --- the preprocessing a model carries -------------------------------------------------------------
def as_preprocessor_dict(value: Any) -> Optional[dict]:
    """A plain JSON copy of a preprocessor config given as a dict or an image processor (None stays None)."""
    if value is None:
        return None
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if not isinstance(value, Mapping):
        raise TypeError(f"preprocessor_config must be a dict, an image processor or None, got {type(value).__name__}")
    return json.loads(json.dumps(dict(value)))


class PreprocessorConfigAttribute:
    """``model.preprocessor_config``: the ``preprocessor_config.json`` content of the folder or
    repo the model was loaded from (for a timm source: timm's evaluation transform), or None.

    transformers keeps the processor apart from the model; here the model also remembers it, so
    that ``save_pretrained`` writes it beside the weights and a re-saved model is preprocessed as
    it was trained (``convnext predict`` reads it). Assign a dict, an image processor or None.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}"

    def __get__(self, obj: Any, objtype: Optional[type] = None) -> Any:
        if obj is None:
            return self
        return obj.__dict__.get(self.slot)

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.slot] = as_preprocessor_dict(value)  # kept out of torch's and Keras' tracking


def save_preprocessor_config(directory: Union[str, os.PathLike], value: Any) -> Optional[Path]:
    """Write ``directory/preprocessor_config.json`` from a dict or image processor; nothing for None."""
    d = as_preprocessor_dict(value)
    if d is None:
        return None
    from .fileio import atomic_write_text

    path = Path(directory) / PREPROCESSOR_NAME
    atomic_write_text(path, json.dumps(d, indent=2, sort_keys=True) + "\n")
    return path


# --- the from_pretrained / save_pretrained skeleton of both twins --------------------------------------
M = TypeVar("M", bound="PretrainedModel")


@dataclass(frozen=True)
class WeightSlot:
    """Where one canonical tensor goes in a model: its shape in the canonical (PyTorch) layout, and
    the function that copies a tensor of that shape into the model's parameter or variable. The
    tensor may be a LazyArray: ``assign`` reads it (``lazy.materialise``) and drops each copy it
    makes as soon as the next exists, so a load holds at most two copies of one tensor."""

    shape: tuple[int, ...]
    assign: Callable[[np.ndarray], None]


def _nbytes(array: Any) -> int:
    """The size of a checkpoint tensor (an array, a LazyArray, a framework tensor) without reading it."""
    nbytes = getattr(array, "nbytes", None)
    return int(nbytes) if nbytes is not None else np.asarray(array).nbytes


def requested_dtype_name(requested: Any, config: ConvNextConfig) -> Optional[str]:
    """The dtype a ``from_pretrained`` dtype argument asks for, by name: None stays None, ``"auto"``
    is the one config.json records (``dtype`` or ``torch_dtype``; float32 when neither), and
    ``"torch.float16"`` is ``"float16"``. Each twin checks the name against what it supports."""
    if requested is None:
        return None
    if requested == "auto":
        requested = config.extra.get("dtype") or config.extra.get("torch_dtype") or "float32"
    return str(requested).replace("torch.", "")


class PretrainedModel:
    """What both twins' ``from_pretrained``, ``load_numpy_state_dict`` and ``save_pretrained`` do,
    once, without a framework. A twin's mixin supplies only what is its own:

    - ``weight_files``: its order of preference among a folder's weights files;
    - ``_weight_slots()``: its parameters under canonical names (:class:`WeightSlot`);
    - ``numpy_state_dict()``, ``_saved_architecture()``, ``_saved_dtype()`` and ``_write_weights()``
      for saving;
    - a public ``from_pretrained`` that builds the model its way (dtype, data layout) and calls
      :meth:`_load_pretrained`, and a public ``save_pretrained`` with its defaults calling
      :meth:`_save_pretrained`.

    Loading streams: the model is built first, then each checkpoint tensor is read, copied into
    its parameter and dropped, so that loading holds the model and one tensor, not two models.
    """

    config_class: ClassVar[type[ConvNextConfig]]
    base_model_prefix: ClassVar[str]
    weight_files: ClassVar[tuple[str, ...]] = ()

    preprocessor_config = PreprocessorConfigAttribute()

    # --- loading ------------------------------------------------------------------------------------
    @classmethod
    def from_config(cls: type[M], config: ConvNextConfig, **kwargs: Any) -> M:
        """A randomly initialised model of ``config`` (as transformers' ``from_config``)."""
        return cls(config, **kwargs)

    @classmethod
    def _load_pretrained(cls: type[M], path_or_id: Union[str, os.PathLike, None],
                         build: Callable[[ConvNextConfig], M], *, config: Optional[ConvNextConfig],
                         overrides: dict[str, Any], options: HubOptions, ignore_mismatched_sizes: bool,
                         subfolder: str = "", state_dict: Optional[Mapping[str, Any]] = None,
                         ) -> tuple[M, dict[str, list]]:
        """The model ``build(config)`` makes for the source, with the source's weights (or
        ``state_dict``, canonical names, numpy arrays) and preprocessing, and transformers' loading
        info (missing, unexpected, mismatched keys). As in transformers, missing and unexpected keys
        load with a warning (the model keeps its initial values there); mismatched shapes raise
        SizeMismatchError unless ``ignore_mismatched_sizes``. ``path_or_id`` None: ``config``
        builds the model and ``state_dict`` (if any) fills it."""
        if path_or_id is None:
            if config is None:
                raise ValueError("from_pretrained(None, ...) needs config= (and state_dict= for weights)")
            config = config.copy(**overrides) if overrides else config
            model, weights, where, preprocessor, licence = build(config), state_dict, "state_dict", None, None
        else:
            if subfolder:
                if is_hub_id(path_or_id):
                    raise ValueError(f"{path_or_id}: subfolder= is supported for local folders only")
                path_or_id = Path(path_or_id) / subfolder
            source = load_pretrained(path_or_id, cls.weight_files, cls.config_class, config, overrides,
                                     cls.__name__, options)
            model = build(source.config)
            weights, preprocessor, licence = source.state, source.preprocessor_config, source.licence
            where = str(source.weights_file)
            if state_dict is not None:
                weights, where = state_dict, "state_dict"
            model.config._name_or_path = str(path_or_id)
        info = LoadReport()
        if weights is not None:
            model.load_numpy_state_dict(weights, source=where, ignore_mismatched_sizes=ignore_mismatched_sizes,
                                        report_to=info, strict=False)
        model.preprocessor_config = preprocessor
        model.__dict__["_licence"] = licence  # kept out of torch's and Keras' tracking
        return model, {"missing_keys": info.missing_keys, "unexpected_keys": info.unexpected_keys,
                       "mismatched_keys": info.mismatched_keys, "error_msgs": []}

    def _weight_slots(self) -> dict[str, WeightSlot]:
        raise NotImplementedError

    def load_numpy_state_dict(self, state: Mapping[str, Any], source: str = "checkpoint",
                              ignore_mismatched_sizes: bool = False, report_to: Optional[LoadReport] = None,
                              strict: bool = True) -> None:
        """Load canonical-named weights (numpy arrays, or tensors read when used), adapting prefixes
        and refusing what does not fit (``strict=False``: missing and unexpected keys are warned
        about and reported instead, see ``match_state_dict``). Every check runs before the first
        weight is copied, so a refused checkpoint leaves the model as it was."""
        slots = self._weight_slots()
        matched, report = match_state_dict(state, {k: s.shape for k, s in slots.items()}, self.base_model_prefix,
                                           source=source, ignore_mismatched_sizes=ignore_mismatched_sizes,
                                           strict=strict, model_name=type(self).__name__)
        for name, array in matched.items():
            dtype = array.dtype if hasattr(array, "dtype") else np.asarray(array).dtype
            if not np.issubdtype(dtype, np.floating):
                raise CheckpointError(f"{source}: {name} has dtype {dtype}, expected floating point")
        # read, copied, dropped: one tensor at a time, the largest first (a framework that gives a
        # variable a new buffer per assignment then reuses the freed large buffers for smaller ones)
        for name in sorted(matched, key=lambda n: -_nbytes(matched[n])):
            slots[name].assign(matched[name])
        if report_to is not None:
            report_to.__dict__.update(report.__dict__)

    # --- saving -------------------------------------------------------------------------------------
    def numpy_state_dict(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _saved_architecture(self) -> str:
        """The class name config.json records (transformers' PyTorch name)."""
        raise NotImplementedError

    def _saved_dtype(self) -> str:
        """The dtype config.json records for the weights (``"float32"``, ...)."""
        raise NotImplementedError

    def _write_weights(self, directory: Path, config: ConvNextConfig, **options: Any) -> None:
        raise NotImplementedError

    def _save_pretrained(self, save_directory: Union[str, os.PathLike], image_processor: Any = None,
                         **weights_options: Any) -> Path:
        """Write the weights (the twin's ``_write_weights`` with ``weights_options``), config.json and
        preprocessor_config.json from ``image_processor`` or else ``self.preprocessor_config``."""
        directory = Path(save_directory)
        if directory.exists() and not directory.is_dir():
            raise FileExistsError(f"{directory}: exists and is not a folder")
        directory.mkdir(parents=True, exist_ok=True)
        config = self.config.copy()
        config.architectures = [self._saved_architecture()]
        config.extra["dtype"] = self._saved_dtype()
        config.extra.pop("torch_dtype", None)
        self._write_weights(directory, config, **weights_options)
        config.save_pretrained(directory)
        save_preprocessor_config(directory, image_processor if image_processor is not None
                                 else self.preprocessor_config)
        write_model_card(directory, self.licence, config.architectures[0])  # the licence travels with the weights
        return directory

    @property
    def licence(self) -> Optional[Licence]:
        """The licence of the weights this model was loaded with (its folder's model card, a timm
        config's ``pretrained_cfg.license``), written again by ``save_pretrained``; None if unknown."""
        return self.__dict__.get("_licence")

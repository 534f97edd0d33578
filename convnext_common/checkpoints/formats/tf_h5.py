"""transformers' TensorFlow checkpoints (``tf_model.h5``) as canonical PyTorch-layout arrays, and back.

numpy and h5py only: TensorFlow is not needed to read or write these files.

A ``tf_model.h5`` is a Keras 2 ``save_weights`` HDF5 file:

- root attributes: ``layer_names`` (the model's top-level layers, e.g. ``["convnext", "classifier"]``),
  ``backend``, ``keras_version``;
- one group per layer whose ``weight_names`` attribute lists the layer's variables, e.g.
  ``tf_conv_next_for_image_classification/convnext/encoder/stages.0/layers.0/dwconv/kernel:0``
  (model name / layer path / variable), each stored as a dataset at that path inside the group;
- an empty ``top_level_model_weights`` group.

Names map to the canonical ones by one rule (``/`` becomes ``.``, the model name and ``:0`` go,
a base model's main layer ``convnext/`` goes) plus two tables: which kind of module a path part
is, and what each kind calls its variables. Layouts differ only for kernels: conv kernels are
HWIO in TF, (O, I, kh, kw) in PyTorch (transformers' TF depthwise conv is a grouped Conv2D with
kernel (7, 7, 1, C), which is the HWIO view of PyTorch's (C, 1, 7, 7)); dense kernels are
(in, out) in TF, (out, in) in PyTorch.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from functools import partial
from typing import Any, Mapping, Optional

import numpy as np

from ... import heads
from ...config import ConvNextConfig
from ...fileio import atomic_write
from ..canonical import head_of_state
from ..errors import CheckpointError
from .keras_h5 import str_list_attr
from .lazy import LazyArray

#: the kind of a module, from the last part of its path; the kind decides variable names and layouts.
MODULE_KINDS: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"patch_embeddings|dwconv|downsampling_layer\.1|proj|pred"), "conv"),  # proj, pred: FCMAE decoder
    (re.compile(r"pwconv[12]|classifier"), "dense"),
    (re.compile(r"layernorm|downsampling_layer\.0|hidden_states_norms\.[A-Za-z0-9_]+"), "norm"),
    (re.compile(r"grn"), "grn"),
    (re.compile(r"layers\.\d+"), "block"),  # a block's own variable: layer scale
    (re.compile(r"decoder"), "decoder"),  # the FCMAE decoder's own variable: the mask token (1, D, 1, 1)
)

#: per kind: TF variable name -> PyTorch parameter name.
VARIABLE_NAMES: dict[str, dict[str, str]] = {
    "conv": {"kernel": "weight", "bias": "bias"},
    "dense": {"kernel": "weight", "bias": "bias"},
    "norm": {"gamma": "weight", "beta": "bias"},
    "grn": {"weight": "weight", "bias": "bias"},
    "block": {"layer_scale_parameter": "layer_scale_parameter"},
    "decoder": {"mask_token": "mask_token"},
}

#: (kind, PyTorch name) -> axes that turn the PyTorch layout into the TF one.
TO_TF_AXES: dict[tuple[str, str], tuple[int, ...]] = {
    ("conv", "weight"): (2, 3, 1, 0),  # (O, I, kh, kw) -> (kh, kw, I, O)
    ("dense", "weight"): (1, 0),       # (out, in) -> (in, out)
}
TO_PT_AXES: dict[tuple[str, str], tuple[int, ...]] = {
    ("conv", "weight"): (3, 2, 0, 1),
    ("dense", "weight"): (1, 0),
}

#: the trunk's main layer in transformers' TF models (the checkpoint prefix in PyTorch).
MAIN_LAYERS = ("convnext", "convnextv2")
TOP_LEVEL_GROUP = "top_level_model_weights"
#: the HDF5 layout written is the Keras 2 one (tf-keras 2.x), which is what transformers 4.x reads.
KERAS_FORMAT_VERSION = "2.21.0"

# One module per part: "stages.0" and "hidden_states_norms.stage2" are single parts.
_PART = re.compile(r"hidden_states_norms\.[^.]+|[^.]+(?:\.\d+(?=\.|$))?")


def module_kind(part: str) -> str:
    """The kind of the module named ``part`` (``"dwconv"`` -> ``"conv"``); KeyError if not a ConvNeXt module."""
    for pattern, kind in MODULE_KINDS:
        if pattern.fullmatch(part):
            return kind
    raise KeyError(part)


def split_canonical_name(name: str) -> list[str]:
    """``"convnext.encoder.stages.0.layers.1.dwconv.weight"`` -> ``["convnext", "encoder", "stages.0", "layers.1",
    "dwconv", "weight"]``."""
    parts = _PART.findall(name)
    if ".".join(parts) != name:
        raise KeyError(name)
    return parts


def canonical_to_tf(name: str, array: np.ndarray) -> tuple[str, np.ndarray]:
    """A canonical tensor as transformers' TF variable: ``("convnext/.../dwconv/kernel", HWIO array)``."""
    parts = split_canonical_name(name)
    if len(parts) < 2:
        raise KeyError(name)
    kind = module_kind(parts[-2])
    pt_leaf = parts[-1]
    tf_leaf = {pt: tf for tf, pt in VARIABLE_NAMES[kind].items()}.get(pt_leaf)
    if tf_leaf is None:
        raise KeyError(name)
    axes = TO_TF_AXES.get((kind, pt_leaf))
    array = np.asarray(array)
    if axes is not None:
        if array.ndim != len(axes):
            raise ValueError(f"{name}: expected a {len(axes)}-d array, got shape {tuple(array.shape)}")
        array = np.ascontiguousarray(array.transpose(axes))
    return "/".join(parts[:-2] + [parts[-2], tf_leaf]), array


def tf_name_to_canonical(path: str) -> tuple[str, Optional[tuple[int, ...]]]:
    """transformers' TF variable path ``"convnext/.../dwconv/kernel"`` (no model name, no ``:0``) ->
    (canonical name, axes that turn the TF layout into PyTorch's or None); KeyError if not a ConvNeXt variable."""
    parts = path.split("/")
    if len(parts) < 2:
        raise KeyError(path)
    kind = module_kind(parts[-2])
    pt_leaf = VARIABLE_NAMES[kind].get(parts[-1])
    if pt_leaf is None:
        raise KeyError(path)
    return ".".join(parts[:-1] + [pt_leaf]), TO_PT_AXES.get((kind, pt_leaf))


def tf_to_canonical(path: str, array: np.ndarray) -> tuple[str, np.ndarray]:
    """transformers' TF variable ``"convnext/.../dwconv/kernel"`` (no model name, no ``:0``) as a canonical tensor."""
    name, axes = tf_name_to_canonical(path)
    array = np.asarray(array)
    if axes is not None:
        if array.ndim != len(axes):
            raise ValueError(f"{path}: expected a {len(axes)}-d array, got shape {tuple(array.shape)}")
        array = np.ascontiguousarray(array.transpose(axes))
    return name, array


# --- reading ------------------------------------------------------------------------------------

def _open_h5(path: Path):
    import h5py

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise CheckpointError(f"{path}: not a readable HDF5 file ({e})") from None


def is_transformers_tf_h5(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like a transformers ``tf_model.h5`` of a ConvNeXt (names checked, not values)."""
    try:
        with _open_h5(Path(path)) as f:
            layer_names = str_list_attr(f, "layer_names")
            if not layer_names:
                return False
            for layer in layer_names:
                group = f.get(layer)
                for weight in (str_list_attr(group, "weight_names") or []) if group is not None else []:
                    _parse_weight_name(weight)
            return True
    except (CheckpointError, OSError, KeyError, ValueError):
        return False


def _parse_weight_name(weight: str) -> tuple[str, str]:
    """``"model_name/convnext/.../kernel:0"`` -> (model name, ``"convnext/.../kernel"``); KeyError if not ours."""
    parts = weight.split("/")
    if len(parts) < 3 or not parts[-1].endswith(":0"):
        raise KeyError(weight)
    rel = "/".join(parts[1:])[:-2]
    tf_name_to_canonical(rel)  # KeyError if not a ConvNeXt variable
    return parts[0], rel


def load_h5_state_dict(path: str | os.PathLike, config: Optional[ConvNextConfig] = None) -> dict[str, np.ndarray]:
    """Read a transformers ``tf_model.h5`` into canonical names and PyTorch layouts.

    Returns exactly the keys transformers' PyTorch class has: ``convnext.*``/``convnextv2.*`` and
    ``classifier.*`` for a classification checkpoint, unprefixed trunk names for a base model.
    With ``config``, a checkpoint of the other ConvNeXt version is refused.
    Raises CheckpointError naming the file when it is not such a checkpoint.
    """
    return {name: np.asarray(tensor) for name, tensor in stream_h5_state_dict(path, config).items()}


def stream_h5_state_dict(path: str | os.PathLike, config: Any = None) -> dict[str, LazyArray]:
    """:func:`load_h5_state_dict`'s names and checks, with each dataset read only when used."""
    path = Path(path)
    state: dict[str, LazyArray] = {}
    with _open_h5(path) as f:
        layer_names = str_list_attr(f, "layer_names")
        if not layer_names:
            raise CheckpointError(
                f"{path}: not a transformers TF checkpoint (no 'layer_names' attribute; a Keras 3 .weights.h5 "
                "or another kind of HDF5 file)")
        # A base model (TFConvNextModel) holds only its main layer; its names lose that prefix.
        strip_main = len(layer_names) == 1 and layer_names[0] in MAIN_LAYERS
        for layer in layer_names:
            group = f.get(layer)
            if group is None:
                raise CheckpointError(f"{path}: layer {layer!r} is listed in layer_names but has no group")
            for weight in str_list_attr(group, "weight_names") or []:
                try:
                    _, rel = _parse_weight_name(weight)
                except KeyError:
                    raise CheckpointError(
                        f"{path}: not a transformers TF ConvNeXt checkpoint ({weight!r} is not a ConvNeXt "
                        "variable of transformers' TFConvNext*/TFConvNextV2* classes)") from None
                if weight not in group:
                    raise CheckpointError(f"{path}: variable {weight} is listed but not stored")
                if strip_main:
                    rel = rel.split("/", 1)[1]
                name, axes = tf_name_to_canonical(rel)
                dataset = group[weight]
                shape = tuple(dataset.shape)
                if axes is not None:
                    if len(shape) != len(axes):
                        raise CheckpointError(f"{path}: {rel}: expected a {len(axes)}-d array, got shape {shape}")
                    shape = tuple(shape[a] for a in axes)
                state[name] = LazyArray(shape, dataset.dtype, partial(_read_dataset, path, f"{layer}/{weight}", axes))
    if not state:
        raise CheckpointError(f"{path}: holds no variables")
    if config is not None:
        found = {k.split(".", 1)[0] for k in state} & set(MAIN_LAYERS)
        if strip_main:
            found = {layer_names[0]}
        if found and found != {config.model_type}:
            raise CheckpointError(f"{path}: holds a {found.pop()} checkpoint but the config's model_type is "
                                  f"{config.model_type!r}")
    return state


def _read_dataset(path: Path, key: str, axes: Optional[tuple[int, ...]]) -> np.ndarray:
    with _open_h5(path) as f:
        array = f[key][()]
    return array if axes is None else np.ascontiguousarray(array.transpose(axes))


# --- writing ------------------------------------------------------------------------------------

def tf_model_name(architecture: str) -> str:
    """Keras' default name of a TF class (transformers' model names in tf_model.h5):
    ``"TFConvNextForImageClassification"`` -> ``"tf_conv_next_for_image_classification"``."""
    name = architecture if architecture.startswith("TF") else "TF" + architecture
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


#: where each module comes among its siblings when Keras lists weights (a layer's own variables come
#: first, then its sub-layers in the order they were built); numbered modules sort by number.
MODULE_ORDER = ("convnext", "convnextv2", "embeddings", "patch_embeddings", "encoder", "stages",
                "downsampling_layer", "layers", "dwconv", "layernorm", "pwconv1", "grn", "pwconv2",
                "hidden_states_norms", "classifier", "decoder", "proj", "pred")
_VARIABLE_ORDER = {"kernel": 0, "gamma": 0, "weight": 0, "layer_scale_parameter": 0, "bias": 1, "beta": 1}


def _keras_order_key(path: str) -> tuple:
    *modules, leaf = path.split("/")
    key = []
    for m in modules:
        base, _, suffix = m.partition(".")
        rank = MODULE_ORDER.index(base) if base in MODULE_ORDER else len(MODULE_ORDER)
        key.append((rank, int(suffix) if suffix.isdigit() else 0, suffix))
    key.append((-1, _VARIABLE_ORDER.get(leaf, 2), leaf))
    return tuple(key)


def save_hf_tf_h5(state: Mapping[str, np.ndarray], config: ConvNextConfig, path: str | os.PathLike,
                  architecture: Optional[str] = None) -> Path:
    """Write canonical ``state`` as the ``tf_model.h5`` transformers' TF class would save.

    ``architecture``: ``"ConvNextForImageClassification"``, ``"ConvNextModel"``, ``"ConvNextBackbone"``
    (V2 likewise, with or without the ``TF`` prefix); default: ``config.architectures[0]``, else
    inferred from ``state``. transformers 4.x's ``TFConvNext*.from_pretrained`` reads the result
    (it has no TF backbone; a backbone file is read by this project's twins). Written atomically.
    """
    import h5py

    path = Path(path)
    prefix = config.model_type
    if architecture is not None:
        head = heads.head_of_class_name(architecture)
        if head is None:
            raise ValueError(f"architecture {architecture!r} is not a ConvNeXt model class")
    else:
        head = heads.head_of(config) if config.architectures else head_of_state(state)
    arch = heads.class_name(config, head)  # the family (V1/V2) follows config.model_type
    model_name = tf_model_name(arch)

    p = prefix + "."
    variables: dict[str, tuple[str, np.ndarray]] = {}
    for key, array in state.items():
        if head in ("classification", heads.MASKED_IMAGE_MODELING):  # a prefixed trunk beside the head
            name = key if key.startswith((p, "classifier.", "decoder.")) else p + key
        else:
            if key.startswith("classifier."):
                continue  # a trunk-only file has no place for a head
            name = key[len(p):] if key.startswith(p) else key
        try:
            tf_path, _ = canonical_to_tf(name, array)
        except KeyError:
            raise CheckpointError(f"{path}: {key} is not a ConvNeXt parameter") from None
        if head == "base":
            tf_path = f"{prefix}/{tf_path}"  # transformers' TFConvNextModel wraps a main layer
        # keep the canonical array: the TF-layout copy is made per tensor while writing, so that
        # peak memory stays near one checkpoint instead of two
        variables[tf_path] = (name, array)
    if not variables:
        raise CheckpointError(f"{path}: nothing to write (the state dict is empty)")

    ordered = sorted(variables, key=_keras_order_key)
    layer_names: list[str] = []
    for tf_path in ordered:
        layer = tf_path.split("/", 1)[0]
        if layer not in layer_names:
            layer_names.append(layer)
    if head == "classification":
        layer_names = [prefix, "classifier"]  # an empty classifier group when num_labels == 0
    elif head == heads.MASKED_IMAGE_MODELING:
        layer_names = [prefix, "decoder"]
    ascii_str = h5py.string_dtype("ascii")

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.attrs.create("layer_names", np.array(layer_names, dtype=object), dtype=ascii_str)
            f.attrs.create("backend", "tensorflow", dtype=ascii_str)
            f.attrs.create("keras_version", KERAS_FORMAT_VERSION, dtype=ascii_str)
            for layer in sorted(layer_names):
                group = f.create_group(layer)
                names = [t for t in ordered if t.split("/", 1)[0] == layer]
                weight_names = [f"{model_name}/{t}:0" for t in names]
                if weight_names:
                    group.attrs.create("weight_names", np.array(weight_names, dtype=object), dtype=ascii_str)
                else:  # what Keras 2 writes for a layer without variables
                    group.attrs["weight_names"] = np.array([], dtype=np.float64)
                for t, weight in zip(names, weight_names):
                    group.create_dataset(weight, data=canonical_to_tf(*variables[t])[1])
            top = f.create_group(TOP_LEVEL_GROUP)
            top.attrs["weight_names"] = np.array([], dtype=np.float64)

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)
    return path

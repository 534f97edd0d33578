"""Keras' legacy HDF5 layout, which transformers' ``tf_model.h5`` (tf_h5.py) and keras-applications'
files (sources/keras_applications.py) share: the list-valued attributes that name layers and
variables, and where they lie in a ``save_weights`` file and in a whole-model ``save``."""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError


def str_list_attr(obj, name: str) -> list[str] | None:
    """A list-of-strings HDF5 attribute; Keras splits long ones into ``name0``, ``name1``, ..."""
    if name in obj.attrs:
        values = list(obj.attrs[name])
    elif f"{name}0" in obj.attrs:
        values, i = [], 0
        while f"{name}{i}" in obj.attrs:
            values.extend(obj.attrs[f"{name}{i}"])
            i += 1
    else:
        return None
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def weights_root(f):
    """The group holding ``layer_names``: the file itself (``save_weights``) or its ``model_weights``
    group (a whole-model ``save``)."""
    group = f.get("model_weights")
    if group is not None and str_list_attr(group, "layer_names") is not None:
        return group
    return f


def layer_names(path: Path) -> list[str]:
    """The top-level layer names of a Keras legacy h5 file (empty when it lists none); CheckpointError
    naming the file when it is not readable HDF5, or is a Keras 3 ``.weights.h5`` (another layout)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            names = str_list_attr(weights_root(f), "layer_names")
            if names is None and "layers" in f:
                raise CheckpointError(f"{path}: a Keras 3 .weights.h5 file; save the model with the legacy "
                                      f"h5 format (tf-keras save_weights) or convert from the source library")
    except OSError as e:
        raise CheckpointError(f"{path}: not a readable HDF5 file ({e})") from None
    return names or []

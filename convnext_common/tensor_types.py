"""``return_tensors``: the array types the image processors can hand back, found by name.

The core converts to numpy only. Another type ("pt", "tf", ... as transformers names them) is a
function taking the processed numpy batch, registered here by the package that provides it, and
declared in the entry point group :data:`ENTRY_POINT_GROUP` so that it is found before (or
without) that package being imported. In ``pyproject.toml``::

    [project.entry-points."convnext_twins.tensor_types"]
    mx = "my_package.tensors:from_numpy"

A registration made at run time (:func:`register_tensor_type`) wins over a declaration.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

ENTRY_POINT_GROUP = "convnext_twins.tensor_types"

Converter = Callable[[Any], Any]  # a numpy batch -> the requested type

_LOCK = threading.Lock()
_CONVERTERS: dict[str, Converter] = {"np": lambda batch: batch}


def register_tensor_type(name: str, from_numpy: Converter) -> None:
    """Make ``return_tensors=name`` return ``from_numpy(batch)`` (replacing an earlier converter)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a tensor type name must be a non-empty string, got {name!r}")
    if not callable(from_numpy):
        raise ValueError(f"tensor type {name!r}: the converter must be callable, got {from_numpy!r}")
    with _LOCK:
        _CONVERTERS[name] = from_numpy


def _declared(name: str | None = None) -> list[EntryPoint]:
    from importlib import metadata  # only when a name is not registered: it scans every installed package

    selection = metadata.entry_points(group=ENTRY_POINT_GROUP)
    return [ep for ep in selection if name is None or ep.name == name]


def known_tensor_types() -> list[str]:
    """The names registered or declared by installed packages (their converters are not loaded)."""
    with _LOCK:
        names = set(_CONVERTERS)
    return sorted(names | {ep.name for ep in _declared()})


def tensor_converter(name: str) -> Converter:
    """The converter of ``return_tensors=name``, loading its declaration on first use.

    ValueError for a name nobody provides; ImportError, naming the missing module, when the package
    that declares it cannot be imported (its framework is not installed).
    """
    with _LOCK:
        found = _CONVERTERS.get(name)
    if found is not None:
        return found
    declared = _declared(name)
    if not declared:
        raise ValueError(f"return_tensors={name!r} is not a tensor type this installation provides; "
                         f"known: {known_tensor_types()} (packages declare more in the entry point group "
                         f"{ENTRY_POINT_GROUP!r})")
    entry = declared[0]
    try:
        converter = entry.load()
    except ImportError as e:
        raise ImportError(f"return_tensors={name!r} needs {entry.value.split(':')[0].split('.')[0]!r}, which "
                          f"cannot be imported ({e}); install it to get these tensors") from None
    register_tensor_type(name, converter)
    return converter

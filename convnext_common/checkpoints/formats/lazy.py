"""Checkpoint tensors read from their file when numpy first asks for them.

A loader that reads a whole checkpoint into memory before copying it into a model holds the
weights twice; one that reads each tensor just before copying it holds one tensor more than the
model. A :class:`LazyArray` tells its shape and dtype without reading, and reads a fresh array each
time it is converted (``np.asarray``), which the caller drops once it has copied it. Name matching
and checks (``matching.match_state_dict``) work on these as they work on arrays.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np


class LazyArray:
    """A tensor of ``shape`` and ``dtype`` that ``read()`` produces (a new array per call)."""

    __slots__ = ("shape", "dtype", "_read")

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, read: Callable[[], np.ndarray]):
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self._read = read

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def read(self) -> np.ndarray:
        array = self._read()
        if array.shape != self.shape:
            array = array.reshape(self.shape)
        return array

    def reshape(self, *shape) -> "LazyArray":
        """The same values under another shape of the same size (read when used, like the original)."""
        new = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)
        if int(np.prod(new, dtype=np.int64)) != self.size:
            raise ValueError(f"cannot reshape a tensor of shape {self.shape} into {new}")
        return LazyArray(new, self.dtype, self.read)

    def __array__(self, dtype: Optional[np.dtype] = None, copy: Optional[bool] = None) -> np.ndarray:
        if copy is False:
            raise ValueError("a LazyArray is read from its file: converting it always makes an array")
        array = self.read()
        return array if dtype is None else array.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"LazyArray(shape={self.shape}, dtype={self.dtype})"


def materialise(array) -> np.ndarray:
    """An ndarray for ``array`` (a LazyArray is read; an ndarray is returned as it is)."""
    return array.read() if isinstance(array, LazyArray) else np.asarray(array)

"""Read the files ``torch.save`` writes (``.bin``/``.pth``/``.pt``/``.ckpt``) with numpy alone.

A torch checkpoint is a pickle, and a pickle may name any function to call while it is read, so a
stranger's file could run code. This reader unpickles with an allow-list, the same one torch's
``weights_only=True`` loader applies to state dicts and training checkpoints: plain containers
(``collections.OrderedDict``, ``Counter``, sets, bytes), torch's tensor rebuild functions, its
storage and dtype names, ``torch.Size`` / ``torch.device``, and ``argparse.Namespace`` (the training
scripts' command line: an attribute bag). Every other global is refused before anything is called.
Tensors come back as numpy arrays: read-only views of a memory map of the file where the bytes allow
it (no second copy of a large checkpoint), bfloat16 widened to float32.

Two layouts exist:

- zip (torch >= 1.6): ``<archive>/data.pkl`` is the pickle; a tensor's storage is a persistent id
  ``("storage", <dtype's storage class>, key, location, numel)`` whose bytes are the record
  ``<archive>/data/<key>`` (stored uncompressed, in the byte order of ``<archive>/byteorder``,
  little-endian when absent). Each record's CRC is checked before its bytes are used.
- legacy (older torch, ``_use_new_zipfile_serialization=False``): five pickles in a row (magic
  number, protocol version, system info, the object, the list of storage keys), then per key an int64
  element count and the storage's bytes.
"""

from __future__ import annotations

import io
import mmap
import pickle
import struct
import zipfile
import zlib
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np

from ..errors import CheckpointError

#: torch's legacy storage classes and dtype names -> numpy dtype (little-endian; "bfloat16" is widened).
_STORAGE_DTYPES = {"DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2", "BFloat16Storage": "bfloat16",
                   "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
                   "ByteStorage": "u1", "BoolStorage": "?", "ComplexDoubleStorage": "<c16",
                   "ComplexFloatStorage": "<c8", "UntypedStorage": "u1"}
_DTYPES = {"float64": "<f8", "double": "<f8", "float32": "<f4", "float": "<f4", "float16": "<f2", "half": "<f2",
           "bfloat16": "bfloat16", "int64": "<i8", "long": "<i8", "int32": "<i4", "int": "<i4", "int16": "<i2",
           "short": "<i2", "int8": "i1", "uint8": "u1", "bool": "?", "uint16": "<u2", "uint32": "<u4",
           "uint64": "<u8", "complex128": "<c16", "cdouble": "<c16", "complex64": "<c8", "cfloat": "<c8"}
#: dtypes and quantisation schemes torch's allow-list admits that numpy cannot hold (refused per tensor).
_OTHER_TORCH_DTYPES = ("float8", "float4", "uint", "int", "qint", "quint", "per_tensor", "per_channel", "complex",
                       "bits")
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class RefusedPickle(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list: it would run code that builds no tensor."""


@dataclass(frozen=True)
class TorchName:
    """A torch object the allow-list admits but that means nothing to numpy (``torch.float32``,
    ``torch.device("cpu")``, a quantisation scheme): kept as its name."""

    name: str
    args: tuple = ()


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> str:
        return _STORAGE_DTYPES[self.name]


def _itemsize(dtype: str) -> int:
    return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


class _Storage:
    """A storage's bytes (a 1-D uint8 array) and the dtype it was saved with."""

    def __init__(self, raw: np.ndarray, dtype: str, name: str):
        self.raw, self.dtype, self.name = raw, dtype, name

    def elements(self, dtype: str, byteorder: str) -> np.ndarray:
        base = np.dtype("<u2" if dtype == "bfloat16" else dtype)
        if byteorder == "big":
            base = base.newbyteorder(">")
        usable = self.raw.size - self.raw.size % base.itemsize
        return self.raw[:usable].view(base)


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                    metadata=None, *, dtype: Optional[str] = None, byteorder: str = "little") -> np.ndarray:
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor without a storage")
    dtype = dtype or storage.dtype
    elements = storage.elements(dtype, byteorder)
    size = tuple(int(d) for d in size)
    stride = tuple(int(s) for s in stride)
    offset = int(storage_offset)
    if len(size) != len(stride) or offset < 0 or any(d < 0 for d in size) or any(s < 0 for s in stride):
        raise pickle.UnpicklingError(f"tensor of size {list(size)}, stride {list(stride)}, offset {offset}")
    if 0 in size:
        array = np.zeros(size, elements.dtype)
    else:
        last = offset + sum((d - 1) * s for d, s in zip(size, stride))
        if last >= elements.size:
            raise pickle.UnpicklingError(f"a tensor of size {list(size)} reaches element {last} of storage "
                                         f"{storage.name}, which holds {elements.size}")
        array = np.lib.stride_tricks.as_strided(elements[offset:], size, [s * elements.itemsize for s in stride],
                                                writeable=False)
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("="))
    if dtype == "bfloat16":  # numpy has no bfloat16: its bits are the upper half of a float32's
        array = (array.astype("<u4") << 16).view("<f4")
    return array


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None,
                       **kw) -> np.ndarray:
    if not isinstance(dtype, TorchName) or dtype.name not in _DTYPES:
        raise pickle.UnpicklingError(f"tensor dtype {getattr(dtype, 'name', dtype)} has no numpy equivalent")
    return _rebuild_tensor(storage, storage_offset, size, stride, dtype=_DTYPES[dtype.name], **kw)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    return data


def _rebuild_from_type(func, new_type, args, state):
    """A tensor (or Parameter) with Python attributes: the tensor is rebuilt, the attributes dropped."""
    if not (isinstance(new_type, TorchName) and new_type.name in ("torch.Tensor", "torch.nn.parameter.Parameter")):
        raise RefusedPickle(f"a tensor subclass {new_type}")
    return func(*args)


def _encode(text: str, encoding: str = "latin1") -> bytes:  # how protocol 2 stores bytes
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("_codecs.encode outside bytes")
    return text.encode("latin1")


def _argparse_namespace():
    import argparse

    return argparse.Namespace


class _WeightsOnlyUnpickler(pickle.Unpickler):
    """Unpickles only what a state dict or training checkpoint holds; refuses any other global."""

    def __init__(self, file, load_storage: Optional[Callable[[str, _StorageType, int], _Storage]],
                 byteorder: str = "little"):
        super().__init__(file, encoding="utf-8")
        self._load_storage = load_storage
        self._byteorder = byteorder

    def find_class(self, module: str, name: str) -> Any:
        key = f"{module}.{name}"
        order = {"byteorder": self._byteorder}
        allowed: dict[str, Any] = {
            "collections.OrderedDict": OrderedDict, "collections.Counter": Counter, "builtins.set": set,
            "builtins.frozenset": frozenset, "builtins.bytearray": bytearray, "builtins.complex": complex,
            "builtins.slice": slice, "_codecs.encode": _encode, "argparse.Namespace": _argparse_namespace(),
            "torch._utils._rebuild_tensor_v2": lambda *a: _rebuild_tensor(*a, **order),
            "torch._utils._rebuild_tensor_v3": lambda *a: _rebuild_tensor_v3(*a, **order),
            "torch._utils._rebuild_parameter": _rebuild_parameter,
            "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
            "torch._tensor._rebuild_from_type_v2": _rebuild_from_type,
            "torch.Size": tuple,
            "torch.device": lambda *args: TorchName(key, args),
        }
        if key in allowed:
            return allowed[key]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and (name in _DTYPES or name.startswith(_OTHER_TORCH_DTYPES)):
            return TorchName(name)  # a dtype or quantisation scheme: a tensor of it is refused when built
        if key in ("torch.Tensor", "torch.nn.parameter.Parameter"):
            return TorchName(key)
        raise RefusedPickle(f"GLOBAL {key}")

    def persistent_load(self, pid: Any) -> Any:
        if self._load_storage is None:
            raise pickle.UnpicklingError("a persistent id outside a torch checkpoint")
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] not in ("storage", b"storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {str(pid)[:60]}")
        storage_type, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"storage of type {storage_type!r}")
        key = key.decode("ascii") if isinstance(key, bytes) else str(key)
        storage = self._load_storage(key, storage_type, int(numel))
        view = pid[5] if len(pid) > 5 else None
        if view is not None:  # legacy: a storage that is a slice of another
            _, offset, view_size = view
            itemsize = _itemsize(storage.dtype)
            raw = storage.raw[int(offset) * itemsize:(int(offset) + int(view_size)) * itemsize]
            storage = _Storage(raw, storage.dtype, f"{key} view")
        return storage


# --- zip files ------------------------------------------------------------------------------------
def _record_bytes(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, mapped: Optional[mmap.mmap]) -> np.ndarray:
    """A record's bytes: a view of the file's memory map for a stored record, after its CRC check."""
    if info.compress_type != zipfile.ZIP_STORED or mapped is None:
        return np.frombuffer(zf.read(info), np.uint8)
    header = mapped[info.header_offset:info.header_offset + 30]
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"record {info.filename} has no local header")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    start = info.header_offset + 30 + name_len + extra_len
    if start + info.file_size > len(mapped):
        raise zipfile.BadZipFile(f"record {info.filename} runs past the end of the file")
    raw = np.frombuffer(mapped, np.uint8, info.file_size, start)
    if zlib.crc32(raw) != info.CRC:
        raise zipfile.BadZipFile(f"record {info.filename} fails its CRC check")
    return raw


def _archive_prefix(zf: zipfile.ZipFile) -> str:
    pickles = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1] or \
              [n for n in zf.namelist() if n == "data.pkl"]
    if len(pickles) != 1:
        raise zipfile.BadZipFile("no data.pkl record: a zip file, but not one torch.save wrote")
    return pickles[0][: -len("data.pkl")]


def _load_zip(path: Path) -> Any:
    with open(path, "rb") as f, zipfile.ZipFile(f) as zf:
        prefix = _archive_prefix(zf)
        infos = {i.filename: i for i in zf.infolist()}
        byteorder = "little"
        if prefix + "byteorder" in infos:
            byteorder = zf.read(prefix + "byteorder").decode("ascii").strip()
            if byteorder not in ("little", "big"):
                raise zipfile.BadZipFile(f"byteorder record says {byteorder!r}")
        size = path.stat().st_size
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        storages: dict[str, _Storage] = {}

        def load_storage(key: str, storage_type: _StorageType, numel: int) -> _Storage:
            if key not in storages:
                info = infos.get(f"{prefix}data/{key}")
                if info is None:
                    raise pickle.UnpicklingError(f"storage {key} has no record data/{key}")
                storages[key] = _Storage(_record_bytes(path, zf, info, mapped), storage_type.dtype, key)
            storage = storages[key]
            if storage.raw.size < numel * _itemsize(storage_type.dtype):
                raise pickle.UnpicklingError(f"storage {key} holds {storage.raw.size} bytes, not {numel} elements "
                                             f"of {storage_type.name}")
            return _Storage(storage.raw, storage_type.dtype, key)

        return _WeightsOnlyUnpickler(io.BytesIO(zf.read(prefix + "data.pkl")), load_storage, byteorder).load()


# --- legacy files ---------------------------------------------------------------------------------
def _load_legacy(path: Path) -> Any:
    with open(path, "rb") as f:
        def next_pickle(load_storage=None) -> Any:
            return _WeightsOnlyUnpickler(f, load_storage).load()

        magic = next_pickle()  # a plain pickle is refused here already if it names a global
        if magic != _LEGACY_MAGIC:
            raise pickle.UnpicklingError("neither a zip nor a legacy torch file (a plain pickle?)")
        if next_pickle() != _LEGACY_PROTOCOL:
            raise pickle.UnpicklingError("unknown legacy protocol version")
        next_pickle()  # system info: the writer's byte order and type sizes (little-endian in practice)
        # The storages' bytes follow the object's pickle, so it is read twice: once to learn the
        # storages' sizes, once more (after their bytes are read) to build the arrays.
        object_start = f.tell()
        sizes: dict[str, tuple[_StorageType, int]] = {}

        def measure(key: str, storage_type: _StorageType, numel: int) -> _Storage:
            sizes.setdefault(key, (storage_type, numel))
            return _Storage(np.zeros(numel * _itemsize(storage_type.dtype), np.uint8), storage_type.dtype, key)

        next_pickle(measure)
        keys = next_pickle()
        if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(sizes):
            raise pickle.UnpicklingError("the storage key list does not match the storages used")
        storages: dict[str, _Storage] = {}
        for key in map(str, keys):
            storage_type, numel = sizes[key]
            count = f.read(8)
            if len(count) != 8 or struct.unpack("<q", count)[0] != numel:
                raise pickle.UnpicklingError(f"storage {key}: its size disagrees with the pickle")
            raw = np.frombuffer(f.read(numel * _itemsize(storage_type.dtype)), np.uint8)
            if raw.size != numel * _itemsize(storage_type.dtype):
                raise EOFError(f"storage {key}: the file ends")
            storages[key] = _Storage(raw, storage_type.dtype, key)
        f.seek(object_start)
        return next_pickle(lambda key, storage_type, numel: _Storage(storages[key].raw, storage_type.dtype, key))


def load_torch_file(path: str | Path) -> Any:
    """The object ``torch.save`` wrote to ``path``, tensors as numpy arrays; CheckpointError naming the
    file when it is refused (a global outside the allow-list), truncated, corrupt or not torch's."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        return _load_legacy(path)
    except RefusedPickle as e:
        raise CheckpointError(f"{path}: refused: the pickle would call code that is not a tensor ({e}); the "
                              f"file may be hostile and is not loaded") from None
    except Exception as e:  # noqa: BLE001  whatever a corrupt pickle makes the unpickler raise: one line naming the file
        reason = " ".join(str(e).split()) or type(e).__name__
        raise CheckpointError(f"{path}: not a readable torch checkpoint (truncated or corrupt? {reason})") from None


#: where training scripts keep the model's weights in a checkpoint dict, in order of preference.
MODEL_ENTRIES = ("model", "state_dict", "model_state_dict", "module")
#: where they keep the exponential moving average of the weights (official repos and torchvision:
#: ``model_ema``; timm's train.py: ``state_dict_ema``).
EMA_ENTRIES = ("model_ema", "state_dict_ema")


@dataclass
class TorchCheckpoint:
    """A torch pickle's weights, and what a training checkpoint says beside them."""

    weights: dict[str, np.ndarray]
    entry: Optional[str] = None          # the checkpoint entry the weights were read from; None: a bare state dict
    other_entries: list[str] = field(default_factory=list)
    #: the checkpoint's top-level entries that are plain values (str, int, float, bool), such as
    #: timm train.py's ``arch`` or an ``epoch``: the sources read what they know of them
    fields: dict[str, Any] = field(default_factory=dict)
    args: dict = field(default_factory=dict)  # the training command line (``args``, an argparse.Namespace)


def load_torch_checkpoint(path: str | Path, ema: bool = False) -> TorchCheckpoint:
    """A state dict, or a training checkpoint (``{"model": ..., "optimizer": ..., "args": Namespace,
    "model_ema": ...}``), whose ``model`` is read by default and its EMA weights with ``ema``."""
    import argparse

    path = Path(path)
    obj = load_torch_file(path)
    ckpt = TorchCheckpoint({})
    if isinstance(obj, Mapping):
        ckpt.other_entries = [str(k) for k in obj]
        ckpt.fields = {str(k): v for k, v in obj.items() if isinstance(v, (str, int, float, bool))}
        args = obj.get("args")
        ckpt.args = dict(vars(args)) if isinstance(args, argparse.Namespace) else {}
        for key in EMA_ENTRIES if ema else MODEL_ENTRIES:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(k, str) for k in inner):
                obj, ckpt.entry = inner, key
                ckpt.other_entries.remove(key)
                break
        else:
            if ema:
                raise CheckpointError(f"{path}: ema=True given, but the checkpoint holds no EMA weights "
                                      f"({' or '.join(EMA_ENTRIES)}); its entries: "
                                      f"{', '.join(ckpt.other_entries[:10]) or 'none'}")
            ckpt.other_entries = []  # a bare state dict
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    for k, v in obj.items():
        if isinstance(v, np.ndarray):  # only tensors become arrays; skips e.g. optimizer step counters
            ckpt.weights[str(k)] = v
    if not ckpt.weights:
        raise CheckpointError(f"{path}: holds no tensors")
    return ckpt

"""Convert any ConvNeXt checkpoint in circulation into a hub-layout folder both twins load.

``convert(INPUT, OUTPUT_DIR)`` reads INPUT (a hub folder, ``.safetensors``, a torch pickle
``.bin``/``.pth``/``.pt`` holding a state dict, ``{"model": ...}`` or ``{"state_dict": ...}``,
transformers' ``tf_model.h5``, or a keras-applications ``.h5``), tells which library wrote it,
maps it to the canonical names (foreign.py), infers the config (infer.py) and writes
``config.json``, ``model.safetensors`` and/or ``tf_model.h5``, and ``preprocessor_config.json``
when the normalisation is known. Everything is numpy; torch is imported only to unpickle with
``weights_only=True``.

The folder is built in a temporary sibling and renamed into place, so an error or Ctrl-C leaves
nothing behind; an existing OUTPUT_DIR is kept unless ``overwrite``.

``add_convert_arguments`` / ``run_convert`` are the command-line front end shared by
``tools/convert_weights.py`` and ``convnext convert``.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, TextIO

import numpy as np

from ..config import ConvNextConfig, load_config
from ..fileio import atomic_directory, atomic_write_text
from .detect import detect_format, h5_kind, strip_wrappers
from .foreign import FORMATS, to_canonical
from .infer import architecture_name, check_state_fits, head_of, infer_config, trunk_prefix_of
from .io import (PT_WEIGHT_FILES, SAFE_WEIGHTS_NAME, TF_WEIGHTS_NAME, CheckpointError, find_weights_file,
                 load_state_dict)
from .keras_applications import IMAGENET_MEAN, IMAGENET_STD, normalization_stats, read_keras_h5
from .progress import Progress

TARGETS = ("pt", "tf", "all")
PREPROCESSOR_NAME = "preprocessor_config.json"
#: epsilon of the final pooled LayerNorm in timm, the official repos, torchvision and keras.
FOREIGN_LAYER_NORM_EPS = 1e-6
#: verification bound, DESIGN.md's rel on logits.
VERIFY_REL_TOL = 1e-4


@dataclass
class ConversionResult:
    output_dir: Path
    source_format: str
    config: ConvNextConfig
    head: str
    files: list[str]
    notes: list[str] = field(default_factory=list)
    verify_max_diff: Optional[float] = None


@dataclass
class _Input:
    state: dict
    fmt: str
    weights_file: Path
    hub_dir: Optional[Path] = None          # a hub-layout folder: its config.json and preprocessor config
    keras_norm: Optional[dict] = None       # keras-applications Normalization weights


def imagenet_preprocessor_config(mean=IMAGENET_MEAN, std=IMAGENET_STD) -> dict:
    """transformers' ConvNextImageProcessor settings of the hub's ImageNet ConvNeXt checkpoints."""
    return {"crop_pct": 0.875, "do_normalize": True, "do_rescale": True, "do_resize": True,
            "image_mean": list(mean), "image_processor_type": "ConvNextImageProcessor", "image_std": list(std),
            "resample": 3, "rescale_factor": 1 / 255, "size": {"shortest_edge": 224}}


# --- reading -------------------------------------------------------------------------------------
def read_input(path: str | Path, source: Optional[str] = None, config: Optional[ConvNextConfig] = None) -> _Input:
    """Load INPUT's tensors and tell its format (``source`` overrides the detection)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if source is not None and source not in FORMATS:
        raise ValueError(f"--from {source!r} is not one of {', '.join(FORMATS)}")
    hub_dir = None
    if path.is_dir():
        hub_dir = path
        file = find_weights_file(path, PT_WEIGHT_FILES + (TF_WEIGHTS_NAME,))
    else:
        file = path
        if file.name in PT_WEIGHT_FILES + (TF_WEIGHTS_NAME,) and (file.parent / "config.json").is_file():
            hub_dir = file.parent  # a hub folder's weights file: its config.json describes it
    if file.stat().st_size == 0:
        raise CheckpointError(f"{file}: the file is empty")
    if file.suffix.lower() in (".h5", ".hdf5"):
        kind = h5_kind(file)
        if source is not None and source != kind:
            raise CheckpointError(f"{file}: --from {source} given, but this h5 file is a "
                                  f"{'keras-applications' if kind == 'keras' else 'transformers tf_model.h5'} file")
        if kind == "keras":
            weights, norm = read_keras_h5(file)
            return _Input(weights, "keras", file, None, norm)
        from .h5 import load_h5_state_dict  # transformers' TF layout -> canonical names

        if config is None and hub_dir is not None and (hub_dir / "config.json").is_file():
            config = load_config(hub_dir)
        return _Input(dict(load_h5_state_dict(file, config=config)), "hf", file, hub_dir)
    if file.suffix == ".safetensors":
        state = strip_wrappers(map_safetensors(file))
    else:
        state = strip_wrappers(load_state_dict(file))
    fmt = source or detect_format(state, str(file))
    return _Input(state, fmt, file, hub_dir)


_ST_NUMPY = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
             "U8": "u1", "BOOL": "?"}


def map_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file as read-only views of a memory map.

    ``safetensors.numpy.load_file`` maps the file and then copies every tensor, so a large
    checkpoint briefly occupies twice its size; views keep the conversion near one size (pages
    are read as the converter touches them). bfloat16 tensors become float32 copies.
    """
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            if not 0 < n <= min(size - 8, 100_000_000):
                raise ValueError(f"header length {n} does not fit a {size}-byte file")
            header = json.loads(f.read(n))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        header.pop("__metadata__", None)
        mapped = np.memmap(path, dtype=np.uint8, mode="r") if size > 8 + n else np.zeros(0, np.uint8)
        data = mapped[8 + n:]
        out: dict[str, np.ndarray] = {}
        for name, info in header.items():
            begin, end = (int(v) for v in info["data_offsets"])
            shape = tuple(int(d) for d in info["shape"])
            dtype = info["dtype"]
            if not 0 <= begin <= end <= data.size:
                raise ValueError(f"{name}: data offsets {begin}..{end} lie outside the file")
            raw = data[begin:end]
            if dtype == "BF16":  # numpy has no bfloat16: widen (the upper half of a float32)
                if raw.size != 2 * int(np.prod(shape)):
                    raise ValueError(f"{name}: {raw.size} bytes for shape {list(shape)} in BF16")
                wide = np.zeros(raw.size // 2, dtype="<u4")
                wide[:] = raw.view("<u2").astype("<u4") << 16
                out[name] = wide.view("<f4").reshape(shape)
                continue
            if dtype not in _ST_NUMPY:
                raise ValueError(f"{name}: unsupported dtype {dtype}")
            np_dtype = np.dtype(_ST_NUMPY[dtype])
            if raw.size != np_dtype.itemsize * int(np.prod(shape)):
                raise ValueError(f"{name}: {raw.size} bytes do not hold shape {list(shape)} in {dtype}")
            out[name] = raw.view(np_dtype).reshape(shape)
    except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    if not out:
        raise CheckpointError(f"{path}: holds no tensors")
    return out


# --- writing -------------------------------------------------------------------------------------
_ST_DTYPES = {np.dtype("float64"): "F64", np.dtype("float32"): "F32", np.dtype("float16"): "F16",
              np.dtype("int64"): "I64", np.dtype("int32"): "I32", np.dtype("int16"): "I16", np.dtype("int8"): "I8",
              np.dtype("uint8"): "U8", np.dtype("bool"): "BOOL"}


def write_safetensors(state: Mapping[str, np.ndarray], path: Path, progress: Optional[Progress] = None,
                      metadata: Optional[dict] = None) -> None:
    """Stream ``state`` into a safetensors file one tensor at a time (no second copy of the weights)."""
    header: dict = {"__metadata__": {"format": "pt", **(metadata or {})}}
    offset = 0
    for name, array in state.items():
        dtype = np.dtype(array.dtype)
        if dtype not in _ST_DTYPES:
            raise CheckpointError(f"{name}: dtype {dtype} cannot be stored in safetensors")
        header[name] = {"dtype": _ST_DTYPES[dtype], "shape": [int(d) for d in array.shape],
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for array in state.values():
            a = np.ascontiguousarray(array)
            if a.dtype.byteorder == ">":
                a = a.astype(a.dtype.newbyteorder("<"))
            f.write(memoryview(a.reshape(-1)).cast("B"))
            if progress is not None:
                progress.advance(a.nbytes)


def _write_tf(state: dict, config: ConvNextConfig, head: str, path: Path) -> None:
    from .h5 import save_hf_tf_h5  # transformers' tf_model.h5 layout lives with the TF twin's I/O

    save_hf_tf_h5(state, config, path, "TF" + architecture_name(config, head))


# --- the conversion --------------------------------------------------------------------------------
def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text


def _resolve_config(inp: _Input, state: dict, user_config: Optional[ConvNextConfig], config_label: str,
                    notes: list[str]) -> ConvNextConfig:
    source = str(inp.weights_file)
    if user_config is not None:
        check_state_fits(state, user_config, f"{source} with {config_label}")
        return user_config
    if inp.fmt == "hf" and inp.hub_dir is not None and (inp.hub_dir / "config.json").is_file():
        config = load_config(inp.hub_dir)
        check_state_fits(state, config, f"{source} with {inp.hub_dir / 'config.json'}")
        return config
    eps = 1e-12 if inp.fmt == "hf" else FOREIGN_LAYER_NORM_EPS
    config = infer_config(state, source, layer_norm_eps=eps)
    check_state_fits(state, config, source)
    notes.append(f"config inferred from the weights: {config.model_type}, depths {config.depths}, "
                 f"hidden_sizes {config.hidden_sizes}, {config.num_labels} labels")
    return config


def _fill_final_norm(state: dict, notes: list[str]) -> None:
    """A base model saved without its final norm (keras notop, timm num_classes=0 without head.norm):
    transformers' ConvNextModel has one; identity weights keep last_hidden_state exact."""
    if head_of(state) != "base":
        return
    p = trunk_prefix_of(state)
    name = p + "layernorm.weight"
    if name in state:
        return
    last = max((k for k in state if k.endswith(".dwconv.weight")), key=lambda k: [int(t) for t in k.split(".")
                                                                                   if t.isdigit()], default=None)
    if last is None:
        return
    c = state[last].shape[0]
    state[name] = np.ones((c,), np.float32)
    state[p + "layernorm.bias"] = np.zeros((c,), np.float32)
    notes.append("the checkpoint has no final norm (no top); wrote an identity LayerNorm for pooler_output")


@dataclass
class Converted:
    """A checkpoint in canonical names with its config and preprocessing: what :func:`convert` writes."""

    state: dict
    config: ConvNextConfig
    head: str
    source_format: str
    weights_file: Path
    preprocessor_config: Optional[dict]
    notes: list[str]


def _local_input(input: str | Path, hub_options=None) -> Path:
    """INPUT itself, or for a hub id the cached snapshot folder holding its config and one weights file."""
    from ..hub import is_hub_id, model_folder

    if Path(input).exists() or not is_hub_id(input):
        return Path(input)
    from ..pretrained import check_convnext_config

    return model_folder(input, PT_WEIGHT_FILES + (TF_WEIGHTS_NAME,), hub_options, check_convnext_config)


def load_converted(input: str | Path, source: Optional[str] = None,
                   config: str | Path | ConvNextConfig | None = None, hub_options=None) -> Converted:
    """Read INPUT (a path or a hub id) and map it to canonical names and a config, in memory."""
    user_config = load_config(config) if isinstance(config, (str, Path)) else config
    inp = read_input(_local_input(input, hub_options), source, user_config)
    notes: list[str] = []
    state = to_canonical(inp.state, inp.fmt, str(inp.weights_file), consume=True)
    inp.state = {}  # the canonical dict now owns the arrays
    _fill_final_norm(state, notes)
    config_label = str(config) if isinstance(config, (str, Path)) else "the given config"
    cfg = _resolve_config(inp, state, user_config, config_label, notes)
    if user_config is None and inp.fmt == "timm" and inp.hub_dir is not None:
        cfg = _with_timm_metadata(cfg, inp.hub_dir / "config.json")
    head = head_of(state)
    if cfg.architectures is None:
        cfg.architectures = [architecture_name(cfg, head)]
    return Converted(state, cfg, head, inp.fmt, inp.weights_file, _preprocessor_config(inp), notes)


def _with_timm_metadata(cfg: ConvNextConfig, path: Path) -> ConvNextConfig:
    """Label names and input size from a timm folder's config.json (see timm_hub)."""
    from ..timm_hub import apply_timm_metadata, is_timm_config

    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return cfg
    return apply_timm_metadata(cfg, d) if is_timm_config(d) else cfg


def convert(input: str | Path, output_dir: str | Path, source: Optional[str] = None, to: str = "all",
            config: str | Path | ConvNextConfig | None = None, overwrite: bool = False, verify: bool = False,
            progress: bool = True, stream: Optional[TextIO] = None, hub_options=None) -> ConversionResult:
    """Convert INPUT into the hub-layout folder OUTPUT_DIR; see the module docstring.

    INPUT may be a hub id (transformers or timm repo; ``hub_options``: a ``hub.HubOptions``).

    ``to``: ``"pt"`` (model.safetensors), ``"tf"`` (tf_model.h5) or ``"all"``. ``config``: a
    config.json (or ConvNextConfig) to use instead of the inferred one; it must fit the weights.
    ``verify``: load the result in both twins and compare their logits (raises when rel > 1e-4).
    Raises ValueError/OSError subclasses naming the file and the problem.
    """
    if to not in TARGETS:
        raise ValueError(f"--to {to!r} is not one of {', '.join(TARGETS)}")
    output_dir = Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise FileExistsError(f"{output_dir}: already exists; pass --overwrite to replace it")
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"{output_dir}: exists and is not a folder")
    stream = stream if stream is not None else sys.stderr
    converted = load_converted(input, source, config, hub_options)
    state, cfg, head, notes = converted.state, converted.config, converted.head, converted.notes
    converted.state = {}  # `del state` below must free the arrays

    write_pt = to in ("pt", "all")
    write_tf = to in ("tf", "all")
    if write_tf and head == "backbone":
        notes.append("backbone: tf_model.h5 is read by this project's TF twin; transformers has no TF ConvNeXt "
                     "backbone")

    total = int(sum(a.nbytes for a in state.values()))
    files: list[str] = []
    verify_diff = None
    with atomic_directory(output_dir, overwrite=overwrite) as tmp:
        if write_pt:
            with Progress(f"writing {SAFE_WEIGHTS_NAME}", total, stream, enabled=progress) as bar:
                write_safetensors(state, tmp / SAFE_WEIGHTS_NAME, bar)
            files.append(SAFE_WEIGHTS_NAME)
        if write_tf:
            with Progress(f"writing {TF_WEIGHTS_NAME}", total, stream, enabled=progress) as bar:
                _write_tf(state, cfg, head, tmp / TF_WEIGHTS_NAME)
            files.append(TF_WEIGHTS_NAME)
        cfg.save_pretrained(tmp)
        files.append("config.json")
        pre = converted.preprocessor_config
        if pre is not None:
            atomic_write_text(tmp / PREPROCESSOR_NAME, json.dumps(pre, indent=2, sort_keys=True) + "\n")
            files.append(PREPROCESSOR_NAME)
        del state
        if verify:
            verify_diff = verify_folder(tmp, notes)
    return ConversionResult(output_dir, converted.source_format, cfg, head, files, notes, verify_diff)


def _preprocessor_config(inp: _Input) -> Optional[dict]:
    if inp.fmt == "hf" and inp.hub_dir is not None and (inp.hub_dir / PREPROCESSOR_NAME).is_file():
        text = (inp.hub_dir / PREPROCESSOR_NAME).read_text(encoding="utf-8")
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{inp.hub_dir / PREPROCESSOR_NAME}: not valid JSON ({e.msg})") from None
    if inp.fmt == "keras":
        mean, std = normalization_stats(inp.keras_norm or {})
        return imagenet_preprocessor_config(mean, std)
    if inp.fmt == "timm" and inp.hub_dir is not None:
        timm_pre = _timm_preprocessor_config(inp.hub_dir / "config.json")
        if timm_pre is not None:
            return timm_pre
    if inp.fmt in ("timm", "official", "torchvision"):
        return imagenet_preprocessor_config()  # the ImageNet ConvNeXts of these libraries use it
    return None


def _timm_preprocessor_config(path: Path) -> Optional[dict]:
    """A timm hub folder's config.json states its evaluation preprocessing (CLIP-trained models
    differ from ImageNet's) in ``pretrained_cfg``; see timm_hub."""
    from ..timm_hub import is_timm_config, timm_preprocessor_config

    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return timm_preprocessor_config(d) if is_timm_config(d) else None


# --- verification --------------------------------------------------------------------------------
def verify_folder(folder: Path, notes: Optional[list[str]] = None, seed: int = 0) -> float:
    """Load ``folder`` in the PyTorch twin and the TF twin, run both on one random batch and return
    max |PT - TF| over the main output; raises CheckpointError when rel exceeds 1e-4."""
    import os

    import torch  # noqa: F401  (before tensorflow, see tests/conftest.py)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep the one-line output readable

    import convnext_pt

    config = load_config(folder)
    arch = (config.architectures or ["ConvNextForImageClassification"])[0]
    pt_cls = getattr(convnext_pt, arch, None)
    if pt_cls is None:
        raise CheckpointError(f"{folder}: the PyTorch twin has no class {arch}")
    x = np.random.default_rng(seed).standard_normal((2, config.num_channels, 64, 64)).astype(np.float32)
    pt_model = pt_cls.from_pretrained(folder)
    with torch.no_grad():
        pt_out = _main_output(pt_model(torch.from_numpy(x)))
    try:
        import convnext_tf
        tf_cls = getattr(convnext_tf, "TF" + arch)
    except (ImportError, AttributeError) as e:
        raise CheckpointError(f"--verify needs the TensorFlow twin with TF{arch} ({_one_line(e)})") from None
    tf_model = tf_cls.from_pretrained(folder)
    tf_out = _main_output(tf_model(x, training=False))
    diff = float(np.abs(pt_out - tf_out).max())
    rel = diff / max(1.0, float(np.abs(pt_out).max()))
    if notes is not None:
        notes.append(f"verify: PT vs TF max |diff| = {diff:.3g} (rel {rel:.3g}) on a random 2x3x64x64 batch")
    if rel > VERIFY_REL_TOL:
        raise CheckpointError(f"{folder}: verification failed: PT and TF outputs differ by {diff:.3g} "
                              f"(rel {rel:.3g} > {VERIFY_REL_TOL})")
    return diff


def _main_output(out) -> np.ndarray:
    for name in ("logits", "pooler_output", "feature_maps"):
        value = getattr(out, name, None)
        if value is not None:
            if name == "feature_maps":
                value = value[-1]
            return np.asarray(value.detach().numpy() if hasattr(value, "detach") else value)
    raise CheckpointError("the model returned no logits, pooler_output or feature_maps")


# --- command line --------------------------------------------------------------------------------
def add_convert_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("input", help="hub folder, .safetensors, .bin/.pth/.pt, tf_model.h5, a keras-applications .h5, "
                                      "or a hub id (a transformers or timm repo, ID@REVISION)")
    parser.add_argument("output_dir", help="folder to create (config.json, model.safetensors, tf_model.h5, ...)")
    parser.add_argument("--from", dest="source", choices=FORMATS, default=None,
                        help="the library that wrote INPUT (default: detected from the tensor names)")
    parser.add_argument("--to", dest="to", choices=TARGETS, default="all",
                        help="pt: model.safetensors, tf: tf_model.h5, all: both (default)")
    parser.add_argument("--config", default=None, help="a config.json to use instead of the inferred one")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT_DIR if it exists")
    parser.add_argument("--verify", action="store_true",
                        help="load the result in both twins and print the PT vs TF max difference")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def run_convert(args: argparse.Namespace, stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None) -> int:
    """Run a parsed ``convert`` command: 0 on success, 1 on an error (one line on stderr), 130 on Ctrl-C."""
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    debug = bool(getattr(args, "debug", False))
    quiet = bool(getattr(args, "quiet", False))
    try:
        result = convert(args.input, args.output_dir, source=args.source, to=args.to, config=args.config,
                         overwrite=args.overwrite, verify=args.verify, progress=not quiet, stream=stderr)
    except KeyboardInterrupt:
        if debug:
            raise
        print("convert: interrupted; nothing was written", file=stderr)
        return 130
    except (ValueError, OSError, ImportError, KeyError) as e:
        if debug:
            raise
        print(f"convert: error: {_one_line(e)}", file=stderr)
        return 1
    if not quiet:
        print(f"{result.output_dir}: {', '.join(result.files)} (from {result.source_format}, "
              f"{result.config.architectures[0]})", file=stdout)
        for note in result.notes:
            print(f"  {note}", file=stdout)
    return 0


def build_parser(prog: str = "convert_weights.py") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Convert a ConvNeXt checkpoint (transformers, timm, "
                                     "official, torchvision, keras-applications) into a hub-layout folder.")
    return add_convert_arguments(parser)


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return run_convert(args)

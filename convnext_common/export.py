"""What the exports of both twins share: optional-dependency checks, verification inputs, the
agreement measure, the report, and atomic placement of the exported files.

Framework-free (numpy only): each twin's ``export`` module builds on it (ONNX from one twin,
SavedModel and TFLite from the other), and the application's ``convnext export``, which knows the
packages each format needs, prints its reports.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from .config import ConvNextConfig
from .fileio import temporary_folder_beside

#: ONNX opset of the exported graphs: LayerNormalization is a native op from 17, and 18 is the
#: lowest opset the default (dynamo) ONNX exporter targets natively; onnxruntime >= 1.14 runs it.
ONNX_OPSET = 18

#: The agreement every export must reach before its file is put in place (docs/DESIGN.md's rel measure).
ONNX_TOLERANCE = 1e-5
SAVED_MODEL_TOLERANCE = 1e-5
TFLITE_TOLERANCE = 1e-4

class MissingExportDependency(ImportError):
    """An optional package an export needs is not installed; the message says which extra to install."""


class ExportVerificationError(ValueError):
    """The exported model does not reproduce the source model within the tolerance; nothing was written."""


def require(module: str, purpose: str, package: Optional[str] = None, extra: str = "export") -> Any:
    """Import ``module`` or raise :class:`MissingExportDependency` naming the pip ``package`` (default:
    the module's top-level name) and the project ``extra`` that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        package = package or module.split(".")[0]
        raise MissingExportDependency(
            f"{purpose} needs the package {package!r}, which is not installed (or fails to import: {e}); "
            f"install it with: pip install \"convnext-twins[{extra}]\"") from None


def rel_error(ours: Any, ref: Any) -> float:
    """docs/DESIGN.md's measure: ``max|ours - ref| / max(1, max|ref|)``, in float64."""
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if ours.shape != ref.shape:
        raise ExportVerificationError(f"output shape {ours.shape} differs from the source model's {ref.shape}")
    if ref.size == 0:
        return 0.0
    return float(np.abs(ours - ref).max() / max(1.0, float(np.abs(ref).max())))


def total_stride(config: ConvNextConfig) -> int:
    """Input pixels per pixel of the last feature map: the stem's patch times 2 per later stage."""
    return config.patch_size * 2 ** (config.num_stages - 1)


def default_image_size(config: ConvNextConfig) -> int:
    """The size a model is used at: the config's image_size (at least one total stride)."""
    return max(int(config.image_size or 224), total_stride(config))


def trace_image_size(config: ConvNextConfig) -> int:
    """The size graphs are traced at: the config's image_size, but at least twice the total stride.

    At a smaller size the last feature map is 1 pixel high or wide, and tracers that treat a
    size of 1 as a constant (the dynamo exporter does) would freeze the graph to it.
    """
    return max(default_image_size(config), 2 * total_stride(config))


def verification_shapes(config: ConvNextConfig, batch_size: int = 2,
                        image_size: Optional[Sequence[int]] = None) -> list[tuple[int, int, int, int]]:
    """NCHW input shapes an export is checked at: the export shape, another batch at an odd size,
    and the config's own image size when the export shape differs from it.

    The second one catches a batch or spatial size frozen into the graph: batch 1 where the export
    used ``batch_size``, and (H + H/2 + 3, W + 7), which is not a multiple of the total stride.
    """
    h, w = image_size if image_size is not None else (trace_image_size(config),) * 2
    c = config.num_channels
    shapes = [(batch_size, c, h, w), (1 if batch_size != 1 else 3, c, h + h // 2 + 3, w + 7)]
    native = default_image_size(config)
    if (h, w) != (native, native):
        shapes.append((1, c, native, native))
    return shapes


def random_pixels(shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """Standard-normal float32 input (the range of normalised pixels), reproducible by ``seed``."""
    return np.random.default_rng(seed).standard_normal(tuple(shape)).astype(np.float32)


@dataclass
class Check:
    """One verification run: input shape, agreement per output and, for logits, top-1 agreement."""

    shape: tuple[int, ...]
    rel: dict[str, float]
    top1_agree: Optional[float] = None

    @property
    def max_rel(self) -> float:
        return max(self.rel.values(), default=0.0)


@dataclass
class ExportReport:
    """What was written and how closely it reproduces the source model (every check passed)."""

    format: str
    path: Path
    source: str
    tolerance: Optional[float]  # None: measured and reported, not bounded (int8 weights)
    checks: list[Check] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def max_rel(self) -> float:
        return max((c.max_rel for c in self.checks), default=0.0)

    def summary(self) -> str:
        """A few lines for people: the file, then one line per verification input."""
        extra = ", ".join(f"{k} {v}" for k, v in self.details.items())
        lines = [f"wrote {self.format} {self.path}" + (f" ({extra})" if extra else "")]
        for c in self.checks:
            rel = ", ".join(f"{name} {value:.2e}" for name, value in c.rel.items())
            top1 = f"; top-1 agreement {c.top1_agree * 100:.1f}%" if c.top1_agree is not None else ""
            lines.append(f"  input {'x'.join(map(str, c.shape))}: rel vs {self.source} {rel}{top1}")
        bound = f"tolerance {self.tolerance:.0e}" if self.tolerance is not None else "reported, not bounded"
        lines.append(f"  max rel {self.max_rel:.2e} ({bound})")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "path": str(self.path), "source": self.source, "tolerance": self.tolerance,
                "max_rel": self.max_rel, "details": dict(self.details),
                "checks": [{"shape": list(c.shape), "rel": dict(c.rel), "top1_agree": c.top1_agree}
                           for c in self.checks]}


def compare_outputs(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray], shape: Sequence[int],
                    tolerance: Optional[float], what: str) -> Check:
    """Measure every output; raise :class:`ExportVerificationError` when one exceeds ``tolerance``."""
    missing = sorted(set(ref) - set(ours))
    if missing:
        raise ExportVerificationError(f"{what}: the exported model has no output {', '.join(missing)}")
    rel = {name: rel_error(ours[name], ref[name]) for name in ref}
    top1 = None
    if "logits" in ref and np.ndim(ref["logits"]) == 2 and np.shape(ref["logits"])[-1] > 1:
        top1 = float((np.argmax(ours["logits"], -1) == np.argmax(ref["logits"], -1)).mean())
    check = Check(tuple(int(s) for s in shape), rel, top1)
    if tolerance is not None and not check.max_rel <= tolerance:  # `not <=` also catches NaN
        worst = max(rel, key=lambda k: rel[k])
        raise ExportVerificationError(
            f"{what}: output {worst!r} differs from the source model by rel {rel[worst]:.2e} at input "
            f"{'x'.join(map(str, check.shape))}, above the tolerance {tolerance:.0e}; nothing was written")
    return check


@contextlib.contextmanager
def staged_output(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield ``<tmp dir>/<name of path>`` in a temporary folder beside ``path``.

    The exporter writes there (with any side files, e.g. ONNX external data, under their final
    names) and the caller verifies; when the block ends without error every file in the folder
    is moved beside ``path``, side files first and ``path`` last, so a reader never finds a
    half-written model. On error the folder is removed and nothing at ``path`` changes.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; give the path of the file to write")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists (pass overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = temporary_folder_beside(path)
    try:
        yield stage / path.name
        produced = sorted(p for p in stage.iterdir() if p.is_file())
        if stage / path.name not in produced:
            raise OSError(f"{path}: the exporter wrote no file")
        for f in sorted(produced, key=lambda p: p.name == path.name):
            os.replace(f, path.parent / f.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)

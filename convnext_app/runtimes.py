"""``--runtime``: which engine runs the model in predict, evaluate and embed.

``torch`` runs the PyTorch twin itself. ``onnxruntime`` and ``openvino`` run the project's own
ONNX export of it (:func:`convnext_pt.export.export_onnx`: written to a temporary folder and checked
against the twin before it is used), so a user gets the answers of the engine they deploy, with
the export's agreement already verified. Each engine is an optional package; a missing one is
reported in one line naming the extra that installs it, before any model is loaded.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np


@dataclass(frozen=True)
class Runtime:
    name: str
    module: Optional[str]  # the package imported (None: the twin itself)
    package: str
    extra: str
    precisions: tuple[str, ...]
    help: str

    def check(self, precision: str) -> None:
        """One-line errors for a missing package or an unsupported precision, before loading anything."""
        if precision not in self.precisions:
            raise ValueError(f"--runtime {self.name} runs --precision {' or '.join(self.precisions)}, "
                             f"not {precision}")
        if self.module is not None:
            from convnext_common.export import require

            require(self.module, f"--runtime {self.name}", self.package, self.extra)


RUNTIMES: dict[str, Runtime] = {r.name: r for r in (
    Runtime("torch", None, "torch", "torch", ("fp32", "bf16"), "the twin itself (default, except for int8)"),
    Runtime("onnxruntime", "onnxruntime", "onnxruntime", "export", ("fp32",),
            "ONNX Runtime on the verified ONNX export (pip install \"convnext-twins[export]\")"),
    Runtime("openvino", "openvino", "openvino", "openvino", ("fp32", "bf16", "int8"),
            "OpenVINO's CPU plugin on the verified ONNX export, at --precision (pip install "
            "\"convnext-twins[openvino]\"); the default for --precision int8"),
)}


def resolve_runtime(name: Optional[str], precision: str) -> str:
    """``--runtime`` as given, or its default: ``openvino`` for int8 (the one engine that runs it), else ``torch``."""
    if name is None:
        return "openvino" if precision == "int8" else "torch"
    return name


def add_runtime_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runtime", choices=list(RUNTIMES), default=None,
                   help="; ".join(f"{r.name}: {r.help}" for r in RUNTIMES.values())
                        + " (onnxruntime and openvino run the PyTorch twin's export: --framework pt)")


def runtime(name: str) -> Runtime:
    if name not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {name!r}")
    return RUNTIMES[name]


def exported_runner(model: Any, name: str, precision: str, output: str) -> Callable[[np.ndarray], np.ndarray]:
    """``pixels -> output`` (float32) of ``model`` (a float32 PyTorch twin) exported to ONNX, verified,
    and loaded in runtime ``name`` at ``precision``."""
    from convnext_pt.export import compile_openvino, export_onnx, run_openvino

    with tempfile.TemporaryDirectory(prefix="convnext-runtime-") as folder:
        path = Path(folder) / "model.onnx"
        export_onnx(model, path)  # raises, and nothing runs, if the export misses its tolerance
        if name == "onnxruntime":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.log_severity_level = 3
            session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])

            def run(x: np.ndarray) -> np.ndarray:
                return np.asarray(session.run([output], {"pixel_values": x})[0], dtype=np.float32)
        elif name == "openvino":
            compiled = compile_openvino(path, precision)

            def run(x: np.ndarray) -> np.ndarray:
                return run_openvino(compiled, x)[output]
        else:
            raise ValueError(f"{name} does not run an export")
    return run

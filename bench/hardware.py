"""What a benchmark ran on: the CPU, its widest vector ISA, and the math libraries doing the work.

Figures from one ISA do not carry over to another (oneDNN's and MKL's kernels differ between AVX2,
AVX-512 and AMX), so every report names them.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def vector_isa(flags: set[str]) -> str:
    """The widest x86 vector extensions present, e.g. ``AVX-512 (VNNI, BF16)`` or ``AVX2``."""
    if "avx512f" in flags:
        extras = [name for flag, name in (("avx512_vnni", "VNNI"), ("avx512_bf16", "BF16")) if flag in flags]
        isa = "AVX-512" + (f" ({', '.join(extras)})" if extras else "")
    elif "avx2" in flags:
        isa = "AVX2"
    elif flags:
        isa = "SSE/other"
    else:
        isa = f"unknown ({platform.machine()})"
    if "amx_tile" in flags:
        isa += " + AMX"
    return isa


def torch_libraries() -> dict[str, str]:
    import torch

    shown = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=(\w+)", shown)
    onednn = re.search(r"(?:MKL-DNN|oneDNN)[^\n]*?v(\d+\.\d+(?:\.\d+)?)", shown)
    return {"torch": torch.__version__, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_blas": blas.group(1) if blas else "unknown",
            "torch_onednn": onednn.group(1) if onednn else ("on" if torch.backends.mkldnn.is_available() else "off")}


def tensorflow_libraries() -> dict[str, str]:
    try:
        import tensorflow as tf
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return {}
    return {"tensorflow": tf.__version__, "tensorflow_onednn": "on" if _pywrap_util_port.IsMklEnabled() else "off"}


def describe() -> dict[str, str]:
    flags = cpu_flags()
    return {"cpu": cpu_model(), "vector_isa": vector_isa(flags), **torch_libraries(), **tensorflow_libraries()}


def one_line(info: dict[str, str]) -> str:
    line = f"{info['cpu']}, {info['vector_isa']}; torch {info['torch']} ({info['torch_blas']} BLAS, " \
           f"oneDNN {info['torch_onednn']}, kernels {info['torch_cpu_capability']})"
    if "tensorflow" in info:
        line += f"; TensorFlow {info['tensorflow']} (oneDNN {info['tensorflow_onednn']})"
    return line

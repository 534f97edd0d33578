"""An int8 folder written by ``convnext quantize``: its record, its IR, and running it on OpenVINO's CPU
plugin. What the commands need to run a quantized model, apart from how it was made
(:mod:`convnext_app.quantization`, which loads and quantizes float32 folders)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from convnext_common.export import require

RECORD = "quantization.json"
IR_NAME = "openvino_model.xml"
EXTRA = "int8"


def require_int8(purpose: str) -> tuple[Any, Any]:
    """(nncf, openvino), or a one-line error naming the extra that installs them."""
    ov = require("openvino", purpose, "openvino", EXTRA)
    nncf = require("nncf", purpose, "nncf", EXTRA)
    return nncf, ov


def is_quantized_folder(source: str | os.PathLike) -> bool:
    return (Path(source) / RECORD).is_file()


def read_record(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder) / RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable quantization record ({e})") from None
    if not isinstance(record, dict) or record.get("precision") != "int8" or "output" not in record:
        raise ValueError(f"{path}: field 'precision' must be \"int8\" and 'output' present")
    if not (Path(folder) / IR_NAME).is_file():
        raise FileNotFoundError(f"{Path(folder) / IR_NAME}: missing (the quantized model of {path})")
    return record


def batched(run: Callable[[np.ndarray], np.ndarray], pixels: np.ndarray, batch: int = 32) -> np.ndarray:
    return np.concatenate([run(pixels[i:i + batch]) for i in range(0, len(pixels), batch)])


def quantized_runner(folder: str | os.PathLike, output: str) -> Callable[[np.ndarray], np.ndarray]:
    """``pixels -> output`` (float32) of a quantized folder on OpenVINO's CPU plugin."""
    require_int8("running an int8 model")
    from convnext_pt.export import compile_openvino, run_openvino

    record = read_record(folder)
    if record["output"] != output:
        task = "predict/evaluate" if output == "logits" else "embed"
        made = "--head base" if output == "pooler_output" else "--head classification"
        raise ValueError(f"{folder}: holds an int8 model of {record['output']}, {task} needs {output} "
                         f"(quantize the float32 model with {made})")
    compiled = compile_openvino(Path(folder) / IR_NAME, "default")
    return lambda x: run_openvino(compiled, x)[output]


def run_quantized(folder: str | os.PathLike, pixels: np.ndarray, output: str = "logits") -> np.ndarray:
    return batched(quantized_runner(folder, output), np.ascontiguousarray(pixels, np.float32))


"""int8: post-training static quantization of a model folder with NNCF, run by OpenVINO's CPU plugin.

The float32 PyTorch twin is exported to OpenVINO IR (:func:`convnext_pt.export.export_openvino`,
itself verified against the twin), NNCF measures the activations' ranges on calibration images
(read through the model's own preprocessor) and inserts int8 quantize/dequantize pairs, which
OpenVINO runs as int8 kernels (VNNI, AMX where the CPU has them). NNCF's transformer scheme is
used: the 1x1 convolutions (pointwise Linear layers), the stem, the downsampling convolutions and
the classifier compute in int8 while LayerNorm, GRN, GELU, the depthwise 7x7 convolution and the
residual adds stay in floating point (SmoothQuant moves the activations' outliers into the weights
first). ConvNeXt's norms and the depthwise convolution are where int8 costs accuracy and gains
little time.

Before anything is written, the quantized model is checked against the float32 twin on the
calibration images (and on ``check`` images when given): the share of images with the same top-1
class and the largest output difference (``rel``: max|int8 - fp32| / max(1, max|fp32|)) must meet
the bounds, else :class:`QuantizationCheckError` says so in one line and nothing is written.

A quantized folder holds ``openvino_model.xml`` / ``.bin`` (the int8 IR), the source's
``config.json`` and ``preprocessor_config.json``, and ``quantization.json`` (:data:`int8_folder.RECORD`: the
precision, the outputs, the tools' versions and the check's figures).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from convnext_common.export import ExportVerificationError

from .int8_folder import IR_NAME, RECORD, batched, is_quantized_folder, require_int8

#: Default bounds of the check against float32 (see the module docstring).
MIN_AGREEMENT = 0.98
MAX_REL_DIFF = 0.25
#: A pooled feature keeps its answer when its cosine similarity to the float32 one is at least this.
MIN_COSINE = 0.99
#: Calibration images NNCF reads at most (its own default subset size).
CALIBRATION_LIMIT = 300
#: What each task needs from the model: the head loaded and the output compared and served.
TASK_OUTPUTS = {"classification": "logits", "base": "pooler_output"}


class QuantizationCheckError(ExportVerificationError):
    """The quantized model misses a bound against float32; nothing was written."""


@dataclass
class QuantizationReport:
    """What was quantized and how close it stays to float32 (written to ``quantization.json``)."""

    precision: str
    head: str
    output: str
    calibration_images: int
    checked_images: int
    top1_agreement: float
    max_abs_diff: float
    rel: float
    min_agreement: float
    max_rel: float
    scheme: str = "NNCF post-training static, ModelType.TRANSFORMER (int8 MatMul/Conv, float norms and depthwise)"
    versions: dict[str, str] = field(default_factory=dict)
    source: str = ""

    def summary(self) -> str:
        what = "top-1 agreement" if self.output == "logits" else f"share with cosine >= {MIN_COSINE}"
        return (f"int8 vs fp32 on {self.checked_images} images: {what} {self.top1_agreement:.2%} (bound "
                f">= {self.min_agreement:.0%}), max |diff| {self.max_abs_diff:.4g}, rel {self.rel:.4g} "
                f"(bound <= {self.max_rel:g})")


def calibration_pixels(folder: str | os.PathLike, processor: Any, limit: int = CALIBRATION_LIMIT) -> np.ndarray:
    """Up to ``limit`` images of ``folder`` (searched recursively, in name order, evenly spaced when
    there are more) through ``processor``: (N, C, H, W) float32."""
    from convnext_app.bulk.files import image_paths
    from convnext_app.inference import preprocess_files

    if not Path(folder).is_dir():
        raise NotADirectoryError(f"{folder}: --calibration names a folder of images")
    paths = sorted(image_paths([folder]))
    if len(paths) > limit:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]
    return preprocess_files(processor, [Path(p) for p in paths])


def agreement(ours: np.ndarray, ref: np.ndarray, output: str) -> float:
    """Share of images on which ``ours`` keeps ``ref``'s answer: the same top-1 class (logits), or a
    pooled feature pointing the same way (cosine similarity at least :data:`MIN_COSINE`; a nearest-
    neighbour test would hinge on near-duplicate images)."""
    if output == "logits":
        return float((ours.argmax(-1) == ref.argmax(-1)).mean())
    return float((cosine(ours, ref) >= MIN_COSINE).mean())


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)


def quantize_model(model: Any, calibration: np.ndarray, check: Optional[np.ndarray] = None, *,
                   min_agreement: float = MIN_AGREEMENT, max_rel: float = MAX_REL_DIFF,
                   workdir: Optional[str | os.PathLike] = None) -> tuple[Any, QuantizationReport]:
    """(int8 ``ov.Model``, report) of a float32 PyTorch twin (a classifier or a base model),
    calibrated on ``calibration`` pixels and checked against the twin on those and ``check``.
    Raises :class:`QuantizationCheckError` when a bound is missed."""
    nncf, ov = require_int8("int8 quantization")
    import torch

    from convnext_pt.export import compile_openvino, eager_outputs, export_openvino, output_names, run_openvino

    output = "logits" if "logits" in output_names(model) else "pooler_output"
    if len(calibration) == 0:
        raise ValueError("int8 quantization needs at least one calibration image")
    with tempfile.TemporaryDirectory(prefix="convnext-int8-", dir=workdir) as tmp:
        ir = Path(tmp) / "fp32.xml"
        size = tuple(calibration.shape[-2:])
        export_openvino(model, ir, batch_size=1, image_size=size)  # verified against the twin in float32
        fp32_model = ov.Core().read_model(str(ir))
        samples = [calibration[i:i + 1] for i in range(len(calibration))]
        with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: stdout is the command's output
            quantized = nncf.quantize(fp32_model, nncf.Dataset(samples), subset_size=len(samples),
                                      model_type=nncf.ModelType.TRANSFORMER)
    pixels = calibration if check is None or len(check) == 0 else np.concatenate([calibration, check])
    compiled = compile_openvino(quantized, "default")
    ours = batched(lambda x: run_openvino(compiled, x)[output], pixels)
    with torch.inference_mode():
        ref = batched(lambda x: eager_outputs(model, x)[output], pixels)
    diff = float(np.abs(ours - ref).max())
    report = QuantizationReport(
        precision="int8", head="classification" if output == "logits" else "base", output=output,
        calibration_images=len(calibration), checked_images=len(pixels),
        top1_agreement=agreement(ours, ref, output), max_abs_diff=diff,
        rel=diff / max(1.0, float(np.abs(ref).max())), min_agreement=min_agreement, max_rel=max_rel,
        versions={"nncf": nncf.__version__, "openvino": ov.__version__.split("-")[0], "torch": torch.__version__})
    if report.top1_agreement < min_agreement or report.rel > max_rel:
        raise QuantizationCheckError(f"int8 model refused, nothing written: {report.summary()}")
    return quantized, report


def quantize_folder(source: str | os.PathLike, calibration: str | os.PathLike, out: str | os.PathLike, *,
                    head: str = "classification", check: Optional[str | os.PathLike] = None,
                    min_agreement: float = MIN_AGREEMENT, max_rel: float = MAX_REL_DIFF,
                    overwrite: bool = False) -> QuantizationReport:
    """Quantize the model folder (or hub id) ``source`` to int8 on the images of ``calibration`` and
    write the quantized folder ``out`` (see the module docstring); ``head``: ``"classification"``
    (logits) or ``"base"`` (the pooled feature, for ``convnext embed``)."""
    from convnext_app.inference import load_model_folder, load_processor
    from convnext_common.fileio import atomic_directory

    if head not in TASK_OUTPUTS:
        raise ValueError(f"head must be one of {', '.join(TASK_OUTPUTS)}, got {head!r}")
    require_int8("int8 quantization")
    if is_quantized_folder(source):
        raise ValueError(f"{source}: is already an int8 model (it holds {RECORD}); quantize its float32 source")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists (use --overwrite to replace it)")
    processor = load_processor(source)
    cal = calibration_pixels(calibration, processor)
    held = calibration_pixels(check, processor) if check is not None else None
    _, model, _ = load_model_folder(source, "pt", head, "fp32")
    with atomic_directory(out, overwrite=overwrite) as tmp:
        quantized, report = quantize_model(model, cal, held, min_agreement=min_agreement, max_rel=max_rel,
                                           workdir=tmp)
        report.source = str(source)
        write_quantized(quantized, report, source, model.config, processor, tmp)
    return report


def write_quantized(quantized: Any, report: QuantizationReport, source: str | os.PathLike, config: Any,
                    processor: Any, folder: str | os.PathLike) -> None:
    """Write an int8 folder into the (new, empty or absent) ``folder``: the IR, the source's config and
    preprocessor config, and the record."""
    import openvino as ov

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(folder / IR_NAME), compress_to_fp16=False)
    if (Path(source) / "config.json").is_file():
        shutil.copyfile(Path(source) / "config.json", folder / "config.json")
    else:  # a hub id: the config as loaded
        config.save_pretrained(folder)
    _copy_processor_config(source, folder, processor)
    (folder / RECORD).write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")


def _copy_processor_config(source: str | os.PathLike, folder: Path, processor: Any) -> None:
    src = Path(source) / "preprocessor_config.json"
    if src.is_file():
        shutil.copyfile(src, folder / "preprocessor_config.json")
    else:  # a hub id: the processor as loaded
        processor.save_pretrained(folder)

"""The export formats of ``convnext export``: one :class:`ExportFormat` record each in :data:`FORMATS`.

A record says which twin the model is loaded in, which packages the format needs (checked before
anything is loaded, each naming the extra that installs it), which of the format-only options in
:data:`OPTIONS` it accepts, whether it writes a file or a folder, and the function that writes and
verifies it. The command's option checks and dispatch read these records; nothing else names a
format.

To add a format: write ``export(model, out, options, common) -> ExportReport`` (``options``: the
values of the format-only options it accepts; ``common``: ``overwrite``, ``batch_size``,
``image_size``), importing its twin's exporter inside the function, and add one ``ExportFormat`` to
:data:`FORMATS`. A new format-only option is one :class:`FormatOption` in :data:`OPTIONS` plus its
name in the ``options`` of the formats that take it.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from convnext_app.argtypes import positive_int
from convnext_common.config import ConvNextConfig
from convnext_common.export import ONNX_OPSET, Check, ExportReport, require
from convnext_common.fileio import writing


@dataclass(frozen=True)
class Requirement:
    """An optional package: the module imported, its pip name, the project extra that installs it."""

    module: str
    package: str
    extra: str
    purpose: str

    def check(self) -> Any:
        return require(self.module, self.purpose, self.package, self.extra)


@dataclass(frozen=True)
class FormatOption:
    """A command-line option that only some formats accept (``dest`` is its argparse name)."""

    dest: str
    flag: str
    add: Callable[[argparse.ArgumentParser, str], None]  # (parser, help prefix naming the formats)


@dataclass(frozen=True)
class Twin:
    """Where a format's model comes from: importing the twin (a missing framework named with its
    extra) and loading a folder in it."""

    load_module: Callable[[], Any]
    load: Callable[[Any, ConvNextConfig], Any]


@dataclass(frozen=True)
class ExportFormat:
    name: str
    twin: str                              # a key of TWINS
    writes: str                            # "file" or "folder"
    requirements: tuple[Requirement, ...]  # checked before the model is loaded
    options: tuple[str, ...]               # the FormatOption dests it accepts
    export: Callable[[Any, str, dict[str, Any], dict[str, Any]], ExportReport]
    prepare: Optional[Callable[[dict[str, Any]], dict[str, Any]]] = None  # checks options once the twin imports
    # --precision other than fp32: the exporter of each precision the format writes, and why the others are refused
    lower: dict[str, Callable[[Any, str, dict[str, Any], dict[str, Any]], ExportReport]] = field(default_factory=dict)
    refusals: dict[str, str] = field(default_factory=dict)


# --- twins -----------------------------------------------------------------------------------------
TORCH = Requirement("torch", "torch", "torch", "export from the PyTorch twin")
TENSORFLOW = Requirement("tensorflow", "tensorflow-cpu", "tf", "export from the Keras twin")


def _import_pt() -> Any:
    TORCH.check()
    import convnext_pt

    return convnext_pt


def _load_pt(folder: Any, config: ConvNextConfig) -> Any:
    return _import_pt().model_class(config).from_pretrained(folder, config=config).eval().float()


def _import_tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter is not for CLI users
    try:
        import convnext_tf  # imports TensorFlow with its start-up notices filtered
    except ImportError:
        TENSORFLOW.check()  # names the extra to install when TensorFlow is what is missing
        raise
    return convnext_tf


def _load_tf(folder: Any, config: ConvNextConfig) -> Any:
    return _import_tf().model_class(config).from_pretrained(folder, config=config)


TWINS = {"pt": Twin(_import_pt, _load_pt), "tf": Twin(_import_tf, _load_tf)}


# --- format-only options ---------------------------------------------------------------------------
def _add_int8(p: argparse.ArgumentParser, formats: str) -> None:
    p.add_argument("--int8", action="store_true",
                   help=f"{formats} only: dynamic-range int8 weights (files 3.5-3.9x smaller for the models "
                        "measured in docs/export.md; agreement is reported, not bounded)")


def _add_opset(p: argparse.ArgumentParser, formats: str) -> None:
    p.add_argument("--opset", type=positive_int, default=None,
                   help=f"{formats} only: ONNX opset (default {ONNX_OPSET}; the dynamo exporter writes 18 and up, "
                        "the torchscript one 17 and up, each to the installed torch's highest); the report gives "
                        "the written file's opset")


def _add_exporter(p: argparse.ArgumentParser, formats: str) -> None:
    p.add_argument("--exporter", choices=("dynamo", "torchscript"), default=None,
                   help=f"{formats} only: torch's torch.export-based exporter (default, needs onnxscript) or the "
                        "older tracing one")


OPTIONS: dict[str, FormatOption] = {o.dest: o for o in (
    FormatOption("int8", "--int8", _add_int8),
    FormatOption("opset", "--opset", _add_opset),
    FormatOption("exporter", "--exporter", _add_exporter),
)}


# --- formats ---------------------------------------------------------------------------------------
def _prepare_onnx(options: dict[str, Any]) -> dict[str, Any]:
    from convnext_pt.export import check_opset

    exporter = options["exporter"] or "dynamo"
    return {"exporter": exporter, "opset": check_opset(options["opset"] or ONNX_OPSET, exporter)}


def _export_onnx(model: Any, out: str, options: dict[str, Any], common: dict[str, Any]) -> ExportReport:
    from convnext_pt.export import export_onnx

    return export_onnx(model, out, opset=options["opset"], exporter=options["exporter"], **common)


def _export_openvino(model: Any, out: str, options: dict[str, Any], common: dict[str, Any]) -> ExportReport:
    from convnext_pt.export import export_openvino

    return export_openvino(model, out, opset=options["opset"], exporter=options["exporter"], **common)


def _export_saved_model(model: Any, out: str, options: dict[str, Any], common: dict[str, Any]) -> ExportReport:
    from convnext_tf.export import export_saved_model

    return export_saved_model(model, out, **common)


def _export_tflite(model: Any, out: str, options: dict[str, Any], common: dict[str, Any]) -> ExportReport:
    from convnext_tf.export import export_tflite

    return export_tflite(model, out, int8=options["int8"], **common)


def _export_openvino_int8(model: Any, out: str, options: dict[str, Any], common: dict[str, Any]) -> ExportReport:
    """The int8 IR (convnext_app/quantization.py), calibrated on ``options["calibration"]`` and
    checked against the float32 twin on those images before it is written."""
    import openvino as ov

    from convnext_app.inference import load_processor
    from convnext_app.quantization import calibration_pixels, quantize_model, require_int8
    from convnext_common.export import staged_output

    require_int8("--format openvino --precision int8")
    pixels = calibration_pixels(options["calibration"], load_processor(options["source"]))
    path = Path(out)
    if path.suffix != ".xml":
        raise ValueError(f"{path}: an OpenVINO IR is written as NAME.xml (+ NAME.bin)")
    with staged_output(path, overwrite=common["overwrite"]) as tmp:
        quantized, report = quantize_model(model, pixels, workdir=tmp.parent)
        ov.save_model(quantized, str(tmp), compress_to_fp16=False)
    check = Check(tuple(int(s) for s in pixels.shape), {report.output: report.rel},
                  report.top1_agreement if report.output == "logits" else None)
    return ExportReport("openvino", path, "PyTorch eager float32", report.max_rel, [check],
                        {"precision": "int8 (NNCF, calibrated on the images)", "weights": str(path.with_suffix(".bin")),
                         "agreement": f"{report.top1_agreement:.2%} (bound >= {report.min_agreement:.0%})",
                         "max |diff|": f"{report.max_abs_diff:.4g}", **report.versions})


_BF16_AT_RUN_TIME = ("the file stays float32 and its engine computes in bfloat16 when asked at run time "
                     "(--runtime openvino --precision bf16)")
FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("onnx", "pt", "file",
                 (Requirement("onnx", "onnx", "export", "ONNX export"),
                  Requirement("onnxruntime", "onnxruntime", "export", "ONNX export (verification with onnxruntime)")),
                 ("opset", "exporter"), _export_onnx, _prepare_onnx,
                 refusals={"bf16": "ONNX Runtime's CPU engine has few bfloat16 kernels; export fp32",
                           "int8": "int8 is written as --format openvino (NNCF's quantized IR)"}),
    ExportFormat("openvino", "pt", "file",
                 (Requirement("onnx", "onnx", "export", "OpenVINO export (through ONNX)"),
                  Requirement("onnxruntime", "onnxruntime", "export", "OpenVINO export (ONNX verification)"),
                  Requirement("openvino", "openvino", "openvino", "OpenVINO export")),
                 ("opset", "exporter"), _export_openvino, _prepare_onnx,
                 lower={"int8": _export_openvino_int8}, refusals={"bf16": _BF16_AT_RUN_TIME}),
    ExportFormat("savedmodel", "tf", "folder", (), (), _export_saved_model,
                 refusals={"bf16": "a SavedModel is exported from the float32 Keras twin; run it under "
                                   "mixed_bfloat16 with --framework tf --precision bf16",
                           "int8": "int8 is written as --format openvino, or --format tflite --int8"}),
    ExportFormat("tflite", "tf", "file", (), ("int8",), _export_tflite,
                 refusals={"bf16": "TFLite has no bfloat16 model; export fp32",
                           "int8": "TFLite's int8 is --int8 (dynamic-range weights), not --precision int8"}),
)}


def check_precision(fmt: ExportFormat, precision: str, calibration: Optional[str]) -> None:
    """One-line errors for a precision ``fmt`` does not write and a misplaced ``--calibration``."""
    if precision != "fp32" and precision not in fmt.lower:
        reason = fmt.refusals.get(precision, "not supported")
        raise ValueError(f"--format {fmt.name} --precision {precision}: {reason}")
    if precision == "int8" and calibration is None:
        raise ValueError(f"--format {fmt.name} --precision int8 needs --calibration DIR (images to quantize on)")
    if precision != "int8" and calibration is not None:
        raise ValueError("--calibration goes with --precision int8")


def formats_accepting(dest: str) -> list[str]:
    return [f.name for f in FORMATS.values() if dest in f.options]


def add_format_options(p: argparse.ArgumentParser) -> None:
    """Every format-only option, its help naming the formats that accept it."""
    for option in OPTIONS.values():
        option.add(p, ", ".join(formats_accepting(option.dest)))


def format_options(fmt: ExportFormat, args: argparse.Namespace) -> dict[str, Any]:
    """The values of ``fmt``'s options; ValueError for a format-only option given to another format."""
    for option in OPTIONS.values():
        value = getattr(args, option.dest, None)
        if value not in (None, False) and option.dest not in fmt.options:
            raise ValueError(f"{option.flag} applies to --format {' or '.join(formats_accepting(option.dest))} only")
    return {dest: getattr(args, dest) for dest in fmt.options}


def check_output(fmt: ExportFormat, out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists (use --overwrite to replace it)")
    if fmt.writes == "folder" and out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder (a {fmt.name} export is a folder)")
    if fmt.writes == "file" and out.is_dir():
        raise IsADirectoryError(f"{out}: is a folder; --out names the {fmt.name} file to write")


def export(fmt: ExportFormat, folder: Any, config: ConvNextConfig, out: str, options: dict[str, Any],
           common: dict[str, Any], precision: str = "fp32", calibration: Optional[str] = None
           ) -> tuple[Any, ExportReport]:
    """Check ``fmt``'s packages, load ``folder`` in its twin and export it at ``precision`` (fp32, or a
    key of ``fmt.lower``; int8 is calibrated on the images of ``calibration``): (model, report)."""
    for requirement in fmt.requirements:  # fail before loading anything when a package is missing
        requirement.check()
    twin = TWINS[fmt.twin]
    twin.load_module()
    if fmt.prepare is not None:
        options = fmt.prepare(options)  # e.g. an unsupported opset, before the model is loaded
    model = twin.load(folder, config)
    with writing(out):  # no space, no permission, a read-only filesystem: one line naming --out
        if precision == "fp32":
            report = fmt.export(model, out, options, common)
        else:
            report = fmt.lower[precision](model, out, {**options, "source": folder, "calibration": calibration},
                                          common)
    return model, report

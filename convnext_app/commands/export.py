"""``convnext export``: write a hub-layout model as ONNX or OpenVINO IR (from the PyTorch twin), a TensorFlow
SavedModel or a TFLite file (from the Keras twin), verified against the source model.

Argument parsing only; the formats, their options and their exporters are records in
:mod:`convnext_app.exporting`. A missing optional package is reported in one line that names the
extra to install (``pip install "convnext-twins[export]"`` for ONNX).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, TextIO, Union

from .common import positive_int

HELP = "export to ONNX, OpenVINO IR, TensorFlow SavedModel or TFLite, verified against the source model"
DESCRIPTION = "Export a ConvNeXt (folder or hub id) for deployment and check the result against the model it came from."
EPILOG = """examples:
  convnext export --format onnx --out digits.onnx                 the embedded digits model
  convnext export --model ./convnext-tiny-224 --format onnx --out tiny.onnx --opset 18
  convnext export --model ./convnext-tiny-224 --format savedmodel --out tiny_savedmodel
  convnext export --model ./convnext-tiny-224 --format tflite --out tiny-int8.tflite --int8
  convnext export --model ./convnext-tiny-224 --format openvino --out tiny-int8.xml --precision int8 --calibration calib/

ONNX comes from the PyTorch twin and is checked with onnxruntime (pip install "convnext-twins[export]");
the OpenVINO IR is converted from that ONNX file and checked on OpenVINO's CPU plugin in float32
(pip install "convnext-twins[openvino]");
SavedModel and TFLite come from the Keras twin (pip install "convnext-twins[tf]"). Every export runs
the written model on random inputs (the export shape, another batch and size) and reports
rel = max|export - model| / max(1, max|model|); nothing is written when a float32 export misses its tolerance (ONNX 1e-5, OpenVINO 1e-5, SavedModel 1e-5, TFLite 1e-4)."""


def _image_size(text: str) -> tuple[int, int]:
    """``224`` or ``224x160`` (height x width)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected SIZE or HEIGHTxWIDTH with positive integers, got {text!r}")
    return parts[0], parts[1]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from convnext_app.exporting import FORMATS, add_format_options

    p.add_argument("--model", metavar="ID|DIR", default=None,
                   help="a hub id (transformers or timm repo) or a hub-layout ConvNeXt folder (config.json + weights); "
                        "default: the embedded digits model")
    p.add_argument("--format", required=True, choices=list(FORMATS),
                   help="onnx, openvino (NAME.xml + NAME.bin), savedmodel (a folder) or tflite")
    p.add_argument("--out", required=True, metavar="PATH",
                   help="the file (onnx, tflite) or folder (savedmodel) to write")
    add_format_options(p)
    p.add_argument("--image-size", type=_image_size, default=None, metavar="SIZE|HxW",
                   help="the size traced and checked first (default: the config's image_size, at least twice the "
                        "model's total stride); the exported model takes any size")
    p.add_argument("--batch-size", type=positive_int, default=2, help="batch of the first check (default 2)")
    p.add_argument("--precision", choices=["fp32", "bf16", "int8"], default="fp32",
                   help="fp32 (default, every format); int8: --format openvino only, NNCF's post-training static "
                        "quantization on --calibration DIR, checked against float32 on those images (pip install "
                        "\"convnext-twins[int8]\"); bf16 is chosen when a model runs, not written (refused)")
    p.add_argument("--calibration", metavar="DIR", default=None,
                   help="with --precision int8: the images to quantize on (a folder, searched recursively; up to 300)")
    p.add_argument("--overwrite", action="store_true", help="replace PATH if it exists")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the verification report as JSON")
    output.add_argument("--quiet", action="store_true", help="print nothing on success (errors still print)")


def _model_source(args: argparse.Namespace) -> Union[str, Path]:
    """``--model``: a folder or a hub id (resolved when loaded), or the embedded model's folder."""
    if args.model:
        from convnext_common.hub import is_hub_id

        if not Path(args.model).is_dir() and not is_hub_id(args.model):
            raise FileNotFoundError(f"{args.model}: no such model folder (nor a hub id)")
        return args.model
    from convnext_app.inference import default_model_dir

    return default_model_dir()


def run(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    from convnext_app.exporting import FORMATS, check_output, check_precision, export, format_options
    from convnext_common.config import load_config

    out = out or sys.stdout
    fmt = FORMATS[args.format]
    check_precision(fmt, args.precision, args.calibration)  # before anything is imported or re-run
    if fmt.twin == "tf":
        from convnext_app.keras_backend import configured_backend, rerun_on_tensorflow

        if configured_backend() != "tensorflow":  # a SavedModel is traced by TensorFlow
            argv = getattr(args, "_argv", None)
            if argv is None:
                raise RuntimeError(f"--format {args.format} needs KERAS_BACKEND=tensorflow; this process runs Keras on "
                                   f"{configured_backend()!r}")
            return rerun_on_tensorflow(argv, f"--format {args.format}", out)
    options = format_options(fmt, args)
    check_output(fmt, Path(args.out), args.overwrite)
    folder = _model_source(args)
    from convnext_app.int8_folder import IR_NAME, is_quantized_folder

    if Path(folder).is_dir() and is_quantized_folder(folder):
        raise ValueError(f"{folder}: holds an int8 model, already an OpenVINO IR ({Path(folder) / IR_NAME}); "
                         "export its float32 source, with --precision int8 for an int8 IR")
    config = load_config(folder)
    common = {"overwrite": args.overwrite, "batch_size": args.batch_size, "image_size": args.image_size}
    model, report = export(fmt, folder, config, args.out, options, common, args.precision, args.calibration)
    if args.quiet:
        return 0
    if args.json:
        json.dump({"model": str(folder), **report.to_dict()}, out, indent=2)
        out.write("\n")
    else:
        print(f"model: {folder} ({type(model).__name__})", file=out)
        print(report.summary(), file=out)
    return 0

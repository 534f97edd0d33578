"""``convnext export``: write a hub-layout model as ONNX (from the PyTorch twin), a TensorFlow
SavedModel or a TFLite file (from the Keras twin), verified against the source model.

Argument parsing and dispatch only; the work is in ``convnext_pt.export`` and
``convnext_tf.export``, imported when the command runs. A missing optional package is reported in
one line that names the extra to install (``pip install "convnext-twins[export]"`` for ONNX).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional, TextIO, Union

from convnext_common.export import ONNX_OPSET, MissingExportDependency, require

FORMATS = ("onnx", "savedmodel", "tflite")

EPILOG = """examples:
  convnext export --format onnx --out digits.onnx                 the embedded digits model
  convnext export --model ./convnext-tiny-224 --format onnx --out tiny.onnx --opset 18
  convnext export --model ./convnext-tiny-224 --format savedmodel --out tiny_savedmodel
  convnext export --model ./convnext-tiny-224 --format tflite --out tiny-int8.tflite --int8

ONNX comes from the PyTorch twin and is checked with onnxruntime (pip install "convnext-twins[export]");
SavedModel and TFLite come from the Keras twin (pip install "convnext-twins[tf]"). Every export runs
the written model on random inputs (the export shape, another batch and size) and reports
rel = max|export - model| / max(1, max|model|); nothing is written when a float32 export misses its tolerance (ONNX 1e-5, SavedModel 1e-5, TFLite 1e-4)."""


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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG  # set here so that the registration in cli.py stays lazy
    p.add_argument("--model", metavar="ID|DIR", default=None,
                   help="a hub id (transformers or timm repo) or a hub-layout ConvNeXt folder (config.json + weights); "
                        "default: the embedded digits model")
    p.add_argument("--format", required=True, choices=FORMATS, help="onnx, savedmodel (a folder) or tflite")
    p.add_argument("--out", required=True, metavar="PATH",
                   help="the file (onnx, tflite) or folder (savedmodel) to write")
    p.add_argument("--int8", action="store_true",
                   help="tflite only: dynamic-range int8 weights (files 3.5-3.9x smaller for the models measured "
                        "in the README; agreement is reported, not bounded)")
    p.add_argument("--opset", type=_positive_int, default=None,
                   help=f"onnx only: ONNX opset (default {ONNX_OPSET}; the dynamo exporter writes 18 and up, the "
                        "torchscript one 17 and up, each to the installed torch's highest); the report gives the "
                        "written file's opset")
    p.add_argument("--exporter", choices=("dynamo", "torchscript"), default=None,
                   help="onnx only: torch's torch.export-based exporter (default, needs onnxscript) or the older "
                        "tracing one")
    p.add_argument("--image-size", type=_image_size, default=None, metavar="SIZE|HxW",
                   help="the size traced and checked first (default: the config's image_size, at least twice the "
                        "model's total stride); the exported model takes any size")
    p.add_argument("--batch-size", type=_positive_int, default=2, help="batch of the first check (default 2)")
    p.add_argument("--overwrite", action="store_true", help="replace PATH if it exists")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the verification report as JSON")
    output.add_argument("--quiet", action="store_true", help="print nothing on success (errors still print)")


def _check_options(args: argparse.Namespace) -> None:
    if args.int8 and args.format != "tflite":
        raise ValueError("--int8 applies to --format tflite only")
    if args.format != "onnx" and (args.opset is not None or args.exporter is not None):
        raise ValueError("--opset and --exporter apply to --format onnx only")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out}: already exists (use --overwrite to replace it)")
    if args.format == "savedmodel" and out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder (a SavedModel is a folder)")
    if args.format != "savedmodel" and out.is_dir():
        raise IsADirectoryError(f"{out}: is a folder; --out names the {args.format} file to write")


def _model_dir(args: argparse.Namespace) -> Union[str, Path]:
    """``--model``: a folder or a hub id (resolved when loaded), or the embedded model's folder."""
    if args.model:
        from convnext_common.hub import is_hub_id

        if not Path(args.model).is_dir() and not is_hub_id(args.model):
            raise FileNotFoundError(f"{args.model}: no such model folder (nor a hub id)")
        return args.model
    from .inference import default_model_dir

    return default_model_dir()


def _model_kind(config) -> str:
    """classification, base or backbone, from config.json's ``architectures`` (default: classification)."""
    arch = (config.architectures or [""])[0]
    if arch.endswith("Backbone"):
        return "backbone"
    if arch.endswith("Model"):
        return "base"
    return "classification"


def _load_pt(folder: Path, config):
    require("torch", "ONNX export (from the PyTorch twin)")
    import convnext_pt as pt

    v2 = config.model_type == "convnextv2"
    classes = {"classification": (pt.ConvNextForImageClassification, pt.ConvNextV2ForImageClassification),
               "base": (pt.ConvNextModel, pt.ConvNextV2Model),
               "backbone": (pt.ConvNextBackbone, pt.ConvNextV2Backbone)}[_model_kind(config)]
    return classes[v2].from_pretrained(folder, config=config).eval().float()


def _load_tf(folder: Path, config):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter is not for CLI users
    try:
        import convnext_tf as tfm  # imports TensorFlow with its start-up notices filtered
    except ImportError:
        require("tensorflow", "SavedModel/TFLite export (from the Keras twin)")  # names the extra to install
        raise

    v2 = config.model_type == "convnextv2"
    classes = {"classification": (tfm.TFConvNextForImageClassification, tfm.TFConvNextV2ForImageClassification),
               "base": (tfm.TFConvNextModel, tfm.TFConvNextV2Model),
               "backbone": (tfm.TFConvNextBackbone, tfm.TFConvNextV2Backbone)}[_model_kind(config)]
    return classes[v2].from_pretrained(folder, config=config)


def run_export(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    from convnext_common.config import load_config

    out = out or sys.stdout
    _check_options(args)
    folder = _model_dir(args)
    config = load_config(folder)
    common = {"overwrite": args.overwrite, "batch_size": args.batch_size, "image_size": args.image_size}
    if args.format == "onnx":
        # fail before loading anything when the ONNX packages are missing
        require("onnx", "ONNX export")
        require("onnxruntime", "ONNX export (verification with onnxruntime)")
        require("torch", "ONNX export (from the PyTorch twin)")
        from convnext_pt.export import check_opset, export_onnx

        exporter = args.exporter or "dynamo"
        opset = check_opset(args.opset or ONNX_OPSET, exporter)  # before loading the model
        model = _load_pt(folder, config)
        report = export_onnx(model, args.out, opset=opset, exporter=exporter, **common)
    else:
        model = _load_tf(folder, config)
        from convnext_tf.export import export_saved_model, export_tflite

        if args.format == "savedmodel":
            report = export_saved_model(model, args.out, **common)
        else:
            report = export_tflite(model, args.out, int8=args.int8, **common)
    if args.quiet:
        return 0
    if args.json:
        json.dump({"model": str(folder), **report.to_dict()}, out, indent=2)
        out.write("\n")
    else:
        print(f"model: {folder} ({type(model).__name__})", file=out)
        print(report.summary(), file=out)
    return 0


__all__ = ["FORMATS", "EPILOG", "add_export_arguments", "run_export", "MissingExportDependency"]

"""``convnext quantize``: post-training static int8 quantization of a model folder on calibration images."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, TextIO

from .common import add_model_option, model_source

HELP = "quantize a model to int8 on calibration images (OpenVINO IR via NNCF), checked against float32"
DESCRIPTION = ("Quantize a ConvNeXt classifier (or, with --head base, its pooled feature for `convnext embed`) to "
               "int8 with NNCF's post-training static quantization, calibrated on a folder of images, and write a "
               "folder that predict, evaluate and embed run with --precision int8 (on OpenVINO). The int8 model is "
               "compared with the float32 one on the calibration images (and --check images) before anything is "
               "written: top-1 agreement and the largest output difference must meet the bounds.")
EPILOG = """examples:
  convnext quantize --model ./convnext-tiny-224 --calibration calib_photos/ --out tiny-int8
  convnext predict photos/ --model tiny-int8 --precision int8
  convnext quantize --model ./convnext-tiny-224 --head base --calibration calib_photos/ --out tiny-int8-embed

Needs NNCF and OpenVINO: pip install "convnext-twins[int8]". Norms, GRN, GELU and the depthwise
convolutions stay in floating point; the 1x1 convolutions, stem, downsampling and classifier run in int8.
Use a few hundred images like those the model will see (up to 300 are read)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_option(p)
    p.add_argument("--calibration", required=True, metavar="DIR",
                   help="folder of images to calibrate on (searched recursively; up to 300, evenly spaced by name)")
    p.add_argument("--out", required=True, metavar="DIR", help="the int8 model folder to write")
    p.add_argument("--head", choices=["classification", "base"], default="classification",
                   help="classification (logits, for predict/evaluate; default) or base (the pooled feature, for embed)")
    p.add_argument("--check", metavar="DIR", default=None,
                   help="more images (held-out) to compare int8 with float32 on, besides the calibration ones")
    p.add_argument("--min-agreement", type=float, default=None, metavar="F",
                   help="least share of images with the float32 model's top-1 class (for --head base: with a "
                        "pooled feature at cosine similarity >= 0.99 to the float32 one) (default 0.98)")
    p.add_argument("--max-rel", type=float, default=None, metavar="R",
                   help="largest max|int8 - fp32| / max(1, max|fp32|) of the outputs (default 0.25)")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    p.add_argument("--json", action="store_true", help="print the check's report as JSON")


def run(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    from dataclasses import asdict

    from convnext_app import quantization as q

    out = out or sys.stdout
    q.require_int8("convnext quantize")
    for name, value in (("--min-agreement", args.min_agreement), ("--max-rel", args.max_rel)):
        if value is not None and not 0 <= value <= (1 if name == "--min-agreement" else float("inf")):
            raise ValueError(f"{name} must be {'between 0 and 1' if name == '--min-agreement' else '0 or more'}, "
                             f"got {value}")
    report = q.quantize_folder(
        model_source(args), args.calibration, args.out, head=args.head, check=args.check,
        min_agreement=q.MIN_AGREEMENT if args.min_agreement is None else args.min_agreement,
        max_rel=q.MAX_REL_DIFF if args.max_rel is None else args.max_rel, overwrite=args.overwrite)
    if args.json:
        json.dump({"out": str(args.out), **asdict(report)}, out, indent=2)
        out.write("\n")
    else:
        print(f"model: {report.source} -> {args.out} (int8, {report.output})", file=out)
        print(report.summary(), file=out)
    return 0

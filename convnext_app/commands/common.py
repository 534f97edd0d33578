"""Options and output helpers that several subcommands share."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Sequence, TextIO, Union

from convnext_app.argtypes import positive_int  # noqa: F401  (the commands' name for it)

PROG = "convnext"

MODEL_HELP = ("a hub id (facebook/convnext-tiny-224, timm/convnext_tiny.fb_in1k, ID@REVISION; from the local "
              "cache when HF_HUB_OFFLINE=1) or a hub-layout ConvNeXt folder (config.json, model.safetensors or "
              "tf_model.h5, preprocessor_config.json)")


def add_model_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="ID|DIR", default=None,
                   help=MODEL_HELP + "; default: the embedded digits model")


def add_framework_option(p: argparse.ArgumentParser, choices: Sequence[str]) -> None:
    p.add_argument("--framework", choices=list(choices) + ["auto"], default="auto",
                   help="pt (PyTorch) or tf (Keras/TensorFlow)" + (", both compares them" if "both" in choices else "")
                        + "; auto (default): pt when PyTorch is installed, else tf")


def resolve_framework(name: str) -> list[str]:
    if name == "both":
        return ["pt", "tf"]  # torch first: it must be imported before tensorflow in one process
    if name != "auto":
        return [name]
    return ["pt"] if importlib.util.find_spec("torch") is not None else ["tf"]


def model_source(args: argparse.Namespace) -> Union[str, Path]:
    """``--model`` as given (a folder or a hub id), or the embedded model's folder."""
    from convnext_app.inference import default_model_dir

    return args.model if args.model else default_model_dir()


def announce_licence(source: Union[str, Path]) -> None:
    """Print, once per run and on rank 0 only, the licence of weights that are not under a permissive
    one; on stderr, so that results on stdout stay parseable."""
    from convnext_common.licences import licence_notice

    if os.environ.get("RANK", "0") != "0":
        return
    notice = licence_notice(source)
    if notice is not None:
        print(notice, file=sys.stderr)


def warn(message: str) -> None:
    print(f"{PROG}: note: {message}", file=sys.stderr)


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(r, widths)).rstrip(), file=out)


def add_bulk_options(p: argparse.ArgumentParser, output_help: str, required: bool = False) -> None:
    """The options of a run over a whole collection (``predict --output``, ``embed``)."""
    g = p.add_argument_group("collections (results written as they are produced; see docs/bulk.md)")
    g.add_argument("--output", "-o", metavar="FILE", default=None, required=required, help=output_help)
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="decoding processes (default: half the CPU cores, at most 8; 0: decode in this process)")
    resume = g.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true",
                        help="skip the images already in FILE and append the rest (after a kill or a failure)")
    resume.add_argument("--overwrite", action="store_true", help="replace an existing FILE")
    g.add_argument("--strict", action="store_true",
                   help="stop at the first image that cannot be read (default: record the error and go on)")
    g.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def run_bulk_command(args: argparse.Namespace, task: str, paths: Sequence[str], **job_options) -> int:
    """Run a bulk job from the command's options; a summary line on stderr. Exit status 1 when every
    image failed (or, with --strict, at the first failure: raised as a one-line error)."""
    from convnext_app.bulk import BulkJob, run_bulk

    if args.workers is not None and args.workers < 0:
        raise ValueError(f"--workers must be 0 or more, got {args.workers}")
    job = BulkJob(task=task, model=model_source(args), paths=list(paths), output=args.output,
                  framework=resolve_framework(args.framework)[0], precision=args.precision,
                  runtime=args.runtime, batch_size=args.batch_size, workers=args.workers,
                  resume=args.resume, overwrite=args.overwrite, strict=args.strict, progress=not args.quiet,
                  **job_options)
    summary = run_bulk(job, warn=warn)
    if summary.rank != 0:
        return 0
    if not args.quiet:
        ran = f" ({summary.processed} this run)" if summary.processed != summary.images else ""
        print(f"{PROG} {task}: {summary.images} images{ran}, {summary.failed} failed -> {summary.output}",
              file=sys.stderr)
    return 1 if summary.images and summary.failed == summary.images else 0


@contextlib.contextmanager
def prepared_precision(args: argparse.Namespace, head: str) -> Iterator[None]:
    """For the commands that run a model: resolve ``args.runtime`` (None: torch, or openvino for int8),
    check ``--calibration`` and, with ``--precision int8 --calibration DIR``, quantize ``args.model``
    into a temporary folder that ``args.model`` names for the rest of the command."""
    from convnext_app.runtimes import resolve_runtime

    args.runtime = resolve_runtime(args.runtime, args.precision)
    calibration = getattr(args, "calibration", None)
    if calibration is not None and args.precision != "int8":
        raise ValueError("--calibration goes with --precision int8")
    if args.precision != "int8" or calibration is None:
        yield
        return
    if getattr(args, "framework", None) not in (None, "auto", "pt"):
        raise ValueError("--precision int8 quantizes the PyTorch twin's export: use --framework pt")
    from convnext_app.quantization import quantize_folder, require_int8

    require_int8("--precision int8")
    with tempfile.TemporaryDirectory(prefix="convnext-int8-") as tmp:
        folder = f"{tmp}/model"
        report = quantize_folder(model_source(args), calibration, folder, head=head)
        print(f"convnext: {report.summary()}", file=sys.stderr)
        args.model = folder
        yield

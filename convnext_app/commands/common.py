"""Options and output helpers that several subcommands share."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Sequence, TextIO, Union

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


def warn(message: str) -> None:
    print(f"{PROG}: note: {message}", file=sys.stderr)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(r, widths)).rstrip(), file=out)

"""``convnext convert`` (``tools/convert_weights.py`` runs the same command): the command line of the
converter in :mod:`convnext_common.checkpoints.pipeline`, and ``--verify``, which loads the written
folder in both twins and compares their outputs.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Optional, TextIO

import numpy as np

from convnext_common.checkpoints.pipeline import TARGETS, convert
from convnext_common.checkpoints.sources import FORMATS
from convnext_common.checkpoints.errors import CheckpointError
from convnext_common.config import ConvNextConfig, load_config

from .errors import one_line

#: verification bound: the project's rel on logits between the twins.
VERIFY_REL_TOL = 1e-4


# --- verification --------------------------------------------------------------------------------
def verify_input_shape(config: ConvNextConfig, batch: int = 2) -> tuple[int, int, int, int]:
    """NCHW of the random batch ``--verify`` runs: 64x64, or larger so that the last stage still has
    a 2x2 map when the stem's patch is large."""
    total_stride = config.patch_size * 2 ** (config.num_stages - 1)
    side = max(64, 2 * total_stride)
    return batch, config.num_channels, side, side


def verify_folder(folder: Path, notes: Optional[list[str]] = None, seed: int = 0) -> float:
    """Load ``folder`` in the PyTorch twin and the TF twin, run both on one random batch and return
    max |PT - TF| over the main output; raises CheckpointError when rel exceeds 1e-4."""
    import os

    import torch  # noqa: F401  (before tensorflow, see tests/conftest.py)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep the one-line output readable

    import convnext_pt

    config = load_config(folder)
    try:
        pt_cls = convnext_pt.model_class(config)
    except ValueError as e:
        raise CheckpointError(f"{folder}: {e}") from None
    shape = verify_input_shape(config)
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    pt_model = pt_cls.from_pretrained(folder, config=config)
    with torch.no_grad():
        pt_out = _main_output(pt_model(torch.from_numpy(x)))
    try:
        import convnext_tf
    except ImportError as e:
        raise CheckpointError(f"--verify needs the TensorFlow twin ({one_line(e)})") from None
    tf_model = convnext_tf.model_class(config).from_pretrained(folder, config=config)
    tf_out = _main_output(tf_model(x, training=False))
    diff = float(np.abs(pt_out - tf_out).max())
    rel = diff / max(1.0, float(np.abs(pt_out).max()))
    if notes is not None:
        notes.append(f"verify: PT vs TF max |diff| = {diff:.3g} (rel {rel:.3g}) on a random "
                     f"{'x'.join(str(d) for d in shape)} batch")
    if rel > VERIFY_REL_TOL:
        raise CheckpointError(f"{folder}: verification failed: PT and TF outputs differ by {diff:.3g} "
                              f"(rel {rel:.3g} > {VERIFY_REL_TOL})")
    return diff


def _main_output(out) -> np.ndarray:
    for name in ("logits", "pooler_output", "feature_maps"):
        value = getattr(out, name, None)
        if value is not None:
            if name == "feature_maps":
                value = value[-1]
            return np.asarray(value.detach().numpy() if hasattr(value, "detach") else value)
    raise CheckpointError("the model returned no logits, pooler_output or feature_maps")


# --- the converter's words in the command line's ------------------------------------------------
#: the converter's parameters (``convnext_common.checkpoints.pipeline.convert``) and their flags
CLI_FLAGS = {"source": "--from", "to": "--to", "family": "--family", "config": "--config", "ema": "--ema",
             "overwrite": "--overwrite"}
_PARAMETER = re.compile(r"\b(" + "|".join(CLI_FLAGS) + r")=(True\b|\.\.\.|\"([^\"]*)\"|'[^']*')")


class ConvertCommandError(ValueError):
    """A converter error re-worded with the command line's flags (the cause keeps the original)."""


def cli_terms(message: str) -> str:
    """A message of the converter with its parameters as the command line spells them:
    ``ema=True`` -> ``--ema``, ``to="tf"`` -> ``--to tf``, ``source='x'`` -> ``--from 'x'``,
    ``config=...`` -> ``--config``."""
    def flag(m: re.Match) -> str:
        name, value, plain = m.group(1), m.group(2), m.group(3)
        if value in ("True", "..."):
            return CLI_FLAGS[name]
        return f"{CLI_FLAGS[name]} {plain if plain is not None else value}"

    return _PARAMETER.sub(flag, message)


# --- command line --------------------------------------------------------------------------------
def add_convert_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("input", help="hub folder, .safetensors, .bin/.pth/.pt, tf_model.h5, a keras-applications .h5, "
                                      "or a hub id (a transformers or timm repo, ID@REVISION)")
    parser.add_argument("output_dir", help="folder to create (config.json, model.safetensors, tf_model.h5, ...)")
    parser.add_argument("--from", dest="source", choices=FORMATS, default=None,
                        help="the library that wrote INPUT (default: detected from the tensor names)")
    parser.add_argument("--to", dest="to", choices=TARGETS, default="all",
                        help="pt: model.safetensors, tf: tf_model.h5, all: both (default)")
    parser.add_argument("--family", choices=("convnext", "dinov3"), default=None,
                        help="the written folder's model: a ConvNeXt, or transformers' DINOv3 ConvNeXt "
                             "(default: the source's; DINOv3 for DINOv3 checkpoints and timm dinov3/eupe tags)")
    parser.add_argument("--config", default=None,
                        help="a hub config.json to use instead of the inferred one, or a timm config.json "
                             "(architecture, model_args) describing a bare timm state dict")
    parser.add_argument("--ema", action="store_true",
                        help="convert a training checkpoint's EMA weights (model_ema) instead of its model")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT_DIR if it exists")
    parser.add_argument("--verify", action="store_true",
                        help="load the result in both twins and print the PT vs TF max difference")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    return parser


def run_convert(args: argparse.Namespace, stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None) -> int:
    """Run a parsed ``convert`` command and print its summary; errors propagate (the command line turns
    them into one line: :mod:`convnext_app.errors`)."""
    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    quiet = bool(getattr(args, "quiet", False))
    try:
        result = convert(args.input, args.output_dir, source=args.source, to=args.to, config=args.config,
                         overwrite=args.overwrite, verify=verify_folder if args.verify else None,
                         progress=not quiet, stream=stderr,
                         ema=bool(getattr(args, "ema", False)), family=getattr(args, "family", None))
    except (ValueError, KeyError, OSError) as e:
        spelled = cli_terms(one_line(e))
        if spelled == one_line(e):
            raise
        raise ConvertCommandError(spelled) from e  # the converter's parameters as this command's flags
    if not quiet:
        print(f"{result.output_dir}: {', '.join(result.files)} (from {result.source_format}, "
              f"{result.config.architectures[0]})", file=stdout)
        for note in result.notes:
            print(f"  {cli_terms(note)}", file=stdout)
    return 0

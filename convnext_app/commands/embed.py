"""``convnext embed``: the feature vector of each image (pooled, or a stage's map averaged) to a file."""

from __future__ import annotations

import argparse

from convnext_app.precision import add_precision_option
from convnext_app.runtimes import add_runtime_option

from .common import (
    add_bulk_options, add_framework_option, add_model_option, announce_licence, model_source, positive_int,
    run_bulk_command,
)

HELP = "write each image's feature vector (the pooled embedding or a stage's) to .npy, .safetensors or .parquet"
DESCRIPTION = ("Embed a collection of images with a ConvNeXt (classification, base-model or backbone folder or hub "
               "id): each image's pooled feature (the base model's pooler_output), or with --stage N that stage's "
               "map averaged over its height and width, as float32. Streamed, resumable and sharded under "
               "torchrun like predict --output; an image that cannot be read gets an error entry.")
EPILOG = """examples:
  convnext embed photos/ --model facebook/convnext-tiny-224 --output features.npy
                 features.npy (N, 768) float32 + features.index.jsonl: {"path", "row"} or {"path", "error"}
  convnext embed photos/ --model ./convnext-tiny-224 --output features.parquet --normalize
  convnext embed photos/ --model ./backbone --stage 3 --output stage3.safetensors
  torchrun --nproc_per_node=2 -m convnext_app embed photos/ --model M --output features.npy"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    add_model_option(p)
    add_precision_option(p)
    add_runtime_option(p)
    add_framework_option(p, ["pt", "tf"])
    p.add_argument("--stage", type=positive_int, default=None, metavar="N",
                   help="the map of stage N (1..4) averaged over height and width, instead of the pooled feature "
                        "(needed for a backbone, which has no pooled norm)")
    p.add_argument("--normalize", action="store_true", help="L2-normalise each vector")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per forward pass (default 32)")
    add_bulk_options(p, "where to write: .npy (+ NAME.index.jsonl), .safetensors (tensor 'embeddings', paths in "
                        "its metadata) or .parquet (needs pyarrow)", required=True)


def run(args: argparse.Namespace) -> int:
    from .common import prepared_precision

    with prepared_precision(args, "base"):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from convnext_app.bulk.files import image_paths

    announce_licence(model_source(args))
    return run_bulk_command(args, "embed", image_paths(args.images), stage=args.stage, normalize=args.normalize)

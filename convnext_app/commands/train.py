"""``convnext train``: train or fine-tune; the work is in :mod:`convnext_app.training` (``pt``, and
``keras`` with ``--framework tf``)."""

from __future__ import annotations

import argparse

from .common import positive_int

HELP = "train or fine-tune in PyTorch (single process or torchrun), or in Keras (--framework tf)"
DESCRIPTION = ("Train a ConvNeXt on an ImageFolder: a named variant from scratch or a folder fine-tuned (a new "
               "head when the classes differ). AdamW, warmup + cosine, label smoothing, random resized crop + "
               "flip; optionally the papers' recipe (EMA, mixup/cutmix, RandAugment, random erasing, layer decay, "
               "accumulation, clipping). Writes curves.png. Under torchrun it trains data-parallel (DDP); only "
               "rank 0 writes.")
EPILOG = """examples:
  convnext train --data ./flowers --model convnext-atto --out ./atto-flowers --epochs 30 --image-size 128
  convnext train --data ./flowers --model facebook/convnext-tiny-224 --out ./tiny-flowers --lr 1e-4
  convnext train --data ./flowers --model ./convnext-tiny-224 --out ./tiny-flowers --lr 1e-4
  torchrun --nproc_per_node=4 -m convnext_app train --data ./flowers --model convnext-tiny --out ./run
  convnext train ... --resume            continue from OUT/last_checkpoint.pt
  convnext train ... --layer-decay 0.9 --drop-path 0.1 --mixup 0.8 --cutmix 1.0 \
      --randaugment rand-m9-mstd0.5-inc1 --reprob 0.25 --ema 0.9999     the papers' fine-tuning recipe

DATA is an ImageFolder: one sub-folder per class (the folder names become the labels), either
directly or under train/ and val/. Without val/, --val-fraction of each class is held out."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR", help="ImageFolder with class sub-folders (or train/, val/)")
    p.add_argument("--model", required=True, metavar="ID|DIR|VARIANT",
                   help="a hub id or hub-layout folder to fine-tune (transformers or timm), or a variant name "
                        "(e.g. convnext-atto, convnextv2-tiny) to train from a random init")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (hub layout + metrics.json)")
    p.add_argument("--epochs", type=positive_int, default=10, help="default 10")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per step per process (default 32)")
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate of AdamW (default 5e-4)")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay (default 0.05)")
    p.add_argument("--warmup-epochs", type=float, default=1.0,
                   help="linear warmup length before the cosine decay (default 1; at most half the run)")
    p.add_argument("--label-smoothing", type=float, default=0.1, help="default 0.1")
    p.add_argument("--drop-path", type=float, default=None, metavar="RATE",
                   help="stochastic depth rate (default: the model's config, 0.1 for a new variant)")
    p.add_argument("--image-size", type=positive_int, default=None,
                   help="training/eval resolution (default: the model's preprocessor, 224 for a variant)")
    p.add_argument("--min-scale", type=float, default=0.25,
                   help="smallest area fraction of the random resized crop (default 0.25)")
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flips (e.g. for text or digits)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="held-out fraction of each class when DATA has no val/ folder (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed for init, shuffling and augmentation (default 0)")
    p.add_argument("--workers", type=int, default=0, help="data-loading processes per training process (default 0)")
    p.add_argument("--device", default="auto", help="auto (default: cuda when available), cpu, cuda, cuda:1, ...")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last_checkpoint.pt")
    p.add_argument("--stop-after", type=positive_int, default=None, metavar="N",
                   help="stop after N epochs of this invocation (e.g. to fit a job time limit); "
                        "the schedule still spans --epochs, continue later with --resume")
    p.add_argument("--overwrite", action="store_true", help="start over even if OUT holds a previous run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--framework", choices=["pt", "tf"], default="pt",
                   help="pt (default: PyTorch) or tf (the Keras twin with fit; some recipe options are PyTorch only)")
    add_recipe_arguments(p)


def add_recipe_arguments(p: argparse.ArgumentParser) -> None:
    """The fine-tuning recipe of the ConvNeXt papers (see docs/training.md); all off by default."""
    g = p.add_argument_group("fine-tuning recipe (official ConvNeXt / ConvNeXt-V2 semantics; all off by default)")
    g.add_argument("--ema", type=float, default=None, metavar="DECAY",
                   help="EMA of the weights after each optimizer step (e.g. 0.9999); the EMA is evaluated and "
                        "saved as the output model, the raw weights stay in last_checkpoint.pt")
    g.add_argument("--mixup", type=float, default=0.0, metavar="ALPHA", help="mixup alpha (e.g. 0.8)")
    g.add_argument("--cutmix", type=float, default=0.0, metavar="ALPHA",
                   help="cutmix alpha (e.g. 1.0); with --mixup each batch picks one of them (p 0.5)")
    g.add_argument("--randaugment", default=None, metavar="SPEC",
                   help="RandAugment as timm spells it, e.g. rand-m9-mstd0.5-inc1 (n=2 ops by default)")
    g.add_argument("--reprob", type=float, default=0.0, metavar="P",
                   help="random erasing probability (e.g. 0.25; per-pixel noise on the normalised image)")
    g.add_argument("--layer-decay", type=float, default=None, metavar="RATE",
                   help="layer-wise lr decay: layer id i learns at lr * RATE ** (num_layers + 1 - i)")
    g.add_argument("--layer-decay-type", choices=["group", "single"], default="group",
                   help="official layer ids: group (12 groups, ConvNeXt / V2 base+) or single (one per block, "
                        "V2 atto..tiny); default group")
    g.add_argument("--accum-steps", type=positive_int, default=1, metavar="N",
                   help="optimizer step every N micro-batches (effective batch N x --batch-size x processes)")
    g.add_argument("--clip-grad", type=float, default=None, metavar="NORM", help="clip the gradient's global norm")
    g.add_argument("--head-init-scale", type=float, default=1.0, metavar="S",
                   help="multiply a new head's initial weight and bias by S (official: 0.001 for fine-tuning)")
    g.add_argument("--freeze-trunk", action="store_true",
                   help="linear probe: only the classifier trains (the trunk, pooled norm included, is frozen)")


def run(args: argparse.Namespace) -> int:
    if args.framework == "tf":
        from convnext_app.training.keras import run_from_args

        return run_from_args(args)
    from convnext_app.training.pt import StoppedByAnotherRank, TrainOptions, train

    try:
        train(TrainOptions.from_namespace(args))
    except StoppedByAnotherRank:
        if getattr(args, "debug", False):
            raise
        return 1  # under torchrun, rank 0 prints the error once, naming the rank that failed
    return 0

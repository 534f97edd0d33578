"""``convnext pretrain``: FCMAE pre-training of a ConvNeXt V2 on unlabeled images; the work is in
:mod:`convnext_app.training` (``pt.pretrain``; ``keras.pretrain`` with ``--framework tf``)."""

from __future__ import annotations

import argparse

from .common import positive_int

HELP = "pre-train a ConvNeXt V2 on unlabeled images (FCMAE, the masked autoencoder of the V2 paper)"
DESCRIPTION = ("Pre-train a ConvNeXt V2 as the paper does (FCMAE): random patches of each image are removed and "
               "the model learns to reconstruct them. The official recipe by default: AdamW betas (0.9, 0.95), "
               "weight decay 0.05, lr = --blr x effective batch / 256, warmup then cosine, random resized crop "
               "(0.2-1) + flip, mask ratio 0.6, norm_pix_loss. Writes the model (it fine-tunes with `convnext "
               "train --model OUT`), metrics.json, curves.png and a reconstruction picture per epoch. Under torchrun "
               "it trains data-parallel (DDP); only rank 0 writes.")
EPILOG = """examples:
  convnext pretrain --data ./scans --model convnextv2-atto --out ./atto-fcmae --epochs 100 --image-size 128
  convnext pretrain --data ./scans --model ./convnextv2-tiny-fcmae --out ./tiny-scans     continue pre-training
  convnext convert convnextv2_tiny_1k_224_fcmae.pt ./convnextv2-tiny-fcmae               the official weights
  torchrun --nproc_per_node=4 -m convnext_common pretrain --data ./scans --model convnextv2-tiny --out ./run
  convnext train --data ./labelled --model ./atto-fcmae --out ./atto-finetuned           then fine-tune

DATA is a folder of images; sub-folders are just more images (no labels are read)."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR", help="folder of images (sub-folders included)")
    p.add_argument("--model", required=True, metavar="ID|DIR|VARIANT",
                   help="a V2 variant name (e.g. convnextv2-atto) from a random init, or a V2 folder / hub id to "
                        "continue from (a converted FCMAE checkpoint, an earlier run, any V2 model)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (hub layout + metrics.json)")
    p.add_argument("--epochs", type=positive_int, default=800, help="default 800 (the paper's short schedule)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per step per process (default 64)")
    p.add_argument("--accum-steps", type=positive_int, default=1, metavar="N",
                   help="optimizer step every N micro-batches (effective batch N x --batch-size x processes)")
    p.add_argument("--blr", type=float, default=1.5e-4, help="base lr: lr = BLR x effective batch / 256 (default 1.5e-4)")
    p.add_argument("--lr", type=float, default=None, help="absolute peak lr (overrides --blr)")
    p.add_argument("--min-lr", type=float, default=0.0, help="lr at the end of the cosine (default 0)")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay (default 0.05)")
    p.add_argument("--warmup-epochs", type=float, default=40.0, help="linear warmup (default 40; at most half the run)")
    p.add_argument("--mask-ratio", type=float, default=None,
                   help="fraction of patches removed (default: the model's config, 0.6)")
    p.add_argument("--norm-pix-loss", dest="norm_pix_loss", action="store_true", default=None,
                   help="normalise each target patch by its mean and variance (the default for a new model)")
    p.add_argument("--no-norm-pix-loss", dest="norm_pix_loss", action="store_false",
                   help="reconstruct the raw (normalised-image) pixels")
    p.add_argument("--decoder-hidden-size", type=positive_int, default=512, help="decoder width (default 512)")
    p.add_argument("--decoder-layers", type=int, default=1, help="decoder blocks (default 1)")
    p.add_argument("--image-size", type=positive_int, default=224, help="a multiple of 32 (default 224)")
    p.add_argument("--min-scale", type=float, default=0.2, help="random resized crop's smallest area (default 0.2)")
    p.add_argument("--no-flip", dest="flip", action="store_false", help="no random horizontal flips")
    p.add_argument("--drop-path", type=float, default=0.0, help="stochastic depth (default 0, as the official)")
    p.add_argument("--pictures", type=int, default=4,
                   help="images shown in OUT/reconstructions/epoch_N.png each epoch (default 4; 0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed for init, shuffling, augmentation, masks (default 0)")
    p.add_argument("--workers", type=int, default=0, help="data-loading processes per training process (default 0)")
    p.add_argument("--device", default="auto", help="auto (default: cuda when available), cpu, cuda, cuda:1, ...")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last_checkpoint.pt")
    p.add_argument("--stop-after", type=positive_int, default=None, metavar="N",
                   help="stop after N epochs of this invocation; the schedule still spans --epochs")
    p.add_argument("--overwrite", action="store_true", help="start over even if OUT holds a previous run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--framework", choices=["pt", "tf"], default="pt",
                   help="pt (default: PyTorch) or tf (the Keras twin with fit on one device, TensorFlow backend; "
                        "--resume, --stop-after, --amp, --workers are PyTorch only)")


def run(args: argparse.Namespace) -> int:
    from convnext_app.training.common.pretraining import PretrainOptions

    fields = set(PretrainOptions.__dataclass_fields__)
    options = PretrainOptions(**{k: v for k, v in vars(args).items() if k in fields})
    if args.framework == "tf":
        from convnext_app.training.keras.pretrain import pretrain_keras

        pretrain_keras(options)
        return 0
    from convnext_app.training.pt import StoppedByAnotherRank
    from convnext_app.training.pt.pretrain import pretrain

    try:
        pretrain(options)
    except StoppedByAnotherRank:
        if getattr(args, "debug", False):
            raise
        return 1
    return 0

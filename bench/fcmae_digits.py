"""Does FCMAE pre-training help when labels are few? A small ConvNeXt V2 on scikit-learn's digits.

1. Pre-train ConvNextV2ForMaskedImageModeling on every training digit, labels unused.
2. Fine-tune ConvNextV2ForImageClassification from those weights on a small labelled fraction.
3. Fine-tune the same model from a random init on the same images with the same budget.
Both fine-tunings see the same batches in the same order; test accuracy on a held-out split.

The digits (8x8) are upscaled to --size px (nearest, one channel), so that a 32 px patch holds a few
digit pixels. scikit-learn's digits (1797 images) are used when scikit-learn is installed; otherwise
the 359 held-out digits this repository ships (tests/fixtures/digits_heldout.npz). A benchmark, not
a test: it prints its numbers and writes nothing.

    python bench/fcmae_digits.py                       # ~10 minutes on 2 CPU cores
    python bench/fcmae_digits.py --seeds 0 1 2 --labelled 0.05
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from convnext_common.config import ConvNextV2Config  # noqa: E402
from convnext_pt import ConvNextV2ForImageClassification, ConvNextV2ForMaskedImageModeling  # noqa: E402
from convnext_app.training.common.schedule import warmup_cosine  # noqa: E402
from convnext_app.training.pt.schedule import build_optimizer  # noqa: E402


def load_digits() -> tuple[np.ndarray, np.ndarray, str]:
    try:
        from sklearn.datasets import load_digits as sk_digits

        d = sk_digits()
        return np.round(d.images * 255 / 16).astype(np.uint8), d.target.astype(np.int64), "scikit-learn digits"
    except ImportError:
        d = np.load(ROOT / "tests" / "fixtures" / "digits_heldout.npz")
        return d["images"], d["labels"].astype(np.int64), "the repository's 359 held-out digits"


def to_pixels(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (N, 8, 8) -> (N, 1, size, size), nearest upscaling, roughly mean 0 and std 1."""
    x = torch.from_numpy(images).float().div(255).unsqueeze(1)
    x = F.interpolate(x, size=(size, size), mode="nearest")
    return (x - 0.25) / 0.35


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A random shift of up to 1/8 of the side (digits must not be flipped)."""
    n, _, h, w = x.shape
    pad = h // 8
    padded = F.pad(x, (pad, pad, pad, pad), value=float(x.min()))
    dy, dx = torch.randint(0, 2 * pad + 1, (2,), generator=g).tolist()
    return padded[:, :, dy:dy + h, dx:dx + w]


def config(args) -> ConvNextV2Config:
    return ConvNextV2Config(depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 64, 128], decoder_hidden_size=64,
                            num_channels=1, num_labels=10, norm_pix_loss=True, mask_ratio=args.mask_ratio, image_size=args.size)


def pretrain(x: torch.Tensor, args, seed: int) -> dict:
    torch.manual_seed(seed)
    model = ConvNextV2ForMaskedImageModeling(config(args))
    steps = args.pretrain_epochs * math.ceil(len(x) / args.batch)
    opt = build_optimizer(model, args.pretrain_lr, 0.05)
    for group in opt.param_groups:
        group["betas"] = (0.9, 0.95)
    g = torch.Generator().manual_seed(seed)
    model.train()
    step, losses = 0, []
    for epoch in range(args.pretrain_epochs):
        order = torch.randperm(len(x), generator=g)
        total = 0.0
        for i in range(0, len(x), args.batch):
            for group in opt.param_groups:
                group["lr"] = warmup_cosine(step, steps, steps // 10, args.pretrain_lr)
            batch = augment(x[order[i:i + args.batch]], g)
            loss = model(batch, generator=g).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            total += loss.item() * len(batch)
        losses.append(total / len(x))
    return {"state": {k: v for k, v in model.state_dict().items() if k.startswith("convnextv2.")},
            "losses": losses}


def finetune(x, y, x_test, y_test, args, seed: int, trunk_state=None) -> float:
    torch.manual_seed(seed + 1)
    model = ConvNextV2ForImageClassification(config(args))
    if trunk_state is not None:
        missing, unexpected = model.load_state_dict(trunk_state, strict=False)
        assert not unexpected and all(k.startswith("classifier.") for k in missing), (missing, unexpected)
    steps = args.finetune_epochs * math.ceil(len(x) / args.batch)
    opt = build_optimizer(model, args.finetune_lr, 0.05)
    g = torch.Generator().manual_seed(seed + 2)  # the same batches and shifts for both starts
    step = 0
    for _ in range(args.finetune_epochs):
        model.train()
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), args.batch):
            for group in opt.param_groups:
                group["lr"] = warmup_cosine(step, steps, steps // 10, args.finetune_lr)
            idx = order[i:i + args.batch]
            loss = F.cross_entropy(model(augment(x[idx], g)).logits, y[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x_test[i:i + 256]).logits.argmax(-1) for i in range(0, len(x_test), 256)])
    return float((pred == y_test).float().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=64, help="image side in px, a multiple of 32 (default 64)")
    p.add_argument("--labelled", type=float, default=0.05, help="labelled fraction of the training split")
    p.add_argument("--pretrain-epochs", type=int, default=8)
    p.add_argument("--finetune-epochs", type=int, default=30)
    p.add_argument("--pretrain-lr", type=float, default=2e-3)
    p.add_argument("--finetune-lr", type=float, default=2e-3)
    p.add_argument("--mask-ratio", type=float, default=0.6)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = p.parse_args()
    torch.set_num_threads(2)
    images, labels, source = load_digits()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(images))
    n_test = len(images) // 5
    test, train = order[:n_test], order[n_test:]
    x_all = to_pixels(images, args.size)
    y_all = torch.from_numpy(labels)
    print(f"{source}: {len(train)} training images (all used unlabelled for pre-training), {n_test} test; "
          f"{args.size}px, {(args.size // 32) ** 2} patches, mask ratio {args.mask_ratio}")
    results = {"pretrained": [], "random init": []}
    for seed in args.seeds:
        started = time.perf_counter()
        pre = pretrain(x_all[train], args, seed)
        labelled = train[np.random.default_rng(seed).permutation(len(train))[:max(10, round(args.labelled * len(train)))]]
        print(f"seed {seed}: pre-training loss {pre['losses'][0]:.3f} -> {pre['losses'][-1]:.3f} "
              f"({time.perf_counter() - started:.0f} s); fine-tuning on {len(labelled)} labelled images")
        for name, state in (("pretrained", pre["state"]), ("random init", None)):
            acc = finetune(x_all[labelled], y_all[labelled], x_all[test], y_all[test], args, seed, state)
            results[name].append(acc)
            print(f"  {name:12s} test accuracy {acc * 100:.1f}%")
    for name, accs in results.items():
        print(f"{name:12s} mean test accuracy {np.mean(accs) * 100:.1f}% over {len(accs)} seed(s)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Train the embedded default model: a small ConvNeXt on scikit-learn's 8x8 handwritten digits.

    pip install "scikit-learn>=1.2"          # or: pip install -e ".[train]"
    python scripts/train_default_model.py    # about 3 min on one CPU core (40 epochs)

Writes (each atomically):
- convnext_app/data/default_model/  config.json (labels "0".."9"), model.safetensors, preprocessor_config.json
- tests/fixtures/digits_heldout.npz     the held-out 20% (8x8 uint8 images, labels, sklearn indices)
- convnext_app/data/samples/         ten held-out digits as PNGs, named digit_<label>_<how>.png

Data (see convnext_common/digits.py): each 8x8 digit is a white-on-black 8-bit image, upscaled to a
random size in 32..128 px with a random filter (nearest, bilinear, bicubic, lanczos, box), grayscale or
RGB, with fainter ink at times and a small random rotation/scale/shift (a fifth of them crisp: nearest at
exactly 32 px, the one size the processor passes through unsmoothed), then preprocessed by the same
ConvNextImageProcessor (preprocessor_config.json) that `convnext predict` uses. So the model reads
the digit however the 8x8 source was written to a file.

Seeded: with the same torch build and --threads the result is the same bit for bit.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from convnext_common.config import ConvNextConfig  # noqa: E402
from convnext_app.digits import (  # noqa: E402
    EVAL_RENDERINGS, LABELS, RESAMPLE, Rendering, load_heldout, render, save_heldout, to_uint8,
)
from convnext_common.fileio import atomic_directory  # noqa: E402
from convnext_common.processing import ConvNextImageProcessor  # noqa: E402
from convnext_pt import ConvNextForImageClassification  # noqa: E402
from convnext_app.training.pt import build_optimizer, epoch_progress, train_one_epoch, warmup_cosine  # noqa: E402

IMAGE_SIZE = 32          # 8x8 source pixels -> 4x4 patches: the stem sees one source pixel per patch
HIDDEN_SIZES = [24, 48, 96, 192]
DEPTHS = [2, 2, 2, 2]
HELDOUT_FRACTION = 0.2


def make_processor() -> ConvNextImageProcessor:
    # crop_pct 1.0: resize the short side to 32 and keep the whole digit (no centre crop margin).
    return ConvNextImageProcessor(size={"shortest_edge": IMAGE_SIZE}, crop_pct=1.0, resample=2,
                                  image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])


def make_config() -> ConvNextConfig:
    return ConvNextConfig(depths=DEPTHS, hidden_sizes=HIDDEN_SIZES, num_stages=len(DEPTHS), image_size=IMAGE_SIZE,
                          drop_path_rate=0.05, id2label=dict(enumerate(LABELS)),
                          label2id={lab: i for i, lab in enumerate(LABELS)})


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    held, kept = [], []
    for d in range(10):
        idx = np.flatnonzero(labels == d)
        idx = idx[rng.permutation(len(idx))]
        n = int(round(len(idx) * fraction))
        held.append(idx[:n])
        kept.append(idx[n:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(held))


def random_affine(img, rng: np.random.Generator, resample):
    """Rotate up to 12 degrees, scale 0.9..1.1 and shift up to 10% of the size, about the centre."""
    from PIL import Image

    size = img.size[0]
    angle = math.radians(rng.uniform(-12, 12))
    scale = rng.uniform(0.9, 1.1)
    tx, ty = rng.uniform(-0.1, 0.1, 2) * size
    c = (size - 1) / 2
    a, b = math.cos(angle) / scale, math.sin(angle) / scale
    d, e = -b, a
    # PIL maps each output pixel (x, y) to the input (a x + b y + cx, d x + e y + cy).
    cx = c - a * (c + tx) - b * (c + ty)
    cy = c - d * (c + tx) - e * (c + ty)
    return img.transform(img.size, Image.Transform.AFFINE, (a, b, cx, d, e, cy), resample=resample)


def random_rendering(rng: np.random.Generator) -> tuple[Rendering, float]:
    filters = list(RESAMPLE)
    size = int(rng.integers(32, 129))
    rendering = Rendering(filters[rng.integers(len(filters))], size, "RGB" if rng.random() < 0.5 else "L")
    gain = 1.0 if rng.random() < 0.5 else float(rng.uniform(0.6, 1.0))
    return rendering, gain


def training_batches(images: np.ndarray, labels: np.ndarray, processor, batch_size: int, rng: np.random.Generator):
    from PIL import Image

    order = rng.permutation(len(images))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        pil = []
        for i in idx:
            if rng.random() < 0.2:
                # crisp: nearest at exactly 32 px reaches the model unresized, one source pixel per 4x4
                # stem patch; shifted by whole source pixels only, so it stays crisp and aligned
                rendering = Rendering("nearest", IMAGE_SIZE, "RGB" if rng.random() < 0.5 else "L")
                img = render(images[i], rendering, 1.0 if rng.random() < 0.5 else float(rng.uniform(0.6, 1.0)))
                dx, dy = (int(v) * IMAGE_SIZE // 8 for v in rng.integers(-1, 2, 2))
                pil.append(img.transform(img.size, Image.Transform.AFFINE, (1, 0, dx, 0, 1, dy),
                                         resample=Image.Resampling.NEAREST))
                continue
            rendering, gain = random_rendering(rng)
            img = render(images[i], rendering, gain)
            if rng.random() < 0.7:
                # a blocky (nearest) digit stays blocky under the distortion
                img = random_affine(img, rng, RESAMPLE["nearest" if rendering.resample == "nearest" else "bilinear"])
            pil.append(img)
        pixels = processor(pil, return_tensors="np")["pixel_values"]
        yield torch.from_numpy(pixels), torch.from_numpy(labels[idx].astype(np.int64))


def heldout_pixels(images: np.ndarray, processor) -> tuple[np.ndarray, list[str]]:
    """Every held-out digit in every EVAL_RENDERINGS way, written as PNG and read back as `predict` does."""
    import io

    from PIL import Image

    arrays, tags = [], []
    for rendering in EVAL_RENDERINGS:
        pil = []
        for img8 in images:
            buf = io.BytesIO()
            render(img8, rendering).save(buf, format="PNG")
            buf.seek(0)
            with Image.open(buf) as f:
                pil.append(f.convert("RGB"))
        arrays.append(processor(pil, return_tensors="np")["pixel_values"])
        tags.append(rendering.tag)
    return np.stack(arrays), tags  # (renderings, N, 3, H, W)


@torch.no_grad()
def heldout_accuracy(model, pixels: np.ndarray, labels: np.ndarray) -> list[float]:
    model.eval()
    accs = []
    for block in pixels:
        pred = torch.cat([model(torch.from_numpy(block[i:i + 256])).logits.argmax(-1)
                          for i in range(0, len(block), 256)]).numpy()
        accs.append(float((pred == labels).mean()))
    return accs


def typical_heldout(held_images: np.ndarray, held_labels: np.ndarray, train_images: np.ndarray,
                    train_labels: np.ndarray) -> list[int]:
    """Per digit, the held-out image nearest (L2) to that digit's mean training image: a typical
    example chosen from the data alone, not by what the model gets right."""
    chosen = []
    for digit in range(10):
        mean = train_images[train_labels == digit].astype(np.float64).mean(axis=0)
        idx = np.flatnonzero(held_labels == digit)
        dist = ((held_images[idx].astype(np.float64) - mean) ** 2).sum(axis=(1, 2))
        chosen.append(int(idx[np.argmin(dist)]))
    return chosen


def write_samples(folder: Path, images: np.ndarray, chosen: list[int]) -> list[str]:
    """One held-out digit per class (``chosen[d]`` for digit d), each written a different way."""
    ways = [Rendering("nearest", 32, "L"), Rendering("bilinear", 64, "RGB"), Rendering("nearest", 128, "RGB"),
            Rendering("bilinear", 96, "L"), Rendering("bicubic", 48, "L"), Rendering("nearest", 56, "RGB"),
            Rendering("bilinear", 128, "L"), Rendering("lanczos", 80, "RGB"), Rendering("nearest", 100, "L"),
            Rendering("bilinear", 40, "RGB")]
    names = []
    with atomic_directory(folder, overwrite=True) as tmp:
        for digit, way in zip(range(10), ways):
            i = chosen[digit]
            name = f"digit_{digit}_{way.tag}.png"
            render(images[i], way).save(tmp / name)
            names.append(name)
    return names


def _portable(value) -> str:
    """Paths inside the repository relative to it, so the log does not record this machine's layout."""
    if isinstance(value, Path) and value.resolve().is_relative_to(ROOT):
        return value.resolve().relative_to(ROOT).as_posix()
    return str(value)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "convnext_app" / "data" / "default_model")
    parser.add_argument("--heldout", type=Path, default=ROOT / "tests" / "fixtures" / "digits_heldout.npz")
    parser.add_argument("--samples", type=Path, default=ROOT / "convnext_app" / "data" / "samples")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: reproducible bit for bit and fast enough)")
    parser.add_argument("--eval-every", type=int, default=5)
    args = parser.parse_args(argv)

    try:
        from sklearn.datasets import load_digits
    except ImportError:
        print("this script needs scikit-learn: pip install 'scikit-learn>=1.2'", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.perf_counter()

    digits = load_digits()
    images, labels = to_uint8(digits.images), digits.target.astype(np.int64)
    train_idx, held_idx = stratified_split(labels, HELDOUT_FRACTION, args.seed)
    args.heldout.parent.mkdir(parents=True, exist_ok=True)
    save_heldout(args.heldout, images[held_idx], labels[held_idx], held_idx)
    held = load_heldout(args.heldout)  # evaluate on exactly what ships
    print(f"digits: {len(train_idx)} train, {len(held_idx)} held out -> {args.heldout}", file=sys.stderr)

    processor = make_processor()
    eval_pixels, tags = heldout_pixels(held.images, processor)
    model = ConvNextForImageClassification(make_config())
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: depths {DEPTHS}, widths {HIDDEN_SIZES}, {n_params:,} parameters", file=sys.stderr)
    optimizer = build_optimizer(model, args.lr, weight_decay=0.05)
    steps_per_epoch = math.ceil(len(train_idx) / args.batch_size)
    total = steps_per_epoch * args.epochs
    warmup = steps_per_epoch * 2
    rng = np.random.default_rng(args.seed + 1)
    step = 0
    history = []
    for epoch in range(args.epochs):
        bar = epoch_progress(steps_per_epoch, f"epoch {epoch + 1}/{args.epochs}")
        batches = training_batches(images[train_idx], labels[train_idx], processor, args.batch_size, rng)
        totals, step = train_one_epoch(model, batches, optimizer, lambda s: warmup_cosine(s, total, warmup, args.lr),
                                       step, label_smoothing=0.1, progress=bar)
        record = {"epoch": epoch + 1, "train_loss": totals["loss_sum"] / totals["count"],
                  "train_accuracy": totals["correct"] / totals["count"]}
        if (epoch + 1) % args.eval_every == 0 or epoch + 1 == args.epochs:
            accs = heldout_accuracy(model, eval_pixels, held.labels)
            record["heldout_accuracy"] = float(np.mean(accs))
            record["heldout_accuracy_per_rendering"] = dict(zip(tags, accs))
        history.append(record)
        bar.close(loss=record["train_loss"], acc=record["train_accuracy"],
                  **({"heldout": record["heldout_accuracy"]} if "heldout_accuracy" in record else {}))

    final = history[-1]
    minutes = (time.perf_counter() - started) / 60
    print(f"held-out accuracy {final['heldout_accuracy'] * 100:.2f}% over {len(tags)} renderings "
          f"({json.dumps({k: round(v, 4) for k, v in final['heldout_accuracy_per_rendering'].items()})}); "
          f"{minutes:.1f} min", file=sys.stderr)
    model.eval()
    log = {"heldout_accuracy": final["heldout_accuracy"], "minutes": round(minutes, 2), "parameters": n_params,
           "history": history, "args": {k: _portable(v) for k, v in vars(args).items()},
           "torch": torch.__version__}
    with atomic_directory(args.out, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / "training_log.json").write_text(json.dumps(log, indent=2) + "\n")
    chosen = typical_heldout(held.images, held.labels, images[train_idx], labels[train_idx])
    names = write_samples(args.samples, held.images, chosen)
    for folder in (args.out, args.samples):  # temporary folders are private (0700); package data is not
        folder.chmod(0o755)
        for f in folder.iterdir():
            f.chmod(0o644)
    args.heldout.chmod(0o644)
    size = (args.out / "model.safetensors").stat().st_size
    print(f"wrote {args.out} (model.safetensors {size / 1e6:.2f} MB) and {len(names)} samples in {args.samples}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

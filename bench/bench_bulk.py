"""End-to-end throughput on a folder of photos: ``convnext predict --output`` (both twins) against
timm's inference.py workflow (DataLoader with workers + timm's model) and transformers' pipeline
(batch_size=32), with the model's own throughput at the same batch measured in the same run.

    python bench/bench_bulk.py [--images 400] [--timm-path /tmp/timm-pkg]

The photos (500-800 px JPEGs) are random crops, scales and flips of tests/fixtures/images, written to
a temporary folder. ConvNeXt-T with random weights, batch 32, 224 px. Every end-to-end figure counts
start-up (imports, model load, worker start) as a user sees it. timm is not a dependency: point
--timm-path at a ``pip install --no-deps --target DIR timm`` (its own dependencies are installed).
The contenders run one after another in rounds (A B C ... A B C) so a busy phase of a shared machine
hits each alike; the model's own rate is measured right before and after each ``convnext`` run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.hardware import describe, one_line  # noqa: E402

BATCH = 32


def make_photos(folder: Path, count: int, seed: int = 0) -> list[str]:
    from PIL import Image, ImageOps

    rng = np.random.default_rng(seed)
    sources = [Image.open(ROOT / "tests/fixtures/images" / n).convert("RGB") for n in ("china.jpg", "flower.png")]
    paths = []
    for i in range(count):
        src = sources[i % 2]
        cw, ch = int(rng.integers(src.width // 2, src.width)), int(rng.integers(src.height // 2, src.height))
        x, y = int(rng.integers(0, src.width - cw + 1)), int(rng.integers(0, src.height - ch + 1))
        img = src.crop((x, y, x + cw, y + ch))
        long_side = int(rng.integers(500, 801))
        scale = long_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BICUBIC)
        if rng.random() < 0.5:
            img = ImageOps.mirror(img)
        path = folder / f"photo_{i:04d}.jpg"
        img.save(path, quality=90)
        paths.append(str(path))
    return paths


def make_model(folder: Path) -> None:
    import torch

    from convnext_common.checkpoints.preprocessing import default_preprocessor_config
    from convnext_common.variants import config_for_variant
    from convnext_pt import ConvNextForImageClassification

    torch.manual_seed(0)
    model = ConvNextForImageClassification(config_for_variant("convnext-tiny")).eval()
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(default_preprocessor_config(224)))


def matmul_gflops() -> float:
    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    n, t = 20, time.perf_counter()
    for _ in range(n):
        a @ b
    return 2 * 1024 ** 3 * n / (time.perf_counter() - t) / 1e9


def model_rate(model_dir: Path, batches: int = 2) -> float:
    """Images/s of the PyTorch twin's forward pass alone at batch 32 (preprocessed input in memory)."""
    import torch

    from convnext_app.inference import load_classifier

    clf = load_classifier(model_dir, "pt")
    x = np.random.default_rng(0).standard_normal((BATCH, 3, 224, 224)).astype(np.float32)
    clf.logits(x)
    t = time.perf_counter()
    for _ in range(batches):
        clf.logits(x)
    del torch
    return BATCH * batches / (time.perf_counter() - t)


def decode_rate(model_dir: Path, paths: list[str], count: int = 32) -> float:
    """Images/s of reading + preprocessing alone in one process (what a decoding worker does)."""
    from convnext_app.bulk.decoding import decode
    from convnext_app.inference import load_processor

    processor = load_processor(model_dir)
    t = time.perf_counter()
    for p in paths[:count]:
        decode(p, processor)
    return min(count, len(paths)) / (time.perf_counter() - t)


def run_cli(framework: str, folder: Path, model_dir: Path, out: Path, n: int) -> float:
    cmd = [sys.executable, "-m", "convnext_app", "predict", str(folder), "--model", str(model_dir), "--framework",
           framework, "--batch-size", str(BATCH), "--output", str(out), "--overwrite", "--quiet", "--top-k", "5"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    return n / (time.perf_counter() - t)


TIMM_SCRIPT = r"""
import sys, time
t0 = time.perf_counter()
import torch
from helpers import make_torchvision_importable  # torchvision beside a CPU-only torch (tests/helpers.py)
make_torchvision_importable()
import torch, timm
from timm.data import ImageDataset, create_loader, resolve_data_config
model = timm.create_model("convnext_tiny", pretrained=False).eval()
config = resolve_data_config({}, model=model)
loader = create_loader(ImageDataset(sys.argv[1]), input_size=config["input_size"], batch_size=32, use_prefetcher=False,
                       interpolation=config["interpolation"], mean=config["mean"], std=config["std"],
                       num_workers=int(sys.argv[2]), crop_pct=config["crop_pct"])
n = 0
with torch.inference_mode():
    for x, _ in loader:
        top = model(x).softmax(-1).topk(5)
        n += len(x)
print(n / (time.perf_counter() - t0))
"""

PIPELINE_SCRIPT = r"""
import glob
import sys, time
t0 = time.perf_counter()
import torch
from helpers import make_torchvision_importable  # torchvision beside a CPU-only torch (tests/helpers.py)
make_torchvision_importable()
from transformers import pipeline
pipe = pipeline("image-classification", model=sys.argv[1], batch_size=32, device="cpu")
paths = sorted(glob.glob(sys.argv[2] + "/*.jpg"))
results = pipe(paths, top_k=5)
print(len(results) / (time.perf_counter() - t0))
"""


def run_script(script: str, args: list[str], extra_path: str = "") -> float:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (extra_path, str(ROOT), str(ROOT / "tests")) if p))
    out = subprocess.run([sys.executable, "-c", script, *args], env=env, check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--timm-path", default="/tmp/timm-pkg")
    parser.add_argument("--workers", type=int, default=None, help="decoding workers of the convnext runs")
    parser.add_argument("--skip", default="", help="comma-separated contenders to leave out (tf, timm, pipeline)")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    import torch

    info = describe()
    print(f"# host: {one_line(info)}; {os.cpu_count()} CPUs; torch threads {torch.get_num_threads()}; "
          f"fp32 matmul 1024^3: {matmul_gflops():.0f} GFLOP/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = tmp / "photos"
        photos.mkdir()
        paths = make_photos(photos, args.images)
        model_dir = tmp / "convnext-tiny"
        make_model(model_dir)
        rates: dict[str, list[float]] = {}

        def record(name: str, value: float) -> None:
            rates.setdefault(name, []).append(value)
            print(f"  {name}: {value:.2f} img/s", file=sys.stderr, flush=True)

        for _ in range(args.rounds):
            record("decode + preprocess alone (1 process)", decode_rate(model_dir, paths))
            record("model alone (PyTorch twin, batch 32)", model_rate(model_dir))
            record("convnext predict --framework pt", run_cli("pt", photos, model_dir, tmp / "pt.jsonl", args.images))
            record("model alone (PyTorch twin, batch 32)", model_rate(model_dir))
            if "timm" not in skip and Path(args.timm_path).is_dir():
                record("timm inference.py loop (2 workers)", run_script(TIMM_SCRIPT, [str(photos), "2"],
                                                                          args.timm_path))
            if "pipeline" not in skip:
                record("transformers pipeline (batch_size=32)", run_script(PIPELINE_SCRIPT, [str(model_dir), str(photos)]))
            if "tf" not in skip:
                record("convnext predict --framework tf", run_cli("tf", photos, model_dir, tmp / "tf.jsonl",
                                                                  args.images))
    own = statistics.median(rates["model alone (PyTorch twin, batch 32)"])
    print(f"\n{args.images} JPEG photos 500-800 px, ConvNeXt-T random weights, batch 32, end to end (start-up "
          f"included), {args.rounds} round(s)\n")
    print("| contender | img/s | vs the model alone |\n|---|---|---|")
    for name, values in rates.items():
        v = statistics.median(values)
        print(f"| {name} | {v:.2f} | {v / own:.2f}x |")
    decode = statistics.median(rates["decode + preprocess alone (1 process)"])
    print(f"\nBound when decoding shares the model's cores: 1 / (1/model + 1/decode) = "
          f"{1 / (1 / own + 1 / decode):.2f} img/s ({own / decode:.2f} of the model's time per image is decoding)")


if __name__ == "__main__":
    main()

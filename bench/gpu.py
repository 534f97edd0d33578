"""ConvNeXt-T on one NVIDIA GPU: this project's PyTorch twin against timm.

    python bench/gpu.py [--batch 256] [--steps 20]

bf16 autocast, channels_last, eager and torch.compile'd; prints img/s and ours/timm time
ratios. Needs a CUDA build of torch; timm is optional (ours alone is measured without it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402


def throughput(model, x, steps: int) -> float:
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(3):
            model(x)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(steps):
            model(x)
        torch.cuda.synchronize()
    return x.shape[0] * steps / (time.perf_counter() - t)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=20)
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark needs an NVIDIA GPU", file=sys.stderr)
        return 2
    from convnext_common import ConvNextConfig
    from convnext_pt import ConvNextForImageClassification

    torch.backends.cudnn.benchmark = True
    x = torch.randn(args.batch, 3, 224, 224, device="cuda").contiguous(memory_format=torch.channels_last)
    models = {"ours": ConvNextForImageClassification(ConvNextConfig.from_variant("convnext-tiny", num_labels=1000))}
    try:
        import timm

        models["timm"] = timm.create_model("convnext_tiny", pretrained=False)
    except ImportError:
        print("timm not installed: measuring ours only", file=sys.stderr)
    results = {"gpu": torch.cuda.get_device_name(0), "batch": args.batch, "torch": torch.__version__}
    for name, model in models.items():
        model = model.cuda().eval().to(memory_format=torch.channels_last)
        results[f"{name}_eager_img_s"] = round(throughput(model, x, args.steps), 1)
        compiled = torch.compile(model)
        results[f"{name}_compiled_img_s"] = round(throughput(compiled, x, args.steps), 1)
    if "timm" in models:
        for mode in ("eager", "compiled"):
            results[f"time_ratio_ours_over_timm_{mode}"] = round(
                results[f"timm_{mode}_img_s"] / results[f"ours_{mode}_img_s"], 3)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

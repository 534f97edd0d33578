"""Peak memory that ``from_pretrained`` adds, as a multiple of the checkpoint's size.

    python bench/memory.py                          # ConvNeXt-L: PyTorch and Keras twins, safetensors and h5
    python bench/memory.py --variant convnext-base --cases pt:safetensors tf:h5

Writes a random-weight folder of the variant (float32; ConvNeXt-L: 791 MB) once per weights format
into a temporary folder, then loads it in a fresh child process per case. The child imports the
twin and loads a tiny model of the same format first (so that one-time costs of the framework's
runtime are not charged to the checkpoint), resets its peak RSS (``/proc/self/clear_refs``), reads
its RSS, runs ``from_pretrained`` and reads its peak RSS (``VmHWM``). Reported: ``added``, the peak
minus the RSS before, over the checkpoint's size. The model's own parameters are 1.0x of that:
the rest is what loading costs. Run one case at a time (each child holds the checkpoint's
model and whatever its loader copies). Figures: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from convnext_common.checkpoints.canonical import expected_shapes  # noqa: E402
from convnext_common.checkpoints.formats.safetensors import write_safetensors  # noqa: E402
from convnext_common.variants import config_for_variant  # noqa: E402

#: the weights file each format is written to; the folder holds only that one.
FORMATS = {"safetensors": "model.safetensors", "h5": "tf_model.h5", "bin": "pytorch_model.bin"}
TWINS = {"pt": ("convnext_pt", "ConvNextForImageClassification"),
         "tf": ("convnext_tf", "TFConvNextForImageClassification")}

CHILD = """
import gc, sys
sys.path.insert(0, {root!r})
import {module} as twin

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise SystemExit("no " + key + " in /proc/self/status (Linux only)")

cls = getattr(twin, {cls!r})
cls.from_pretrained({warmup!r})  # the framework's one-time costs (thread pools, kernels, lazy imports)
gc.collect()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current RSS
before = status("VmRSS")
model = cls.from_pretrained({folder!r})
print(before, status("VmHWM"), status("VmRSS"))
"""


def write_folder(folder: Path, config, state: dict, fmt: str) -> int:
    """A hub folder with config.json and one weights file; returns the file's size."""
    folder.mkdir(parents=True)
    config.save_pretrained(folder)
    path = folder / FORMATS[fmt]
    if fmt == "safetensors":
        write_safetensors(state, path)
    elif fmt == "h5":
        from convnext_common.checkpoints.formats.tf_h5 import save_hf_tf_h5

        save_hf_tf_h5(state, config, path, architecture="ConvNextForImageClassification")
    else:
        import torch

        torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path)
    return path.stat().st_size


def random_state(config, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(shape, dtype=np.float32) * 0.02 for k, shape in expected_shapes(config).items()}


def measure(twin: str, folder: Path, warmup: Path) -> dict[str, int]:
    module, cls = TWINS[twin]
    code = CHILD.format(root=str(ROOT), module=module, cls=cls, folder=str(folder), warmup=str(warmup))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{twin} {folder.name}: the child failed:\n{proc.stderr[-3000:]}")
    before, peak, after = (int(v) for v in proc.stdout.split()[-3:])
    return {"rss_before": before, "peak_rss": peak, "rss_after": after}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="convnext-large")
    parser.add_argument("--cases", nargs="+", default=["pt:safetensors", "tf:safetensors", "tf:h5"],
                        help="twin:format pairs; twins pt, tf; formats " + ", ".join(FORMATS))
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    cases = [tuple(c.split(":")) for c in args.cases]
    for twin, fmt in cases:
        if twin not in TWINS or fmt not in FORMATS:
            parser.error(f"unknown case {twin}:{fmt}")

    from bench.hardware import describe, one_line

    print(one_line(describe()))
    config = config_for_variant(args.variant, num_labels=1000)
    tiny = config_for_variant("convnext-atto", num_labels=10)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        tmp = Path(tmp)
        state = random_state(config)
        sizes = {fmt: write_folder(tmp / fmt, config, state, fmt) for fmt in sorted({f for _, f in cases})}
        del state
        tiny_state = random_state(tiny)
        for fmt in sizes:
            write_folder(tmp / f"tiny-{fmt}", tiny, tiny_state, fmt)
        for twin, fmt in cases:
            m = measure(twin, tmp / fmt, tmp / f"tiny-{fmt}")
            added = (m["peak_rss"] - m["rss_before"]) / sizes[fmt]
            results.append({"twin": twin, "format": fmt, "variant": args.variant, "file_mb": sizes[fmt] / 1e6,
                            **{k: v / 1e6 for k, v in m.items()}, "added_over_file": round(added, 3)})
            print(f"{twin} {fmt:12s} file {sizes[fmt] / 1e6:5.0f} MB  RSS before {m['rss_before'] / 1e6:5.0f} MB  "
                  f"peak {m['peak_rss'] / 1e6:5.0f} MB  added {added:.2f}x the file", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

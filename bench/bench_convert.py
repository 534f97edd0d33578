"""Time and peak memory of converting a random-weight ConvNeXt-L (198M parameters).

    python bench/bench_convert.py                 # hub folder (model.safetensors) -> tf_model.h5
    python bench/bench_convert.py --to all --source timm

Writes a random checkpoint (float32, 791 MB) to a temporary folder, then runs each conversion in
a fresh child process and reports wall time and the child's peak resident memory (VmHWM),
also as a multiple of the checkpoint's size. A child that only imports the converter gives the
baseline memory of the interpreter and libraries, reported separately and subtracted in
``net / ckpt``.
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

from convnext_common.checkpoints.formats.safetensors import write_safetensors  # noqa: E402
from convnext_common.checkpoints.canonical import expected_shapes  # noqa: E402
from convnext_common.variants import config_for_variant  # noqa: E402

CHILD = """
import resource, sys, time
sys.path.insert(0, {root!r})
from convnext_common.checkpoints.pipeline import convert
t = time.perf_counter()
if {run}:
    convert({src!r}, {out!r}, to={to!r}, progress=False)
# VmHWM is this process image's peak RSS; ru_maxrss would also count the parent's pages at fork
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
peak_kib = int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(time.perf_counter() - t, peak_kib)
"""


def timm_names(state: dict) -> dict:
    """The same weights under timm's names, so that the rule tables do the work (checked by mapping back)."""
    import re

    from convnext_common.checkpoints.pipeline import canonical_name

    blocks = {"dwconv": "conv_dw", "layernorm": "norm", "pwconv1": "mlp.fc1", "pwconv2": "mlp.fc2",
              "layer_scale_parameter": "gamma"}
    fixed = {"embeddings.patch_embeddings": "stem.0", "embeddings.layernorm": "stem.1", "layernorm": "head.norm",
             "classifier": "head.fc"}
    out = {}
    for name, array in state.items():
        rest = name.removeprefix("convnext.")
        if m := re.fullmatch(r"encoder\.stages\.(\d+)\.layers\.(\d+)\.(\w+)(\.\w+)?", rest):
            timm = f"stages.{m[1]}.blocks.{m[2]}.{blocks[m[3]]}{m[4] or ''}"
        elif m := re.fullmatch(r"encoder\.stages\.(\d+)\.downsampling_layer\.(\d)\.(\w+)", rest):
            timm = f"stages.{m[1]}.downsample.{m[2]}.{m[3]}"
        else:
            base, _, leaf = rest.rpartition(".")
            timm = f"{fixed[base]}.{leaf}"
        assert canonical_name(timm, "timm", "convnext.")[0] == name, (timm, name)
        out[timm] = array
    return out


def run_child(src: Path, out: Path, to: str, run: bool = True) -> tuple[float, int]:
    code = CHILD.format(root=str(ROOT), src=str(src), out=str(out), to=to, run=run)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, rss_kib = proc.stdout.split()[-2:]
    return float(seconds), int(rss_kib) * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="convnext-large")
    parser.add_argument("--to", choices=("pt", "tf", "all"), default="tf")
    parser.add_argument("--source", choices=("hf", "timm"), default="hf")
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()

    config = config_for_variant(args.variant, num_labels=1000)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench_convert_") as tmp:
        tmp = Path(tmp)
        src = tmp / "src"
        src.mkdir()
        state = {k: rng.standard_normal(shape, dtype=np.float32) * 0.02 for k, shape in
                 expected_shapes(config).items()}
        size = sum(a.nbytes for a in state.values())
        if args.source == "timm":
            state = timm_names(state)
            write_safetensors(state, src / "model.safetensors")
            src_path = src / "model.safetensors"
        else:
            write_safetensors(state, src / "model.safetensors")
            config.save_pretrained(src)
            src_path = src
        del state
        _, base_rss = run_child(src_path, tmp / "unused", args.to, run=False)
        seconds, rss = run_child(src_path, tmp / "out", args.to)
        result = {"variant": args.variant, "source": args.source, "to": args.to, "checkpoint_mb": size / 1e6,
                  "seconds": round(seconds, 2), "peak_rss_mb": rss / 1e6, "import_rss_mb": base_rss / 1e6,
                  "peak_over_ckpt": rss / size, "net_over_ckpt": (rss - base_rss) / size}
    print(f"{args.variant} ({args.source} -> {args.to}): checkpoint {size / 1e6:.0f} MB, {seconds:.1f} s, "
          f"peak RSS {rss / 1e6:.0f} MB = {rss / size:.2f}x the checkpoint "
          f"(imports alone {base_rss / 1e6:.0f} MB; net {(rss - base_rss) / size:.2f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

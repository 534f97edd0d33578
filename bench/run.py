"""Side-by-side benchmark of this project against its peers, on the same inputs, in one run.

    python bench/run.py                      # everything that is installed, 2 threads
    python bench/run.py --only models --variants tiny --batches 8
    python bench/run.py --json bench-results/cpu.json

Peers (timm, torchvision, transformers PT/TF, keras.applications) are used when importable;
install them with `pip install -e ".[bench]"` in a separate environment. Timings are medians
of interleaved rounds (A B A B ...), so that a slow phase of the machine hits every contender
alike; ratios are ours / peer time (lower is better). GFLOP/s are reported as a fraction of
this machine's measured fp32 matrix-multiply rate (the practical roofline: the best 2048^3
product through torch's BLAS or oneDNN, re-measured beside each model workload).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402  (before tensorflow, always)

try:  # CUDA builds of torch ship triton, which crashes when it loads after tensorflow
    import triton  # noqa: E402,F401
except ImportError:
    pass

from bench import hardware  # noqa: E402
from bench.flops import convnext_flops  # noqa: E402
from bench.peers import model_contenders, processor_contenders  # noqa: E402


def reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_gflops(n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """The machine's matrix-multiply rate in ``dtype``: the best of ``repeats`` n^3 products through
    torch's default BLAS and through oneDNN (on AMD CPUs MKL's path is the slower of the two)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    products = [lambda: a @ b]
    if hasattr(torch.ops.mkldnn, "_linear_pointwise") and torch.backends.mkldnn.is_available():
        products.append(lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], None))
    best = float("inf")
    with torch.inference_mode():
        for product in products:
            try:
                product()
            except RuntimeError:  # oneDNN has no kernel for this dtype on this CPU
                continue
            for _ in range(repeats):
                t = time.perf_counter()
                product()
                best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def bf16_matmul_gflops() -> float:
    """The bfloat16 rate, on a 512^3 product first: CPUs without bfloat16 instructions run it through
    a reference kernel far below their fp32 rate, where a 2048^3 product would take too long."""
    small = matmul_gflops(512, repeats=1, dtype=torch.bfloat16)
    return matmul_gflops(2048, repeats=3, dtype=torch.bfloat16) if small > 20 else small


def int8_matmul_gops(n: int = 2048, repeats: int = 3) -> float:
    """The int8 x int8 -> int32 matrix rate (torch._int_mm, oneDNN; VNNI/AMX where the CPU has them),
    in GOP/s; 0 where this torch has no CPU int8 product."""
    if not hasattr(torch, "_int_mm"):
        return 0.0
    a = torch.randint(-128, 127, (n, n), dtype=torch.int8)
    b = torch.randint(-128, 127, (n, n), dtype=torch.int8)
    best = float("inf")
    try:
        with torch.inference_mode():
            torch._int_mm(a, b)
            for _ in range(repeats):
                t = time.perf_counter()
                torch._int_mm(a, b)
                best = min(best, time.perf_counter() - t)
    except RuntimeError:
        return 0.0
    return 2 * n**3 / best / 1e9


def interleaved(contenders: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, dict]:
    """Run each contender ``warmup`` times, then ``rounds`` rounds of A B C ...; medians and peak RSS."""
    stats: dict[str, dict] = {}
    for name, fn in list(contenders.items()):
        reset_peak_rss()
        before = peak_rss_mb()
        try:
            for _ in range(warmup):
                fn()
        except Exception as e:  # a peer that cannot run this workload is reported, not fatal
            stats[name] = {"error": f"{type(e).__name__}: {e}"[:200]}
            contenders.pop(name)
            continue
        stats[name] = {"times": [], "peak_rss_mb": round(peak_rss_mb(), 1), "rss_before_mb": round(before, 1)}
    for _ in range(rounds):
        for name, fn in contenders.items():
            t = time.perf_counter()
            fn()
            stats[name]["times"].append(time.perf_counter() - t)
    for s in stats.values():
        if "times" in s:
            s["median_s"] = statistics.median(s["times"])
    return stats


def bench_models(args) -> list[dict]:
    rows = []
    for variant in args.variants:
        for batch in args.batches:
            x = np.random.default_rng(0).standard_normal((batch, 3, args.size, args.size)).astype(np.float32)
            contenders = model_contenders(variant, x, args.impls, compile_pt=not args.no_compile)
            bf16_rate = bf16_matmul_gflops()
            if bf16_rate < matmul_gflops(1024, repeats=1) / 8 and args.impls is None:
                # no bfloat16 kernels: each image would take minutes (its FLOPs at the reference rate)
                for name in [n for n in contenders if "bf16" in n]:
                    contenders.pop(name)
                    est = convnext_flops(variant, args.size) * batch / bf16_rate / 1e9
                    print(f"  skipped {name}: bf16 matmul {bf16_rate:.2f} GFLOP/s here (~{est:.0f} s per call); "
                          "name it with --impls to run it anyway")
            stats = interleaved(contenders, args.rounds)
            roofline = matmul_gflops()  # measured beside each workload: the machine's speed drifts
            roofline_bf16 = bf16_matmul_gflops()
            roofline_int8 = int8_matmul_gops()
            flops = convnext_flops(variant, args.size) * batch
            ours = stats.get("ours-pt", {}).get("median_s")
            ours_tf = stats.get("ours-tf", {}).get("median_s")
            timm_t = stats.get("timm", {}).get("median_s")  # the PyTorch targets are against timm eager
            for name, s in stats.items():
                row = {"workload": f"convnext-{variant} b{batch} {args.size}px", "impl": name}
                if "error" in s:
                    row["error"] = s["error"]
                else:
                    t = s["median_s"]
                    row.update(img_s=round(batch / t, 2), median_s=round(t, 4), peak_rss_mb=s["peak_rss_mb"],
                               gflops=round(flops / t / 1e9, 1), roofline_gflops=round(roofline, 1),
                               bf16_matmul_gflops=round(roofline_bf16, 1), int8_matmul_gops=round(roofline_int8, 1),
                               roofline_frac=round(flops / t / 1e9 / roofline, 3))
                    if ours and not name.startswith("ours"):
                        row["ours_pt_over_peer"] = round(ours / t, 3)
                    if ours_tf and not name.startswith("ours"):
                        row["ours_tf_over_peer"] = round(ours_tf / t, 3)
                    if ours and name.startswith("ours") and name != "ours-pt":
                        row["over_ours_pt"] = round(t / ours, 3)
                    if timm_t and name.startswith("ours-pt"):
                        row["over_timm"] = round(t / timm_t, 3)
                rows.append(row)
    return rows


def bench_processors(args) -> list[dict]:
    from bench.peers import sample_photos

    photos = sample_photos(32)
    stats = interleaved(processor_contenders(photos), args.rounds)
    ours = stats.get("ours-slow", {}).get("median_s")
    ours_fast = stats.get("ours-fast", {}).get("median_s")
    rows = []
    for name, s in stats.items():
        row = {"workload": "preprocess 32 photos -> 224", "impl": name}
        if "error" in s:
            row["error"] = s["error"]
        else:
            t = s["median_s"]
            row.update(img_s=round(len(photos) / t, 1), median_s=round(t, 4))
            if name.startswith("transformers-slow") and ours:
                row["ours_slow_over_peer"] = round(ours / t, 3)
            if name.startswith("transformers-fast") and ours_fast:
                row["ours_fast_over_peer"] = round(ours_fast / t, 3)
        rows.append(row)
    return rows


def bench_conversion(args) -> list[dict]:
    """ConvNeXt-L PT -> TF in a fresh process, so that its peak RSS is its own."""
    script = ROOT / "bench" / "bench_convert.py"
    if not script.exists():
        return [{"workload": "convert convnext-large pt->tf", "impl": "ours", "error": "bench_convert.py missing"}]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "convert.json"
        out = subprocess.run([sys.executable, str(script), "--to", "tf", "--json", str(report)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            return [{"workload": "convert convnext-large pt->tf", "impl": "ours", "error": out.stderr.strip()[-300:]}]
        result = json.loads(report.read_text())
    return [{"workload": "convert convnext-large pt->tf", "impl": "ours", "seconds": result["seconds"],
             "checkpoint_mb": round(result["checkpoint_mb"], 1), "peak_rss_mb": round(result["peak_rss_mb"], 1),
             "peak_rss_over_checkpoint": round(result["peak_over_ckpt"], 3)}]


def print_table(rows: list[dict]) -> None:
    cols = ["workload", "impl", "img_s", "median_s", "ours_pt_over_peer", "ours_tf_over_peer", "over_ours_pt",
            "over_timm", "ours_slow_over_peer", "ours_fast_over_peer", "gflops", "roofline_gflops", "bf16_matmul_gflops", "int8_matmul_gops", "roofline_frac",
            "peak_rss_mb", "seconds", "checkpoint_mb", "peak_rss_over_checkpoint", "error"]
    cols = [c for c in cols if any(c in r for r in rows)]
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    print(" | ".join(c.ljust(widths[c]) for c in cols))
    print("-+-".join("-" * widths[c] for c in cols))
    for r in rows:
        print(" | ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=["models", "processors", "conversion"], action="append")
    p.add_argument("--variants", nargs="+", default=["tiny", "base"])
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--impls", nargs="+", default=None, help="subset of contenders (e.g. ours-pt timm)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile contender")
    p.add_argument("--json", default="bench-results/bench.json", help="where to write the results")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    try:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except ImportError:
        pass
    machine = hardware.describe()
    print(f"machine: {hardware.one_line(machine)}")
    roofline = matmul_gflops()
    print(f"fp32 2048^3 matmul: {roofline:.1f} GFLOP/s on {args.threads} threads (re-measured per workload)")
    print(f"bf16 matmul: {bf16_matmul_gflops():.1f} GFLOP/s (oneDNN bf16 kernels: "
          f"{torch.ops.mkldnn._is_mkldnn_bf16_supported()})")
    print(f"int8 matmul: {int8_matmul_gops():.1f} GOP/s (torch._int_mm; the int8 contenders' roofline)")
    rows: list[dict] = []
    only = set(args.only or ["models", "processors", "conversion"])
    if "models" in only:
        rows += bench_models(args)
    if "processors" in only:
        rows += bench_processors(args)
    if "conversion" in only:
        rows += bench_conversion(args)
    print_table(rows)
    meta = {"python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "threads": args.threads, "matmul_gflops": round(roofline, 1), **machine}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

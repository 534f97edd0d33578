"""bf16 against fp32 on the CPU, both twins, side by side: the PyTorch twin in bfloat16
(``from_pretrained(dtype=torch.bfloat16)``) and under bf16 autocast, the Keras twin under
``mixed_bfloat16`` on TensorFlow (``tf.function``) and JAX (``jit``, in a subprocess: one Keras
backend per process). Prints img/s and the machine's fp32 and bf16 matrix rates.

    python bench/bench_precision.py                        # the embedded digits model, b32 at 32 px
    python bench/bench_precision.py --variant tiny --size 64 --batch 1

bfloat16 is only fast where the CPU has bfloat16 instructions (AVX512-BF16, AMX); on other CPUs torch
runs it through reference kernels (bench/RESULTS.md has the figures and the host).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402  (before tensorflow)

from bench import hardware  # noqa: E402
from bench.run import bf16_matmul_gflops, matmul_gflops  # noqa: E402
from bench.timing import interleaved  # noqa: E402


def _config_and_folder(variant: str | None):
    from convnext_app.inference import default_model_dir
    from convnext_common import ConvNextConfig
    from convnext_common.config import load_config

    if variant is None:
        return load_config(default_model_dir()), default_model_dir()
    return ConvNextConfig.from_variant(variant, num_labels=1000), None


def torch_contenders(variant: str | None, x: np.ndarray) -> dict:
    from convnext_pt import AutoModelForImageClassification, ConvNextForImageClassification

    config, folder = _config_and_folder(variant)

    def load(dtype):
        if folder is not None:
            return AutoModelForImageClassification.from_pretrained(folder, dtype=dtype).eval()
        return ConvNextForImageClassification(config).eval().to(dtype)

    fp32, bf16 = load(torch.float32), load(torch.bfloat16)
    x32 = torch.from_numpy(x)
    x16 = x32.to(torch.bfloat16)

    def run(model, inp, autocast=False):
        def call():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                return model(inp).logits
        return call

    return {"pt fp32": run(fp32, x32), "pt bf16": run(bf16, x16), "pt autocast bf16": run(fp32, x32, True)}


def keras_contenders(variant: str | None, x: np.ndarray) -> dict:
    import keras

    from convnext_tf import TFAutoModelForImageClassification, TFConvNextForImageClassification

    config, folder = _config_and_folder(variant)
    out = {}
    for policy in ("float32", "mixed_bfloat16"):
        if folder is not None:
            model = TFAutoModelForImageClassification.from_pretrained(folder, dtype=policy)
        else:
            model = TFConvNextForImageClassification(config, dtype=policy)
        backend = keras.backend.backend()
        if backend == "tensorflow":
            import tensorflow as tf

            fn = tf.function(lambda v, m=model: m(v, training=False).logits)
        else:
            fn = (lambda v, m=model: m.predict_on_batch(v))
        out[f"keras-{backend} {policy}"] = (lambda f=fn: np.asarray(f(x)))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", default=None, help="a named size (tiny...); default: the embedded digits model")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--keras-only", action="store_true", help=argparse.SUPPRESS)  # the JAX subprocess
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    x = np.random.default_rng(0).standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
    if args.keras_only:
        stats = interleaved(keras_contenders(args.variant, x), args.rounds, progress=False)
        print(json.dumps({k: v.get("median_s", v.get("error")) for k, v in stats.items()}))
        return 0
    print(f"machine: {hardware.one_line(hardware.describe())}")
    print(f"matmul: fp32 {matmul_gflops():.1f} GFLOP/s, bf16 {bf16_matmul_gflops():.2f} GFLOP/s "
          f"({args.threads} threads); oneDNN bf16: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}")
    contenders = torch_contenders(args.variant, x)
    try:
        from convnext_tf.quiet import import_tensorflow

        import_tensorflow()
        contenders.update(keras_contenders(args.variant, x))
    except ImportError as e:
        print(f"  skipped the Keras twin on TensorFlow: {e}")
    stats = interleaved(contenders, args.rounds)
    medians = {k: v.get("median_s", v.get("error")) for k, v in stats.items()}
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(ROOT))
    jax_run = subprocess.run([sys.executable, __file__, "--keras-only", "--size", str(args.size), "--batch",
                              str(args.batch), "--rounds", str(args.rounds)] +
                             (["--variant", args.variant] if args.variant else []),
                             capture_output=True, text=True, env=env)
    if jax_run.returncode == 0:
        medians.update(json.loads(jax_run.stdout.strip().splitlines()[-1]))
    else:
        print(f"  skipped the Keras twin on JAX: {jax_run.stderr.strip()[-200:]}")
    what = f"{args.variant or 'digits'} b{args.batch} {args.size}px"
    print(f"{'contender':28s} {'img/s':>10s}  ({what}; the JAX rows ran in another process, after the others)")
    for name, t in medians.items():
        print(f"{name:28s} {args.batch / t:10.1f}" if isinstance(t, float) else f"{name:28s} {t}")
    if args.json:
        Path(args.json).write_text(json.dumps(medians, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

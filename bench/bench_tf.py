"""Speed of the Keras twin on CPU against keras.applications and the PyTorch twin.

    python bench/bench_tf.py                      # ConvNeXt-T, fp32, batch 8, 224x224, 2 threads
    python bench/bench_tf.py --rounds 7 --xla     # also the twin under XLA
    python bench/bench_tf.py --train              # also one training step per contender

Contenders (same random-init ConvNeXt-T shape, 1000 classes, same input batch):

- ``tf-twin eager``: ``TFConvNextForImageClassification(x, training=False)``, NCHW input, eager
  (op by op, as every Keras model runs eagerly);
- ``tf-twin tf.function``: the same call inside ``tf.function`` (the mode Keras' fit/predict use);
- ``tf-twin XLA`` (``--xla``): ``tf.function(jit_compile=True)``; slow on CPU, where XLA's own
  depthwise convolution is far slower than TensorFlow's kernel;
- ``keras-apps eager`` / ``keras-apps XLA``: ``keras.applications.ConvNeXtTiny(weights=None)``
  on NHWC input (its layout), eager and ``tf.function(jit_compile=True)``. Its 7x7 depthwise conv
  is Keras' grouped Conv2D, far slower on CPU than the twin's DepthwiseConv2D for the same work;
- ``pt-twin``: this project's ``ConvNextForImageClassification`` under ``torch.inference_mode``.

Timings are medians of interleaved rounds (A B C ... A B C ...), so that a slow phase of a shared
machine hits every contender alike. Prints a table and writes JSON (``--json``, default
``bench-results/bench_tf.json``). Benchmarks report;
tests never assert timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402  (before tensorflow, always)

from bench import hardware  # noqa: E402
from bench.timing import interleaved, torch_sgd_step  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", default="tiny", help="named size (default: tiny = ConvNeXt-T)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2, help="intra-op threads for TF and torch")
    p.add_argument("--inter-threads", type=int, default=1, help="TF inter-op threads")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds after one warm-up")
    p.add_argument("--xla", action="store_true", help="also time the twin under tf.function(jit_compile=True)")
    p.add_argument("--train", action="store_true", help="also time one SGD training step per contender")
    p.add_argument("--skip", nargs="*", default=[], help="contender names to leave out")
    p.add_argument("--json", type=Path, default=ROOT / "bench-results" / "bench_tf.json", help="where to write results")
    return p.parse_args(argv)


def build_contenders(args) -> dict[str, Callable[[], object]]:
    import keras
    import tensorflow as tf

    from convnext_common import ConvNextConfig
    from convnext_pt import ConvNextForImageClassification
    from convnext_tf import TFConvNextForImageClassification

    config = ConvNextConfig.from_variant(args.variant, num_labels=1000)
    x = np.random.default_rng(0).standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
    x_nchw, x_nhwc = tf.constant(x), tf.constant(x.transpose(0, 2, 3, 1))
    labels = tf.constant(np.arange(args.batch) % 1000)
    out: dict[str, Callable[[], object]] = {}

    twin = TFConvNextForImageClassification(config)
    graph = tf.function(lambda a: twin(a, training=False).logits, autograph=False)
    out["tf-twin eager"] = lambda: twin(x_nchw, training=False).logits.numpy()
    out["tf-twin tf.function"] = lambda: graph(x_nchw).numpy()
    if args.xla:
        xla = tf.function(lambda a: twin(a, training=False).logits, jit_compile=True, autograph=False)
        out["tf-twin XLA"] = lambda: xla(x_nchw).numpy()

    if args.variant == "tiny":
        apps = keras.applications.ConvNeXtTiny(weights=None)
        apps_xla = tf.function(lambda a: apps(a, training=False), jit_compile=True, autograph=False)
        out["keras-apps eager"] = lambda: apps(x_nhwc, training=False).numpy()
        out["keras-apps XLA"] = lambda: apps_xla(x_nhwc).numpy()

    pt = ConvNextForImageClassification(config).eval()
    x_pt = torch.from_numpy(x)

    def pt_run():
        with torch.inference_mode():
            return pt(x_pt).logits

    out["pt-twin"] = pt_run

    if args.train:
        def tf_step(model, inputs, logits_of):
            opt = keras.optimizers.SGD(1e-4)  # one per model: a Keras optimizer is built for its variables

            @tf.function
            def step():
                with tf.GradientTape() as tape:
                    logits = logits_of(model(inputs, training=True))
                    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
                grads = tape.gradient(loss, model.trainable_variables)
                opt.apply_gradients(zip(grads, model.trainable_variables))
                return loss
            return lambda: step().numpy()

        out["tf-twin train step"] = tf_step(twin, x_nchw, lambda o: o.logits)
        if args.variant == "tiny":
            out["keras-apps train step"] = tf_step(apps, x_nhwc, lambda o: o)
        out["pt-twin train step"] = torch_sgd_step(pt, x_pt, torch.from_numpy(labels.numpy()))
    return {k: v for k, v in out.items() if k not in args.skip}


def main(argv=None) -> int:
    args = parse_args(argv)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_threads)
    torch.set_num_threads(args.threads)
    import keras

    load_before = os.getloadavg()
    stats = interleaved(build_contenders(args), args.rounds)
    load_after = os.getloadavg()
    for s in stats.values():
        if "median_s" in s:
            s["images_per_s"] = args.batch / s["median_s"]

    def ips(name):
        return stats.get(name, {}).get("images_per_s")

    twin_modes = [n for n in stats if n.startswith("tf-twin") and "train" not in n and ips(n)]
    apps_modes = [n for n in stats if n.startswith("keras-apps") and "train" not in n and ips(n)]
    best_twin = max(twin_modes, key=ips, default=None)
    best_apps = max(apps_modes, key=ips, default=None)
    ratios = {}
    if best_twin and best_apps:
        ratios["best tf-twin / best keras-apps"] = ips(best_twin) / ips(best_apps)
    if ips("tf-twin eager") and ips("keras-apps eager"):
        ratios["tf-twin eager / keras-apps eager"] = ips("tf-twin eager") / ips("keras-apps eager")
    if best_twin and ips("pt-twin"):
        ratios["best tf-twin / pt-twin"] = ips(best_twin) / ips("pt-twin")
    if ips("tf-twin eager") and ips("pt-twin"):
        ratios["tf-twin eager / pt-twin"] = ips("tf-twin eager") / ips("pt-twin")
    if ips("tf-twin train step") and ips("pt-twin train step"):
        ratios["tf-twin train / pt-twin train"] = ips("tf-twin train step") / ips("pt-twin train step")

    title = (f"ConvNeXt-{args.variant} fp32, batch {args.batch}, {args.size}x{args.size}, {args.threads} threads "
             f"(TF inter-op {args.inter_threads}), median of {args.rounds} interleaved rounds")
    machine = hardware.describe()
    print(title)
    print(f"machine: {hardware.one_line(machine)}")
    print(f"{'contender':<24} {'img/s':>8} {'median s':>9} {'first call s':>13}")
    for name, s in stats.items():
        if "error" in s:
            print(f"{name:<24} {'-':>8} {'-':>9} {'-':>13}  {s['error']}")
        else:
            print(f"{name:<24} {s['images_per_s']:>8.2f} {s['median_s']:>9.3f} {s['first_call_s']:>13.1f}")
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}x")
    print(f"load average (1 min) before/after: {load_before[0]:.1f} / {load_after[0]:.1f} on {os.cpu_count()} CPUs")

    result = {
        "benchmark": "bench/bench_tf.py", "title": title, "settings": vars(args) | {"json": str(args.json)},
        "environment": {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
                        "torch": torch.__version__, "machine": platform.machine(), "cpus": os.cpu_count(),
                        "load_average_before": load_before, "load_average_after": load_after, **machine},
        "contenders": stats, "ratios": ratios,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    from convnext_common.fileio import atomic_write_text

    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

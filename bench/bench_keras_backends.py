"""Speed of the Keras twin on each Keras 3 backend against keras.applications' ConvNeXt on the same backend.

    python bench/bench_keras_backends.py                         # jax, torch, tensorflow; batch 1 and 8
    python bench/bench_keras_backends.py --backends jax --batches 8 --rounds 7 --train

One process per backend (Keras picks its backend once per process, from ``KERAS_BACKEND``); each
times, on the same random input (224x224, 1000 classes, random init, fp32):

- ``twin predict``: ``TFConvNextForImageClassification.predict`` (NCHW input, its default);
- ``keras-apps predict``: ``keras.applications.ConvNeXtTiny(weights=None, classifier_activation=None)``
  ``.predict`` on NHWC input (its layout);
- ``twin train step`` / ``keras-apps train step`` (``--train``): ``train_on_batch`` after
  ``compile(SGD, sparse cross-entropy from logits)``, Keras' own compiled step on that backend
  (``jax.jit``, ``tf.function``; eager on torch);
- on the torch backend also ``pt-twin``: this project's PyTorch ``ConvNextForImageClassification``
  under ``torch.inference_mode`` (and its SGD step with ``--train``).

Timings are medians of interleaved rounds (A B C ... A B C ...) after one warm-up call each (which
compiles), so a slow phase of a shared machine hits every contender alike. The parent prints one
table with the machine line and writes JSON (``--json``). Benchmarks report; tests never assert
timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("jax", "torch", "tensorflow")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    p.add_argument("--variant", default="tiny", help="named size (default: tiny = ConvNeXt-T; keras.applications "
                                                     "is timed for tiny only)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (torch, TensorFlow; XLA's CPU pool)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds after one warm-up")
    p.add_argument("--train", action="store_true", help="also time one SGD training step (train_on_batch)")
    p.add_argument("--json", type=Path, default=ROOT / "bench-results" / "bench_keras_backends.json")
    p.add_argument("--child", help=argparse.SUPPRESS)  # the backend this process times (set by the parent)
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------------
# child: one backend
# ------------------------------------------------------------------------------------------------
def build_contenders(args, batch: int) -> dict[str, Callable[[], object]]:
    import keras
    import numpy as np

    from convnext_common import ConvNextConfig
    from convnext_tf import TFConvNextForImageClassification

    config = ConvNextConfig.from_variant(args.variant, num_labels=1000)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, args.size, args.size)).astype(np.float32)
    x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    y = (np.arange(batch) % 1000).astype(np.int32)
    out: dict[str, Callable[[], object]] = {}

    def trained(model):
        model.compile(optimizer=keras.optimizers.SGD(1e-4),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    twin = TFConvNextForImageClassification(config)
    out["twin predict"] = lambda: twin.predict(x, batch_size=batch, verbose=0)
    apps = None
    if args.variant == "tiny":
        apps = keras.applications.ConvNeXtTiny(weights=None, classifier_activation=None)
        out["keras-apps predict"] = lambda: apps.predict(x_nhwc, batch_size=batch, verbose=0)
    if args.child == "torch":
        import torch

        from convnext_pt import ConvNextForImageClassification

        pt = ConvNextForImageClassification(config).eval()
        x_pt = torch.from_numpy(x)

        def pt_run():
            with torch.inference_mode():
                return pt(x_pt).logits

        out["pt-twin"] = pt_run
    if args.train:
        trained(twin)
        out["twin train step"] = lambda: twin.train_on_batch(x, y)
        if apps is not None:
            trained(apps)
            out["keras-apps train step"] = lambda: apps.train_on_batch(x_nhwc, y)
        if args.child == "torch":
            from bench.timing import torch_sgd_step

            out["pt-twin train step"] = torch_sgd_step(pt, x_pt, torch.from_numpy(y.astype(np.int64)))
    return out


def limit_threads(backend: str, threads: int) -> None:
    """Before the backend is imported: the same number of compute threads for every contender."""
    if backend == "jax":  # XLA's CPU runtime sizes its pool from the CPUs this process may use
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
    import torch  # before TensorFlow, always

    torch.set_num_threads(threads)
    if backend == "tensorflow":
        from convnext_tf.quiet import import_tensorflow

        tf = import_tensorflow()
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def child(args) -> int:
    limit_threads(args.child, args.threads)
    import keras

    from bench.timing import interleaved

    assert keras.backend.backend() == args.child, (keras.backend.backend(), args.child)
    result = {"backend": args.child, "keras": keras.__version__, "batches": {}}
    if args.child == "jax":
        import jax

        result["jax"] = jax.__version__
    for batch in args.batches:
        stats = interleaved(build_contenders(args, batch), args.rounds, progress=False)
        for s in stats.values():
            if "median_s" in s:
                s["images_per_s"] = batch / s["median_s"]
                s["images_per_s_range"] = [batch / s["range_s"][1], batch / s["range_s"][0]]
        result["batches"][str(batch)] = stats
    print(json.dumps(result))
    return 0


# ------------------------------------------------------------------------------------------------
# parent: one child per backend, one table
# ------------------------------------------------------------------------------------------------
RATIOS = (  # (label, numerator, denominator)
    ("twin / keras-apps, predict", "twin predict", "keras-apps predict"),
    ("twin / keras-apps, train step", "twin train step", "keras-apps train step"),
    ("twin / pt-twin, inference", "twin predict", "pt-twin"),
    ("twin / pt-twin, train step", "twin train step", "pt-twin train step"),
)


def run_backend(args, backend: str, argv: list[str]) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv, "--child", backend],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"backend": backend, "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine_line() -> tuple[str, dict]:
    sys.path.insert(0, str(ROOT))
    from bench import hardware

    info = {"cpu": hardware.cpu_model(), "vector_isa": hardware.vector_isa(hardware.cpu_flags()),
            **hardware.torch_libraries()}
    return (f"{info['cpu']}, {info['vector_isa']}; torch {info['torch']} ({info['torch_blas']} BLAS, "
            f"oneDNN {info['torch_onednn']})"), info


def parent(args, argv: list[str]) -> int:
    load_before = os.getloadavg()
    results = {b: run_backend(args, b, argv) for b in args.backends}
    load_after = os.getloadavg()
    line, info = machine_line()
    print(f"ConvNeXt-{args.variant} fp32, {args.size}x{args.size}, {args.threads} threads, "
          f"median (min-max) of {args.rounds} interleaved rounds, img/s")
    print(f"machine: {line}")
    for backend, r in results.items():
        if "error" in r:
            print(f"{backend}: failed: {r['error']}")
            continue
        versions = f"keras {r['keras']}" + (f", jax {r['jax']}" if "jax" in r else "")
        print(f"\n[{backend}] ({versions})")
        for batch, stats in r["batches"].items():
            for name, s in stats.items():
                if "error" in s:
                    print(f"  b{batch:<3} {name:<24} {'-':>8}  {s['error']}")
                else:
                    lo, hi = s["images_per_s_range"]
                    print(f"  b{batch:<3} {name:<24} {s['images_per_s']:>8.2f}  ({lo:.2f}-{hi:.2f})")
            for label, a, b in RATIOS:
                if stats.get(a, {}).get("images_per_s") and stats.get(b, {}).get("images_per_s"):
                    print(f"  b{batch:<3} {label}: {stats[a]['images_per_s'] / stats[b]['images_per_s']:.2f}x")
    print(f"\nload average (1 min) before/after: {load_before[0]:.1f} / {load_after[0]:.1f} on {os.cpu_count()} CPUs")
    record = {"benchmark": "bench/bench_keras_backends.py", "settings": {k: v for k, v in vars(args).items()
                                                                          if k != "child"} | {"json": str(args.json)},
              "environment": {"python": platform.python_version(), "load_average_before": load_before,
                              "load_average_after": load_after, "cpus": os.cpu_count(), **info},
              "backends": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    from convnext_common.fileio import atomic_write_text

    atomic_write_text(args.json, json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0 if all("error" not in r for r in results.values()) else 1


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.child:
        sys.path.insert(0, str(ROOT))
        return child(args)
    return parent(args, argv)


if __name__ == "__main__":
    raise SystemExit(main())

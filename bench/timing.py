"""Side-by-side timing for the Keras benchmarks (bench_tf.py, bench_keras_backends.py): one warm-up
call per contender (traces, compiles), then interleaved rounds A B C ... A B C, so that a slow phase
of a shared machine hits every contender alike."""

from __future__ import annotations

import statistics
import sys
import time
from typing import Callable


def interleaved(contenders: dict[str, Callable[[], object]], rounds: int, progress: bool = True) -> dict[str, dict]:
    """Per contender: ``first_call_s``, ``times_s``, ``median_s`` and ``range_s`` (min, max), or
    ``error`` for one that cannot run this workload (reported, not fatal)."""
    stats: dict[str, dict] = {}
    for name, fn in list(contenders.items()):
        t = time.perf_counter()
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - a contender that cannot run this workload is reported
            lines = [line.strip() for line in str(e).splitlines() if line.strip()]
            stats[name] = {"error": f"{type(e).__name__}: {lines[-1] if lines else ''}"[:300]}
            contenders.pop(name)
            continue
        stats[name] = {"first_call_s": time.perf_counter() - t, "times_s": []}
        if progress:
            print(f"  warm-up {name}: {stats[name]['first_call_s']:.1f} s", file=sys.stderr, flush=True)
    for r in range(rounds):
        for name, fn in contenders.items():
            t = time.perf_counter()
            fn()
            stats[name]["times_s"].append(time.perf_counter() - t)
        if progress:
            print(f"  round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    for s in stats.values():
        if "times_s" in s:
            s["median_s"] = statistics.median(s["times_s"])
            s["range_s"] = [min(s["times_s"]), max(s["times_s"])]
    return stats


def torch_sgd_step(model, x, y, lr: float = 1e-4) -> Callable[[], float]:
    """One SGD training step of a PyTorch classifier on ``(x, y)`` (its ``.logits``), as a contender:
    the reference the Keras benchmarks time their training steps against."""
    import torch

    optimizer = torch.optim.SGD(model.parameters(), lr=lr)

    def step() -> float:
        model.train()
        loss = torch.nn.functional.cross_entropy(model(x).logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.eval()
        return loss.item()

    return step

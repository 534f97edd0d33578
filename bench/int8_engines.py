"""int8 ConvNeXt on the CPU, two routes side by side with the twin's fp32: this project's int8
(`convnext quantize`: NNCF on the verified OpenVINO IR, run by OpenVINO) and torchao's PT2E route
(torch.export, X86InductorQuantizer, oneDNN int8 kernels through torch.compile/inductor with frozen
weights; needs torchao and a C++ compiler). Random weights, random calibration: speed only.

    python bench/int8_engines.py --batch 1
    python bench/int8_engines.py --batch 8 --rounds 5

torchao is a benchmark peer, not a dependency (`pip install torchao` in the bench environment).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench import hardware  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", default="tiny")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    import openvino as ov

    from convnext_app.quantization import quantize_model
    from convnext_common import ConvNextConfig
    from convnext_pt import ConvNextForImageClassification
    from convnext_pt.export import TensorOutputs

    print(f"machine: {hardware.one_line(hardware.describe())}")
    model = ConvNextForImageClassification(ConvNextConfig.from_variant(args.variant, num_labels=1000)).eval()
    shape = (args.batch, 3, args.size, args.size)
    x = torch.randn(shape)
    calibration = np.random.default_rng(1).standard_normal((16, 3, args.size, args.size)).astype(np.float32)

    contenders = {}

    def twin():
        with torch.inference_mode():
            return model(x)
    contenders["twin fp32"] = twin

    quantized, _ = quantize_model(model, calibration, min_agreement=0.0, max_rel=float("inf"))
    compiled = ov.Core().compile_model(quantized, "CPU", {"INFERENCE_NUM_THREADS": args.threads})
    xn = x.numpy()
    contenders["ours int8 (NNCF, OpenVINO)"] = lambda: compiled(xn)

    try:
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError as e:
        print(f"  skipped torchao PT2E: {e}")
    else:
        t = time.perf_counter()
        with torch.no_grad():
            exported = torch.export.export(TensorOutputs(model), (x,)).module()
            quantizer = xiq.X86InductorQuantizer()
            quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
            prepared = prepare_pt2e(exported, quantizer)
            for i in range(0, len(calibration), args.batch):
                prepared(torch.from_numpy(calibration[i:i + args.batch]))
            converted = convert_pt2e(prepared)
            torch._inductor.config.freezing = True  # inductor's oneDNN int8 lowering needs frozen weights
            pt2e = torch.compile(converted)
            pt2e(x)
        print(f"  torchao PT2E: quantize + compile {time.perf_counter() - t:.0f} s")

        def run_pt2e():
            with torch.no_grad():
                return pt2e(x)
        contenders["torchao PT2E int8 (inductor)"] = run_pt2e

    for fn in contenders.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(args.rounds):
        for name, fn in contenders.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    base = statistics.median(times["twin fp32"])
    print(f"{'contender':32s} {'img/s':>8s}  x twin fp32   ({args.variant} b{args.batch} {args.size}px, "
          f"{args.threads} threads, medians of {args.rounds} interleaved rounds)")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"{name:32s} {args.batch / t:8.2f}  {base / t:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Agreement of every export with its source model, and how long each export takes.

    python bench/bench_export.py                      # embedded digits model + the hf-convnext fixture
    python bench/bench_export.py --inductor           # also torch.compile with inductor (minutes on CPU)
    python bench/bench_export.py --models path/to/convnext-tiny-224

For each model folder: ONNX (both torch exporters, onnxruntime CPU), torch.export (dynamic shapes),
torch.compile (fullgraph, aot_eager; inductor with --inductor), SavedModel and TFLite float32/int8
(Keras twin). Agreement is docs/DESIGN.md's rel = max|export - model| / max(1, max|model|), the largest
over the verification inputs (the export shape, another batch at an odd size, and the model's own
image size). For the embedded model the TFLite files are also compared on the held-out digits
(tests/fixtures/digits_heldout.npz in each evaluation rendering): top-1 agreement and accuracy.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import torch  # noqa: E402,F401  (before tensorflow)
import numpy as np  # noqa: E402

from convnext_app.inference import default_model_dir  # noqa: E402

HELDOUT = ROOT / "tests" / "fixtures" / "digits_heldout.npz"


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def _heldout_pixels(folder: Path):
    from convnext_app.digits import heldout_batch, load_heldout
    from convnext_app.inference import load_processor

    return heldout_batch(load_heldout(HELDOUT), load_processor(folder))


def bench_pt(folder: Path, work: Path, inductor: bool) -> list[tuple[str, str, str, str]]:
    from convnext_pt import ConvNextForImageClassification
    from convnext_pt.export import check_compile, check_program, export_onnx, export_program
    from convnext_common.export import verification_shapes

    model = ConvNextForImageClassification.from_pretrained(folder)
    rows = []
    for exporter in ("dynamo", "torchscript"):
        report, seconds = _timed(lambda: export_onnx(model, work / f"{exporter}.onnx", exporter=exporter))
        rows.append((f"ONNX opset 18, {exporter} exporter", "onnxruntime (CPU)", f"{report.max_rel:.1e}",
                     f"{seconds:.0f} s"))
    program, seconds = _timed(lambda: export_program(model))
    shapes = [s for s in verification_shapes(model.config) if min(s[2:]) >= 64]
    checks = check_program(model, program, shapes)
    rows.append(("torch.export (dynamic batch/H/W)", "ExportedProgram.module()",
                 f"{max(c.max_rel for c in checks):.1e}", f"{seconds:.0f} s"))
    for backend in ("aot_eager",) + (("inductor",) if inductor else ()):
        torch._dynamo.reset()
        checks, seconds = _timed(lambda: check_compile(model, backend=backend))
        rows.append((f"torch.compile fullgraph, {backend}", "compiled module",
                     f"{max(c.max_rel for c in checks):.1e}", f"{seconds:.0f} s (incl. {len(checks)} runs)"))
    return rows


def bench_tf(folder: Path, work: Path, embedded: bool) -> list[tuple[str, str, str, str]]:
    from convnext_tf import TFConvNextForImageClassification
    from convnext_tf.export import compare_tflite, export_saved_model, export_tflite, run_tflite

    model = TFConvNextForImageClassification.from_pretrained(folder)
    rows = []
    report, seconds = _timed(lambda: export_saved_model(model, work / "saved"))
    rows.append(("SavedModel (serving_default)", "tf.saved_model.load", f"{report.max_rel:.1e}", f"{seconds:.0f} s"))
    heldout = _heldout_pixels(folder) if embedded and HELDOUT.is_file() else None
    for int8 in (False, True):
        name = "int8" if int8 else "fp32"
        report, seconds = _timed(lambda: export_tflite(model, work / f"{name}.tflite", int8=int8,
                                                       saved_model_dir=work / "saved"))
        note = ""
        if heldout is not None:
            pixels, labels = heldout
            check = compare_tflite(model, work / f"{name}.tflite", pixels, batch_size=256)
            accuracy = float((run_tflite(work / f"{name}.tflite", pixels)["logits"].argmax(-1) == labels).mean())
            note = (f"; held-out ({len(pixels)} images): rel {check.max_rel:.1e}, top-1 agreement "
                    f"{check.top1_agree * 100:.2f}%, accuracy {accuracy * 100:.2f}%")
        rows.append((f"TFLite {'dynamic-range int8' if int8 else 'float32'}", "LiteRT interpreter",
                     f"{report.max_rel:.1e}{note}", f"{seconds:.0f} s"))
    if heldout is not None:
        from convnext_tf.export import eager_outputs

        pixels, labels = heldout
        logits = np.concatenate([eager_outputs(model, pixels[i:i + 256])["logits"] for i in range(0, len(pixels), 256)])
        accuracy = float((logits.argmax(-1) == labels).mean())
        rows.append(("(Keras eager, reference)", "-", "-", f"held-out accuracy {accuracy * 100:.2f}%"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", type=Path,
                        default=[default_model_dir(), ROOT / "tests" / "fixtures" / "hf-convnext"])
    parser.add_argument("--inductor", action="store_true", help="also torch.compile with inductor (slow on CPU)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs")
    for folder in args.models:
        embedded = folder.resolve() == default_model_dir().resolve()
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            (work / "pt").mkdir()
            (work / "tf").mkdir()
            rows = bench_pt(folder, work / "pt", args.inductor) + bench_tf(folder, work / "tf", embedded)
        print(f"\n{folder.name}{' (embedded)' if embedded else ''}\n")
        print("| export | run by | rel vs source model | time |")
        print("|---|---|---|---|")
        for row in rows:
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

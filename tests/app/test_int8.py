"""int8 (convnext_app/quantization.py, ``convnext quantize``, ``--precision int8``): NNCF's post-training
static quantization of the verified OpenVINO IR keeps the float32 model's answers.

References: the float32 PyTorch twin (itself checked against transformers' fixtures elsewhere) on the
held-out digits that the embedded model never trained on, and transformers' own logits for a
converted checkpoint (tests/fixtures/hf-convnext). The quantizer is calibrated on one quarter of the
held-out digits and judged on the other three quarters. Missing packages are simulated by hiding the
module, so those tests do not depend on what is installed."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import FIXTURES, REPO
from app.conftest import one_line_error
from convnext_app import cli
from convnext_app.digits import EVAL_RENDERINGS, load_heldout, render
from convnext_app.inference import default_model_dir, load_classifier, load_embedder, load_processor, preprocess_files

HELDOUT = FIXTURES / "digits_heldout.npz"


# --- refusals and missing packages (no quantization runs) -------------------------------------------
@pytest.mark.parametrize("module", ["nncf", "openvino"])
def test_missing_int8_package_is_one_line_naming_the_extra(module, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if it were not installed
    one_line_error(capsys, ["quantize", "--calibration", str(tmp_path), "--out", str(tmp_path / "q")],
                    repr(module), 'pip install "convnext-twins[int8]"')
    assert not (tmp_path / "q").exists()
    one_line_error(capsys, ["predict", "--precision", "int8", "--calibration", str(tmp_path)],
                    repr(module), "convnext-twins[int8]")


@pytest.mark.parametrize("fmt, out, precision, fragment", [
    ("onnx", "m.onnx", "int8", "--format openvino"),
    ("onnx", "m.onnx", "bf16", "fp32"),
    ("openvino", "m.xml", "bf16", "--runtime openvino --precision bf16"),
    ("tflite", "m.tflite", "int8", "--int8"),
    ("tflite", "m.tflite", "bf16", "fp32"),
    ("savedmodel", "m", "int8", "--format openvino"),
    ("savedmodel", "m", "bf16", "mixed_bfloat16"),
])
def test_export_refuses_unsupported_precisions_in_one_line(fmt, out, precision, fragment, tmp_path, capsys):
    one_line_error(capsys, ["export", "--format", fmt, "--out", str(tmp_path / out), "--precision", precision],
                    f"--format {fmt} --precision {precision}", fragment)
    assert list(tmp_path.iterdir()) == []


def test_export_int8_needs_calibration_and_calibration_needs_int8(tmp_path, capsys):
    one_line_error(capsys, ["export", "--format", "openvino", "--out", str(tmp_path / "m.xml"), "--precision", "int8"],
                    "--calibration DIR")
    one_line_error(capsys, ["export", "--format", "onnx", "--out", str(tmp_path / "m.onnx"),
                             "--calibration", str(tmp_path)], "--calibration goes with --precision int8")
    one_line_error(capsys, ["predict", "--calibration", str(tmp_path)], "--calibration goes with --precision int8")


def test_int8_without_quantized_folder_or_calibration_is_one_line(capsys):
    pytest.importorskip("nncf")
    one_line_error(capsys, ["predict", "--precision", "int8"], "convnext quantize", "--calibration DIR")
    one_line_error(capsys, ["predict", "--precision", "int8", "--runtime", "torch"],
                    "--runtime torch", "not int8")


# --- quantization on the embedded digits model -------------------------------------------------------
def _calibration_split(heldout):
    """(calibration digits, judged digits): every 4th held-out digit calibrates, the rest are judged."""
    calibrate = np.arange(len(heldout.images)) % 4 == 0
    return calibrate, ~calibrate


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """PNG files of the held-out digits (read back like predict does): the calibration folder and
    the judged images' pixels and labels, in every evaluation rendering."""
    pytest.importorskip("torch")
    heldout = load_heldout(HELDOUT)
    calibrate, judged = _calibration_split(heldout)
    root = tmp_path_factory.mktemp("int8_digits")
    cal = root / "calibration"
    cal.mkdir()
    for i in np.flatnonzero(calibrate):
        for rendering in EVAL_RENDERINGS[::2]:
            render(heldout.images[i], rendering).save(cal / f"{i:04d}_{rendering.tag}.png")
    processor = load_processor(default_model_dir())
    judged_paths = []
    for i in np.flatnonzero(judged):
        for rendering in EVAL_RENDERINGS:
            path = root / f"judged_{i:04d}_{rendering.tag}.png"
            render(heldout.images[i], rendering).save(path)
            judged_paths.append(path)
    labels = np.repeat(heldout.labels[judged], len(EVAL_RENDERINGS))
    return {"calibration": cal, "pixels": preprocess_files(processor, judged_paths), "labels": labels,
            "root": root}


@pytest.fixture(scope="module")
def quantized(digits):
    """The digits classifier quantized in memory, its labels on the judged images before saving, and
    the folder it was written to."""
    pytest.importorskip("nncf")
    from convnext_app.quantization import calibration_pixels, quantize_model, write_quantized
    from convnext_pt.export import compile_openvino, run_openvino

    source = default_model_dir()
    processor = load_processor(source)
    fp32 = load_classifier(source, "pt")
    model, report = quantize_model(fp32.model, calibration_pixels(digits["calibration"], processor))
    compiled = compile_openvino(model, "default")
    before = np.concatenate([run_openvino(compiled, digits["pixels"][i:i + 64])["logits"]
                             for i in range(0, len(digits["pixels"]), 64)])
    folder = digits["root"] / "digits-int8"
    write_quantized(model, report, source, fp32.config, processor, folder)
    return {"report": report, "logits_before_save": before, "folder": folder,
            "fp32_logits": fp32.logits(digits["pixels"])}


def test_saved_int8_folder_reloads_with_the_same_labels(quantized, digits):
    folder = quantized["folder"]
    assert {p.name for p in folder.iterdir()} >= {"openvino_model.xml", "openvino_model.bin", "config.json",
                                                  "preprocessor_config.json", "quantization.json"}
    record = json.loads((folder / "quantization.json").read_text())
    assert record["precision"] == "int8" and record["output"] == "logits"
    reloaded = load_classifier(folder, "pt", "int8", "openvino")
    after = reloaded.logits(digits["pixels"])
    np.testing.assert_array_equal(after.argmax(-1), quantized["logits_before_save"].argmax(-1))
    np.testing.assert_allclose(after, quantized["logits_before_save"], atol=1e-5)
    assert reloaded.labels == [str(d) for d in range(10)]


def test_int8_loses_at_most_half_a_point_on_the_heldout_digits(quantized, digits):
    int8 = load_classifier(quantized["folder"], "pt", "int8", "openvino").logits(digits["pixels"])
    fp32 = quantized["fp32_logits"]
    labels = digits["labels"]
    acc32, acc8 = (fp32.argmax(-1) == labels).mean(), (int8.argmax(-1) == labels).mean()
    agree = (int8.argmax(-1) == fp32.argmax(-1)).mean()
    print(f"\nheld-out digits ({len(labels)} images): fp32 {acc32:.4f}, int8 {acc8:.4f}, agreement {agree:.4f}, "
          f"max |logit diff| {np.abs(int8 - fp32).max():.4f}")
    assert acc32 >= 0.97  # the reference itself is the trained model
    assert acc8 >= acc32 - 0.005
    assert agree >= 0.99
    # int8 differs from float32 (quantization happened), but little against the logits' range
    assert 1e-3 < np.abs(int8 - fp32).max() < 0.25 * np.abs(fp32).max()


def test_int8_folder_is_refused_at_other_precisions_and_for_embed(quantized, capsys):
    folder = str(quantized["folder"])
    one_line_error(capsys, ["predict", "--model", folder], "int8", "--precision int8")
    with pytest.raises(ValueError, match="pooler_output"):
        load_embedder(folder, "pt", None, "int8", "openvino")


@pytest.mark.slow
def test_check_refuses_a_model_that_misses_the_bound(digits):
    """The same quantization with an impossible bound: refused in one message, nothing written."""
    pytest.importorskip("nncf")
    from convnext_app.quantization import QuantizationCheckError, quantize_folder

    out = digits["root"] / "refused"
    with pytest.raises(QuantizationCheckError, match="refused, nothing written"):
        quantize_folder(default_model_dir(), digits["calibration"], out, max_rel=1e-9)
    assert not out.exists()


def test_converted_checkpoint_int8_keeps_transformers_top1():
    """tests/fixtures/hf-convnext (random weights, transformers' logits): calibrated on the fixture's
    inputs, int8 gives transformers' top-1 class on each of them."""
    pytest.importorskip("nncf")
    torch = pytest.importorskip("torch")

    from convnext_app.quantization import quantize_model
    from convnext_pt import ConvNextForImageClassification
    from convnext_pt.export import compile_openvino, run_openvino

    inputs = np.load(FIXTURES / "inputs.npz")
    expected = np.load(FIXTURES / "hf-convnext" / "expected.npz")
    model = ConvNextForImageClassification.from_pretrained(FIXTURES / "hf-convnext").eval()
    x = inputs["pixel_values"]
    ref = expected["logits"]
    with torch.inference_mode():
        np.testing.assert_allclose(model(torch.from_numpy(x)).logits.numpy(), ref, atol=1e-4)  # the reference
    quantized, report = quantize_model(model, x, min_agreement=1.0)
    int8 = run_openvino(compile_openvino(quantized, "default"), x)["logits"]
    np.testing.assert_array_equal(int8.argmax(-1), ref.argmax(-1))
    assert report.top1_agreement == 1.0 and 0 < report.max_abs_diff


@pytest.mark.slow
def test_cli_quantize_then_predict_and_embed_with_calibration(digits, tmp_path):
    """End to end in fresh processes: `convnext quantize`, `predict --precision int8` on its folder
    (the same labels as the in-process run of the same folder), `embed --precision int8 --calibration`."""
    pytest.importorskip("nncf")
    env = {"PYTHONPATH": str(REPO)}
    import os

    env = {**os.environ, **env}
    out = tmp_path / "q"
    done = subprocess.run([sys.executable, "-m", "convnext_app", "quantize", "--calibration",
                           str(digits["calibration"]), "--out", str(out), "--json"],
                          capture_output=True, text=True, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)  # stdout holds only the report (progress goes to stderr)
    assert report["precision"] == "int8" and report["top1_agreement"] >= 0.98
    images = sorted(digits["calibration"].glob("*.png"))[:12]
    done = subprocess.run([sys.executable, "-m", "convnext_app", "predict", *map(str, images), "--model", str(out),
                           "--precision", "int8", "--json", "--top-k", "1"],
                          capture_output=True, text=True, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(done.stdout)
    assert doc["precision"] == "int8" and doc["runtime"] == "openvino"
    cli_labels = [r["top_k"]["pt"][0]["label"] for r in doc["results"]]
    pixels = preprocess_files(load_processor(out), images)
    in_process = load_classifier(out, "pt", "int8", "openvino").logits(pixels).argmax(-1)
    assert cli_labels == [str(i) for i in in_process]
    features = tmp_path / "f.npy"
    done = subprocess.run([sys.executable, "-m", "convnext_app", "embed", *map(str, images), "--precision", "int8",
                           "--calibration", str(digits["calibration"]), "--output", str(features), "--quiet"],
                          capture_output=True, text=True, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    int8 = np.load(features)
    fp32 = load_embedder(default_model_dir(), "pt").features(preprocess_files(
        load_processor(default_model_dir()), images))
    from convnext_app.quantization import cosine

    assert int8.shape == fp32.shape and cosine(int8, fp32).min() >= 0.99


@pytest.mark.slow
def test_export_openvino_int8_writes_an_ir_that_keeps_the_labels(digits, tmp_path, capsys):
    """`convnext export --format openvino --precision int8`: the written IR (read back by OpenVINO)
    gives the float32 twin's top-1 class on the judged digits within the held-out bound."""
    pytest.importorskip("nncf")
    from convnext_pt.export import compile_openvino, run_openvino

    out = tmp_path / "digits-int8.xml"
    code = cli.main(["export", "--format", "openvino", "--out", str(out), "--precision", "int8",
                     "--calibration", str(digits["calibration"]), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["details"]["precision"].startswith("int8") and out.with_suffix(".bin").is_file()
    compiled = compile_openvino(out, "default")
    int8 = np.concatenate([run_openvino(compiled, digits["pixels"][i:i + 64])["logits"]
                           for i in range(0, len(digits["pixels"]), 64)])
    fp32 = load_classifier(default_model_dir(), "pt").logits(digits["pixels"])
    assert (int8.argmax(-1) == fp32.argmax(-1)).mean() >= 0.99

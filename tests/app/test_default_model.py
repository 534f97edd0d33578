"""The embedded digits model: held-out accuracy, the TF twin's agreement, and `convnext predict` on the samples.

The held-out digits (tests/fixtures/digits_heldout.npz, written by scripts/train_default_model.py, never
trained on) are written to PNG files in every EVAL_RENDERINGS way and read back through the same code
`convnext predict` uses (convnext_app.inference.preprocess_files with the model's
preprocessor_config.json), so the accuracy measured here is what a user gets from files.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES, REPO
from convnext_app.digits import EVAL_RENDERINGS, LABELS, load_heldout, render
from convnext_app.inference import (
    default_model_dir, load_classifier, load_processor, preprocess_files, sample_image_paths,
)

HELDOUT = FIXTURES / "digits_heldout.npz"
SAMPLE_NAME = re.compile(r"digit_(\d)_(nearest|bilinear|bicubic|lanczos|box)_(\d+)px_(gray|rgb)\.png")


@pytest.fixture(scope="module")
def heldout():
    return load_heldout(HELDOUT)


@pytest.fixture(scope="module")
def heldout_pixels(heldout, tmp_path_factory):
    """(renderings, N, 3, 32, 32): each held-out digit written as PNG in each way, read back like predict."""
    folder = tmp_path_factory.mktemp("heldout_png")
    processor = load_processor(default_model_dir())
    blocks = []
    for rendering in EVAL_RENDERINGS:
        paths = []
        for i, digit in enumerate(heldout.images):
            path = folder / f"{i:04d}_{rendering.tag}.png"
            render(digit, rendering).save(path)
            paths.append(path)
        blocks.append(preprocess_files(processor, paths))
    return np.stack(blocks)


@pytest.fixture(scope="module")
def pt_logits(heldout_pixels):
    clf = load_classifier(default_model_dir(), "pt")
    return np.stack([clf.logits(block) for block in heldout_pixels])


def test_folder_is_a_small_hub_layout_digits_model():
    folder = default_model_dir()
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert (folder / name).is_file(), name
    assert (folder / "model.safetensors").stat().st_size < 5 * 1024 * 1024
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "convnext"
    assert config["id2label"] == {str(i): str(i) for i in range(10)}
    assert config["architectures"] == ["ConvNextForImageClassification"]


def test_heldout_fixture_is_disjoint_and_balanced(heldout):
    assert heldout.images.shape[1:] == (8, 8) and heldout.images.dtype == np.uint8
    assert len(heldout.images) == len(heldout.labels) == len(heldout.indices) >= 300
    assert len(np.unique(heldout.indices)) == len(heldout.indices)  # distinct sklearn images
    counts = np.bincount(heldout.labels, minlength=10)
    assert counts.min() >= 30, counts


def test_heldout_accuracy_at_least_97_percent(heldout, pt_logits):
    pred = pt_logits.argmax(-1)                      # (renderings, N)
    per_rendering = (pred == heldout.labels[None]).mean(axis=1)
    overall = float(per_rendering.mean())
    print(f"held-out accuracy {overall:.4f}; per rendering "
          + ", ".join(f"{r.tag} {a:.4f}" for r, a in zip(EVAL_RENDERINGS, per_rendering)))
    assert overall >= 0.97
    assert per_rendering.min() >= 0.95  # no way of writing the file is much worse than the rest


@pytest.mark.tf
def test_tf_twin_predicts_the_same_on_every_heldout_image(heldout_pixels, pt_logits):
    pytest.importorskip("convnext_tf")
    clf = load_classifier(default_model_dir(), "tf")
    tf_logits = np.stack([clf.logits(block) for block in heldout_pixels])
    assert np.array_equal(tf_logits.argmax(-1), pt_logits.argmax(-1))
    rel = np.abs(tf_logits - pt_logits).max() / max(1.0, np.abs(pt_logits).max())
    assert rel <= 1e-4


def _agreement_report(low: np.ndarray, fp32: np.ndarray) -> tuple[float, float]:
    """(top-1 agreement, largest |logit difference|) of a low-precision run against float32."""
    return float((low.argmax(-1) == fp32.argmax(-1)).mean()), float(np.abs(low - fp32).max())


@pytest.mark.slow  # bfloat16 kernels are slow on CPUs without bfloat16 instructions
def test_bf16_agrees_with_fp32_on_the_heldout_digits(heldout_pixels, pt_logits):
    """--precision bf16 (bfloat16 parameters and activations): top-1 as float32's on >= 99.5% of
    the held-out images. The largest logit difference is printed (pytest -s) and must show real
    bfloat16 rounding, not a float32 run."""
    import torch

    clf = load_classifier(default_model_dir(), "pt", "bf16")
    assert {p.dtype for p in clf.model.parameters()} == {torch.bfloat16}
    low = np.stack([clf.logits(block) for block in heldout_pixels])
    agreement, largest = _agreement_report(low, pt_logits)
    print(f"bf16 vs fp32 (PyTorch twin): top-1 agreement {agreement:.4f}, largest |logit diff| {largest:.4f}")
    assert agreement >= 0.995
    assert 1e-4 < largest < 0.05 * max(1.0, float(np.abs(pt_logits).max()))


@pytest.mark.slow
@pytest.mark.tf
def test_tf_mixed_bfloat16_agrees_with_fp32_on_the_heldout_digits(heldout_pixels, pt_logits):
    pytest.importorskip("convnext_tf")
    clf = load_classifier(default_model_dir(), "tf", "bf16")
    assert clf.model.dtype_policy.name == "mixed_bfloat16"
    low = np.stack([clf.logits(block) for block in heldout_pixels])
    agreement, largest = _agreement_report(low, pt_logits)
    print(f"bf16 vs fp32 (Keras twin, mixed_bfloat16): top-1 agreement {agreement:.4f}, "
          f"largest |logit diff| {largest:.4f}")
    assert agreement >= 0.995
    assert 1e-4 < largest < 0.05 * max(1.0, float(np.abs(pt_logits).max()))


def test_bundled_samples_cover_every_digit():
    names = [p.name for p in sample_image_paths()]
    assert len(names) >= 10
    parsed = [SAMPLE_NAME.fullmatch(n) for n in names]
    assert all(parsed), names
    assert sorted({m.group(1) for m in parsed}) == LABELS
    sizes = {int(m.group(3)) for m in parsed}
    assert min(sizes) >= 32 and max(sizes) <= 128 and len(sizes) >= 5
    assert {m.group(4) for m in parsed} == {"gray", "rgb"}


def _predict(*args, timeout=300):
    proc = subprocess.run([sys.executable, "-m", "convnext_common", "predict", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_predict_table_on_the_samples():
    """The first command of the quickstart: no arguments, the embedded model, the bundled samples."""
    out = _predict()
    rows = {}
    for line in out.splitlines():
        m = re.match(r"(digit_\d_\S+\.png)\s+(\S+)\s+([\d.]+)%", line)
        if m:
            rows[m.group(1)] = m.group(2)
    samples = sample_image_paths()
    assert set(rows) == {p.name for p in samples}
    for name, top1 in rows.items():
        assert top1 == SAMPLE_NAME.fullmatch(name).group(1), (name, top1)


@pytest.mark.tf
def test_predict_both_frameworks_json():
    pytest.importorskip("convnext_tf")
    doc = json.loads(_predict("--framework", "both", "--json", "--top-k", "2"))
    assert doc["frameworks"] == ["pt", "tf"]
    assert len(doc["results"]) == len(sample_image_paths())
    for result in doc["results"]:
        truth = SAMPLE_NAME.fullmatch(Path(result["image"]).name).group(1)
        for fw in ("pt", "tf"):
            top = result["top_k"][fw]
            assert len(top) == 2 and top[0]["label"] == truth
            assert top[0]["probability"] >= top[1]["probability"]
    diff = doc["pt_vs_tf"]
    assert diff["top1_agree"] == diff["images"] == len(doc["results"])
    assert diff["max_abs_logit_diff"] < 1e-3


def test_predict_own_files_and_folders(tmp_path, heldout):
    """Images given as files and as a folder; the top-k probabilities are a distribution's head."""
    folder = tmp_path / "mine"
    folder.mkdir()
    idx = [int(np.flatnonzero(heldout.labels == d)[1]) for d in (3, 8)]
    paths = []
    for i, rendering in zip(idx, (EVAL_RENDERINGS[2], EVAL_RENDERINGS[3])):
        p = folder / f"img{i}.png"
        render(heldout.images[i], rendering).save(p)
        paths.append(p)
    extra = tmp_path / "single.png"
    render(heldout.images[idx[0]], EVAL_RENDERINGS[5]).save(extra)
    doc = json.loads(_predict(str(folder), str(extra), "--json", "--top-k", "10", "--framework", "pt"))
    got = {Path(r["image"]).name: r["top_k"]["pt"] for r in doc["results"]}
    assert set(got) == {"img%d.png" % idx[0], "img%d.png" % idx[1], "single.png"}
    assert got["img%d.png" % idx[0]][0]["label"] == "3" and got["single.png"][0]["label"] == "3"
    assert got["img%d.png" % idx[1]][0]["label"] == "8"
    for top in got.values():
        assert sorted(t["label"] for t in top) == LABELS
        assert abs(sum(t["probability"] for t in top) - 1.0) < 1e-5


def test_evaluate_on_an_image_folder(tmp_path, heldout, capsys):
    from convnext_app import cli

    data = tmp_path / "digits"
    truth, files = [], []
    for d in range(10):
        (data / str(d)).mkdir(parents=True)
        for k, i in enumerate(np.flatnonzero(heldout.labels == d)[:4]):
            p = data / str(d) / f"{k}.png"
            render(heldout.images[i], EVAL_RENDERINGS[(d + k) % len(EVAL_RENDERINGS)]).save(p)
            truth.append(d)
            files.append(p)
    assert cli.main(["evaluate", "--data", str(data), "--json", "--framework", "pt"]) == 0
    doc = json.loads(capsys.readouterr().out)
    clf = load_classifier(default_model_dir(), "pt")
    pred = clf.logits(preprocess_files(load_processor(default_model_dir()), files)).argmax(-1)
    assert doc["images"] == 40
    assert doc["accuracy"] == pytest.approx(float((pred == np.array(truth)).mean()))
    matrix = np.array(doc["confusion"]["matrix"])
    assert doc["confusion"]["labels"] == LABELS and matrix.sum() == 40
    assert matrix.sum(axis=1).tolist() == [4] * 10
    assert np.trace(matrix) / 40 == pytest.approx(doc["accuracy"])
    assert doc["accuracy"] >= 0.9

    assert cli.main(["evaluate", "--data", str(data)]) == 0  # the readable report
    report = capsys.readouterr().out
    assert "accuracy:" in report and "confusion matrix" in report

    (data / "eleven").mkdir()
    (data / "eleven" / "x.png").write_bytes((data / "1" / "0.png").read_bytes())
    assert cli.main(["evaluate", "--data", str(data)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "eleven" in err[0]

"""Hub ids through every command: predict, evaluate, export, train --model ID, convert ID OUT.

Offline, from a hub cache laid out in a temporary HF_HOME (tests/hubcache.py); the numbers are
checked against what transformers and timm computed for the same weights and images
(tests/fixtures/hub/expected.npz, written by scripts/make_hub_fixtures.py).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, rel_err
from convnext_app import cli
from convnext_app.inference import sample_image_paths, softmax
from hubcache import FIXTURES, HUB_FIXTURES, build_cache

HF, HF_V2, TIMM = "test-org/convnext-hf", "test-org/convnextv2-hf", "timm/convnext_test.fixture"
IMAGES = {"china": FIXTURES / "images" / "china.jpg", "flower": FIXTURES / "images" / "flower.png"}
TOL = 1e-4
ROOT = REPO


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("hf_home")
    build_cache(home / "hub")
    return home


@pytest.fixture
def offline(monkeypatch, hf_home):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    return hf_home


@pytest.fixture(scope="module")
def refs():
    return dict(np.load(HUB_FIXTURES / "expected.npz"))


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def probabilities(doc, framework):
    """{image stem: probabilities in label order} from `predict --json --top-k <all>`."""
    labels = None
    out = {}
    for result in doc["results"]:
        top = result["top_k"][framework]
        labels = labels or sorted(t["label"] for t in top)
        out[Path(result["image"]).stem] = {t["label"]: t["probability"] for t in top}
    return out


def ordered(probs: dict, labels) -> np.ndarray:
    return np.array([probs[label] for label in labels])


# --- predict -----------------------------------------------------------------------------------------
def test_predict_hub_id_in_a_fresh_process_with_hf_home_and_offline(hf_home, refs):
    # what a user runs: HF_HOME and HF_HUB_OFFLINE in the environment, nothing else
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run([sys.executable, "-m", "convnext_common", "predict", *IMAGES.values(), "--model", HF,
                           "--top-k", "10", "--json"], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["model"] == HF
    labels = [f"digit_{i}" for i in range(10)]
    for stem, probs in probabilities(doc, "pt").items():
        assert rel_err(ordered(probs, labels), softmax(refs[f"hf_convnext_{stem}"])[0]) <= TOL


@pytest.mark.tf
def test_predict_v2_id_both_twins(offline, capsys, refs):
    doc = json.loads(run_cli(capsys, "predict", *IMAGES.values(), "--model", HF_V2, "--framework", "both",
                             "--top-k", "10", "--json"))
    labels = [f"digit_{i}" for i in range(10)]
    for framework in ("pt", "tf"):
        for stem, probs in probabilities(doc, framework).items():
            assert rel_err(ordered(probs, labels), softmax(refs[f"hf_convnextv2_{stem}"])[0]) <= TOL


@pytest.mark.tf
@pytest.mark.parametrize("name", [TIMM, "hf-hub:" + TIMM])
def test_predict_timm_id_both_twins_matches_timms_pipeline(offline, capsys, refs, name):
    # timm's own evaluation transform and model on the same image (tests/fixtures/hub/square.png)
    doc = json.loads(run_cli(capsys, "predict", HUB_FIXTURES / "square.png", "--model", name, "--framework", "both",
                             "--top-k", "10", "--json"))
    labels = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    for framework in ("pt", "tf"):
        probs = probabilities(doc, framework)["square"]
        assert rel_err(ordered(probs, labels), softmax(refs["timm_square"])[0]) <= TOL


def test_predict_errors_are_one_line(offline, capsys):
    for model, says in (("test-org/vit-hf", "is a 'vit' model (ViTForImageClassification), not a ConvNeXt"),
                        ("facebook/convnext-tiny-224", "not in the local hub cache")):
        assert cli.main(["predict", "--model", model]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and model in err and says in err


# --- evaluate ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("repo, key", [(HF, "hf_convnext"), (HF_V2, "hf_convnextv2")])
def test_evaluate_hub_id(offline, capsys, refs, tmp_path, repo, key):
    # each image filed under transformers' top-1 label, plus china.jpg under another label: 2 of 3 right
    china_top = int(refs[f"{key}_china"].argmax())
    for stem, path in IMAGES.items():
        folder = tmp_path / f"digit_{int(refs[f'{key}_{stem}'].argmax())}"
        folder.mkdir(exist_ok=True)
        shutil.copy(path, folder / path.name)
    wrong = tmp_path / f"digit_{(china_top + 1) % 10}"
    wrong.mkdir(exist_ok=True)
    shutil.copy(IMAGES["china"], wrong / "china_copy.jpg")
    doc = json.loads(run_cli(capsys, "evaluate", "--data", tmp_path, "--model", repo, "--json"))
    assert doc["model"] == repo and doc["images"] == 3
    assert doc["accuracy"] == pytest.approx(2 / 3)


# --- export ------------------------------------------------------------------------------------------
def test_export_onnx_from_timm_id(offline, capsys, tmp_path, inputs):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "timm.onnx"
    run_cli(capsys, "export", "--model", TIMM, "--format", "onnx", "--out", out, "--exporter", "torchscript")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    ref = dict(np.load(FIXTURES / "timm-convnext" / "expected.npz"))
    for key in ("pixel_values", "pixel_values_odd"):
        logits = session.run(None, {session.get_inputs()[0].name: inputs[key]})[0]
        assert rel_err(logits, ref[key.replace("pixel_values", "logits")]) <= TOL


# --- train -------------------------------------------------------------------------------------------
def test_train_fine_tunes_from_a_hub_id(offline, capsys, tmp_path, inputs):
    # the model's labels are the folder names (digit_0..digit_9): its head is kept; a vanishing
    # learning rate leaves the weights as they came from the hub, so the result still gives
    # transformers' logits
    data = tmp_path / "data"
    for split in ("train", "val"):
        for path in sample_image_paths():
            label = path.name.split("_")[1]
            (data / split / f"digit_{label}").mkdir(parents=True, exist_ok=True)
            shutil.copy(path, data / split / f"digit_{label}" / path.name)
    out = tmp_path / "out"
    run_cli(capsys, "train", "--data", data, "--model", HF, "--out", out, "--epochs", "1", "--lr", "1e-12",
            "--batch-size", "5", "--image-size", "32", "--quiet", "--device", "cpu")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["source"] == HF and metrics["new_head"] is False
    from convnext_pt import ConvNextForImageClassification

    model = ConvNextForImageClassification.from_pretrained(out)
    with torch.no_grad():
        logits = model(torch.from_numpy(inputs["pixel_values"])).logits.numpy()
    assert rel_err(logits, np.load(FIXTURES / "hf-convnext" / "expected.npz")["logits"]) <= TOL
    saved = json.loads((out / "preprocessor_config.json").read_text())
    assert saved["size"] == {"shortest_edge": 32} and saved["image_mean"] == [0.485, 0.456, 0.406]


def test_train_variant_names_are_not_hub_ids(offline, capsys, tmp_path):
    from convnext_app.training.pt import prepare_model

    setup = prepare_model("convnext-atto", ["a", "b"], 32, None, 0)
    assert setup.source == "convnext-atto" and setup.new_head


# --- convert -----------------------------------------------------------------------------------------
def test_convert_timm_id(offline, capsys, tmp_path, inputs):
    out = tmp_path / "converted"
    run_cli(capsys, "convert", TIMM, out, "--to", "pt", "--quiet")
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"]["0"] == "zero" and config["image_size"] == 96
    timm_cfg = json.loads((HUB_FIXTURES / "timm-convnext" / "data_config.json").read_text())
    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert pre["size"] == {"shortest_edge": timm_cfg["input_size"][-1]} and pre["resample"] == 2
    assert pre["crop_pct"] == timm_cfg["crop_pct"] and pre["image_mean"] == timm_cfg["mean"]
    from convnext_pt import ConvNextForImageClassification

    model = ConvNextForImageClassification.from_pretrained(out)
    with torch.no_grad():
        logits = model(torch.from_numpy(inputs["pixel_values"])).logits.numpy()
    assert rel_err(logits, np.load(FIXTURES / "timm-convnext" / "expected.npz")["logits"]) <= TOL


def test_convert_transformers_id_keeps_its_preprocessor(offline, capsys, tmp_path, inputs):
    out = tmp_path / "v2"
    run_cli(capsys, "convert", HF_V2, out, "--to", "pt", "--quiet")
    assert json.loads((out / "preprocessor_config.json").read_text()) == json.loads(
        (FIXTURES / "image-processor" / "hub_tiny_224" / "preprocessor_config.json").read_text())
    from convnext_pt import ConvNextV2ForImageClassification

    model = ConvNextV2ForImageClassification.from_pretrained(out)
    with torch.no_grad():
        logits = model(torch.from_numpy(inputs["pixel_values"])).logits.numpy()
    assert rel_err(logits, np.load(FIXTURES / "hf-convnextv2" / "expected.npz")["logits"]) <= TOL


def test_convert_errors_are_one_line(offline, capsys, tmp_path):
    assert cli.main(["convert", "facebook/convnext-tiny-224", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "HF_HUB_OFFLINE" in err and not (tmp_path / "x").exists()

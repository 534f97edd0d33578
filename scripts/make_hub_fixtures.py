"""Write tests/fixtures/hub/: what timm and transformers give for hub-layout ConvNeXt repos.

Run in a separate environment with the peers (they are not dependencies of this project):
    python -m venv /tmp/peer-venv && /tmp/peer-venv/bin/pip install torch==2.13.0 timm==1.0.31 transformers==4.57.6
    /tmp/peer-venv/bin/python scripts/make_hub_fixtures.py

Writes (all from the peers, with the weights of tests/fixtures/timm-convnext, hf-convnext, hf-convnextv2):
- timm-convnext/config.json: timm's own ``save_for_hf`` of the timm fixture model, with a
  non-default evaluation transform (96 px, crop_pct 0.96, bilinear, CLIP mean/std) and label
  names. The model.safetensors that save_for_hf writes holds exactly the fixture's tensors (checked
  here), so the tests reuse tests/fixtures/timm-convnext/model.safetensors beside it.
- timm-convnextv2/config.json: the same for the timm V2 fixture model (timm's default
  preprocessing for convnextv2_atto, whose test_input_size differs from its input_size), beside
  tests/fixtures/timm-convnextv2/model.safetensors, and its data_config.json as timm resolves it.
- timm-convnext/data_config.json: ``timm.data.resolve_data_config(model=...)`` of the model timm loads
  from that folder (``timm.create_model("local-dir:...", pretrained=True)``).
- square.png: a 160x160 crop of images/china.jpg (even crop margins in timm's and transformers'
  transforms alike).
- expected.npz: ``timm_square``: timm's logits for square.png through its default evaluation
  transform (``create_transform(**resolve_data_config(model=...))``) of the model loaded from the folder;
  ``hf_convnext_<image>`` / ``hf_convnextv2_<image>``: transformers' logits for images/china.jpg and
  images/flower.png through its ``ConvNextImageProcessor`` with
  image-processor/hub_tiny_224/preprocessor_config.json.
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

import timm
from timm.data import create_transform, resolve_data_config
from timm.models import save_for_hf
from transformers import ConvNextForImageClassification, ConvNextImageProcessor, ConvNextV2ForImageClassification

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
OUT = FIXTURES / "hub"
LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
DATA_CONFIG = {"input_size": (3, 96, 96), "crop_pct": 0.96, "interpolation": "bilinear",
               "mean": (0.48145466, 0.4578275, 0.40821073), "std": (0.26862954, 0.26130258, 0.27577711)}


def timm_repo(expected: dict) -> None:
    kwargs = json.loads((FIXTURES / "timm-convnext" / "timm_kwargs.json").read_text())
    model = timm.create_model("convnext_tiny", pretrained=False, **kwargs).eval()
    weights = load_file(str(FIXTURES / "timm-convnext" / "model.safetensors"))
    model.load_state_dict(weights)
    inputs = np.load(FIXTURES / "inputs.npz")
    with torch.no_grad():
        logits = model(torch.from_numpy(inputs["pixel_values"])).numpy()
    ref = np.load(FIXTURES / "timm-convnext" / "expected.npz")["logits"]
    assert np.abs(logits - ref).max() < 1e-5, "the timm fixture's weights do not reproduce its logits"

    tmp = Path(tempfile.mkdtemp())
    save_for_hf(model, tmp, model_config={"label_names": LABELS}, data_config=DATA_CONFIG,
                safe_serialization=True)
    saved = load_file(str(tmp / "model.safetensors"))
    assert saved.keys() == weights.keys() and all(torch.equal(saved[k], weights[k]) for k in weights)
    (OUT / "timm-convnext").mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp / "config.json", OUT / "timm-convnext" / "config.json")

    # what a timm user gets from that folder: timm reads its config.json and weights itself
    loaded = timm.create_model(f"local-dir:{tmp}", pretrained=True).eval()
    data_config = resolve_data_config(model=loaded)
    (OUT / "timm-convnext" / "data_config.json").write_text(json.dumps(data_config, indent=2) + "\n")
    square = Image.open(FIXTURES / "images" / "china.jpg").convert("RGB").crop((100, 0, 427 + 100, 427))
    square = square.resize((160, 160), Image.BILINEAR)
    square.save(OUT / "square.png")
    transform = create_transform(**data_config)
    pixels = transform(Image.open(OUT / "square.png").convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        expected["timm_square"] = loaded(pixels).numpy()
        assert np.abs(loaded(torch.from_numpy(inputs["pixel_values"])).numpy() - ref).max() < 1e-5
    shutil.rmtree(tmp)


def timm_v2_repo() -> None:
    """timm-convnextv2/config.json: save_for_hf of the timm V2 fixture model (default preprocessing)."""
    kwargs = json.loads((FIXTURES / "timm-convnextv2" / "timm_kwargs.json").read_text())
    model = timm.create_model("convnextv2_atto", pretrained=False, **kwargs).eval()
    weights = load_file(str(FIXTURES / "timm-convnextv2" / "model.safetensors"))
    model.load_state_dict(weights)
    tmp = Path(tempfile.mkdtemp())
    save_for_hf(model, tmp, safe_serialization=True)
    saved = load_file(str(tmp / "model.safetensors"))
    assert saved.keys() == weights.keys() and all(torch.equal(saved[k], weights[k]) for k in weights)
    (OUT / "timm-convnextv2").mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp / "config.json", OUT / "timm-convnextv2" / "config.json")
    loaded = timm.create_model(f"local-dir:{tmp}", pretrained=True).eval()
    data_config = resolve_data_config(model=loaded)
    (OUT / "timm-convnextv2" / "data_config.json").write_text(json.dumps(data_config, indent=2) + "\n")
    shutil.rmtree(tmp)


def transformers_repos(expected: dict) -> None:
    processor = ConvNextImageProcessor.from_pretrained(FIXTURES / "image-processor" / "hub_tiny_224")
    for name, cls in (("hf_convnext", ConvNextForImageClassification),
                      ("hf_convnextv2", ConvNextV2ForImageClassification)):
        model = cls.from_pretrained(FIXTURES / name.replace("_", "-")).eval()
        for image in ("china.jpg", "flower.png"):
            pixels = processor(Image.open(FIXTURES / "images" / image).convert("RGB"), return_tensors="pt")
            with torch.no_grad():
                expected[f"{name}_{Path(image).stem}"] = model(pixels["pixel_values"]).logits.numpy()


def main() -> int:
    expected: dict = {}
    timm_repo(expected)
    timm_v2_repo()
    transformers_repos(expected)
    np.savez(OUT / "expected.npz", **expected)
    print({k: v.shape for k, v in expected.items()}, f"timm {timm.__version__}", f"torch {torch.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

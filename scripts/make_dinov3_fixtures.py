"""Write tests/fixtures/dinov3-convnext/: transformers' DINOv3 ConvNeXt on small random weights.

transformers is a reference here, not a dependency: run this where it is installed (5.x has the
DINOv3 ConvNeXt classes; 4.57 too)::

    python scripts/make_dinov3_fixtures.py

For each DINOv3 size (tiny, small, base, large) a model with that size's depths at 1/16 of its
widths, every parameter re-drawn as the shared fixtures' (tests/fixtures/README.md: conv/linear
~ N(0, 1/fan_in), norm scales 1 + N(0, 0.1), biases N(0, 0.1), layer scale ~ U(0.2, 1.0)), saved
with ``save_pretrained`` into ``<size>/`` beside ``expected.npz``: the inputs (``pixel_values``
(2, 3, 64, 64), ``pixel_values_odd`` (1, 3, 71, 97)) and transformers' outputs for each
(``last_hidden_state``, ``pooler_output``, ``hidden_states_<i>``; ``_odd`` for the odd input).
``small`` uses ``layer_norm_eps=1e-5`` (not the default), so that the epsilon of every norm counts.
``tiny-backbone/`` is transformers' ``DINOv3ConvNextBackbone`` on tiny's weights with out_features
stem, stage2, stage4 (``feature_maps_<i>``, ``hidden_states_<i>``).

``processor/<setting>/``: transformers' DINOv3 image processor (the hub repos'
``DINOv3ViTImageProcessorFast``; it rescales, resizes in float with torch's antialiased filter, then
normalises) saved with ``save_pretrained``, and ``expected.npz``: its output (3, H, W) for each of
tests/fixtures/images' china.jpg, flower.png, portrait_427x150.png and tiny_17x23.png, opened with
``Image.open(path).convert("RGB")``. Settings: ``hub`` (the hub repos' config: 224 x 224, bilinear,
ImageNet statistics) and ``wide_bicubic`` (96 x 160, bicubic).

``official-tiny.pth`` and ``timm-tiny/``: tiny's weights (the tensors of ``tiny/model.safetensors``)
in the layouts of facebookresearch/dinov3's ``ConvNeXt`` state dict (``downsample_layers``,
``stages.{s}.{j}``, ``norm`` and its second name ``norms.3``; read from dinov3/models/convnext.py) and
of timm's ConvNeXt (``stem``, ``stages.{s}.downsample``, ``stages.{s}.blocks.{j}``, ``head.norm``) with a
timm ``config.json`` whose pretrained_cfg names the ``dinov3_lvd1689m`` tag and its licence. Their
outputs are tiny's ``expected.npz``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from helpers import make_torchvision_importable  # noqa: E402

make_torchvision_importable()  # before transformers imports torchvision

import transformers  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import DINOv3ConvNextBackbone, DINOv3ConvNextConfig, DINOv3ConvNextModel  # noqa: E402

OUT = REPO / "tests" / "fixtures" / "dinov3-convnext"
#: DINOv3's sizes (V1 trunks): depths and widths, the widths divided by 16 here
SIZES = {
    "tiny": ([3, 3, 9, 3], [96, 192, 384, 768]),
    "small": ([3, 3, 27, 3], [96, 192, 384, 768]),
    "base": ([3, 3, 27, 3], [128, 256, 512, 1024]),
    "large": ([3, 3, 27, 3], [192, 384, 768, 1536]),
}
EXTRA = {"small": {"layer_norm_eps": 1e-5}}


def redraw_(model: torch.nn.Module, seed: int) -> None:
    """The shared fixtures' re-draw, by transformers' DINOv3 parameter names (``gamma`` is layer scale)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "gamma":
                p.copy_(torch.rand(p.shape, generator=g) * 0.8 + 0.2)
            elif leaf == "bias":
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif p.ndim == 1:
                p.copy_(1 + torch.randn(p.shape, generator=g) * 0.1)
            else:
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(int(np.prod(p.shape[1:]))))


def outputs(model, x: torch.Tensor, suffix: str) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = model(x, output_hidden_states=True)
    named = {}
    for field in ("last_hidden_state", "pooler_output"):
        if getattr(out, field, None) is not None:
            named[field] = getattr(out, field)
    for i, f in enumerate(getattr(out, "feature_maps", None) or ()):
        named[f"feature_maps_{i}"] = f
    for i, h in enumerate(out.hidden_states):
        named[f"hidden_states_{i}"] = h
    return {k + suffix: v.numpy() for k, v in named.items()}


IMAGES = ("china.jpg", "flower.png", "portrait_427x150.png", "tiny_17x23.png")
PROCESSOR_SETTINGS = {"hub": {}, "wide_bicubic": {"size": {"height": 96, "width": 160}, "resample": 3}}


def write_processor_fixtures() -> None:
    from transformers.models.dinov3_vit.image_processing_dinov3_vit import DINOv3ViTImageProcessor

    for name, kwargs in PROCESSOR_SETTINGS.items():
        processor = DINOv3ViTImageProcessor(**kwargs)
        folder = OUT / "processor" / name
        processor.save_pretrained(folder)
        expected = {}
        for image in IMAGES:
            rgb = Image.open(REPO / "tests" / "fixtures" / "images" / image).convert("RGB")
            expected[image] = processor(rgb, return_tensors="pt").pixel_values[0].numpy()
        np.savez(folder / "expected.npz", **expected)


def official_name(name: str) -> str:
    """transformers' DINOv3 file name -> facebookresearch/dinov3's ConvNeXt state-dict name."""
    parts = name.split(".")
    if parts[0] == "layer_norm":
        return "norm." + parts[1]
    s = parts[1]
    if parts[2] == "downsample_layers":
        return f"downsample_layers.{s}.{parts[3]}.{parts[4]}"
    leaf = {"depthwise_conv": "dwconv", "layer_norm": "norm", "pointwise_conv1": "pwconv1",
            "pointwise_conv2": "pwconv2", "gamma": "gamma"}[parts[4]]
    return ".".join([f"stages.{s}.{parts[3]}.{leaf}"] + parts[5:])


def timm_name(name: str) -> str:
    """transformers' DINOv3 file name -> timm's ConvNeXt name."""
    parts = name.split(".")
    if parts[0] == "layer_norm":
        return "head.norm." + parts[1]
    s = parts[1]
    if parts[2] == "downsample_layers":
        return f"stem.{parts[3]}.{parts[4]}" if s == "0" else f"stages.{s}.downsample.{parts[3]}.{parts[4]}"
    leaf = {"depthwise_conv": "conv_dw", "layer_norm": "norm", "pointwise_conv1": "mlp.fc1",
            "pointwise_conv2": "mlp.fc2", "gamma": "gamma"}[parts[4]]
    return ".".join([f"stages.{s}.blocks.{parts[3]}.{leaf}"] + parts[5:])


def write_layout_fixtures() -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(OUT / "tiny" / "model.safetensors")
    official = {official_name(k): v for k, v in state.items()}
    official["norms.3.weight"], official["norms.3.bias"] = official["norm.weight"], official["norm.bias"]
    torch.save({k: v.clone() for k, v in official.items()}, OUT / "official-tiny.pth")
    timm_dir = OUT / "timm-tiny"
    timm_dir.mkdir()
    save_file({timm_name(k): v.contiguous() for k, v in state.items()}, timm_dir / "model.safetensors")
    config = {"architecture": "convnext_tiny", "num_classes": 0,
              "model_args": {"depths": SIZES["tiny"][0], "dims": [w // 16 for w in SIZES["tiny"][1]]},
              "pretrained_cfg": {"tag": "dinov3_lvd1689m", "license": "dinov3-license", "input_size": [3, 224, 224],
                                 "crop_pct": 1.0, "interpolation": "bicubic", "mean": [0.485, 0.456, 0.406],
                                 "std": [0.229, 0.224, 0.225], "num_classes": 0}}
    (timm_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    rng = np.random.default_rng(30)
    inputs = {"pixel_values": rng.standard_normal((2, 3, 64, 64)).astype(np.float32),
              "pixel_values_odd": rng.standard_normal((1, 3, 71, 97)).astype(np.float32)}
    for seed, (size, (depths, widths)) in enumerate(SIZES.items()):
        config = DINOv3ConvNextConfig(depths=depths, hidden_sizes=[w // 16 for w in widths], **EXTRA.get(size, {}))
        model = DINOv3ConvNextModel(config).eval()
        redraw_(model, seed)
        folder = OUT / size
        model.save_pretrained(folder)
        expected = dict(inputs)
        for key, x in inputs.items():
            expected.update(outputs(model, torch.from_numpy(x), key[len("pixel_values"):]))
        np.savez(folder / "expected.npz", **expected)
        if size == "tiny":
            backbone_config = DINOv3ConvNextConfig(depths=depths, hidden_sizes=config.hidden_sizes,
                                                   out_features=["stem", "stage2", "stage4"])
            backbone = DINOv3ConvNextBackbone(backbone_config).eval()
            backbone.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("layer_norm.")})
            backbone.save_pretrained(OUT / "tiny-backbone")
            expected = dict(inputs)
            for key, x in inputs.items():
                expected.update(outputs(backbone, torch.from_numpy(x), key[len("pixel_values"):]))
            np.savez(OUT / "tiny-backbone" / "expected.npz", **expected)
    write_processor_fixtures()
    write_layout_fixtures()
    (OUT / "writer.json").write_text(json.dumps({"transformers": transformers.__version__,
                                                 "torch": torch.__version__}, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

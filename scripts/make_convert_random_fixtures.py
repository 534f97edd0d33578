#!/usr/bin/env python3
"""Write tests/fixtures/convert_random/: seeded random ConvNeXt checkpoints written by the peer libraries
themselves, each with an input batch and the writer's own output on it.

Not part of the package and not run by the tests: the peers are not dependencies. Run it in separate
virtual environments (see tests/fixtures/convert_random/README.md):

    python scripts/make_convert_random_fixtures.py --part torch   # timm, torchvision, official, transformers
    python scripts/make_convert_random_fixtures.py --part keras   # tf-keras keras-applications (legacy h5)

Each case is a folder with the source file(s), ``expected.npz`` (``x``: the input as the source model
takes it, ``y``: its output) and ``case.json``:

- ``input``: the path to convert, relative to the case folder; ``args``: extra ``convnext convert`` options;
- ``expect``: ``"converted"`` or ``"refused"``, decided here by inspecting the *built* source model (its
  norm classes and eps, activation modules, conv dilations, pooling, stem, head), not by the converter's
  rules; ``reasons``: why a refused case cannot be expressed (the test checks the message names one);
- ``output``: ``logits``, ``pooler_output`` or ``feature_map`` (the writer's main output);
- ``input_layout``: ``nchw`` (normalised) or, for keras-applications, ``nhwc_0_255`` / ``nhwc``.

Every parameter is re-drawn (conv/linear ~ N(0, 1/fan_in), norm scales 1 + N(0, 0.1), biases
N(0, 0.1), layer scale and GRN ~ U(0.2, 1.0)) so that every block changes the output.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "convert_random"


# --- shared -------------------------------------------------------------------------------------------
def write_case(case_id: str, meta: dict, x: np.ndarray, y: np.ndarray | None) -> Path:
    """case.json, and for a case that must convert, expected.npz (a refused one needs no numbers)."""
    folder = OUT / case_id
    (folder / "case.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    if meta["expect"] == "converted":  # x holds float16 values (see input_batch): stored as such, half the size
        assert np.array_equal(x.astype(np.float16).astype(np.float32), x)
        np.savez(folder / "expected.npz", x=x.astype(np.float16), y=np.asarray(y, np.float32))
    return folder


def fresh_folder(case_id: str) -> Path:
    folder = OUT / case_id
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def input_batch(rng: np.random.Generator, channels: int, total_stride: int) -> np.ndarray:
    """A 2-image batch of odd size, at least one output pixel past the total stride."""
    base = max(total_stride, 32)
    h = base + int(rng.integers(1, 12))
    w = base + int(rng.integers(1, 12))
    return half_exact(rng.standard_normal((2, channels, h, w)))


def half_exact(x: np.ndarray) -> np.ndarray:
    """float32 values that float16 holds exactly, so that the stored inputs are half the size."""
    return x.astype(np.float16).astype(np.float32)


def redraw_torch(model, seed: int) -> None:
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if "grn" in name or leaf in ("gamma", "layer_scale", "layer_scale_parameter"):
                p.copy_(torch.rand(p.shape, generator=g) * 0.8 + 0.2)
            elif p.ndim >= 2:
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
            elif leaf == "bias":
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            else:  # a norm's scale
                p.copy_(1 + torch.randn(p.shape, generator=g) * 0.1)


# --- timm: what the built model computes, judged from its modules ------------------------------------
def timm_refusal_reasons(model) -> list[str]:
    """Why a built timm ConvNeXt cannot be written in the hub layout (empty: it can)."""
    import torch.nn as nn
    from timm.layers import GELU, GELUTanh, LayerNorm, LayerNorm2d, QuickGELU

    reasons = set()
    mappable = (GELU, GELUTanh, QuickGELU, nn.GELU, nn.ReLU, nn.ReLU6, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh,
                nn.Identity)
    for name, m in model.named_modules():
        if isinstance(m, (LayerNorm, LayerNorm2d, nn.LayerNorm)):
            if m.bias is None:
                reasons.add("norm")
            elif abs(m.eps - 1e-6) > 1e-12 and not name.startswith("head."):
                reasons.add("norm_eps")
        elif isinstance(m, (nn.GroupNorm, nn.BatchNorm2d)) or "rmsnorm" in type(m).__name__.lower() \
                or "simplenorm" in type(m).__name__.lower():
            reasons.add("norm")
        if name.endswith("mlp.act"):
            if isinstance(m, nn.LeakyReLU):
                if m.negative_slope != 0.01:
                    reasons.add("activation")
            elif isinstance(m, nn.GELU) and m.approximate not in ("none", "tanh"):
                reasons.add("activation")
            elif not isinstance(m, mappable):
                reasons.add("activation")
        if isinstance(m, nn.Conv2d):
            if m.dilation != (1, 1):
                reasons.add("dilation")
            if name.endswith("conv_dw") and m.kernel_size != (7, 7):
                reasons.add("kernel")
    stem = [m for m in model.stem if isinstance(m, nn.Conv2d)]
    if len(stem) != 1:
        reasons.add("stem")
    elif stem[0].kernel_size != stem[0].stride:
        reasons.add("stem")
    if not isinstance(model.stages[0].downsample, nn.Identity):
        reasons.add("stage0_stride")
    for s, stage in enumerate(model.stages):
        if s and not isinstance(stage.downsample, nn.Identity):
            conv = stage.downsample[1]
            if conv.stride != (2, 2):
                reasons.add("dilation")
    if not isinstance(model.norm_pre, nn.Identity):
        reasons.add("head_norm_first")
    if not isinstance(getattr(model.head, "pre_logits", nn.Identity()), nn.Identity):
        reasons.add("head_mlp")
    pool = getattr(model.head.global_pool, "pool_type", "avg")
    if pool != "avg":
        reasons.add("pooling")
    blocks = [b for st in model.stages for b in st.blocks]
    if any(b.gamma is not None for b in blocks) and any(hasattr(b.mlp, "grn") for b in blocks):
        reasons.add("grn_and_layer_scale")
    return sorted(reasons)


#: architectures drawn, the first four (whose factories set nothing the weights do not show) most often
TIMM_ARCHS = ["convnext_tiny", "convnext_atto", "convnextv2_atto", "convnextv2_tiny", "test_convnext2",
              "test_convnext", "convnext_xxlarge", "convnext_zepto_rms", "convnext_nano_ols", "convnext_tiny_hnf",
              "convnext_large_mlp"]
TIMM_ARCH_WEIGHTS = [8, 8, 5, 5, 4, 1, 1, 1, 1, 1, 1]
TIMM_ACTS = ["relu", "gelu_tanh", "silu", "quick_gelu", "mish", "leaky_relu", "swish", "tanh", "hard_swish", "elu"]


def draw_depths(rng, n=4, zero_p=0.3):
    depths = [int(rng.integers(1, 3)) for _ in range(n)]
    if rng.random() < zero_p:
        depths[int(rng.integers(0, n))] = 0
    if sum(depths) < 2:
        depths[-1] = 2
    return depths


def draw_dims(rng, n=4):
    start = int(rng.choice([4, 6]))
    dims = [start]
    for _ in range(n - 1):
        dims.append(dims[-1] + int(rng.choice([2, 2, 4])))
    return dims


def draw_timm_kwargs(rng, hidden_ok: bool) -> tuple[str, dict]:
    """(architecture, kwargs). ``hidden_ok``: may draw settings the weights do not show (only for a
    container that records them: a hub folder's config.json or a training checkpoint's args)."""
    names, weights = TIMM_ARCHS, TIMM_ARCH_WEIGHTS
    if not hidden_ok:  # a bare state dict: only architectures whose settings all show in the weights
        names, weights = names[:4] + names[8:], weights[:4] + weights[8:]
    arch = str(rng.choice(names, p=np.array(weights) / sum(weights)))
    kw: dict = {"depths": draw_depths(rng), "dims": draw_dims(rng), "num_classes": int(rng.choice([5, 5, 5, 0, 1]))}
    if arch == "convnext_large_mlp":
        kw["head_hidden_size"] = 12
    r = rng.random
    if r() < 0.3:
        kw["conv_mlp"] = bool(r() < 0.5)
    if r() < 0.15:
        kw["use_grn"], kw["ls_init_value"] = True, (None if r() < 0.8 else 1e-6)
    elif r() < 0.15:
        kw["ls_init_value"] = None
    if r() < 0.2:
        kw["conv_bias"] = False
    if r() < 0.2:
        kw["patch_size"] = int(rng.choice([1, 3, 2, 8, 16]))
    if r() < 0.15:
        kw["in_chans"] = int(rng.choice([1, 4]))
    if r() < 0.05:
        kw["kernel_sizes"] = 5
    if r() < 0.03:
        kw["head_norm_first"] = True
    if hidden_ok:
        if r() < 0.35:
            kw["act_layer"] = str(rng.choice(TIMM_ACTS))
        if r() < 0.08:
            kw["output_stride"] = int(rng.choice([16, 8]))
        if r() < 0.15:
            kw["norm_eps"] = float(rng.choice([1e-6, 1e-5, 1e-2]))
        if arch == "test_convnext2" and r() < 0.6:
            kw["norm_eps"] = 1e-6  # test_convnext2 with the hub's eps: only its gelu_tanh remains, expressible
        if r() < 0.1:
            kw["norm_layer"] = str(rng.choice(["layernorm2d", "groupnorm1", "rmsnorm2d"]))
            if kw["norm_layer"] == "groupnorm1":
                kw["conv_mlp"] = True  # timm builds other norms only with conv MLPs
        if r() < 0.1:
            kw["global_pool"] = str(rng.choice(["max", "avgmax", "avg"])) if kw["num_classes"] else ""
    return arch, kw


def total_stride(kw: dict, n_stages=4) -> int:
    return int(kw.get("patch_size", 4)) * 2 ** (n_stages - 1)


def make_timm_case(i: int, rng) -> None:
    import torch
    import timm
    from timm.models import save_for_hf

    container = str(rng.choice(["hub", "hub", "raw", "train"]))
    while True:
        arch, kw = draw_timm_kwargs(rng, hidden_ok=container != "raw")
        seed = int(rng.integers(1 << 30))
        torch.manual_seed(seed)
        try:
            model = timm.create_model(arch, pretrained=False, **kw).eval()
            break
        except (AssertionError, ValueError, TypeError):  # a combination timm does not build: draw again
            continue
    redraw_torch(model, seed)
    reasons = timm_refusal_reasons(model)
    x = input_batch(rng, kw.get("in_chans", 3), total_stride(kw))
    y = None
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    if out.ndim == 2:
        y = out.numpy()
    elif not reasons:  # a map out of timm's head: only with global_pool="" (the norm on every pixel)
        reasons = ["pooling"]
    case_id = f"timm-{i:02d}"
    folder = fresh_folder(case_id)
    args: list[str] = []
    if container == "hub":
        save_for_hf(model, folder / "hub", safe_serialization=bool(rng.random() < 0.7))
        rel = "hub"
    elif container == "raw":
        from safetensors.torch import save_file

        sd = {k: v.contiguous() for k, v in model.state_dict().items()}
        if rng.random() < 0.5:
            save_file(sd, str(folder / "model.safetensors"))
            rel = "model.safetensors"
        else:
            torch.save(sd, folder / "pytorch_model.bin")
            rel = "pytorch_model.bin"
    else:  # timm train.py's CheckpointSaver layout, with an EMA that differs from the model
        ema = timm.create_model(arch, pretrained=False, **kw).eval()
        redraw_torch(ema, seed + 1)
        use_ema = bool(rng.random() < 0.5)
        if use_ema:
            with torch.no_grad():
                y = ema(torch.from_numpy(x)).numpy() if y is not None else None
            args.append("--ema")
        ns = argparse.Namespace(model=arch, model_kwargs={k: v for k, v in kw.items()
                                                          if k not in ("num_classes", "in_chans")},
                                gp=None, num_classes=kw["num_classes"], in_chans=kw.get("in_chans"), lr=1e-3,
                                epochs=3, opt="adamw")
        opt = torch.optim.AdamW(model.parameters())
        torch.save({"epoch": 2, "arch": arch, "state_dict": model.state_dict(), "optimizer": opt.state_dict(),
                    "version": 2, "args": ns, "state_dict_ema": ema.state_dict(), "metric": 0.5},
                   folder / "checkpoint-2.pth.tar")
        rel = "checkpoint-2.pth.tar"
    expect = "refused" if reasons else "converted"
    meta = {"source": "timm", "writer": f"timm {timm.__version__} ({container})", "input": rel, "args": args,
            "expect": expect, "reasons": reasons, "output": "logits" if kw["num_classes"] else "pooler_output",
            "input_layout": "nchw", "description": f"{arch} {json.dumps(kw, sort_keys=True)}"}
    write_case(case_id, meta, x, y if expect == "converted" else None)


# --- torchvision --------------------------------------------------------------------------------------
def make_torchvision_case(i: int, rng) -> None:
    import torch
    import torchvision
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    n = int(rng.choice([3, 4, 4, 5]))
    depths = draw_depths(rng, n)
    dims = draw_dims(rng, n)
    extra_downsample = bool(rng.random() < 0.25) and n < 5  # a last CNBlockConfig with out_channels: ends downsampling
    settings = [CNBlockConfig(dims[s], dims[s + 1] if s + 1 < n else (dims[s] + 4 if extra_downsample else None),
                              depths[s]) for s in range(n)]
    classes = int(rng.choice([3, 6]))
    seed = int(rng.integers(1 << 30))
    torch.manual_seed(seed)
    model = ConvNeXt(settings, num_classes=classes).eval()
    redraw_torch(model, seed)
    x = input_batch(rng, 3, 4 * 2 ** (n - 1 + extra_downsample))
    with torch.no_grad():
        y = model(torch.from_numpy(x)).numpy()
    case_id = f"torchvision-{i:02d}"
    folder = fresh_folder(case_id)
    args: list[str] = []
    if rng.random() < 0.5:
        torch.save(model.state_dict(), folder / "convnext.pth")
        rel = "convnext.pth"
    else:  # torchvision's references/classification/train.py checkpoint, EMA via AveragedModel
        from torch.optim.swa_utils import AveragedModel

        ema_model = ConvNeXt(settings, num_classes=classes).eval()
        redraw_torch(ema_model, seed + 1)
        ema = AveragedModel(ema_model)
        if rng.random() < 0.5:
            with torch.no_grad():
                y = ema_model(torch.from_numpy(x)).numpy()
            args.append("--ema")
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
        ns = argparse.Namespace(model="convnext_tiny", lr=0.1, epochs=10, model_ema=True, weights=None,
                                data_path="/data", label_smoothing=0.1)
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "lr_scheduler": sched.state_dict(),
                    "epoch": 4, "args": ns, "model_ema": ema.state_dict()}, folder / "checkpoint.pth")
        rel = "checkpoint.pth"
    meta = {"source": "torchvision", "writer": f"torchvision {torchvision.__version__}", "input": rel, "args": args,
            "expect": "converted", "reasons": [], "output": "logits", "input_layout": "nchw",
            "description": f"block_setting {[(c.input_channels, c.out_channels, c.num_layers) for c in settings]}"}
    write_case(case_id, meta, x, y)


# --- official (facebookresearch ConvNeXt / ConvNeXt-V2) --------------------------------------------------
def timm_to_official(sd: dict) -> dict:
    """timm ConvNeXt names -> the official repos' (models/convnext.py, models/convnextv2.py): the inverse of
    timm's checkpoint_filter_fn, which the generator checks by loading the result back through it."""
    import re

    out = {}
    for k, v in sd.items():
        k2 = k.replace("stem.", "downsample_layers.0.")
        k2 = re.sub(r"stages\.(\d+)\.downsample\.(\d+)", r"downsample_layers.\1.\2", k2)
        k2 = re.sub(r"stages\.(\d+)\.blocks\.(\d+)", r"stages.\1.\2", k2)
        k2 = k2.replace("conv_dw", "dwconv").replace("mlp.fc", "pwconv")
        if ".mlp.grn." in k2:
            k2 = k2.replace("mlp.grn.weight", "grn.gamma").replace("mlp.grn.bias", "grn.beta")
            v = v.reshape(1, 1, 1, -1)
        k2 = k2.replace("head.fc.", "head.").replace("head.norm.", "norm.")
        out[k2] = v
    return out


def make_official_case(i: int, rng) -> None:
    import torch
    import timm
    from timm.models.convnext import ConvNeXt, checkpoint_filter_fn

    v2 = bool(rng.random() < 0.5)
    kw = {"depths": draw_depths(rng), "dims": draw_dims(rng), "num_classes": int(rng.choice([4, 9]))}
    if v2:
        kw.update(use_grn=True, ls_init_value=None)
    elif rng.random() < 0.25:
        kw["ls_init_value"] = None  # the official V1 with layer_scale_init_value=0 has no gamma
    if rng.random() < 0.2:
        kw["in_chans"] = 1
    seed = int(rng.integers(1 << 30))
    torch.manual_seed(seed)
    # timm's class itself (create_model drops None arguments such as ls_init_value=None); Linear MLPs: the official math
    model = ConvNeXt(**kw).eval()
    redraw_torch(model, seed)
    official = timm_to_official(model.state_dict())
    back = checkpoint_filter_fn(dict(official), model)  # timm's own reading of an official checkpoint
    assert sorted(back) == sorted(model.state_dict()), "official naming does not round-trip through timm"
    for k, v in model.state_dict().items():
        assert torch.equal(back[k].reshape(v.shape), v), k
    x = input_batch(rng, kw.get("in_chans", 3), 32)
    with torch.no_grad():
        y = model(torch.from_numpy(x)).numpy()
    case_id = f"official-{i:02d}"
    folder = fresh_folder(case_id)
    args: list[str] = []
    if rng.random() < 0.4:
        torch.save({"model": official}, folder / "checkpoint.pth")
    else:  # main.py's save_model: model, optimizer, epoch, scaler, args, model_ema
        ema = ConvNeXt(**kw).eval()
        redraw_torch(ema, seed + 1)
        if rng.random() < 0.5:
            with torch.no_grad():
                y = ema(torch.from_numpy(x)).numpy()
            args.append("--ema")
        opt = torch.optim.AdamW(model.parameters(), lr=4e-3)
        ns = argparse.Namespace(model="convnextv2_atto" if v2 else "convnext_tiny", drop_path=0.1, input_size=224,
                                layer_scale_init_value=1e-6, model_ema=True, model_ema_decay=0.9999, lr=4e-3,
                                output_dir="/out", update_freq=1)
        torch.save({"model": official, "optimizer": opt.state_dict(), "epoch": 7,
                    "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                               "_growth_tracker": 0}, "args": ns,
                    "model_ema": timm_to_official(ema.state_dict())}, folder / "checkpoint.pth")
    meta = {"source": "official", "writer": f"official {'ConvNeXt-V2' if v2 else 'ConvNeXt'} layout; outputs by "
                                            f"timm {timm.__version__} (same math)",
            "input": "checkpoint.pth", "args": args, "expect": "converted", "reasons": [], "output": "logits",
            "input_layout": "nchw", "description": json.dumps(kw, sort_keys=True)}
    write_case(case_id, meta, x, y)


# --- transformers ---------------------------------------------------------------------------------------
def make_transformers_case(i: int, rng) -> None:
    import torch
    import transformers
    from transformers import ConvNextConfig, ConvNextV2Config

    v2 = bool(rng.random() < 0.4)
    n = int(rng.choice([3, 4, 4, 5]))
    patch = int(rng.choice([4, 4, 2, 8] if n < 5 else [1, 2]))  # a total stride of at most 64: small inputs
    cfg_kw = dict(num_channels=int(rng.choice([3, 3, 1, 4])), patch_size=patch,
                  num_stages=n, depths=draw_depths(rng, n), hidden_sizes=draw_dims(rng, n),
                  hidden_act=str(rng.choice(["gelu", "gelu", "relu", "gelu_new", "silu", "quick_gelu"])),
                  layer_norm_eps=float(rng.choice([1e-12, 1e-6, 1e-3])), num_labels=int(rng.choice([2, 7])))
    if not v2:
        cfg_kw["layer_scale_init_value"] = float(rng.choice([1e-6, 0.0]))
    kind = str(rng.choice(["ForImageClassification", "ForImageClassification", "Model", "Backbone"]))
    if kind == "Backbone":
        stages = [f"stage{s}" for s in range(1, n + 1)]
        cfg_kw["out_features"] = stages[-2:]
    config = (ConvNextV2Config if v2 else ConvNextConfig)(**cfg_kw)
    cls = getattr(transformers, ("ConvNextV2" if v2 else "ConvNext") + kind)
    seed = int(rng.integers(1 << 30))
    torch.manual_seed(seed)
    model = cls(config).eval()
    redraw_torch(model, seed)
    x = input_batch(rng, cfg_kw["num_channels"], cfg_kw["patch_size"] * 2 ** (n - 1))
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    y = {"ForImageClassification": lambda: out.logits, "Model": lambda: out.pooler_output,
         "Backbone": lambda: out.feature_maps[-1]}[kind]().numpy()
    case_id = f"transformers-{i:02d}"
    folder = fresh_folder(case_id)
    model.save_pretrained(folder / "hub", safe_serialization=bool(rng.random() < 0.7))
    meta = {"source": "hf", "writer": f"transformers {transformers.__version__} {cls.__name__}", "input": "hub",
            "args": [], "expect": "converted", "reasons": [],
            "output": {"ForImageClassification": "logits", "Model": "pooler_output", "Backbone": "feature_map"}[kind],
            "input_layout": "nchw", "description": json.dumps(cfg_kw, sort_keys=True)}
    write_case(case_id, meta, x, y)


# --- keras-applications (tf-keras: the legacy save_weights layout) --------------------------------------
def make_keras_cases(rng, count: int) -> None:
    import tf_keras
    from tf_keras.src.applications import convnext  # the builder behind ConvNeXtTiny etc., with free depths and widths

    # every head keras-applications builds: the top, and without it each pooling (None and "max" refused)
    heads = [(True, None), (False, "avg"), (False, None), (False, "max"), (True, None), (False, "avg")]
    for i in range(count):
        depths, dims = draw_depths(rng), draw_dims(rng)
        top, pooling = heads[i % len(heads)]
        preprocessing = bool(rng.random() < 0.75)
        classes = int(rng.choice([3, 5]))
        h, w = 32 + int(rng.integers(1, 18)), 32 + int(rng.integers(1, 18))
        # a model built after another in the same session gets numbered layer names (layer_normalization_1)
        for _ in range(int(rng.integers(0, 2))):
            convnext.ConvNeXt(depths=[1, 1, 1, 1], projection_dims=[4, 4, 4, 4], include_top=False, pooling="avg",
                              weights=None, input_shape=(32, 32, 3), model_name="warmup")
        model = convnext.ConvNeXt(depths=depths, projection_dims=dims, include_top=top, pooling=pooling, weights=None,
                                  classes=classes, include_preprocessing=preprocessing, input_shape=(h, w, 3),
                                  model_name=f"convnext_r{i}", classifier_activation=None)
        wrng = np.random.default_rng(int(rng.integers(1 << 30)))
        new = []
        for v in model.weights:
            name, shape = v.name, tuple(v.shape)
            if "layer_scale" in name or "grn" in name:
                new.append(wrng.uniform(0.2, 1.0, shape))
            elif len(shape) >= 2:
                new.append(wrng.standard_normal(shape) / math.sqrt(int(np.prod(shape[:-1]))))
            elif "bias" in name or "beta" in name:
                new.append(wrng.standard_normal(shape) * 0.1)
            elif "gamma" in name:
                new.append(1 + wrng.standard_normal(shape) * 0.1)
            else:  # Normalization mean/variance/count: keep
                new.append(v.numpy())
        model.set_weights([a.astype(np.float32) for a in new])
        if preprocessing:
            x = half_exact(rng.uniform(0, 255, (2, h, w, 3)))
        else:
            x = half_exact(rng.standard_normal((2, h, w, 3)))
        y = model(x, training=False).numpy()
        case_id = f"keras-{i:02d}"
        folder = fresh_folder(case_id)
        model.save_weights(str(folder / "convnext.h5"))
        reasons = [] if top or pooling == "avg" else ["pooling"]
        meta = {"source": "keras", "writer": f"tf-keras {tf_keras.__version__} applications.convnext.ConvNeXt, "
                                             f"save_weights (legacy h5)",
                "input": "convnext.h5", "args": [], "expect": "refused" if reasons else "converted", "reasons": reasons,
                "output": "logits" if top else "pooler_output",
                "input_layout": "nhwc_0_255" if preprocessing else "nhwc",
                "description": json.dumps(dict(depths=depths, projection_dims=dims, include_top=top, pooling=pooling,
                                               include_preprocessing=preprocessing, classes=classes))}
        write_case(case_id, meta, x, y if not reasons else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["torch", "keras"], required=True)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.part == "torch":
        rng = np.random.default_rng(args.seed)
        for i in range(32):
            make_timm_case(i, rng)
        for i in range(5):
            make_torchvision_case(i, rng)
        for i in range(5):
            make_official_case(i, rng)
        for i in range(8):
            make_transformers_case(i, rng)
    else:
        make_keras_cases(np.random.default_rng(args.seed + 1), 6)


if __name__ == "__main__":
    main()

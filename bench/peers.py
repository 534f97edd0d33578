"""The contenders: zero-argument callables that run one workload, for ours and each installed peer.

Every model gets the same random weights' shape (published variant, 1000 classes) and the same
input batch; each callable returns after the logits are computed.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = [ROOT / "tests" / "fixtures" / "images" / n for n in ("china.jpg", "flower.png")]


_ONNX_FILES: dict[str, Path] = {}  # variant -> exported file, shared by the runtime contenders


def _try(name: str, build: Callable[[], Callable[[], object]], out: dict, errors: dict) -> None:
    try:
        out[name] = build()
    except ImportError as e:
        errors[name] = f"not installed ({e.name})"
    except Exception as e:  # noqa: BLE001 - a broken peer is reported, not fatal
        errors[name] = f"{type(e).__name__}: {e}"[:200]


def model_contenders(variant: str, x: np.ndarray, only: list[str] | None = None,
                     compile_pt: bool = True) -> dict[str, Callable[[], object]]:
    from convnext_common import ConvNextConfig

    config = ConvNextConfig.from_variant(variant, num_labels=1000)
    xt = torch.from_numpy(x)
    builders: dict[str, Callable[[], Callable[[], object]]] = {}

    def torch_runner(model, inp=xt):
        model.eval()

        def run():
            with torch.inference_mode():
                return model(inp)
        return run

    def ours_pt():
        from convnext_pt import ConvNextForImageClassification

        return torch_runner(ConvNextForImageClassification(config))

    def ours_pt_compiled():
        from convnext_pt import ConvNextForImageClassification

        model = torch.compile(ConvNextForImageClassification(config).eval(), fullgraph=True)
        return torch_runner(model, xt.contiguous(memory_format=torch.channels_last))

    def ours_pt_bf16():
        from convnext_pt import ConvNextForImageClassification

        return torch_runner(ConvNextForImageClassification(config).to(torch.bfloat16), xt.to(torch.bfloat16))

    def ours_pt_autocast_bf16():
        from convnext_pt import ConvNextForImageClassification

        model = ConvNextForImageClassification(config).eval()

        def run():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                return model(xt)
        return run

    def onnx_file() -> Path:
        """The twin's verified ONNX export (made once per variant, dynamic batch and size)."""
        if variant not in _ONNX_FILES:
            import tempfile

            from convnext_pt import ConvNextForImageClassification
            from convnext_pt.export import export_onnx

            path = Path(tempfile.mkdtemp(prefix="bench-onnx-")) / f"convnext-{variant}.onnx"
            export_onnx(ConvNextForImageClassification(config).eval(), path, image_size=(x.shape[2], x.shape[3]))
            _ONNX_FILES[variant] = path
        return _ONNX_FILES[variant]

    def onnxruntime_():
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = ort.InferenceSession(str(onnx_file()), sess_options=options, providers=["CPUExecutionProvider"])
        return lambda: session.run(None, {"pixel_values": x})

    def openvino_(precision: str):
        def build():
            import openvino as ov

            hint = {} if precision == "default" else {"INFERENCE_PRECISION_HINT": precision}
            compiled = ov.Core().compile_model(str(onnx_file()), "CPU",
                                               {"INFERENCE_NUM_THREADS": torch.get_num_threads(), **hint})
            return lambda: compiled(x)
        return build

    def calibration() -> np.ndarray:
        """Calibration pixels for the int8 contenders: the benchmark's weights are random, so any
        inputs of the right size give ranges as meaningful as photos would."""
        return np.random.default_rng(1).standard_normal((16, 3, x.shape[2], x.shape[3])).astype(np.float32)

    def ours_int8():
        """`convnext quantize`'s model: NNCF's transformer scheme (norms and depthwise in floating point)."""
        import openvino as ov

        from convnext_app.quantization import quantize_model
        from convnext_pt import ConvNextForImageClassification

        model = ConvNextForImageClassification(config).eval()
        quantized, _ = quantize_model(model, calibration(), min_agreement=0.0, max_rel=float("inf"))
        compiled = ov.Core().compile_model(quantized, "CPU", {"INFERENCE_NUM_THREADS": torch.get_num_threads()})
        return lambda: compiled(x)

    def openvino_int8_nncf():
        """NNCF's default scheme on the same ONNX file: every convolution and MatMul in int8."""
        import contextlib
        import sys

        import nncf
        import openvino as ov

        core = ov.Core()
        samples = calibration()
        with contextlib.redirect_stdout(sys.stderr):
            quantized = nncf.quantize(core.read_model(str(onnx_file())),
                                      nncf.Dataset([samples[i:i + 1] for i in range(len(samples))]))
        compiled = core.compile_model(quantized, "CPU", {"INFERENCE_NUM_THREADS": torch.get_num_threads()})
        return lambda: compiled(x)

    def timm_():
        import timm

        return torch_runner(timm.create_model(f"convnext_{variant}", pretrained=False))

    def torchvision_():
        import torchvision

        return torch_runner(getattr(torchvision.models, f"convnext_{variant}")(weights=None))

    def transformers_pt():
        import transformers

        cfg = transformers.ConvNextConfig(depths=config.depths, hidden_sizes=config.hidden_sizes, num_labels=1000)
        return torch_runner(transformers.ConvNextForImageClassification(cfg))

    def ours_tf():
        from convnext_tf import TFConvNextForImageClassification

        import tensorflow as tf

        model = TFConvNextForImageClassification(config)
        # the graph mode that Keras' predict/fit use; outputs as a tuple inside tf.function
        fn = tf.function(lambda v: model(v, training=False, return_dict=False)[0])
        return lambda: fn(x).numpy()

    def keras_applications():
        import keras

        builder = getattr(keras.applications, f"ConvNeXt{variant.capitalize()}")
        model = builder(weights=None, include_preprocessing=False)
        nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        return lambda: model(nhwc, training=False).numpy()

    def keras_applications_xla():
        import keras
        import tensorflow as tf

        builder = getattr(keras.applications, f"ConvNeXt{variant.capitalize()}")
        model = builder(weights=None, include_preprocessing=False)
        nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        fn = tf.function(lambda v: model(v, training=False), jit_compile=True)
        return lambda: fn(nhwc).numpy()

    def transformers_tf():
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        import transformers

        cfg = transformers.ConvNextConfig(depths=config.depths, hidden_sizes=config.hidden_sizes, num_labels=1000)
        model = transformers.TFConvNextForImageClassification(cfg)
        return lambda: model(x, training=False).logits.numpy()

    builders = {"ours-pt": ours_pt, "ours-pt-bf16": ours_pt_bf16, "ours-pt-autocast-bf16": ours_pt_autocast_bf16,
                "onnxruntime": onnxruntime_, "openvino-f32": openvino_("f32"),
                "openvino-default": openvino_("default"), "ours-int8": ours_int8,
                "openvino-int8-nncf": openvino_int8_nncf, "timm": timm_, "torchvision": torchvision_, "transformers-pt": transformers_pt}
    if compile_pt:
        builders["ours-pt-compiled"] = ours_pt_compiled
    builders.update({"ours-tf": ours_tf, "keras-applications": keras_applications,
                     "keras-applications-xla": keras_applications_xla, "transformers-tf": transformers_tf})
    out: dict[str, Callable[[], object]] = {}
    errors: dict[str, str] = {}
    for name, build in builders.items():
        if only is None or name in only:
            _try(name, build, out, errors)
    for name, err in errors.items():
        print(f"  skipped {name}: {err}")
    return out


def sample_photos(n: int) -> list:
    """``n`` photo-sized JPEG-decoded images (crops and flips of the bundled photos), already loaded."""
    from PIL import Image, ImageOps

    rng = np.random.default_rng(0)
    sources = [Image.open(p).convert("RGB") for p in PHOTOS if p.exists()]
    if not sources:
        raise FileNotFoundError(f"no sample photos in {PHOTOS[0].parent}")
    photos = []
    for i in range(n):
        src = sources[i % len(sources)]
        w, h = src.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        img = src.crop((left, top, left + cw, top + ch))
        if i % 2:
            img = ImageOps.mirror(img)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        buf.seek(0)
        decoded = Image.open(buf)
        decoded.load()
        photos.append(decoded)
    return photos


def processor_contenders(photos: list) -> dict[str, Callable[[], object]]:
    kwargs = dict(size={"shortest_edge": 224}, crop_pct=0.875, resample=3)
    out: dict[str, Callable[[], object]] = {}
    errors: dict[str, str] = {}

    def ours_slow():
        from convnext_common import ConvNextImageProcessor

        p = ConvNextImageProcessor(**kwargs)
        return lambda: p(photos, return_tensors="np")

    def ours_fast():
        from convnext_pt import ConvNextImageProcessorFast

        p = ConvNextImageProcessorFast(**kwargs)
        return lambda: p(photos, return_tensors="pt")

    def transformers_slow():
        import transformers

        p = transformers.ConvNextImageProcessor(**kwargs)
        return lambda: p(photos, return_tensors="np")

    def transformers_fast():
        import transformers

        p = transformers.ConvNextImageProcessorFast(**kwargs)
        return lambda: p(photos, return_tensors="pt")

    for name, build in {"ours-slow": ours_slow, "ours-fast": ours_fast, "transformers-slow": transformers_slow,
                        "transformers-fast": transformers_fast}.items():
        _try(name, build, out, errors)
    for name, err in errors.items():
        print(f"  skipped {name}: {err}")
    return out

"""Classify images with a hub-layout ConvNeXt folder or hub id in either framework (used by the CLI).

The framework is imported only when a model is loaded, so importing this module imports neither
torch nor tensorflow. Preprocessing is the model's ``preprocessor_config.json`` through
:class:`convnext_common.processing.ConvNextImageProcessor`, the same for both frameworks.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from convnext_common import heads
from convnext_common.config import ConvNextConfig, load_config
from convnext_common.hub import is_hub_id

FRAMEWORKS = ("pt", "tf")
_PACKAGE_DATA = Path(__file__).resolve().parent / "data"


def default_model_dir() -> Path:
    """The embedded digits model (ConvNeXt trained on scikit-learn's 8x8 digits, labels "0".."9")."""
    return _PACKAGE_DATA / "default_model"


def sample_image_paths() -> list[Path]:
    """The bundled sample images; each file name starts with ``digit_<label>_``."""
    folder = _PACKAGE_DATA / "samples"
    return sorted(p for p in folder.glob("*.png")) if folder.is_dir() else []


class ModelFolderError(ValueError):
    """A model folder cannot be used for classification; the message names the folder."""


@dataclass
class Classifier:
    """A loaded image classifier: ``logits(pixel_values)`` maps (B, C, H, W) float32 to (B, num_labels)."""

    framework: str
    config: ConvNextConfig
    model: Any
    run: Callable[[np.ndarray], np.ndarray]

    def logits(self, pixel_values: np.ndarray) -> np.ndarray:
        return np.asarray(self.run(np.ascontiguousarray(pixel_values, dtype=np.float32)), dtype=np.float32)

    @property
    def labels(self) -> list[str]:
        return [self.config.id2label[i] for i in range(self.config.num_labels)]


def _check_classifier_config(folder: str, config: ConvNextConfig) -> None:
    if heads.head_of(config) != "classification":
        raise ModelFolderError(f"{folder}: holds a {config.architectures[0]}, which has no classification head "
                               f"(need a *ForImageClassification checkpoint)")
    if config.num_labels < 1:
        raise ModelFolderError(f"{folder}: config.json declares no labels (num_labels=0)")


def _check_head_loaded(folder: str, info: dict) -> None:
    """The command predicts only with every weight loaded: ``from_pretrained`` (as transformers')
    loads a checkpoint that lacks keys, leaving them at their initial values, with a warning."""
    missing = [k for k in info.get("missing_keys", []) if k.startswith("classifier")]
    if missing:
        raise ModelFolderError(f"{folder}: the weights have no classifier ({', '.join(missing)} missing); "
                               "it is a base model, not an image classifier")
    missing = info.get("missing_keys", [])
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise ModelFolderError(f"{folder}: the weights lack {len(missing)} of the model's tensors ({shown})")


def load_model_folder(source: str | os.PathLike, framework: str, head: str, precision: str = "fp32"
                      ) -> tuple[ConvNextConfig, Any, dict]:
    """The one place where the commands that run a model (predict, embed, evaluate) load a model folder
    or hub id: ``source``'s config and its ``head`` model (``"classification"`` or ``"base"``) in
    ``framework``'s twin, in inference mode and ``precision`` (convnext_app/precision.py), with its
    loading info (missing keys...). Checks that a classifier's head was in the weights. Notices
    printed before a model runs belong here."""
    from convnext_app.precision import precision as precision_of

    numeric = precision_of(precision)
    if precision == "int8":
        raise ValueError("an int8 model is not loaded in a twin: use load_classifier/load_embedder, or "
                         "convnext_app.quantization")
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {', '.join(FRAMEWORKS)}, got {framework!r}")
    name = str(source)
    if not Path(source).is_dir() and not is_hub_id(name):
        raise FileNotFoundError(f"{name}: no such model folder (nor a hub id)")
    config = load_config(source)
    if head == "classification":
        _check_classifier_config(name, config)
    if framework == "pt":
        try:
            import torch
        except ImportError:
            raise ImportError("--framework pt needs PyTorch: pip install 'convnext-twins[torch]'") from None
        from convnext_pt import AutoModel, AutoModelForImageClassification

        auto = AutoModelForImageClassification if head == "classification" else AutoModel
        with warnings.catch_warnings():  # a backbone's missing pooled norm: load_embedder refuses it
            warnings.filterwarnings("ignore", message=".*newly initialised.*")
            model, info = auto.from_pretrained(source, config=config, output_loading_info=True)
        model.eval().to(getattr(torch, numeric.torch_dtype))
    else:
        from .keras_backend import import_keras

        import_keras("--framework tf")  # on whichever Keras backend is set
        from convnext_tf import TFAutoModel, TFAutoModelForImageClassification

        auto = TFAutoModelForImageClassification if head == "classification" else TFAutoModel
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*newly initialised.*")
            model, info = auto.from_pretrained(source, config=config, dtype=numeric.keras_dtype,
                                               output_loading_info=True)
    if head == "classification":
        _check_head_loaded(name, info)
    return config, model, info


def _pooled_norm_missing(info: dict) -> bool:
    """Whether the weights lacked the pooled norm (``layernorm.*`` at the top of the base model)."""
    tops = {k.split(".", 1)[1] if k.startswith(("convnext.", "convnextv2.")) else k
            for k in info.get("missing_keys", [])}
    return bool(tops & {"layernorm.weight", "layernorm.bias"})


def _parameter_dtype(model: Any) -> Any:
    return next(model.parameters()).dtype


def _check_runtime(framework: str, runtime: str, precision: str) -> None:
    from convnext_app.runtimes import runtime as runtime_of

    if runtime != "torch" and framework != "pt":
        raise ValueError(f"--runtime {runtime} runs the PyTorch twin's export: use --framework pt")
    if framework == "pt":
        runtime_of(runtime).check(precision)


def _int8_runner(source: str | os.PathLike, precision: str, runtime: str, output: str
                 ) -> Optional[tuple[ConvNextConfig, Callable[[np.ndarray], np.ndarray]]]:
    """(config, runner) of an int8 folder written by ``convnext quantize``; None for any other folder
    at a precision other than int8. int8 runs on OpenVINO only, and an int8 folder only at int8."""
    from convnext_app.int8_folder import is_quantized_folder, quantized_runner

    quantized = Path(source).is_dir() and is_quantized_folder(source)
    if precision != "int8":
        if quantized:
            raise ValueError(f"{source}: holds an int8 model (written by convnext quantize); run it with "
                             "--precision int8")
        return None
    if runtime != "openvino":
        raise ValueError(f"--precision int8 runs on --runtime openvino, not {runtime}")
    if not quantized:
        raise ValueError(f"{source}: --precision int8 needs a folder written by `convnext quantize`, or "
                         "--calibration DIR (images to quantize this model on)")
    return load_config(source), quantized_runner(source, output)


def load_classifier(source: str | os.PathLike, framework: str = "pt", precision: str = "fp32",
                    runtime: str = "torch") -> Classifier:
    """Load ``source``'s classifier (V1 or V2 by its model_type) in ``framework``'s twin and
    ``precision`` (``"fp32"``, ``"bf16"``, or ``"int8"`` for a folder written by ``convnext quantize``;
    logits are float32 either way), run by ``runtime``
    (convnext_app/runtimes.py: the twin itself, or its verified ONNX export in another engine).

    ``source``: a hub-layout folder, or a hub id (transformers or timm repo; from the local cache
    when ``HF_HUB_OFFLINE`` is set).
    """
    _check_runtime(framework, runtime, precision)
    int8 = _int8_runner(source, precision, runtime, "logits")
    if int8 is not None:
        _check_classifier_config(str(source), int8[0])
        return Classifier(framework, int8[0], None, int8[1])
    if runtime != "torch":
        from convnext_app.runtimes import exported_runner

        config, model, _ = load_model_folder(source, framework, "classification", "fp32")
        return Classifier(framework, config, model, exported_runner(model, runtime, precision, "logits"))
    config, model, _ = load_model_folder(source, framework, "classification", precision)
    if framework == "pt":
        import torch

        dtype = _parameter_dtype(model)

        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(x).to(dtype)).logits.float().numpy()
    else:
        run = _keras_runner(lambda pixels: model(pixels, training=False).logits,
                            compiled=lambda batch: model.predict_on_batch(batch))
    return Classifier(framework, config, model, run)


def _keras_runner(output: Callable[[Any], Any],
                  compiled: Optional[Callable[[np.ndarray], Any]] = None) -> Callable[[np.ndarray], np.ndarray]:
    """``output(pixels)`` of a float32 batch, as float32 numpy, on whichever Keras backend this process
    runs. On TensorFlow a graph of it: the command owns the model (nothing changes it between calls),
    and TensorFlow fuses each block's 1x1 convs with bias and GELU there, which eager calls do not get.
    Elsewhere ``compiled`` (Keras' own predict step, compiled where the backend compiles: XLA on JAX)
    when given, else the eager call."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        graph = tf.function(lambda pixels: tf.cast(output(pixels), tf.float32), reduce_retracing=True)
        return lambda x: np.asarray(graph(tf.constant(x)), dtype=np.float32)
    if compiled is not None:
        return lambda x: np.asarray(keras.ops.convert_to_numpy(compiled(x)), dtype=np.float32)
    return lambda x: np.asarray(keras.ops.convert_to_numpy(output(x)), dtype=np.float32)


@dataclass
class Embedder:
    """A loaded feature extractor: ``features(pixel_values)`` maps (B, C, H, W) float32 to (B, D) float32:
    the base model's ``pooler_output``, or with ``stage`` (1..4) that stage's map averaged over H and W."""

    framework: str
    config: ConvNextConfig
    model: Any
    stage: Optional[int]
    run: Callable[[np.ndarray], np.ndarray]

    def features(self, pixel_values: np.ndarray) -> np.ndarray:
        return np.asarray(self.run(np.ascontiguousarray(pixel_values, dtype=np.float32)), dtype=np.float32)

    @property
    def dim(self) -> int:
        sizes = self.config.hidden_sizes
        return int(sizes[-1] if self.stage is None else sizes[self.stage - 1])


def load_embedder(source: str | os.PathLike, framework: str = "pt", stage: Optional[int] = None,
                  precision: str = "fp32", runtime: str = "torch") -> Embedder:
    """The base model of ``source`` (a classification, base-model or backbone folder or hub id) as a
    feature extractor in ``precision`` (features are float32 either way), run by ``runtime``. A
    backbone has no pooled norm, so its pooled feature is refused (use ``stage``)."""
    _check_runtime(framework, runtime, precision)
    if runtime != "torch" and stage is not None:
        raise ValueError(f"--stage runs on --runtime torch (the export of --runtime {runtime} gives the pooled "
                         "feature)")
    int8 = _int8_runner(source, precision, runtime, "pooler_output")
    if int8 is not None:
        if stage is not None:
            raise ValueError("--stage runs on --runtime torch (an int8 model gives the pooled feature)")
        return Embedder(framework, int8[0], None, None, int8[1])
    twin_precision = precision if runtime == "torch" else "fp32"  # an export is made from the float32 twin
    config, model, info = load_model_folder(source, framework, "base", twin_precision)
    num_stages = len(config.hidden_sizes)
    if stage is not None and not 1 <= stage <= num_stages:
        raise ValueError(f"--stage must be between 1 and {num_stages} for {source}, got {stage}")
    if stage is None and _pooled_norm_missing(info):
        raise ModelFolderError(f"{source}: holds no pooled norm (a backbone), so it has no pooled feature; "
                               f"choose a stage's map with --stage 1..{num_stages}")
    if runtime != "torch":
        from convnext_app.runtimes import exported_runner

        run = exported_runner(model, runtime, precision, "pooler_output")
    elif framework == "pt":
        import torch

        dtype = _parameter_dtype(model)

        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                out = model(torch.from_numpy(x).to(dtype), output_hidden_states=stage is not None)
                feats = out.pooler_output if stage is None else out.hidden_states[stage].mean(dim=(2, 3))
                return feats.float().numpy()
    else:
        import keras

        def forward(pixels):
            out = model(pixels, training=False, output_hidden_states=stage is not None)
            if stage is None:
                return out.pooler_output
            return keras.ops.mean(keras.ops.cast(out.hidden_states[stage], "float32"), axis=(2, 3))

        pooled = None if stage is not None else (lambda batch: model.predict_on_batch(batch)["pooler_output"])
        run = _keras_runner(forward, compiled=pooled)
    return Embedder(framework, config, model, stage, run)


def load_processor(source: str | os.PathLike, warn: Callable[[str], None] | None = None):
    """The ConvNextImageProcessor of a model folder or hub id: its preprocessor_config.json (a timm
    source: timm's evaluation transform); without one, transformers' defaults sized to
    ``config.image_size`` (and ``warn`` is told)."""
    from convnext_common.pretrained import preprocessor_config_of
    from convnext_common.processing import PREPROCESSOR_CONFIG_NAME, ConvNextImageProcessor

    settings = preprocessor_config_of(source)
    if settings is not None:
        try:
            return ConvNextImageProcessor.from_dict(settings)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{source}: {PREPROCESSOR_CONFIG_NAME}: {e}") from None
    from convnext_common.checkpoints.preprocessing import default_preprocessor_config

    config = load_config(source)
    if warn is not None:
        warn(f"{source}: no {PREPROCESSOR_CONFIG_NAME}; using ImageNet defaults at {config.image_size} px")
    return ConvNextImageProcessor.from_dict(default_preprocessor_config(config.image_size))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_k(probabilities: np.ndarray, k: int, labels: Sequence[str]) -> list[list[tuple[str, float]]]:
    """Per row, the ``k`` most probable (label, probability) pairs, most probable first (stable on ties)."""
    k = max(1, min(k, probabilities.shape[-1]))
    order = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
    return [[(labels[j], float(row[j])) for j in idx] for row, idx in zip(probabilities, order)]


def preprocess_files(processor, paths: Sequence[Path]) -> np.ndarray:
    """Read image files and run them through ``processor``: (N, 3, H, W) float32."""
    from .imagefolder import load_image

    images = [load_image(p) for p in paths]
    return np.asarray(processor(images, return_tensors="np")["pixel_values"], dtype=np.float32)


def batched_logits(classifiers: Sequence[Classifier], processor, paths: Sequence[Path],
                   batch_size: int = 32, on_batch: Callable[[int], None] | None = None) -> list[np.ndarray]:
    """Logits of every image for each classifier (same preprocessed batch for all): a list of (N, L)."""
    outs: list[list[np.ndarray]] = [[] for _ in classifiers]
    for start in range(0, len(paths), batch_size):
        chunk = paths[start:start + batch_size]
        pixels = preprocess_files(processor, chunk)
        for out, clf in zip(outs, classifiers):
            out.append(clf.logits(pixels))
        if on_batch is not None:
            on_batch(len(chunk))
    width = classifiers[0].config.num_labels if classifiers else 0
    return [np.concatenate(o) if o else np.zeros((0, width), np.float32) for o in outs]

"""Classify images with a hub-layout ConvNeXt folder or hub id in either framework (used by the CLI).

The framework is imported only when a model is loaded, so importing this module imports neither
torch nor tensorflow. Preprocessing is the model's ``preprocessor_config.json`` through
:class:`convnext_common.processing.ConvNextImageProcessor`, the same for both frameworks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

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
    missing = [k for k in info.get("missing_keys", []) if k.startswith("classifier")]
    if missing:
        raise ModelFolderError(f"{folder}: the weights have no classifier ({', '.join(missing)} missing); "
                               "it is a base model, not an image classifier")


def load_classifier(source: str | os.PathLike, framework: str = "pt") -> Classifier:
    """Load ``source``'s classifier (V1 or V2 by its model_type) in ``framework``'s twin.

    ``source``: a hub-layout folder, or a hub id (transformers or timm repo; from the local cache
    when ``HF_HUB_OFFLINE`` is set).
    """
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {', '.join(FRAMEWORKS)}, got {framework!r}")
    name = str(source)
    if not Path(source).is_dir() and not is_hub_id(name):
        raise FileNotFoundError(f"{name}: no such model folder (nor a hub id)")
    config = load_config(source)
    _check_classifier_config(name, config)
    if framework == "pt":
        try:
            import torch
        except ImportError:
            raise ImportError("--framework pt needs PyTorch: pip install 'convnext-twins[torch]'") from None
        from convnext_pt import AutoModelForImageClassification

        model, info = AutoModelForImageClassification.from_pretrained(source, config=config, output_loading_info=True)
        _check_head_loaded(name, info)
        model.eval().float()

        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(x)).logits.float().numpy()
    else:
        from .keras_backend import import_keras

        keras = import_keras("--framework tf")
        from convnext_tf import TFAutoModelForImageClassification

        model, info = TFAutoModelForImageClassification.from_pretrained(source, config=config,
                                                                        output_loading_info=True)
        _check_head_loaded(name, info)
        run = _keras_logits(model, keras)
    return Classifier(framework, config, model, run)


def _keras_logits(model: Any, keras: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The Keras twin's logits of a float32 batch on whichever Keras backend this process runs."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # A graph of the model the command owns (nothing changes it between calls): TensorFlow
        # fuses each block's 1x1 convs with bias and GELU there, which eager calls do not get.
        graph = tf.function(lambda pixels: model(pixels, training=False).logits, reduce_retracing=True)
        return lambda x: np.asarray(graph(tf.constant(x)), dtype=np.float32)
    # Keras' own predict step: compiled where the backend compiles (XLA on JAX), eager on PyTorch
    return lambda x: np.asarray(model.predict_on_batch(x), dtype=np.float32)
    return Classifier(framework, config, model, run)


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

"""The Keras run: :func:`train_keras` prepares the model, data and optimizer (on TensorFlow under a
``tf.distribute`` strategy), trains with ``fit`` on whichever Keras backend this process runs,
evaluates after each epoch and writes the hub-layout folder (config.json, tf_model.h5,
model.safetensors, preprocessor_config.json, metrics.json, curves.png)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional, Sequence, TextIO

import numpy as np

from convnext_app.keras_backend import import_keras
from convnext_app.plots import CURVES_NAME, PlotsUnavailable, write_curves
from convnext_common.fileio import atomic_write_text
from convnext_common.progress import Progress

keras = import_keras("train --framework tf")  # TensorFlow's start-up notices filtered when it is the backend
BACKEND = keras.backend.backend()
if BACKEND == "tensorflow":
    import tensorflow as tf

from ..common.data import METRICS_NAME, load_folders, remap  # noqa: E402
from ..common.model import ModelSetup  # noqa: E402
from .data import Augment, eval_batches, steps_per_epoch, train_batches  # noqa: E402
from .model import freeze_trunk, prepare_keras_model, scale_head  # noqa: E402
from .optim import WarmupCosine, build_optimizer, plan_updates  # noqa: E402
from .options import KerasTrainingError, KerasTrainOptions  # noqa: E402

_OUTPUTS = ("tf_model.h5", "model.safetensors", METRICS_NAME, CURVES_NAME, "last_checkpoint.pt")


def pick_strategy(device: str) -> Optional["tf.distribute.Strategy"]:
    """``auto``: MirroredStrategy over the GPUs when there are several, else the default strategy;
    ``cpu``, ``cuda``/``gpu``, ``cuda:N``: that one device. On JAX and PyTorch, Keras places the
    model itself (None): only ``auto`` is accepted there."""
    if BACKEND != "tensorflow":
        if device != "auto":
            raise KerasTrainingError(f"--device {device}: on KERAS_BACKEND={BACKEND} Keras chooses the device; "
                                     f"leave --device at auto, or run with KERAS_BACKEND=tensorflow")
        return None
    if device == "auto":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if device == "cpu":
        return tf.distribute.OneDeviceStrategy("/cpu:0")
    match = re.fullmatch(r"(?:cuda|gpu)(?::(\d+))?", device)
    if match is None:
        raise KerasTrainingError(f"--device {device!r}: expected auto, cpu, cuda or cuda:N")
    index = int(match.group(1) or 0)
    if index >= len(tf.config.list_logical_devices("GPU")):
        raise KerasTrainingError(f"--device {device}: TensorFlow sees no GPU {index}")
    return tf.distribute.OneDeviceStrategy(f"/gpu:{index}")


def _check_output(options: KerasTrainOptions) -> Path:
    out = Path(options.out)
    if out.exists() and not out.is_dir():
        raise KerasTrainingError(f"--out {out}: exists and is not a folder")
    if not options.overwrite and out.is_dir() and any((out / name).exists() for name in _OUTPUTS):
        raise KerasTrainingError(f"--out {out}: already holds a training run; pass --overwrite to start over")
    return out


def plain_cross_entropy_sum(logits: np.ndarray, labels: np.ndarray) -> float:
    """Sum over the batch of -log softmax(logits)[label] (no smoothing: the validation loss)."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].sum())


class _Epochs(keras.callbacks.Callback):
    """Per epoch: the progress line, the validation pass (on the EMA weights when averaging) and the
    record of metrics.json (the keys of ``convnext train``'s)."""

    def __init__(self, setup: ModelSetup, val_folder, batch_size: int, schedule: WarmupCosine, steps: int,
                 epochs: int, ema: bool, stream: TextIO, quiet: bool):
        super().__init__()
        self.setup, self.val_folder, self.batch_size = setup, val_folder, batch_size
        self.schedule, self.steps, self.epochs, self.ema = schedule, steps, epochs, ema
        self.stream, self.quiet = stream, quiet
        self.history: list[dict[str, Any]] = []
        model = setup.model
        if BACKEND == "tensorflow":
            graph = tf.function(lambda x: model(x, training=False).logits, reduce_retracing=True)
            self._forward = lambda x: np.asarray(graph(tf.constant(x)))
        else:  # Keras' own predict step (compiled on JAX), on the weights fit has synced at the epoch's end
            self._forward = lambda x: np.asarray(model.predict_on_batch(x))

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.started = time.perf_counter()
        self.bar = Progress(f"epoch {epoch + 1}/{self.epochs}", self.steps, self.stream, enabled=not self.quiet,
                            unit="it", lines_off_terminal=1)

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        logs = logs or {}
        self.bar.update(1, loss=float(logs.get("loss", np.nan)), acc=float(logs.get("accuracy", np.nan)))

    def evaluate(self) -> dict[str, float]:
        loss_sum = correct = count = 0.0
        for pixels, labels in eval_batches(self.val_folder, self.setup.processor, self.batch_size):
            logits = self._forward(pixels)
            loss_sum += plain_cross_entropy_sum(logits, labels)
            correct += float((logits.argmax(-1) == labels).sum())
            count += len(labels)
        return {"loss": loss_sum / max(count, 1), "accuracy": correct / max(count, 1)}

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = logs or {}
        if self.ema:  # Keras' own swap of the raw and averaged weights, distributed-aware
            swap = keras.callbacks.SwapEMAWeights()
            swap.set_model(self.model)
            swap.on_test_begin()
            try:
                val = self.evaluate()
            finally:
                swap.on_test_end()
        else:
            val = self.evaluate()
        batches_done = (epoch + 1) * self.steps
        record = {"epoch": epoch + 1, "train_loss": float(logs["loss"]), "train_accuracy": float(logs["accuracy"]),
                  "val_loss": val["loss"], "val_accuracy": val["accuracy"],
                  "lr": float(self.schedule(batches_done - 1)), "seconds": round(time.perf_counter() - self.started, 3)}
        if not np.isfinite(record["train_loss"]):
            self.model.stop_training = True
            raise FloatingPointError(f"the training loss became {record['train_loss']} in epoch {epoch + 1}; "
                                     f"try a lower --lr")
        self.history.append(record)
        self.bar.close(loss=record["train_loss"], acc=record["train_accuracy"], val_loss=record["val_loss"],
                       val_acc=record["val_accuracy"])


def weights_sha256(setup: ModelSetup) -> str:
    """SHA-256 over the saved weights (canonical name, dtype, shape, bytes), in name order."""
    h = hashlib.sha256()
    for name, value in sorted(setup.model.numpy_state_dict().items()):
        value = np.ascontiguousarray(value)
        h.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        h.update(value.tobytes())
    return h.hexdigest()


def train_keras(options: KerasTrainOptions, stream: Optional[TextIO] = None,
                strategy: Optional["tf.distribute.Strategy"] = None,
                callbacks: Sequence[keras.callbacks.Callback] = ()) -> dict[str, Any]:
    """Run ``convnext train --framework tf``; returns the metrics written to metrics.json.
    ``strategy``: instead of :func:`pick_strategy`'s; ``callbacks``: more Keras callbacks for ``fit``."""
    stream = stream if stream is not None else sys.stderr
    options.validate()
    out = _check_output(options)
    train_folder, val_folder = load_folders(options.data, options.val_fraction, options.seed)
    strategy = strategy or pick_strategy(options.device)
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    global_batch = options.batch_size * replicas  # --batch-size is per device, as per process in PyTorch
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        setup = prepare_keras_model(options.model, train_folder.classes, options.image_size, options.drop_path,
                                    options.seed)
        model = setup.model
        if setup.new_head and options.head_init_scale != 1.0:
            scale_head(model, options.head_init_scale)
        if options.freeze_trunk:
            freeze_trunk(model)
        steps = steps_per_epoch(len(train_folder), global_batch)
        plan = plan_updates(steps, options.epochs, options.warmup_epochs, options.accum_steps)
        schedule = WarmupCosine(options.lr, plan.total_updates, plan.warmup_updates, plan.accum_steps)
        optimizer = build_optimizer(model, schedule, options.weight_decay, options.ema, options.clip_grad,
                                    options.accum_steps)
        model.compile(optimizer=optimizer,
                      loss=keras.losses.CategoricalCrossentropy(from_logits=True,
                                                                label_smoothing=options.label_smoothing),
                      metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
    if setup.classes != train_folder.classes:
        train_folder, val_folder = remap(train_folder, setup.classes), remap(val_folder, setup.classes)
    print(f"train: {len(train_folder)} images, val: {len(val_folder)} images, {len(setup.classes)} classes, "
          f"{setup.image_size}px, Keras ({BACKEND}) on {replicas} device(s), {options.batch_size} per step per device, "
          f"from {setup.source}" + (" (new head)" if setup.new_head else ""), file=stream, flush=True)
    augment = Augment(setup.processor, setup.image_size, options.min_scale, options.flip)
    size, classes = setup.image_size, len(setup.classes)
    def every_batch():
        return train_batches(train_folder, augment, global_batch, options.seed, range(options.epochs),
                             options.mixup, options.cutmix)

    if BACKEND == "tensorflow":  # a tf.data pipeline, which a distribution strategy splits across devices
        batches = tf.data.Dataset.from_generator(every_batch, output_signature=(
            tf.TensorSpec((None, 3, size, size), tf.float32), tf.TensorSpec((None, classes), tf.float32))).prefetch(2)
    else:  # one generator over every epoch: fit takes steps_per_epoch batches of it per epoch
        batches = every_batch()
    epochs = _Epochs(setup, val_folder, global_batch, schedule, steps, options.epochs, options.ema is not None,
                     stream, options.quiet)
    # shuffled per epoch by train_batches, keyed by (seed, epoch)
    model.fit(batches, epochs=options.epochs, steps_per_epoch=steps, callbacks=[epochs, *callbacks], shuffle=False,
              verbose=0)
    # with --ema, fit ended by putting the averaged weights into the model: they are the output
    history = epochs.history
    digest = weights_sha256(setup)
    metrics = {
        "classes": list(setup.classes), "source": setup.source, "new_head": setup.new_head,
        "images": {"train": len(train_folder), "val": len(val_folder)},
        "epochs": history, "final": history[-1] if history else {},
        "completed": len(history) >= options.epochs,
        # one process; MirroredStrategy keeps one set of weights for all its devices
        "world_size": replicas, "samples_per_process_per_epoch": len(train_folder),
        "weights_sha256_per_rank": [digest], "replicas_identical": True,
        "options": {"framework": "tf", **asdict(options)},
    }
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True, image_processor=setup.processor)
    atomic_write_text(out / METRICS_NAME, json.dumps(metrics, indent=2) + "\n")
    try:
        write_curves(history, out / CURVES_NAME)
    except PlotsUnavailable as e:
        print(f"note: {CURVES_NAME} not written: {e}", file=stream, flush=True)
    final = metrics["final"]
    print(f"saved {out} (val accuracy {final.get('val_accuracy', float('nan')) * 100:.2f}%, metrics in "
          f"{METRICS_NAME})", file=stream, flush=True)
    return metrics

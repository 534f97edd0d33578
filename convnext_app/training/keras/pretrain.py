"""``convnext pretrain --framework tf``: FCMAE pre-training of the Keras twin
(TFConvNextV2ForMaskedImageModeling) with ``fit`` on one device, TensorFlow backend, no torch.

The same recipe as the PyTorch path (convnext_app.training.common.pretraining decides the options,
the model's config, the learning rate and the betas): AdamW with betas (0.9, 0.95) and no weight
decay on biases, norms and GRN, linear warmup then cosine per update, random resized crop + flip from
each sample's keyed stream. The masks come from the model's seed generator, seeded through
``keras.utils.set_random_seed(--seed)``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator, Optional, TextIO

import numpy as np

from convnext_app.imagefolder import load_image
from convnext_common.checkpoints.preprocessing import default_preprocessor_config
from convnext_common.fileio import atomic_write_text
from convnext_common.processing import ConvNextImageProcessor

from ..common.data import METRICS_NAME
from ..common.pretraining import (
    BETAS, PretrainError, PretrainOptions, effective_batch, peak_lr, plan_model, scan_images,
)
from .data import Augment, epoch_order, keyed_rng, steps_per_epoch
from .optim import WarmupCosine, build_optimizer, plan_updates

#: options the Keras path does not run (refused in one line, as `convnext train --framework tf` does)
PYTORCH_ONLY = ("resume", "stop_after", "amp", "workers")
_SAMPLE = 0


def _refuse_pytorch_only(options: PretrainOptions) -> None:
    defaults = PretrainOptions(data="", model="", out="")
    used = [f"--{name.replace('_', '-')}" for name in PYTORCH_ONLY if getattr(options, name) != getattr(defaults, name)]
    if used:
        raise PretrainError(f"--framework tf does not run {', '.join(used)} (PyTorch only)")


def _batches(files, augment: Augment, batch_size: int, seed: int, epochs: range) -> Iterator[np.ndarray]:
    for epoch in epochs:
        order = epoch_order(len(files), seed, epoch)
        for start in range(0, len(order), batch_size):
            yield np.stack([augment(load_image(files[i]), keyed_rng(seed, epoch, _SAMPLE, int(i)))
                            for i in order[start:start + batch_size]])


def pretrain_keras(options: PretrainOptions, stream: Optional[TextIO] = None) -> dict[str, Any]:
    stream = stream if stream is not None else sys.stderr
    options.validate()
    _refuse_pytorch_only(options)
    out = Path(options.out)
    if out.exists() and any(out.iterdir()) and not options.overwrite:
        raise PretrainError(f"--out {out}: already holds files; pass --overwrite to start over")
    files = scan_images(options.data)
    import convnext_tf  # first: it quiets TensorFlow's start-up notices
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise PretrainError(f"--framework tf runs on the TensorFlow backend; KERAS_BACKEND is {keras.backend.backend()}")
    config, from_folder = plan_model(options)
    keras.utils.set_random_seed(options.seed)  # the init and the model's mask generator
    if from_folder:
        model = convnext_tf.TFConvNextV2ForMaskedImageModeling.from_pretrained(options.model, config=config)
        pre = model.preprocessor_config
    else:
        model, pre = convnext_tf.TFConvNextV2ForMaskedImageModeling(config), None
    processor = ConvNextImageProcessor.from_dict(pre or default_preprocessor_config(options.image_size))
    steps = steps_per_epoch(len(files), options.batch_size)
    plan = plan_updates(steps, options.epochs, options.warmup_epochs, options.accum_steps)
    lr = peak_lr(options)
    schedule = WarmupCosine(lr, plan.total_updates, plan.warmup_updates, plan.accum_steps, options.min_lr)
    optimizer = build_optimizer(model, schedule, options.weight_decay, accum_steps=options.accum_steps)
    optimizer.beta_1, optimizer.beta_2 = BETAS
    model.compile(optimizer=optimizer)  # no loss: the model's own reconstruction loss
    print(f"pretrain: {len(files)} images, {options.image_size}px, mask ratio {model.config.mask_ratio}, "
          f"norm_pix_loss {model.config.norm_pix_loss}, Keras on one device, effective batch "
          f"{effective_batch(options)}, lr {lr:.3g}, from {options.model}", file=stream, flush=True)
    augment = Augment(processor, options.image_size, options.min_scale, options.flip)
    size = options.image_size
    data = tf.data.Dataset.from_generator(
        lambda: _batches(files, augment, options.batch_size, options.seed, range(options.epochs)),
        output_signature=tf.TensorSpec((None, 3, size, size), tf.float32)).prefetch(2)
    fitted = model.fit(data, epochs=options.epochs, steps_per_epoch=steps, shuffle=False,
                       verbose=0 if options.quiet else 2)
    history = [{"epoch": i + 1, "train_loss": float(v)} for i, v in enumerate(fitted.history.get("loss", []))]
    metrics = {"framework": "tf", "source": options.model, "images": len(files), "epochs": history,
               "final": history[-1] if history else {}, "completed": len(history) >= options.epochs, "lr": lr,
               "options": asdict(options)}
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True, image_processor=processor)
    atomic_write_text(out / METRICS_NAME, json.dumps(metrics, indent=2) + "\n")
    print(f"saved {out} (final loss {metrics['final'].get('train_loss', float('nan')):.4f}, metrics in "
          f"{METRICS_NAME})", file=stream, flush=True)
    return metrics

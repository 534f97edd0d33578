"""The optimizer of the Keras path: AdamW as ``convnext train``'s (no weight decay on biases, norms,
layer scales and GRN; torch's epsilon), the learning rate per update as a Keras schedule (linear
warmup then cosine, the formula of ``convnext_app.training.common.schedule.warmup_cosine`` in
``keras.ops``), and the
recipe options Keras optimizers offer (EMA, global-norm clipping, gradient accumulation)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
from keras import ops

from ..common.schedule import decays, warmup_steps


@dataclass(frozen=True)
class Plan:
    """How many optimizer updates a run makes and how many of them warm up."""

    total_updates: int
    warmup_updates: int
    accum_steps: int = 1


def plan_updates(steps_per_epoch: int, epochs: int, warmup_epochs: float, accum_steps: int = 1) -> Plan:
    """Updates = batches / ``accum_steps``; warmup ``warmup_epochs`` of them, at most half the run
    (as ``convnext train``)."""
    total = max(1, steps_per_epoch * epochs // accum_steps)
    warmup = warmup_steps(warmup_epochs, steps_per_epoch / accum_steps, total)
    return Plan(total, warmup, accum_steps)


@keras.saving.register_keras_serializable(package="convnext_app")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate of update ``u`` (0-based): ``peak * (u + 1) / warmup`` during the warmup, then half a
    cosine from ``peak`` down to ``min_lr`` at ``total``. Keras passes the count of batches (its
    iterations before accumulation), so ``u`` = batches // ``accum_steps``."""

    def __init__(self, peak_lr: float, total_updates: int, warmup_updates: int, accum_steps: int = 1,
                 min_lr: float = 0.0):
        self.peak_lr = float(peak_lr)
        self.total_updates = int(total_updates)
        self.warmup_updates = int(warmup_updates)
        self.accum_steps = int(accum_steps)
        self.min_lr = float(min_lr)

    def __call__(self, step):
        update = ops.cast(ops.floor_divide(ops.cast(step, "int64"), self.accum_steps), "float32")
        warmup = float(max(self.warmup_updates, 1))
        warm = self.peak_lr * (update + 1.0) / warmup
        span = float(max(1, self.total_updates - self.warmup_updates))
        progress = ops.clip((update - self.warmup_updates) / span, 0.0, 1.0)
        cosine = self.min_lr + (self.peak_lr - self.min_lr) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        if self.warmup_updates <= 0:
            return cosine
        return ops.where(update < self.warmup_updates, warm, cosine)

    def get_config(self) -> dict:
        return {"peak_lr": self.peak_lr, "total_updates": self.total_updates,
                "warmup_updates": self.warmup_updates, "accum_steps": self.accum_steps, "min_lr": self.min_lr}


def no_decay(variable) -> bool:
    """Biases, norm scales and shifts, layer scales (one dimension) and GRN's (1, 1, 1, C): no weight
    decay, the rule of ``convnext train``."""
    return not decays(variable.shape)


def build_optimizer(model: keras.Model, schedule: WarmupCosine, weight_decay: float, ema: float | None = None,
                    clip_grad: float | None = None, accum_steps: int = 1) -> keras.optimizers.AdamW:
    """AdamW over ``model``'s trainable variables. ``clip_grad``: the norm of all gradients together
    (torch's ``clip_grad_norm_``, Keras' ``global_clipnorm``, not the per-variable ``clipnorm``).
    ``ema``: Keras' moving average (the averaged weights replace the raw ones when ``fit`` ends)."""
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule, weight_decay=weight_decay, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
        global_clipnorm=clip_grad, use_ema=ema is not None, ema_momentum=0.99 if ema is None else ema,
        gradient_accumulation_steps=accum_steps if accum_steps > 1 else None)
    optimizer.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables if no_decay(v)])
    return optimizer

"""One epoch of training and one evaluation pass."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .distributed import attempt
from ..common.keys import step_seed, stream_key
from .recipe import Mixup, ModelEma, soft_target_cross_entropy
from convnext_common.progress import Progress


@dataclass
class StepRecipe:
    """What a training step does beyond the plain AdamW step, and the keys of its random streams.

    ``seed``/``epoch``/``rank`` key every micro-batch's draws: torch's global generator (drop path) is
    re-seeded from (seed, epoch, micro-batch index, rank) before each forward pass, and mixup draws
    from its own stream with the same key, so a resumed run draws what the uninterrupted run drew.
    """

    seed: int = 0
    epoch: int = 0
    rank: int = 0
    mixup: Optional[Mixup] = None
    accum_steps: int = 1
    clip_grad: Optional[float] = None
    ema: Optional[ModelEma] = None
    freeze_trunk: bool = False


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel, or the model."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def trunk_of(model: nn.Module) -> nn.Module:
    """Everything but the classifier: the base model (``model.convnext`` / ``model.convnextv2``), its
    pooled norm included, as transformers' ``base_model``."""
    return getattr(model, model.base_model_prefix)


def train_one_epoch(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    optimizer: torch.optim.Optimizer, lr_at: Callable[[int], float], first_step: int,
                    label_smoothing: float = 0.1, device: torch.device = torch.device("cpu"),
                    progress: Optional[Progress] = None, amp: bool = False, counted: Optional[int] = None,
                    agree: Optional[Callable[[Optional[BaseException]], None]] = None,
                    recipe: Optional[StepRecipe] = None) -> tuple[dict[str, float], int]:
    """One pass over ``batches``; sets the learning rate of every optimizer step from ``lr_at(step)``
    (times a parameter group's ``lr_scale``).

    With ``recipe.accum_steps`` N the optimizer steps after every N micro-batches and after the last
    one of the epoch (no gradient crosses an epoch boundary); each micro-batch's mean loss is divided
    by the number of micro-batches of its step, so equal micro-batches give the gradient of their
    concatenation. Returns ({"loss_sum", "correct", "count"} over this process's first ``counted``
    samples (all when None: the rest are a sampler's repeats, trained on but not counted), the next
    optimizer step index). ``agree`` (:meth:`Distributed.agree`) is called at every micro-batch, before
    the backward pass, with this process's error (reading the batch, the forward pass, a non-finite
    loss) or None. With mixup/cutmix the loss is the soft-target loss and the accuracy is counted
    against the unmixed labels.
    """
    keyed = recipe is not None  # without a recipe torch's global generator is left alone (scripts seed their own)
    recipe = recipe or StepRecipe()
    accum = recipe.accum_steps
    num_batches = len(batches) if accum > 1 else None  # type: ignore[arg-type]
    model.train()
    if recipe.freeze_trunk:
        trunk_of(unwrap(model)).eval()  # a linear probe: the frozen features are those of inference
    params = [p for p in model.parameters() if p.requires_grad]
    step = first_step
    loss_sum = correct = count = 0.0
    seen = 0
    lr = lr_at(step)
    group_size = 1
    for index, (batch, error) in enumerate(_batches_or_error(batches)):
        position = index % accum
        if position == 0:
            lr = lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            group_size = accum if num_batches is None else min(accum, num_batches - index)
            optimizer.zero_grad(set_to_none=True)
        if keyed:
            torch.manual_seed(step_seed(recipe.seed, recipe.epoch, index, recipe.rank))
        if error is None:
            mix_rng = None
            if recipe.mixup is not None and recipe.mixup.enabled:
                mix_rng = np.random.default_rng(stream_key("mixup", recipe.seed, recipe.epoch, index, recipe.rank))
            result, error = attempt(_forward_losses, model, batch, device, amp, label_smoothing, step, lr,
                                    recipe.mixup if mix_rng is not None else None, mix_rng)
        if agree is not None:
            agree(error)
        elif error is not None:
            raise error
        logits, labels, losses = result
        last_of_step = position == group_size - 1
        sync = contextlib.nullcontext() if last_of_step or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            (losses.mean() / group_size).backward()
        if last_of_step:
            if recipe.clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(params, recipe.clip_grad)
            optimizer.step()
            if recipe.ema is not None:
                recipe.ema.update(unwrap(model))
            step += 1
        n = labels.shape[0]
        k = n if counted is None else max(0, min(n, counted - seen))
        seen += n
        with torch.no_grad():
            loss_sum += losses[:k].sum().item()
            correct += (logits[:k].argmax(-1) == labels[:k]).sum().item()
        count += k
        if progress is not None:
            progress.update(1, loss=loss_sum / max(count, 1), acc=correct / max(count, 1), lr=lr)
    return {"loss_sum": loss_sum, "correct": correct, "count": count}, step


def _batches_or_error(batches: Iterable) -> Iterator[tuple[Any, Optional[Exception]]]:
    """(batch, None) per batch; (None, the error) once and then stop when reading one fails."""
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as e:  # noqa: BLE001  reported through Distributed.agree
            yield None, e
            return
        yield batch, None


def _forward_losses(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor], device: torch.device, amp: bool,
                    label_smoothing: float, step: int, lr: float, mixup: Optional[Mixup] = None,
                    mix_rng: Optional[np.random.Generator] = None,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits, labels, per-sample losses) of one training batch; a non-finite loss is an error."""
    pixels, labels = batch
    pixels = pixels.to(device, non_blocking=True)
    labels = labels.to(device, non_blocking=True)
    targets = None
    if mixup is not None:
        pixels, targets, _ = mixup(pixels, labels, mix_rng)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(pixels).logits
    if targets is not None:
        losses = soft_target_cross_entropy(logits.float(), targets)
    else:
        losses = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing, reduction="none")
    if not torch.isfinite(losses).all():
        bad = losses[~torch.isfinite(losses)][0].item()
        raise FloatingPointError(f"the training loss became {bad} at step {step} (lr {lr:.3g}); try a lower --lr")
    return logits, labels, losses


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
             device: torch.device = torch.device("cpu"), amp: bool = False) -> dict[str, float]:
    """{"loss_sum", "correct", "count"} of plain cross-entropy over ``batches`` (eval mode)."""
    model.eval()
    loss_sum = correct = count = 0.0
    for pixels, labels in batches:
        pixels, labels = pixels.to(device), labels.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(pixels).logits
        loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum").item()
        correct += (logits.argmax(-1) == labels).sum().item()
        count += labels.shape[0]
    return {"loss_sum": loss_sum, "correct": correct, "count": count}

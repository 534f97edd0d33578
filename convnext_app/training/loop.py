"""One epoch of training and one evaluation pass."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import attempt
from convnext_common.progress import Progress


def train_one_epoch(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    optimizer: torch.optim.Optimizer, lr_at: Callable[[int], float], first_step: int,
                    label_smoothing: float = 0.1, device: torch.device = torch.device("cpu"),
                    progress: Optional[Progress] = None, amp: bool = False, counted: Optional[int] = None,
                    agree: Optional[Callable[[Optional[BaseException]], None]] = None,
                    ) -> tuple[dict[str, float], int]:
    """One pass over ``batches``; sets the learning rate of every step from ``lr_at(step)``.

    Returns ({"loss_sum", "correct", "count"} over this process's first ``counted`` samples (all
    when None: the rest are a sampler's repeats, trained on but not counted), the next step index).
    ``agree`` (:meth:`Distributed.agree`) is called at every step, before the backward pass, with
    this process's error (reading the batch, the forward pass, a non-finite loss) or None.
    """
    model.train()
    step = first_step
    loss_sum = correct = count = 0.0
    seen = 0
    for batch, error in _batches_or_error(batches):
        lr = lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if error is None:
            result, error = attempt(_forward_losses, model, batch, device, amp, label_smoothing, step, lr)
        if agree is not None:
            agree(error)
        elif error is not None:
            raise error
        logits, labels, losses = result
        optimizer.zero_grad(set_to_none=True)
        losses.mean().backward()
        optimizer.step()
        n = labels.shape[0]
        k = n if counted is None else max(0, min(n, counted - seen))
        seen += n
        with torch.no_grad():
            loss_sum += losses[:k].sum().item()
            correct += (logits[:k].argmax(-1) == labels[:k]).sum().item()
        count += k
        step += 1
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
                    label_smoothing: float, step: int, lr: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits, labels, per-sample losses) of one training batch; a non-finite loss is an error."""
    pixels, labels = batch
    pixels = pixels.to(device, non_blocking=True)
    labels = labels.to(device, non_blocking=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(pixels).logits
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

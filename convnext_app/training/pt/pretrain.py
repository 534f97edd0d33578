"""``convnext pretrain``: FCMAE pre-training of a ConvNeXt V2 (ConvNextV2ForMaskedImageModeling) on a
folder of unlabeled images, in PyTorch, single process or under torchrun (DDP).

The official recipe by default (facebookresearch/ConvNeXt-V2, main_pretrain.py): AdamW with betas
(0.9, 0.95), weight decay 0.05 (none on biases, norms and GRN), lr = base lr 1.5e-4 x effective
batch / 256, linear warmup then cosine per step, random resized crop (area 0.2-1) + flip, mask
ratio 0.6, norm_pix_loss. The run reuses ``convnext train``'s machinery: the process group and
the points where the processes agree (distributed.py), the optimizer's parameter groups and the
schedule (schedule.py), the per-sample augmentation streams (data.py) and the keyed random streams
of each micro-batch (recipe/keys.py): the mask of micro-batch i of epoch e on rank r is drawn from
its own key, so a resumed run draws exactly what the uninterrupted run drew.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional, Sequence, TextIO

import numpy as np
import torch
from torch import nn

from convnext_app.imagefolder import load_image
from convnext_app.plots import write_loss_curve
from convnext_common.config import ConvNextV2Config
from convnext_common.checkpoints.preprocessing import default_preprocessor_config
from convnext_common.fileio import atomic_write, atomic_write_stream
from convnext_common.processing import ConvNextImageProcessor
from convnext_pt import ConvNextV2ForMaskedImageModeling

from ..common.data import METRICS_NAME
from ..common.keys import step_seed, stream_key
from ..common.pretraining import (
    BETAS, PretrainError, PretrainOptions, effective_batch, peak_lr, plan_model, scan_images,
)
from ..common.progress import epoch_progress
from ..common.schedule import warmup_cosine, warmup_steps
from .checkpoint import save_run_folder
from .data import TrainTransform, sample_generator
from .distributed import Distributed, attempt, counted_samples, run_on_every_rank, weights_digest, wrap_for_ddp

from .schedule import build_optimizer

CHECKPOINT_NAME = "last_checkpoint.pt"
CHECKPOINT_FORMAT = "convnext-pretrain-checkpoint-1"
PICTURES_DIR = "reconstructions"


class UnlabeledImages(torch.utils.data.Dataset):
    """The training images, augmented from each sample's own stream (seed, epoch, index)."""

    def __init__(self, files: Sequence[Path], processor: ConvNextImageProcessor, image_size: int, seed: int,
                 min_scale: float, flip: bool):
        self.files = list(files)
        self.seed = seed
        self.epoch = 0
        self.augment = TrainTransform(processor, image_size, min_scale, flip)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.augment(load_image(self.files[index]), sample_generator(self.seed, self.epoch, index))


def prepare_model(options: PretrainOptions) -> tuple[ConvNextV2ForMaskedImageModeling, ConvNextImageProcessor, str]:
    """The model a run starts from (:func:`convnext_app.training.common.pretraining.plan_model`) and its processor."""
    config, from_folder = plan_model(options)
    torch.manual_seed(options.seed)
    if from_folder:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*newly initialised.*")  # a new decoder is expected
            model = ConvNextV2ForMaskedImageModeling.from_pretrained(options.model, config=config)
        pre = model.preprocessor_config
    else:
        model, pre = ConvNextV2ForMaskedImageModeling(config), None
    return model, ConvNextImageProcessor.from_dict(pre or default_preprocessor_config(options.image_size)), \
        str(options.model)


def pretrain(options: PretrainOptions, stream: Optional[TextIO] = None) -> dict[str, Any]:
    """Run ``convnext pretrain``; returns the metrics written to metrics.json (on every rank)."""
    stream = stream if stream is not None else sys.stderr
    return run_on_every_rank(options.validate, lambda dist: _pretrain(options, dist, stream), options.device)


def _log(dist: Distributed, stream: TextIO, message: str) -> None:
    if dist.is_main:
        print(message, file=stream, flush=True)


def _resume_state(options: PretrainOptions) -> Optional[dict[str, Any]]:
    out = Path(options.out)
    if out.exists() and not out.is_dir():
        raise PretrainError(f"--out {out}: exists and is not a folder")
    checkpoint = out / CHECKPOINT_NAME
    if options.resume:
        if not checkpoint.is_file():
            raise PretrainError(f"--resume: {checkpoint} does not exist (nothing to resume)")
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise PretrainError(f"{checkpoint}: not a readable checkpoint ({type(e).__name__}: {e})") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise PretrainError(f"{checkpoint}: not a checkpoint written by convnext pretrain")
        return state
    if not options.overwrite and out.is_dir() and any(
            (out / name).exists() for name in (CHECKPOINT_NAME, "model.safetensors", METRICS_NAME)):
        raise PretrainError(f"--out {out}: already holds a run; pass --resume to continue it or --overwrite "
                            "to start over")
    return None


def _pretrain(options: PretrainOptions, dist: Distributed, stream: TextIO) -> dict[str, Any]:
    out = Path(options.out)
    found, error = attempt(lambda: (_resume_state(options), scan_images(options.data)))
    dist.agree(error)
    state, files = found
    if state is not None:
        config = ConvNextV2Config.from_dict(json.loads(state["config_json"]))
        model = ConvNextV2ForMaskedImageModeling(config)
        model.load_state_dict(state["model"])
        processor = ConvNextImageProcessor(**json.loads(state["processor_json"]))
        source = state["source"]
    else:
        prepared, error = attempt(prepare_model, options)
        dist.agree(error)
        model, processor, source = prepared
    model.to(dist.device)
    eff_batch, lr = effective_batch(options, dist.world_size), peak_lr(options, dist.world_size)
    optimizer = build_optimizer(model, lr, options.weight_decay)
    for group in optimizer.param_groups:
        group["betas"] = BETAS
    start_epoch, step, history = 0, 0, []
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, step, history = int(state["epoch"]), int(state["step"]), list(state["history"])
    dataset = UnlabeledImages(files, processor, options.image_size, options.seed, options.min_scale, options.flip)
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=dist.world_size, rank=dist.rank,
                                                  shuffle=True, seed=options.seed, drop_last=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=options.batch_size, sampler=sampler,
                                         num_workers=options.workers, pin_memory=dist.device.type == "cuda")
    steps_per_epoch = math.ceil(len(loader) / options.accum_steps)
    total_steps = steps_per_epoch * options.epochs
    warmup = warmup_steps(options.warmup_epochs, steps_per_epoch, total_steps)
    counted = counted_samples(len(dataset), dist.rank, dist.world_size)
    wrapped = wrap_for_ddp(model, dist)
    _log(dist, stream, f"pretrain: {len(files)} images, {options.image_size}px, mask ratio {model.config.mask_ratio}, "
                       f"norm_pix_loss {model.config.norm_pix_loss}, {dist.world_size} process(es) on "
                       f"{dist.device.type}, effective batch {eff_batch}, lr {lr:.3g}, from {source}"
                       + (f", resuming after epoch {start_epoch}" if state is not None else ""))
    pictures = _picture_batch(files, processor, options) if dist.is_main and options.pictures > 0 else None
    amp = options.amp and dist.device.type == "cuda"
    last_epoch = options.epochs if options.stop_after is None else min(options.epochs, start_epoch + options.stop_after)
    for epoch in range(start_epoch, last_epoch):
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        dataset.epoch = epoch
        bar = epoch_progress(len(loader), f"epoch {epoch + 1}/{options.epochs}", stream,
                             enabled=dist.is_main and not options.quiet)
        loss_sum, count, step = _train_one_epoch(
            wrapped, loader, optimizer, lambda s: warmup_cosine(s, total_steps, warmup, lr, options.min_lr),
            step, options, epoch, dist, amp, counted, bar)
        loss_sum, count = dist.all_sum([loss_sum, count])
        record = {"epoch": epoch + 1, "train_loss": loss_sum / max(count, 1),
                  "lr": warmup_cosine(max(step - 1, 0), total_steps, warmup, lr, options.min_lr),
                  "seconds": round(time.perf_counter() - started, 3)}
        history.append(record)
        bar.close(loss=record["train_loss"])
        error = None
        if dist.is_main:
            _, error = attempt(_save_epoch, out, model, optimizer, epoch + 1, step, processor, source, history,
                               options, pictures)
        dist.agree(error)
    digests = dist.all_gather_strings(weights_digest(model))
    metrics = {"source": source, "images": len(files), "epochs": history, "final": history[-1] if history else {},
               "completed": len(history) >= options.epochs, "world_size": dist.world_size,
               "effective_batch_size": eff_batch, "lr": lr, "weights_sha256_per_rank": digests,
               "replicas_identical": len(set(digests)) == 1, "options": asdict(options)}
    error = None
    if dist.is_main:
        note, error = attempt(save_run_folder, out, model, processor, metrics, write_loss_curve)
        if note:
            _log(dist, stream, note)
    dist.agree(error)
    _log(dist, stream, f"saved {out} (final loss {metrics['final'].get('train_loss', float('nan')):.4f}, metrics in "
                       f"{METRICS_NAME})" + ("" if metrics["completed"] else
                       f"; stopped after epoch {len(history)} of {options.epochs}, continue with --resume"))
    if not metrics["replicas_identical"]:
        raise RuntimeError(f"data-parallel replicas ended with different weights: {digests}")
    return metrics


def mask_generator(seed: int, epoch: int, index: int, rank: int) -> torch.Generator:
    """The random stream of one micro-batch's mask."""
    return torch.Generator().manual_seed(stream_key("mask", seed, epoch, index, rank))


def _train_one_epoch(model: nn.Module, loader, optimizer, lr_at, first_step: int, options: PretrainOptions,
                     epoch: int, dist: Distributed, amp: bool, counted: int, bar) -> tuple[float, float, int]:
    """One pass; the optimizer steps every ``accum_steps`` micro-batches and at the end of the epoch."""
    model.train()
    accum = options.accum_steps
    num_batches = len(loader)
    step, loss_sum, count, seen, group_size = first_step, 0.0, 0.0, 0, 1
    lr = lr_at(step)
    for index, pixels in enumerate(loader):
        position = index % accum
        if position == 0:
            lr = lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            group_size = min(accum, num_batches - index)
            optimizer.zero_grad(set_to_none=True)
        torch.manual_seed(step_seed(options.seed, epoch, index, dist.rank))  # drop path
        result, error = attempt(_forward, model, pixels, dist.device, amp,
                                mask_generator(options.seed, epoch, index, dist.rank), step, lr)
        dist.agree(error)
        last_of_step = position == group_size - 1
        sync = contextlib.nullcontext() if last_of_step or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            (result / group_size).backward()
        if last_of_step:
            optimizer.step()
            step += 1
        n = pixels.shape[0]
        k = max(0, min(n, counted - seen))
        seen += n
        loss_sum += float(result.detach()) * k
        count += k
        bar.update(1, loss=loss_sum / max(count, 1), lr=lr)
    return loss_sum, count, step


def _forward(model: nn.Module, pixels: torch.Tensor, device: torch.device, amp: bool, generator: torch.Generator,
             step: int, lr: float) -> torch.Tensor:
    pixels = pixels.to(device, non_blocking=True)
    mask = _batch_mask(model, pixels, generator)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        loss = model(pixels, bool_masked_pos=mask).loss
    if not torch.isfinite(loss):
        raise FloatingPointError(f"the pre-training loss became {loss.item()} at step {step} (lr {lr:.3g}); "
                                 "try a lower --blr")
    return loss


def _batch_mask(model: nn.Module, pixels: torch.Tensor,
                generator: torch.Generator) -> torch.Tensor:
    """The micro-batch's mask, drawn on the CPU from its keyed stream (the same on any device)."""
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    num_patches = (pixels.shape[-2] // inner.patch_size) * (pixels.shape[-1] // inner.patch_size)
    return inner.random_mask(pixels.shape[0], num_patches, generator).to(pixels.device)


def _picture_batch(files: Sequence[Path], processor: ConvNextImageProcessor,
                   options: PretrainOptions) -> Optional[torch.Tensor]:
    """The first images of the folder as the model sees them in evaluation: the same each epoch."""
    chosen = list(files[:options.pictures])
    size = {"shortest_edge": options.image_size}
    pixels = [processor(load_image(f), size=size, return_tensors="np")["pixel_values"][0] for f in chosen]
    batch = torch.from_numpy(np.stack(pixels).astype(np.float32))
    if batch.shape[-1] != options.image_size or batch.shape[-2] != options.image_size:
        return None
    return batch


@torch.no_grad()
def reconstruction_picture(model: ConvNextV2ForMaskedImageModeling, pixels: torch.Tensor,
                           processor: ConvNextImageProcessor, seed: int) -> np.ndarray:
    """Rows of (original, masked input, reconstruction with the visible patches pasted back) as uint8 RGB,
    the mask drawn from a fixed stream. With norm_pix_loss each patch's prediction is shown at its
    target's mean and spread (what the loss compares)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    p = model.patch_size
    h, w = pixels.shape[-2:]
    mask = model.random_mask(pixels.shape[0], (h // p) * (w // p), torch.Generator().manual_seed(seed))
    out = model(pixels.to(device), bool_masked_pos=mask.to(device))
    pred = out.logits.float().cpu()
    if model.config.norm_pix_loss:
        from convnext_pt.modeling import patchify

        target = patchify(pixels, p)
        pred = pred * (target.var(dim=-1, keepdim=True) + 1e-6).sqrt() + target.mean(dim=-1, keepdim=True)
    recon = model.unpatchify(pred, h, w)
    removed = model.unpatchify(out.mask.float().cpu()[..., None].expand(-1, -1, p * p * pixels.shape[1]), h, w)
    masked = pixels * (1 - removed)
    pasted = pixels * (1 - removed) + recon * removed
    mean = torch.tensor(processor.image_mean if processor.do_normalize else [0.0] * 3).view(1, -1, 1, 1)
    std = torch.tensor(processor.image_std if processor.do_normalize else [1.0] * 3).view(1, -1, 1, 1)
    scale = float(processor.rescale_factor) if processor.do_rescale else 1.0

    def to_uint8(x: torch.Tensor) -> np.ndarray:
        return ((x * std + mean) / scale).clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()

    grey = masked + removed * ((torch.full_like(mean, 128.0) * scale - mean) / std)
    rows = [np.concatenate([a, b, c], axis=1) for a, b, c in zip(to_uint8(pixels), to_uint8(grey), to_uint8(pasted))]
    model.train(was_training)
    return np.concatenate(rows, axis=0)


def _save_epoch(out: Path, model: ConvNextV2ForMaskedImageModeling, optimizer: torch.optim.Optimizer, epoch: int,
                step: int, processor: ConvNextImageProcessor, source: str, history: list[dict],
                options: PretrainOptions, pictures: Optional[torch.Tensor]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    state = {"format": CHECKPOINT_FORMAT, "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "optimizer": optimizer.state_dict(), "epoch": epoch, "step": step,
             "config_json": model.config.to_json_string(), "processor_json": json.dumps(processor.to_dict()),
             "source": source, "history": history, "options_json": json.dumps(asdict(options))}
    atomic_write_stream(out / CHECKPOINT_NAME, lambda f: torch.save(state, f))
    if pictures is not None:
        from PIL import Image

        picture = reconstruction_picture(model, pictures, processor, stream_key("picture", options.seed))
        (out / PICTURES_DIR).mkdir(exist_ok=True)
        atomic_write(out / PICTURES_DIR / f"epoch_{epoch:04d}.png",
                     lambda tmp: Image.fromarray(picture).save(tmp, format="PNG"))

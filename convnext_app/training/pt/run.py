"""The run: :func:`train` prepares the model, data and optimizer on every process, trains the
epochs, saves after each (rank 0) and writes the result."""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, TextIO

import torch
from torch import nn

from convnext_app.imagefolder import ImageFolder
from convnext_app.plots import write_curves

from ..common.data import METRICS_NAME, remap
from ..common.model import ModelSetup
from ..common.progress import epoch_progress
from ..common.schedule import warmup_cosine, warmup_steps
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint, save_run_folder, setup_from_checkpoint
from .data import ImageFolderDataset, load_data
from .distributed import (
    Distributed, attempt, counted_samples, run_on_every_rank, weights_digest, wrap_for_ddp,
)
from .loop import StepRecipe, evaluate, train_one_epoch
from .model import freeze_trunk, prepare_model, scale_head
from .options import TrainingError, TrainOptions
from .recipe import Mixup, ModelEma
from .schedule import build_optimizer




def train(options: TrainOptions, stream: Optional[TextIO] = None) -> dict[str, Any]:
    """Run ``convnext train``; returns the metrics written to metrics.json (on every rank).

    Under torchrun an error stops every process: rank 0 raises a :class:`RankError` naming the
    rank that failed, the others :class:`StoppedByAnotherRank` (``convnext train`` prints nothing
    for it), so the error is printed once. An error outside the points where the processes agree
    (the backward pass, the optimizer step) is raised by the rank that hit it, its rank named.
    """
    stream = stream if stream is not None else sys.stderr
    return run_on_every_rank(options.validate, lambda dist: _train(options, dist, stream), options.device)


def _check_output(options: TrainOptions) -> Optional[Path]:
    """The checkpoint to resume from, if any; refuses to silently mix runs in one folder."""
    out = Path(options.out)
    if out.exists() and not out.is_dir():
        raise TrainingError(f"--out {out}: exists and is not a folder")
    checkpoint = out / CHECKPOINT_NAME
    if options.resume:
        if not checkpoint.is_file():
            raise TrainingError(f"--resume: {checkpoint} does not exist (nothing to resume)")
        return checkpoint
    if not options.overwrite and out.is_dir() and any(
            (out / name).exists() for name in (CHECKPOINT_NAME, "model.safetensors", METRICS_NAME)):
        raise TrainingError(f"--out {out}: already holds a training run; pass --resume to continue it "
                            "or --overwrite to start over")
    return None


def _loader(dataset: torch.utils.data.Dataset, batch_size: int, sampler, workers: int,
            device: torch.device) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                                       pin_memory=device.type == "cuda", drop_last=False,
                                       persistent_workers=False)


def _log(dist: Distributed, stream: TextIO, message: str) -> None:
    if dist.is_main:
        print(message, file=stream, flush=True)


@dataclass
class _Run:
    """What the epochs need, prepared before the first one (on every rank alike)."""

    setup: ModelSetup
    state: Optional[dict[str, Any]]
    train_folder: ImageFolder
    val_folder: ImageFolder
    optimizer: torch.optim.Optimizer
    train_set: ImageFolderDataset
    sampler: torch.utils.data.DistributedSampler
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader
    start_epoch: int
    step: int
    history: list[dict]
    ema: Optional[ModelEma]


def _prepare(options: TrainOptions, dist: Distributed) -> _Run:
    resume_from = _check_output(options)
    state = load_checkpoint(resume_from) if resume_from is not None else None
    if state is not None:
        setup = setup_from_checkpoint(state)
        train_folder, val_folder = load_data(options)
        if sorted(train_folder.classes) != sorted(setup.classes):
            raise TrainingError(f"--resume: the classes in {options.data} ({', '.join(train_folder.classes)}) "
                                f"differ from the checkpoint's ({', '.join(setup.classes)})")
    else:
        train_folder, val_folder = load_data(options)
        setup = prepare_model(options.model, train_folder.classes, options.image_size, options.drop_path,
                              options.seed)
        if options.head_init_scale != 1.0 and setup.new_head:
            scale_head(setup.model, options.head_init_scale)
    if options.freeze_trunk:
        freeze_trunk(setup.model)
    if setup.classes != train_folder.classes:
        train_folder, val_folder = remap(train_folder, setup.classes), remap(val_folder, setup.classes)
    setup.model.to(dist.device)
    optimizer = build_optimizer(setup.model, options.lr, options.weight_decay, options.layer_decay,
                                options.layer_decay_type)
    ema = ModelEma(setup.model, options.ema) if options.ema is not None else None
    start_epoch, step, history = 0, 0, []
    if state is not None:
        _restore(state, optimizer, ema, resume_from)
        start_epoch, step, history = int(state["epoch"]), int(state["step"]), list(state["history"])
    train_set = ImageFolderDataset(train_folder, setup.processor, setup.image_size, train=True, seed=options.seed,
                                   min_scale=options.min_scale, flip=options.flip, randaugment=options.randaugment,
                                   reprob=options.reprob)
    val_set = ImageFolderDataset(val_folder, setup.processor, setup.image_size, train=False)
    sampler = torch.utils.data.DistributedSampler(train_set, num_replicas=dist.world_size, rank=dist.rank,
                                                  shuffle=True, seed=options.seed, drop_last=False)
    val_indices = list(range(dist.rank, len(val_set), dist.world_size))  # every image once over all ranks
    return _Run(setup, state, train_folder, val_folder, optimizer, train_set, sampler,
                _loader(train_set, options.batch_size, sampler, options.workers, dist.device),
                _loader(val_set, options.batch_size, val_indices, options.workers, dist.device),
                start_epoch, step, history, ema)


def _restore(state: dict[str, Any], optimizer: torch.optim.Optimizer, ema: Optional[ModelEma],
             path: Optional[Path]) -> None:
    """The optimizer's and the EMA's state from a checkpoint written with the same recipe options."""
    try:
        optimizer.load_state_dict(state["optimizer"])
    except ValueError as e:
        raise TrainingError(f"--resume: {path}: its optimizer holds other parameter groups than this run's "
                            f"(--layer-decay, --freeze-trunk differ from the run that wrote it?): {e}") from None
    if ema is not None:
        if "ema" not in state:
            raise TrainingError(f"--resume --ema: {path} was written without --ema (no EMA weights to continue)")
        ema.load_state_dict(state["ema"])


def _recipe_notes(options: TrainOptions, setup: ModelSetup, resumed: bool) -> list[str]:
    notes = []
    if options.head_init_scale != 1.0 and not setup.new_head and not resumed:
        notes.append("note: --head-init-scale applies to a new head only; the model's own head is kept as it is")
    return notes


def _train(options: TrainOptions, dist: Distributed, stream: TextIO) -> dict[str, Any]:
    out = Path(options.out)
    run, error = attempt(_prepare, options, dist)
    dist.agree(error)
    setup, state, optimizer, sampler, history = run.setup, run.state, run.optimizer, run.sampler, run.history
    model = setup.model
    step = run.step
    batches_per_epoch = len(run.train_loader)
    steps_per_epoch = math.ceil(batches_per_epoch / options.accum_steps)  # optimizer steps: the schedule's unit
    total_steps = steps_per_epoch * options.epochs
    warmup = warmup_steps(options.warmup_epochs, steps_per_epoch, total_steps)
    counted = counted_samples(len(run.train_set), dist.rank, dist.world_size)

    def lr_at(s: int) -> float:
        return warmup_cosine(s, total_steps, warmup, options.lr)

    wrapped = wrap_for_ddp(model, dist)
    _log(dist, stream, f"train: {len(run.train_folder)} images, val: {len(run.val_folder)} images, "
                       f"{len(setup.classes)} classes, {setup.image_size}px, {dist.world_size} process(es) on "
                       f"{dist.device.type}, {options.batch_size} per step per process, from {setup.source}"
                       + (" (new head)" if setup.new_head else "")
                       + (f", resuming after epoch {run.start_epoch}" if state is not None else ""))
    for note in _recipe_notes(options, setup, state is not None):
        _log(dist, stream, note)
    mixup = Mixup(options.mixup, options.cutmix, options.label_smoothing, len(setup.classes))
    if state is not None:
        saved_epochs = json.loads(state["options_json"]).get("epochs")
        if saved_epochs != options.epochs:
            _log(dist, stream, f"note: the checkpoint's run was planned for {saved_epochs} epochs, now "
                               f"{options.epochs}: the learning-rate schedule changes from here on")
    amp = options.amp and dist.device.type == "cuda"
    output = run.ema.module if run.ema is not None else model  # what is evaluated as "val" and saved
    last_epoch = options.epochs if options.stop_after is None else min(options.epochs,
                                                                       run.start_epoch + options.stop_after)
    for epoch in range(run.start_epoch, last_epoch):
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        run.train_set.epoch = epoch
        bar = epoch_progress(batches_per_epoch, f"epoch {epoch + 1}/{options.epochs}", stream,
                             enabled=dist.is_main and not options.quiet)
        recipe = StepRecipe(options.seed, epoch, dist.rank, mixup if mixup.enabled else None, options.accum_steps,
                            options.clip_grad, run.ema, options.freeze_trunk)
        totals, step = train_one_epoch(wrapped, run.train_loader, optimizer, lr_at, step, options.label_smoothing,
                                       dist.device, bar, amp, counted=counted, agree=dist.agree, recipe=recipe)
        t_loss, t_correct, t_count = dist.all_sum([totals["loss_sum"], totals["correct"], totals["count"]])
        record = {"epoch": epoch + 1, "train_loss": t_loss / max(t_count, 1),
                  "train_accuracy": t_correct / max(t_count, 1)}
        # val_*: the model that is saved (the EMA with --ema); raw_val_*: the raw weights beside it
        for prefix, evaluated in [("", output)] + ([("raw_", model)] if run.ema is not None else []):
            v, error = attempt(evaluate, evaluated, run.val_loader, dist.device, amp)
            dist.agree(error)
            v_loss, v_correct, v_count = dist.all_sum([v["loss_sum"], v["correct"], v["count"]])
            record[f"{prefix}val_loss"] = v_loss / max(v_count, 1)
            record[f"{prefix}val_accuracy"] = v_correct / max(v_count, 1)
        record.update(lr=lr_at(step - 1), seconds=round(time.perf_counter() - started, 3))
        history.append(record)
        bar.close(loss=record["train_loss"], acc=record["train_accuracy"], val_loss=record["val_loss"],
                  val_acc=record["val_accuracy"])
        error = None
        if dist.is_main:
            _, error = attempt(_save_epoch, out, model, optimizer, epoch + 1, step, setup, history, options, run.ema)
        dist.agree(error)
    digests = dist.all_gather_strings(weights_digest(output))  # of the saved weights
    metrics = {
        "classes": list(setup.classes), "source": setup.source, "new_head": setup.new_head,
        "images": {"train": len(run.train_folder), "val": len(run.val_folder)},
        "epochs": history, "final": history[-1] if history else {},
        "completed": len(history) >= options.epochs,
        "world_size": dist.world_size, "samples_per_process_per_epoch": len(sampler),
        "weights_sha256_per_rank": digests, "replicas_identical": len(set(digests)) == 1,
        "options": asdict(options),
    }
    error = None
    if dist.is_main:
        note, error = attempt(save_run_folder, out, output, setup.processor, metrics, write_curves)
        if note:
            _log(dist, stream, note)
    dist.agree(error)
    if dist.is_main:
        final = metrics["final"]
        _log(dist, stream, f"saved {out} (val accuracy {final.get('val_accuracy', float('nan')) * 100:.2f}%"
                           f", metrics in {METRICS_NAME})" + ("" if metrics["completed"] else
                           f"; stopped after epoch {len(history)} of {options.epochs}, continue with --resume"))
    if not metrics["replicas_identical"]:
        error = RuntimeError(f"data-parallel replicas ended with different weights: {digests}")
        raise dist.failure([str(error)] * dist.world_size) if dist.enabled else error
    return metrics


def _save_epoch(out: Path, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, step: int,
                setup: ModelSetup, history: list[dict], options: TrainOptions, ema: Optional[ModelEma]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / CHECKPOINT_NAME, model, optimizer, epoch, step, setup, history, options, ema)

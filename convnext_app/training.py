"""Train or fine-tune a ConvNeXt on an image folder, on one process or data-parallel under torchrun.

``convnext train`` calls :func:`train`. The pieces (augmentation, learning-rate schedule, one epoch
of training, evaluation) are public so other scripts (e.g. scripts/train_default_model.py) reuse them.

- Data: :mod:`convnext_app.imagefolder` (one folder per class; ``train/`` + ``val/`` or a seeded,
  stratified held-out fraction).
- Evaluation transform: the model's :class:`ConvNextImageProcessor`, exactly what inference uses.
- Training transform (torch, no torchvision): random resized crop (area ``[min_scale, 1]``, aspect
  ``[3/4, 4/3]``) to ``image_size`` with antialiased bilinear resize, random horizontal flip, then the
  processor's rescale and normalisation. Each sample's randomness comes from ``(seed, epoch, index)``,
  so a run is reproducible for any number of processes and data-loading workers.
- Optimisation: AdamW (no weight decay on biases, norms and layer scales), linear warmup then
  cosine decay per step, cross-entropy with label smoothing.
- Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) a process group is started (nccl on GPU,
  gloo on CPU), the model is wrapped in DistributedDataParallel and each process reads its shard
  (DistributedSampler, which repeats a few images so that every shard has the same length: they
  train, but the metrics count each image once). Only rank 0 writes files; at the end every rank's
  weights are hashed and gathered, and metrics.json records whether all replicas are identical.
  The processes agree after setting up, at every step (data, forward, loss), after evaluating and
  after saving, so that an error on any of them stops all of them there and rank 0 alone reports
  it, naming the rank that failed (:meth:`Distributed.agree`).
- Output (``--out``): config.json (id2label from the folder names), model.safetensors,
  preprocessor_config.json, metrics.json, and last_checkpoint.pt (model + optimizer state after
  the last epoch, for ``--resume``; read with ``weights_only=True``).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, TextIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from convnext_common.checkpoints.preprocessing import default_preprocessor_config
from convnext_common.config import ConvNextConfig, ConvNextV2Config, load_config
from convnext_common.fileio import atomic_write, atomic_write_text
from convnext_common.hub import is_hub_id
from convnext_app.imagefolder import ImageFolder, find_splits, load_image, scan_image_folder, split_holdout
from convnext_common.processing import ConvNextImageProcessor
from convnext_common.variants import config_for_variant, parse_variant

from convnext_pt.modeling import ConvNextForImageClassification, ConvNextV2ForImageClassification

CHECKPOINT_NAME = "last_checkpoint.pt"
METRICS_NAME = "metrics.json"


class TrainingError(ValueError):
    """Bad training options or data; the message names the option or path."""


class RankError(TrainingError):
    """An error of a torchrun job as one process reports it, naming the rank that failed."""


class StoppedByAnotherRank(RankError):
    """Raised on the processes of a torchrun job that do not report its error: rank 0 reports it,
    naming the rank that failed, and ``convnext train`` exits 1 on the others without a message."""


# --------------------------------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------------------------------
@dataclass
class TrainOptions:
    data: str
    model: str
    out: str
    epochs: int = 10
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    drop_path: Optional[float] = None
    image_size: Optional[int] = None
    min_scale: float = 0.25
    flip: bool = True
    val_fraction: float = 0.1
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    amp: bool = False
    resume: bool = False
    stop_after: Optional[int] = None
    overwrite: bool = False
    quiet: bool = False

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> "TrainOptions":
        names = set(cls.__dataclass_fields__)
        values = {k: v for k, v in vars(args).items() if k in names}
        if hasattr(args, "no_flip"):
            values["flip"] = not args.no_flip
        return cls(**values)

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (self.lr > 0 and math.isfinite(self.lr), f"--lr must be a positive number, got {self.lr}"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (self.warmup_epochs >= 0, f"--warmup-epochs must be >= 0, got {self.warmup_epochs}"),
            (0 <= self.label_smoothing < 1, f"--label-smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.drop_path is None or 0 <= self.drop_path < 1, f"--drop-path must be in [0, 1), got {self.drop_path}"),
            (self.image_size is None or self.image_size >= 32, f"--image-size must be >= 32, got {self.image_size}"),
            (0 < self.min_scale <= 1, f"--min-scale must be in (0, 1], got {self.min_scale}"),
            (0 < self.val_fraction < 1, f"--val-fraction must be between 0 and 1, got {self.val_fraction}"),
            (self.workers >= 0, f"--workers must be >= 0, got {self.workers}"),
            (self.stop_after is None or self.stop_after >= 1, f"--stop-after must be >= 1, got {self.stop_after}"),
            (not (self.resume and self.overwrite), "--resume and --overwrite exclude each other"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainingError(message)


# --------------------------------------------------------------------------------------------------
# schedule and optimizer
# --------------------------------------------------------------------------------------------------
def warmup_cosine(step: int, total_steps: int, warmup_steps: int, peak_lr: float, min_lr: float = 0.0) -> float:
    """Learning rate at ``step`` (0-based): linear from peak/warmup up to ``peak_lr`` over ``warmup_steps``,
    then half a cosine down to ``min_lr`` at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; parameters of one dimension (biases, norm scales, layer scales, GRN) get no weight decay."""
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or param.shape[:-1] == (1, 1, 1) else decay).append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


# --------------------------------------------------------------------------------------------------
# augmentation (torch only)
# --------------------------------------------------------------------------------------------------
def random_resized_crop_box(height: int, width: int, generator: torch.Generator, min_scale: float = 0.25,
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a crop with area in ``[min_scale, 1]`` of the image and aspect ratio in ``ratio``
    (log-uniform); after 10 misses, the largest centred crop within ``ratio``."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        u = torch.rand(4, generator=generator).tolist()
        target = area * (min_scale + (1.0 - min_scale) * u[0])
        aspect = math.exp(log_lo + (log_hi - log_lo) * u[1])
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(u[2] * (height - h + 1))
            left = int(u[3] * (width - w + 1))
            return min(top, height - h), min(left, width - w), h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


class TrainTransform:
    """PIL RGB image -> (3, size, size) float32: random resized crop, flip, the processor's normalisation."""

    def __init__(self, processor: ConvNextImageProcessor, image_size: int, min_scale: float = 0.25,
                 flip: bool = True):
        self.image_size = image_size
        self.min_scale = min_scale
        self.flip = flip
        self.rescale = float(processor.rescale_factor) if processor.do_rescale else 1.0
        mean = processor.image_mean if processor.do_normalize else [0.0, 0.0, 0.0]
        std = processor.image_std if processor.do_normalize else [1.0, 1.0, 1.0]
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, image, generator: torch.Generator) -> torch.Tensor:
        pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)  # (3, H, W)
        _, height, width = pixels.shape
        top, left, h, w = random_resized_crop_box(height, width, generator, self.min_scale)
        crop = pixels[:, top:top + h, left:left + w].float().unsqueeze(0)
        crop = F.interpolate(crop, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                             antialias=True)[0]
        if self.flip and torch.rand(1, generator=generator).item() < 0.5:
            crop = crop.flip(-1)
        crop = crop.clamp(0, 255).round()  # the processor also sees uint8 pixels
        return (crop * self.rescale - self.mean) / self.std


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The random stream of one sample in one epoch, independent of process and worker layout."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 10_000_019 + index)


class ImageFolderDataset(torch.utils.data.Dataset):
    """Samples of an :class:`ImageFolder`: ``train=True`` augments, else the processor transforms."""

    def __init__(self, folder: ImageFolder, processor: ConvNextImageProcessor, image_size: int, train: bool,
                 seed: int = 0, min_scale: float = 0.25, flip: bool = True):
        self.folder = folder
        self.processor = processor
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.augment = TrainTransform(processor, image_size, min_scale, flip) if train else None

    def __len__(self) -> int:
        return len(self.folder.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.folder.samples[index]
        image = load_image(path)
        if self.augment is not None:
            return self.augment(image, sample_generator(self.seed, self.epoch, index)), label
        pixels = self.processor(image, return_tensors="np")["pixel_values"][0]
        return torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)), label


# --------------------------------------------------------------------------------------------------
# distributed
# --------------------------------------------------------------------------------------------------
@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over processes (float64)."""
        t = torch.tensor(list(values), dtype=torch.float64)
        if self.enabled:
            t = t.to(self.device) if self.device.type == "cuda" else t
            torch.distributed.all_reduce(t)
        return t.cpu().tolist()

    def all_gather_strings(self, text: str) -> list[str]:
        if not self.enabled:
            return [text]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, text)
        return [str(x) for x in out]

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def agree(self, error: Optional[BaseException]) -> None:
        """Every process calls this at the same point with its error, or None. When any process
        failed, every process raises: rank 0 a :class:`RankError` naming the first rank that
        failed and its message, the others :class:`StoppedByAnotherRank`. Single process: ``error``."""
        if not self.enabled:
            if error is not None:
                raise error
            return
        if not self.all_sum([0.0 if error is None else 1.0])[0]:
            return
        messages = self.all_gather_strings("" if error is None else _one_line(error))
        self.barrier()  # gloo: without it, tearing the group down after a gather can abort a peer
        raise self.failure(messages) from error

    def failure(self, messages: Sequence[str]) -> "RankError":
        """The error this rank raises when the ranks whose ``messages`` are not empty failed."""
        failed = [rank for rank, message in enumerate(messages) if message]
        if not self.is_main:
            return StoppedByAnotherRank(f"rank {failed[0]} of {self.world_size} failed (rank 0 reports it)")
        also = f" ({len(failed)} of {self.world_size} ranks failed)" if len(failed) > 1 else ""
        return RankError(f"rank {failed[0]} of {self.world_size}: {messages[failed[0]]}{also}")


def _one_line(error: BaseException) -> str:
    from convnext_app.cli import one_line  # the CLI's own one-line form of an error

    return one_line(error)


def _attempt(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, Optional[Exception]]:
    """(``fn(...)``, None), or (None, the exception it raised): for :meth:`Distributed.agree`."""
    try:
        return fn(*args, **kwargs), None
    except Exception as e:  # noqa: BLE001  every process must reach the agreement, whatever failed
        return None, e


def counted_samples(dataset_size: int, rank: int, world_size: int) -> int:
    """How many of a rank's DistributedSampler samples (``drop_last=False``) are distinct images.

    The sampler pads its index list to a multiple of ``world_size`` by repeating its start, and
    rank ``r`` takes positions ``r, r + world_size, ...``: the padding is the tail of each shard,
    after the positions below ``dataset_size``.
    """
    return len(range(rank, dataset_size, world_size))


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TrainingError(f"--device {name!r} is not a torch device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError(f"--device {name}: CUDA is not available")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


def setup_distributed(device_name: str = "auto") -> Distributed:
    """Start the process group when launched by torchrun (WORLD_SIZE > 1); single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name, local_rank)
    if world_size > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world_size)
        if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    return Distributed(rank, world_size, local_rank, device)


def weights_digest(model: nn.Module) -> str:
    """SHA-256 over every parameter and buffer (name, dtype, shape, bytes), in name order."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------------------------------
class ProgressBar:
    """A one-line progress bar on ``stream`` (stderr): redrawn in place on a terminal; elsewhere one
    line per epoch, so logs stay short."""

    def __init__(self, total: int, description: str, stream: Optional[TextIO] = None, enabled: bool = True):
        self.total = max(1, total)
        self.description = description
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.interactive = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.count = 0
        self.start = time.perf_counter()
        self._last_draw = 0.0

    def _line(self, metrics: dict[str, float]) -> str:
        width = 24
        filled = int(width * self.count / self.total)
        elapsed = time.perf_counter() - self.start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        parts = " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
        return (f"{self.description} [{'#' * filled}{'.' * (width - filled)}] {self.count}/{self.total} "
                f"{parts} {rate:.1f} it/s {elapsed:.0f}s")

    def update(self, n: int = 1, **metrics: float) -> None:
        self.count += n
        if self.interactive and (time.perf_counter() - self._last_draw > 0.1 or self.count >= self.total):
            self.stream.write("\r" + self._line(metrics) + "\x1b[K")
            self.stream.flush()
            self._last_draw = time.perf_counter()

    def close(self, **metrics: float) -> None:
        if not self.enabled:
            return
        line = self._line(metrics)
        self.stream.write(f"\r{line}\x1b[K\n" if self.interactive else f"{line}\n")
        self.stream.flush()


# --------------------------------------------------------------------------------------------------
# one epoch
# --------------------------------------------------------------------------------------------------
def train_one_epoch(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    optimizer: torch.optim.Optimizer, lr_at: Callable[[int], float], first_step: int,
                    label_smoothing: float = 0.1, device: torch.device = torch.device("cpu"),
                    progress: Optional[ProgressBar] = None, amp: bool = False, counted: Optional[int] = None,
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
            result, error = _attempt(_forward_losses, model, batch, device, amp, label_smoothing, step, lr)
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


# --------------------------------------------------------------------------------------------------
# model and data
# --------------------------------------------------------------------------------------------------
def _classifier_class(config: ConvNextConfig) -> type[ConvNextForImageClassification]:
    return ConvNextV2ForImageClassification if isinstance(config, ConvNextV2Config) else ConvNextForImageClassification


def _reset_head(model: ConvNextForImageClassification) -> None:
    with torch.no_grad():
        nn.init.normal_(model.classifier.weight, std=model.config.initializer_range)
        nn.init.zeros_(model.classifier.bias)


@dataclass
class ModelSetup:
    model: ConvNextForImageClassification
    processor: ConvNextImageProcessor
    classes: list[str]          # classes[i] is the label of output i (the folder names)
    image_size: int
    source: str                 # what the run started from, for metrics.json
    new_head: bool


def _is_hub_model(spec: str) -> bool:
    """A namespaced hub id (``org/name``): a single word names a variant (``convnext-atto``), so a
    misspelt variant is reported as such instead of being looked up on the hub."""
    return "/" in spec.removeprefix("hf-hub:").removeprefix("hf_hub:") and is_hub_id(spec)


def prepare_model(spec: str, folder_classes: Sequence[str], image_size: Optional[int],
                  drop_path: Optional[float], seed: int) -> ModelSetup:
    """A folder fine-tunes (keeping its head when its labels are exactly the folder names, else a new
    head); a variant name builds a random init seeded by ``seed``."""
    labels = list(folder_classes)
    id2label = dict(enumerate(labels))
    label2id = {v: k for k, v in id2label.items()}
    torch.manual_seed(seed)
    path = Path(spec)
    if path.is_dir() or _is_hub_model(spec):
        path = spec  # a folder or a hub id (transformers or timm), resolved by load_config/from_pretrained
        config = load_config(path)
        overrides: dict[str, Any] = {}
        if drop_path is not None:
            overrides["drop_path_rate"] = drop_path
        old_labels = [config.id2label[i] for i in range(config.num_labels)]
        keeps_head = sorted(old_labels) == sorted(labels)
        if keeps_head:
            labels = old_labels  # the model's output order wins; folders map onto it by name
        else:
            overrides.update(num_labels=len(labels), id2label=id2label, label2id=label2id)
        config = config.copy(**overrides)
        with warnings.catch_warnings():
            if not keeps_head:  # the new head is expected to be untrained: no "newly initialised" warning
                warnings.filterwarnings("ignore", message=".*newly initialised.*")
            model = _classifier_class(config).from_pretrained(path, config=config, ignore_mismatched_sizes=True)
        if not keeps_head:
            _reset_head(model)
        if model.preprocessor_config is not None:  # the source's preprocessor_config.json
            processor = ConvNextImageProcessor.from_dict(model.preprocessor_config)
        else:  # the same default as `convnext predict` / `evaluate` use for such a folder
            processor = ConvNextImageProcessor.from_dict(default_preprocessor_config(config.image_size))
        size = image_size or int(processor.size.get("shortest_edge", config.image_size))
        source = str(path)
        new_head = not keeps_head
    else:
        try:
            parse_variant(spec)
        except ValueError as e:
            raise TrainingError(f"--model {spec!r} is neither a model folder, a hub id nor a known variant ({e})") \
                from None
        size = image_size or 224
        config = config_for_variant(spec, num_labels=len(labels), id2label=id2label, label2id=label2id,
                                    drop_path_rate=0.1 if drop_path is None else drop_path, image_size=size)
        model = _classifier_class(config)(config)
        processor = ConvNextImageProcessor.from_dict(default_preprocessor_config(size))
        source = spec
        new_head = True
    processor.size = {"shortest_edge": size}
    model.config.image_size = size
    return ModelSetup(model, processor, labels, size, source, new_head)


def load_data(options: TrainOptions) -> tuple[ImageFolder, ImageFolder]:
    """(train, val) folders, labels indexing the sorted folder names. The held-out split depends only
    on the files and the seed, so a resumed run validates on the same images."""
    train_dir, val_dir = find_splits(options.data)
    train_folder = scan_image_folder(train_dir)
    if val_dir is not None:
        val_folder = scan_image_folder(val_dir, classes=train_folder.classes, allow_missing_classes=True)
        return train_folder, val_folder
    return split_holdout(train_folder, options.val_fraction, seed=options.seed)


def remap(folder: ImageFolder, classes: Sequence[str]) -> ImageFolder:
    """The same images with labels indexing ``classes`` (same names, another order)."""
    index = {name: i for i, name in enumerate(classes)}
    return ImageFolder(folder.root, list(classes),
                       [(p, index[folder.classes[label]]) for p, label in folder.samples])


# --------------------------------------------------------------------------------------------------
# checkpoint
# --------------------------------------------------------------------------------------------------
def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, step: int,
                    setup: ModelSetup, history: list[dict], options: TrainOptions) -> None:
    state = {
        "format": "convnext-train-checkpoint-1",
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "epoch": epoch, "step": step,
        "config_json": setup.model.config.to_json_string(),
        "processor_json": json.dumps(setup.processor.to_dict()),
        "classes": list(setup.classes), "source": setup.source, "new_head": setup.new_head,
        "history": history, "options_json": json.dumps(asdict(options)),
    }
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  any unreadable file is one clear error
        raise TrainingError(f"{path}: not a readable training checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or state.get("format") != "convnext-train-checkpoint-1":
        raise TrainingError(f"{path}: not a checkpoint written by convnext train")
    return state


def setup_from_checkpoint(state: dict[str, Any]) -> ModelSetup:
    d = json.loads(state["config_json"])
    config_cls = ConvNextV2Config if d.get("model_type") == "convnextv2" else ConvNextConfig
    config = config_cls.from_dict(d)
    model = _classifier_class(config)(config)
    model.load_state_dict(state["model"])
    processor = ConvNextImageProcessor(**json.loads(state["processor_json"]))
    return ModelSetup(model, processor, list(state["classes"]), int(config.image_size), state["source"],
                      bool(state["new_head"]))


# --------------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------------
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


def train(options: TrainOptions, stream: Optional[TextIO] = None) -> dict[str, Any]:
    """Run ``convnext train``; returns the metrics written to metrics.json (on every rank).

    Under torchrun an error stops every process: rank 0 raises a :class:`RankError` naming the
    rank that failed, the others :class:`StoppedByAnotherRank` (``convnext train`` prints nothing
    for it), so the error is printed once. An error outside the points where the processes agree
    (the backward pass, the optimizer step) is raised by the rank that hit it, its rank named.
    """
    stream = stream if stream is not None else sys.stderr
    try:
        options.validate()
        dist = setup_distributed(options.device)
    except Exception as e:
        launched = _launched()
        if launched.enabled:  # the same options and machine on every rank: every rank fails alike
            raise launched.failure([_one_line(e)] * launched.world_size) from e
        raise
    try:
        metrics = _train(options, dist, stream)
        dist.barrier()  # gloo: without it, tearing the group down right after an all-reduce can abort a peer
        return metrics
    except RankError:
        raise
    except Exception as e:
        if dist.enabled:
            raise RankError(f"rank {dist.rank} of {dist.world_size}: {_one_line(e)}") from e
        raise
    finally:
        if dist.enabled and torch.distributed.is_initialized():
            # DistributedDataParallel's reducer sits in reference cycles: collected at interpreter
            # exit, gloo's worker threads would outlive the group and abort the process
            # ("terminate called without an active exception"). Free it while all is alive.
            gc.collect()
            torch.distributed.destroy_process_group()


def _launched() -> Distributed:
    """Rank and world size from torchrun's environment, before any process group exists."""
    return Distributed(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))


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
    if setup.classes != train_folder.classes:
        train_folder, val_folder = remap(train_folder, setup.classes), remap(val_folder, setup.classes)
    setup.model.to(dist.device)
    optimizer = build_optimizer(setup.model, options.lr, options.weight_decay)
    start_epoch, step, history = 0, 0, []
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, step, history = int(state["epoch"]), int(state["step"]), list(state["history"])
    train_set = ImageFolderDataset(train_folder, setup.processor, setup.image_size, train=True, seed=options.seed,
                                   min_scale=options.min_scale, flip=options.flip)
    val_set = ImageFolderDataset(val_folder, setup.processor, setup.image_size, train=False)
    sampler = torch.utils.data.DistributedSampler(train_set, num_replicas=dist.world_size, rank=dist.rank,
                                                  shuffle=True, seed=options.seed, drop_last=False)
    val_indices = list(range(dist.rank, len(val_set), dist.world_size))  # every image once over all ranks
    return _Run(setup, state, train_folder, val_folder, optimizer, train_set, sampler,
                _loader(train_set, options.batch_size, sampler, options.workers, dist.device),
                _loader(val_set, options.batch_size, val_indices, options.workers, dist.device),
                start_epoch, step, history)


def _train(options: TrainOptions, dist: Distributed, stream: TextIO) -> dict[str, Any]:
    out = Path(options.out)
    run, error = _attempt(_prepare, options, dist)
    dist.agree(error)
    setup, state, optimizer, sampler, history = run.setup, run.state, run.optimizer, run.sampler, run.history
    model = setup.model
    step = run.step
    steps_per_epoch = len(run.train_loader)
    total_steps = steps_per_epoch * options.epochs
    warmup_steps = min(int(round(options.warmup_epochs * steps_per_epoch)), total_steps // 2)
    counted = counted_samples(len(run.train_set), dist.rank, dist.world_size)

    def lr_at(s: int) -> float:
        return warmup_cosine(s, total_steps, warmup_steps, options.lr)

    wrapped: nn.Module = model
    if dist.enabled:
        # oneDNN returns depthwise-conv gradients in another stride order than DDP's buckets: harmless, noisy.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    _log(dist, stream, f"train: {len(run.train_folder)} images, val: {len(run.val_folder)} images, "
                       f"{len(setup.classes)} classes, {setup.image_size}px, {dist.world_size} process(es) on "
                       f"{dist.device.type}, {options.batch_size} per step per process, from {setup.source}"
                       + (" (new head)" if setup.new_head else "")
                       + (f", resuming after epoch {run.start_epoch}" if state is not None else ""))
    if state is not None:
        saved_epochs = json.loads(state["options_json"]).get("epochs")
        if saved_epochs != options.epochs:
            _log(dist, stream, f"note: the checkpoint's run was planned for {saved_epochs} epochs, now "
                               f"{options.epochs}: the learning-rate schedule changes from here on")
    amp = options.amp and dist.device.type == "cuda"
    last_epoch = options.epochs if options.stop_after is None else min(options.epochs,
                                                                       run.start_epoch + options.stop_after)
    for epoch in range(run.start_epoch, last_epoch):
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        run.train_set.epoch = epoch
        bar = ProgressBar(steps_per_epoch, f"epoch {epoch + 1}/{options.epochs}", stream,
                          enabled=dist.is_main and not options.quiet)
        totals, step = train_one_epoch(wrapped, run.train_loader, optimizer, lr_at, step, options.label_smoothing,
                                       dist.device, bar, amp, counted=counted, agree=dist.agree)
        t_loss, t_correct, t_count = dist.all_sum([totals["loss_sum"], totals["correct"], totals["count"]])
        v, error = _attempt(evaluate, model, run.val_loader, dist.device, amp)
        dist.agree(error)
        v_loss, v_correct, v_count = dist.all_sum([v["loss_sum"], v["correct"], v["count"]])
        record = {"epoch": epoch + 1, "train_loss": t_loss / max(t_count, 1),
                  "train_accuracy": t_correct / max(t_count, 1),
                  "val_loss": v_loss / max(v_count, 1), "val_accuracy": v_correct / max(v_count, 1),
                  "lr": lr_at(step - 1), "seconds": round(time.perf_counter() - started, 3)}
        history.append(record)
        bar.close(loss=record["train_loss"], acc=record["train_accuracy"], val_loss=record["val_loss"],
                  val_acc=record["val_accuracy"])
        error = None
        if dist.is_main:
            _, error = _attempt(_save_epoch, out, model, optimizer, epoch + 1, step, setup, history, options)
        dist.agree(error)
    digests = dist.all_gather_strings(weights_digest(model))
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
        _, error = _attempt(_save_result, out, model, setup, metrics)
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
                setup: ModelSetup, history: list[dict], options: TrainOptions) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / CHECKPOINT_NAME, model, optimizer, epoch, step, setup, history, options)


def _save_result(out: Path, model: nn.Module, setup: ModelSetup, metrics: dict[str, Any]) -> None:
    model.to("cpu").save_pretrained(out)
    setup.processor.save_pretrained(out)
    atomic_write_text(out / METRICS_NAME, json.dumps(metrics, indent=2) + "\n")

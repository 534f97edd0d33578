"""Train or fine-tune a ConvNeXt on an image folder in PyTorch, on one process or data-parallel under
torchrun; and ``convnext pretrain`` (``pretrain``: FCMAE on unlabeled images).

``convnext train`` calls :func:`train`. The pieces (augmentation, optimizer, one epoch of training,
evaluation) are public so other scripts (e.g. scripts/train_default_model.py) reuse them. One module
per job: ``options``, ``data`` (splits, datasets, augmentation), ``model`` (the twin's side of what a
run starts from), ``schedule`` (the optimizer), ``loop`` (an epoch, an evaluation), ``distributed``
(torchrun), ``checkpoint`` (``--resume``) and ``run`` (the entry); ``recipe`` holds the papers'
fine-tuning recipe (EMA, mixup/cutmix, RandAugment, random erasing, layer decay). What the Keras path
decides alike (the shared options, the starting model, the crop and cutmix draws, the schedule, the
keyed random streams that make a resumed run repeat the straight run's draws) is
:mod:`convnext_app.training.common`.

- Data: :mod:`convnext_app.imagefolder` (one folder per class; ``train/`` + ``val/`` or a seeded,
  stratified held-out fraction).
- Evaluation transform: the model's :class:`ConvNextImageProcessor`, exactly what inference uses.
- Training transform (torch, no torchvision): random resized crop (area ``[min_scale, 1]``, aspect
  ``[3/4, 4/3]``) to ``image_size`` with antialiased bilinear resize, random horizontal flip, then the
  processor's rescale and normalisation (RandAugment before it, random erasing after it, when asked).
  Each sample's randomness comes from ``(seed, epoch, index)``, each step's (drop path, mixup) from
  ``(seed, epoch, step, rank)``, so a run is reproducible for any number of data-loading workers and
  a run split at an epoch boundary and resumed is bit-identical to a straight one.
- Optimisation: AdamW (no weight decay on biases, norms and layer scales), linear warmup then
  cosine decay per optimizer step, cross-entropy with label smoothing; optionally layer-wise lr
  decay, gradient accumulation and clipping, an EMA of the weights (saved as the output model).
- Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) a process group is started (nccl on GPU,
  gloo on CPU), the model is wrapped in DistributedDataParallel and each process reads its shard
  (DistributedSampler, which repeats a few images so that every shard has the same length: they
  train, but the metrics count each image once). Only rank 0 writes files; at the end every rank's
  weights are hashed and gathered, and metrics.json records whether all replicas are identical.
  The processes agree after setting up, at every step (data, forward, loss), after evaluating and
  after saving, so that an error on any of them stops all of them there and rank 0 alone reports
  it, naming the rank that failed (:meth:`Distributed.agree`).
- Output (``--out``): config.json (id2label from the folder names), model.safetensors,
  preprocessor_config.json, metrics.json, curves.png (with the ``plot`` extra), and
  last_checkpoint.pt (raw model, EMA and optimizer state after the last epoch, for ``--resume``;
  read with ``weights_only=True``).
"""

from convnext_app.plots import CURVES_NAME

from ..common.data import METRICS_NAME, remap
from ..common.model import ModelSetup
from ..common.progress import epoch_progress
from ..common.schedule import warmup_cosine
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint, setup_from_checkpoint
from .data import ImageFolderDataset, TrainTransform, load_data, random_resized_crop_box, sample_generator
from .distributed import (
    Distributed, RankError, StoppedByAnotherRank, counted_samples, pick_device, setup_distributed, weights_digest,
)
from .loop import StepRecipe, evaluate, train_one_epoch
from .model import freeze_trunk, prepare_model, scale_head
from .options import TrainingError, TrainOptions
from .run import train
from .schedule import build_optimizer

__all__ = [
    "CHECKPOINT_NAME", "CURVES_NAME", "METRICS_NAME", "StepRecipe", "freeze_trunk", "scale_head", "Distributed",
    "ImageFolderDataset", "ModelSetup", "epoch_progress", "RankError",
    "StoppedByAnotherRank", "TrainOptions", "TrainTransform", "TrainingError", "build_optimizer", "counted_samples",
    "evaluate", "load_checkpoint", "load_data", "pick_device", "prepare_model", "random_resized_crop_box", "remap",
    "sample_generator", "save_checkpoint", "setup_distributed", "setup_from_checkpoint", "train", "train_one_epoch",
    "warmup_cosine", "weights_digest",
]

"""Fine-tune the Keras twin on an image folder with ``fit``: ``convnext train --framework tf``.

The same folders, held-out split, augmentation, schedule and output as the PyTorch path
(:mod:`convnext_app.training.pt`), and the recipe options Keras offers: ``--ema`` (the optimizer's
moving average; the averaged weights are evaluated each epoch and saved), ``--clip-grad`` (global
norm), ``--accum-steps`` (the optimizer's gradient accumulation), ``--mixup`` / ``--cutmix`` (timm's
batch mixing, in numpy), ``--head-init-scale`` and ``--freeze-trunk``. ``--randaugment``,
``--reprob``, ``--layer-decay``, ``--resume``/``--stop-after``, ``--amp`` and ``--workers`` are
refused in one line. Several GPUs: ``tf.distribute.MirroredStrategy``.

One module per job: ``options`` and ``data`` (framework-free), ``model``, ``optim`` and ``run``
(Keras; import ``convnext_app.training.keras.run`` for :func:`train_keras`), ``pretrain``
(``convnext pretrain --framework tf``). What both paths decide alike is
:mod:`convnext_app.training.common`. No torch anywhere.
"""

import argparse
import os

from .options import UNSUPPORTED, KerasTrainingError, KerasTrainOptions

__all__ = ["UNSUPPORTED", "KerasTrainOptions", "KerasTrainingError", "run_from_args"]


def run_from_args(args: argparse.Namespace) -> int:
    """``convnext train --framework tf``: the options checked before TensorFlow is imported."""
    options = KerasTrainOptions.from_namespace(args)
    options.validate()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter is not for CLI users
    from .run import train_keras

    train_keras(options)
    return 0

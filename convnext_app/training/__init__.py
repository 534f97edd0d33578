"""``convnext train`` and ``convnext pretrain``: one package, three parts.

- :mod:`convnext_app.training.common`: what every path decides alike, framework-free (the shared
  options and their checks, the model a run starts from, the random crop and mixup/cutmix draws, the
  learning-rate schedule and weight-decay rule, the keyed random streams, pre-training's options and
  config).
- :mod:`convnext_app.training.pt`: the PyTorch path (one process or torchrun DDP, ``--resume``, the
  whole fine-tuning recipe) and FCMAE pre-training (``pt.pretrain``).
- :mod:`convnext_app.training.keras`: the Keras twin with ``fit`` on any Keras backend
  (``--framework tf``), for both commands. It imports no torch.

This module imports nothing, so either path can be imported without the other's framework.
"""

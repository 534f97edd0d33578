"""The application on top of the twins: the ``convnext`` command (predict, embed, evaluate, train, convert,
export), the inference runner, export and verification orchestration, and training.

Layers: :mod:`convnext_common` (framework-free core) <- :mod:`convnext_pt`, :mod:`convnext_tf` (the
twins) <- this package. Importing it imports neither framework; each command imports the twin it
runs when it runs.
"""

"""The subcommands of ``convnext``, one module each.

Every module here has the same shape: ``HELP`` (one line for ``convnext --help``), ``DESCRIPTION``
and ``EPILOG`` (for ``convnext NAME --help``; either may be None), ``add_arguments(parser)`` and
``run(args) -> exit code``. They import only argparse-level code at module level: the work
(torch, TensorFlow, the twins) is imported inside ``run``, so listing the commands stays cheap.
:mod:`convnext_app.cli` registers them from one list.
"""

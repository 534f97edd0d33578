"""Loading notices: what ``from_pretrained`` tells about weights it did not load or did not use.

Each notice goes two ways:

- a Python warning (``UserWarning``), one line naming the file: the project's notice, shown once by
  default and silenced with ``warnings.filterwarnings`` (the ``convnext`` commands filter it
  where a new head is expected);
- a record on the logger ``convnext_common.loading`` (level WARNING) in transformers' wording ("Some
  weights of ... were not initialized from the model checkpoint at ... and are newly initialized
  because the shapes did not match: ..."), for code that reads loading notices from logging, as
  transformers reports them on its own logger ``transformers.modeling_utils``. The package's logger
  has a ``NullHandler``, so the record prints nothing unless logging is configured.

transformers' ``logging.set_verbosity_*`` sets transformers' loggers only; it does not reach these.
"""

from __future__ import annotations

import logging
import warnings
from typing import Sequence

LOGGER_NAME = "convnext_common.loading"
logger = logging.getLogger(LOGGER_NAME)
logging.getLogger("convnext_common").addHandler(logging.NullHandler())


def newly_initialised(source: str, model_name: str, missing: Sequence[str],
                      mismatched: Sequence[tuple[str, tuple, tuple]], warning: str, stacklevel: int) -> None:
    """Missing and size-mismatched weights, left as the model initialised them."""
    warnings.warn(warning, UserWarning, stacklevel=stacklevel + 1)
    if missing:
        logger.warning("Some weights of %s were not initialized from the model checkpoint at %s and are newly "
                       "initialized: %s\nYou should probably TRAIN this model on a down-stream task to be able to use "
                       "it for predictions and inference.", model_name, source, list(missing))
    if mismatched:
        lines = "\n".join(f"- {name}: found shape {tuple(ckpt)} in the checkpoint and {tuple(model)} in the model "
                          "instantiated" for name, ckpt, model in mismatched)
        logger.warning("Some weights of %s were not initialized from the model checkpoint at %s and are newly "
                       "initialized because the shapes did not match:\n%s\nYou should probably TRAIN this model on a "
                       "down-stream task to be able to use it for predictions and inference.", model_name, source, lines)


def not_used(source: str, model_name: str, unexpected: Sequence[str], warning: str, stacklevel: int) -> None:
    """Checkpoint tensors the model has no place for."""
    warnings.warn(warning, UserWarning, stacklevel=stacklevel + 1)
    logger.warning("Some weights of the model checkpoint at %s were not used when initializing %s: %s", source,
                   model_name, list(unexpected))

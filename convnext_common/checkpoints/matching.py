"""Fit a checkpoint's tensors to a model's parameters: prefixes, task heads, and clear refusals.

A classification checkpoint stores the trunk under ``convnext.`` (``convnextv2.`` for V2) and the
head as ``classifier.*``; a base model or backbone stores the trunk without a prefix. Either loads
into any model class: the prefix is added or removed, and task-specific tensors (the classifier,
the final norm, the backbone's feature norms) that one side lacks are dropped or left to the
model's initialisation, as transformers does. Anything else that is missing, unexpected or
mis-shaped is an error that lists the names. So are NaN or infinite weights (``require_finite``):
one such value turns every output it reaches into NaN, so such a checkpoint is refused, not
loaded with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from .. import notices
from .errors import CheckpointError

#: tensors that belong to one task's head, not to the shared trunk.
#: ``decoder.`` is the masked-image model's (FCMAE) decoder: a pre-trained folder fine-tunes as any model;
#: ``layer_norm.`` is DINOv3's final norm.
TASK_SPECIFIC = ("classifier.", "hidden_states_norms.", "layernorm.", "layer_norm.", "decoder.")


@dataclass
class LoadReport:
    missing_keys: list[str] = field(default_factory=list)       # left at their initial values
    unexpected_keys: list[str] = field(default_factory=list)    # dropped
    mismatched_keys: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (name, ckpt, model)


def _is_task_specific(name: str) -> bool:
    return name.startswith(TASK_SPECIFIC)


class SizeMismatchError(CheckpointError, RuntimeError):
    """Checkpoint tensors whose shapes differ from the model's (a RuntimeError, as transformers and
    torch's ``load_state_dict`` raise it; a CheckpointError, as every refused checkpoint here)."""


def match_state_dict(
    checkpoint: Mapping[str, np.ndarray],
    expected: Mapping[str, tuple[int, ...]],
    prefix: str,
    source: str = "checkpoint",
    ignore_mismatched_sizes: bool = False,
    strict: bool = True,
    model_name: str = "the model",
) -> tuple[dict[str, np.ndarray], LoadReport]:
    """Rename ``checkpoint`` to the model's names in ``expected`` (name -> shape).

    ``prefix`` is the trunk prefix (``"convnext"``). Returns the tensors to load and a report.
    Raises CheckpointError naming ``source`` and the offending keys when ``strict`` and the
    checkpoint does not fit; without ``strict`` (transformers' ``from_pretrained``) missing and
    unexpected keys are warned about and reported. Mismatched shapes raise SizeMismatchError
    either way unless ``ignore_mismatched_sizes``.
    """
    p = prefix + "."
    model_prefixed = any(k.startswith(p) for k in expected)
    ckpt_prefixed = any(k.startswith(p) for k in checkpoint)

    def to_model_name(k: str) -> str | None:
        if model_prefixed and not ckpt_prefixed:
            return k if k.startswith("classifier.") else p + k
        if ckpt_prefixed and not model_prefixed:
            return k[len(p):] if k.startswith(p) else None  # the ckpt's classifier has no place here
        return k

    renamed: dict[str, np.ndarray] = {}
    report = LoadReport()
    for k, v in checkpoint.items():
        name = to_model_name(k)
        if name is None or name not in expected:
            report.unexpected_keys.append(k)
            continue
        renamed[name] = v
    report.missing_keys = [k for k in expected if k not in renamed]
    for name in list(renamed):
        shape = tuple(expected[name])
        got = tuple(renamed[name].shape)
        if got != shape:
            if int(np.prod(got)) == int(np.prod(shape)) and len(got) != len(shape):
                renamed[name] = renamed[name].reshape(shape)  # e.g. GRN (C,) vs (1, 1, 1, C)
                continue
            report.mismatched_keys.append((name, got, shape))
            del renamed[name]

    def trunk_only(keys):
        return [k for k in keys if not _is_task_specific(k[len(p):] if k.startswith(p) else k)]

    hard_missing = trunk_only(report.missing_keys)
    hard_unexpected = trunk_only(report.unexpected_keys)
    mismatched = report.mismatched_keys
    if mismatched and not ignore_mismatched_sizes:
        shown = ", ".join(f"{n} (checkpoint {list(a)}, model {list(b)})" for n, a, b in mismatched[:8])
        raise SizeMismatchError(
            f"{source}: does not fit the model: {len(mismatched)} keys with mismatched shapes: {shown}"
            + ("" if len(mismatched) <= 8 else ", ...") + "; pass ignore_mismatched_sizes=True to re-initialise them")
    problems = []
    if hard_missing:
        problems.append(f"missing {len(hard_missing)} keys: {_names(hard_missing)}")
    if hard_unexpected:
        problems.append(f"unexpected {len(hard_unexpected)} keys: {_names(hard_unexpected)}")
    if problems and strict:
        raise CheckpointError(f"{source}: does not fit the model: " + "; ".join(problems))
    require_finite(renamed, source)
    newly_initialised = report.missing_keys + [n for n, _, _ in mismatched]
    if newly_initialised:  # a warning and a log record (convnext_common.notices)
        notices.newly_initialised(source, model_name, report.missing_keys, mismatched,
                                  f"{source}: newly initialised (train before use): {_names(newly_initialised)}",
                                  stacklevel=3)
    if hard_unexpected:
        notices.not_used(source, model_name, hard_unexpected,
                         f"{source}: not used by the model: {_names(hard_unexpected)}", stacklevel=3)
    return renamed, report


def require_finite(state: Mapping[str, np.ndarray], source: str = "checkpoint") -> None:
    """Raise CheckpointError naming the floating-point tensors of ``state`` that hold NaN or inf."""
    bad = []
    for name, array in state.items():
        a = np.asarray(array)
        if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
            bad.append(f"{name} ({int(a.size - np.isfinite(a).sum())} of {a.size} values)")
    if bad:
        raise CheckpointError(f"{source}: {len(bad)} tensors hold NaN or inf values: {_names(bad, 5)}; "
                              f"refusing weights that would make the outputs NaN")


def _names(keys: list[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")

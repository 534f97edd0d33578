"""``--precision``: the numeric precision a command runs a model in, one record per choice.

``fp32`` is the model as trained. ``bf16`` is bfloat16 inference: the PyTorch twin's parameters
and activations in bfloat16 (``from_pretrained(dtype=torch.bfloat16)``; LayerNorm and GRN keep
their statistics in float32, and the fused Linear+GELU runs through oneDNN only on CPUs with
bfloat16 kernels, see convnext_pt/fused.py), the Keras twin under Keras' ``mixed_bfloat16``
policy (float32 variables, bfloat16 compute). Inputs and outputs stay float32 either way.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Precision:
    name: str
    torch_dtype: str     # the PyTorch twin's parameter dtype (a torch dtype's name)
    keras_dtype: Optional[str]  # the Keras twin's dtype policy (None: the model's own)
    help: str


PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    Precision("fp32", "float32", None, "float32 (default)"),
    Precision("bf16", "bfloat16", "mixed_bfloat16",
              "bfloat16 compute, norms' statistics in float32 (fast only on CPUs with bfloat16 "
              "instructions: AVX512-BF16, AMX; elsewhere slower than fp32)"),
)}


def add_precision_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=list(PRECISIONS), default="fp32",
                   help="; ".join(f"{q.name}: {q.help}" for q in PRECISIONS.values()))


def precision(name: str) -> Precision:
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    return PRECISIONS[name]

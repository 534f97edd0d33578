"""``--precision``: the numeric precision a command runs a model in, one record per choice.

``fp32`` is the model as trained. ``bf16`` is bfloat16 inference: the PyTorch twin's parameters
and activations in bfloat16 (``from_pretrained(dtype=torch.bfloat16)``; LayerNorm and GRN keep
their statistics in float32, and the fused Linear+GELU runs through oneDNN only on CPUs with
bfloat16 kernels, see convnext_pt/fused.py), the Keras twin under Keras' ``mixed_bfloat16``
policy (float32 variables, bfloat16 compute). ``int8`` is a post-training statically quantized
model run by OpenVINO (convnext_app/quantization.py): a folder written by ``convnext quantize``, or
the float32 model quantized for the run on the images of ``--calibration DIR``. Inputs and outputs
stay float32 in every precision.
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
    # int8 never loads the twin in int8: the float32 twin is exported and quantized (torch_dtype float32)
    Precision("int8", "float32", None,
              "int8 on OpenVINO: a folder written by `convnext quantize`, or the model quantized for this run "
              "on --calibration DIR (needs pip install \"convnext-twins[int8]\")"),
)}


def add_precision_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=list(PRECISIONS), default="fp32",
                   help="; ".join(f"{q.name}: {q.help}" for q in PRECISIONS.values()))
    p.add_argument("--calibration", metavar="DIR", default=None,
                   help="with --precision int8: quantize the model on these images (a folder, searched recursively; "
                        "up to 300 are used) before running it; the int8 model is checked against float32 on them")


def precision(name: str) -> Precision:
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    return PRECISIONS[name]

"""oneDNN's fused Linear + activation for CPU inference.

A ConvNeXt block spends ~70% of its CPU time in the two 1x1 convs (Linears) and ~10% in the
GELU after the first. oneDNN computes ``act(x @ W.T + b)`` in one pass over the output, with the
same bits as ``F.gelu(F.linear(x, W, b))``, and its GEMM is faster than eager ``addmm`` on the
skinny shapes of the early stages. It has no autograd formula, so it is used only where no
gradient is needed, on float32 CPU tensors, and never while tracing for export (an exported
program must hold standard ops only).

Under ``torch.compile`` the call goes through the custom op ``convnext::linear_pointwise``:
inductor's own lowering of the oneDNN op requires frozen weights, whereas an opaque custom op
keeps the fused GEMM and lets inductor fuse everything around it (dwconv epilogue, LayerNorm,
layer scale, residual). Without it the compiled model is slower than the eager one.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

_HAS_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")

#: a post-op that oneDNN applies in the GEMM's epilogue: (attr, scalars, algorithm).
PostOp = tuple[str, list, Optional[str]]
NO_POST_OP: PostOp = ("none", [], None)


def post_op_for(act: nn.Module) -> Optional[PostOp]:
    """The oneDNN post-op computing ``act`` exactly, or None when there is none."""
    if isinstance(act, nn.GELU):
        return ("gelu", [], act.approximate)  # "none" (erf) or "tanh"
    if isinstance(act, nn.ReLU):
        return ("relu", [], None)
    if isinstance(act, nn.SiLU):
        return ("swish", [], None)
    return None


def _is_exporting() -> bool:
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    if is_exporting is not None:
        return is_exporting()
    return torch.compiler.is_compiling()  # older torch cannot tell export from compile


def _tracing() -> bool:
    """True where the fused kernels must not appear: TorchScript, jit tracing, export, and compile
    on a torch too old for custom ops."""
    if torch.jit.is_scripting() or torch.jit.is_tracing() or _is_exporting():
        return True
    return torch.compiler.is_compiling() and _compiled_linear is None


def usable(x: torch.Tensor, *params: torch.Tensor) -> bool:
    """True when the fused kernels may replace the eager ops for input ``x``."""
    if not _HAS_ONEDNN or x.device.type != "cpu" or x.dtype != torch.float32 or _tracing():
        return False
    if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)):
        return False
    return True


def linear(x: torch.Tensor, layer: nn.Linear, post_op: PostOp = NO_POST_OP) -> torch.Tensor:
    """``post_op(layer(x))`` in one oneDNN call; ``x`` is (..., in_features)."""
    attr, scalars, algorithm = post_op
    if torch.compiler.is_compiling():
        return _compiled_linear(x, layer.weight, layer.bias, attr, algorithm or "")
    return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, attr, scalars, algorithm)


def _define_compiled_linear():
    """The oneDNN call as an opaque custom op for torch.compile (None where torch lacks custom ops)."""
    if not _HAS_ONEDNN or not hasattr(torch.library, "custom_op"):
        return None
    name = "convnext::linear_pointwise"

    @torch.library.custom_op(name, mutates_args=())
    def linear_pointwise(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], attr: str,
                         algorithm: str) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, attr, [], algorithm or None)

    @linear_pointwise.register_fake
    def _(x, weight, bias, attr, algorithm):
        return x.new_empty((*x.shape[:-1], weight.shape[0]))

    return linear_pointwise


_compiled_linear = _define_compiled_linear()

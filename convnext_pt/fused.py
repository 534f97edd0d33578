"""The PyTorch twin's fast paths, used only where provably invisible: oneDNN's fused Linear +
activation for inference, and the memory layout the trunk computes in.

**Fused Linear + activation.** A ConvNeXt block spends most of its CPU time in the two 1x1 convs
(Linears) and the GELU after the first. oneDNN computes ``act(x @ W.T + b)`` in one pass over the
output. It has no autograd formula and it bypasses the modules, so :func:`linear_act` uses it only
when calling the modules would compute the same thing:

- the modules are exactly ``nn.Linear`` and an activation whose formula the post-op encodes
  (``nn.GELU`` with its ``approximate``, ``nn.ReLU``, ``nn.SiLU``), each with torch's own
  ``forward``, read at call time: a module replaced by the user, wrapped by an adapter (peft),
  quantized or parametrized is another type and runs as itself (this file's test);
- nothing observes, intercepts or traces the calls and no gradient is needed: the one torch guard
  shared with the Keras twin's PyTorch backend, ``convnext_torch_kernels.may_fuse_linear`` (no
  hooks, no ``__torch_function__`` / dispatch mode, no autocast, no tensor subclass, no torch.fx,
  TorchScript or torch.export; CPU tensors of one dtype oneDNN computes here: float32, or bfloat16
  where oneDNN has bfloat16 kernels, :data:`FUSED_DTYPES`).

Otherwise the modules are simply called. Agreement with the unfused ops is that of two GEMM
kernels: within the dtype's rounding (the tests bound it), not bit for bit on every CPU. In
bfloat16 both accumulate in float32; the fused call rounds once after the activation where the
modules round the Linear's output before it. Under ``torch.compile`` the call is an opaque custom
op (``convnext_torch_kernels.linear_pointwise``).

**Memory layout.** The trunk computes channels-last in memory (:func:`to_trunk_layout`, applied to
the stem's input): a block's NCHW <-> NHWC permutes are then free views and its Linears read
contiguous rows, instead of a copy before every Linear. Shapes stay NCHW throughout, so the
modules read as the official ones; every map a model returns is NCHW-contiguous as transformers'
(:func:`to_output_layout`), so ``.view`` works on it. Layout changes no value.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from convnext_torch_kernels import FUSED_DTYPES, HAS_ONEDNN, linear_pointwise, may_fuse_linear

__all__ = ["FUSED_DTYPES", "linear_act", "to_trunk_layout", "to_output_layout", "record_map"]

_HAS_ONEDNN = HAS_ONEDNN

# The forward of each class as torch defines it: a class-level patch (e.g. by a profiler) disables fusion.
_PLAIN_FORWARD = {cls: cls.forward for cls in (nn.Linear, nn.GELU, nn.ReLU, nn.SiLU)}

#: a post-op that oneDNN applies in the GEMM's epilogue: (attr, scalars, algorithm).
PostOp = tuple[str, list, Optional[str]]
NO_POST_OP: PostOp = ("none", [], None)


def linear_act(linear: nn.Module, act: Optional[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """``act(linear(x))`` (``linear(x)`` when ``act`` is None), in one oneDNN call when that is
    provably the same computation (see the module docstring), else by calling the modules."""
    post_op = _post_op(act) if _fusable(linear, act, x) else None
    if post_op is None:
        x = linear(x)
        return x if act is None else act(x)
    attr, scalars, algorithm = post_op
    return linear_pointwise(x, linear.weight, linear.bias, attr, scalars, algorithm)


def _post_op(act: Optional[nn.Module]) -> Optional[PostOp]:
    """The oneDNN post-op computing ``act`` exactly, or None when there is none."""
    if act is None:
        return NO_POST_OP
    if type(act) is nn.GELU and act.approximate in ("none", "tanh"):
        return ("gelu", [], act.approximate)
    if type(act) is nn.ReLU:
        return ("relu", [], None)
    if type(act) is nn.SiLU:
        return ("swish", [], None)
    return None


def _fusable(linear: nn.Module, act: Optional[nn.Module], x: torch.Tensor) -> bool:
    if not _plain_module(linear) or (act is not None and not _plain_module(act)):
        return False
    modules = (linear,) if act is None else (linear, act)
    return may_fuse_linear(modules, x, linear.weight, linear.bias)


def _plain_module(m: nn.Module) -> bool:
    """``m`` is exactly a torch class with torch's forward (hooks: the shared guard)."""
    cls = type(m)
    return _PLAIN_FORWARD.get(cls) is cls.forward


# --- memory layout ------------------------------------------------------------------------------------
def to_trunk_layout(x: torch.Tensor) -> torch.Tensor:
    """An NCHW map in the memory layout the trunk computes in (channels-last, see the module docstring)."""
    return x.contiguous(memory_format=torch.channels_last)


def to_output_layout(x: torch.Tensor) -> torch.Tensor:
    """A map as the models return it: NCHW-contiguous, as transformers' (``.view`` works on it)."""
    return x.contiguous()


def record_map(hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the map to return, the map to go on with). The returned map is in the output layout and
    the computation goes on *from* it, in the trunk's layout, so it lies on the path to the
    output: ``retain_grad()`` on a returned hidden state gets its gradient, as in transformers."""
    recorded = to_output_layout(hidden_states)
    if recorded is hidden_states:
        return recorded, hidden_states
    return recorded, to_trunk_layout(recorded)

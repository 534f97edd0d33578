"""The torch fast paths' one guard and their one kernel, shared by the PyTorch twin and the Keras
twin's PyTorch backend (neither twin imports the other; both import this).

:func:`unobserved` is the one answer to "may a fast path stand in for these calls?" on torch. A
fast path computes the same numbers by other kernels, so it may run only where nothing could see
or change the plain calls:

- the tensors are plain ``torch.Tensor`` / ``nn.Parameter`` objects: no subclass (fake or
  functional tensors, a library's wrapper) and no torch.fx ``Proxy``;
- nothing traces: torch.fx, TorchScript, ``torch.jit.trace``, ``torch.export`` (traced programs
  hold the standard ops); ``torch.compile`` is allowed where the kernel is a custom op
  (:func:`linear_pointwise`), since dynamo then traces the modes and autocast itself;
- no ``__torch_function__`` or dispatch mode is active (``FlopCounterMode``, a profiler's mode, a
  debugging mode: they would count or alter other ops);
- autocast is off: under autocast each op runs in the dtype autocast picks for it (a Linear in
  its lower precision, reading the float32 weights), which the fast path would not reproduce;
- no global module hook, and no hook of any kind on the modules whose calls are replaced, nor an
  instance-level ``forward`` (a user's or a library's patch runs).

What the modules are (exactly ``nn.Linear``, exactly Keras' ``Dense``, ...) is each twin's own
test, in its ``fused.py``; :func:`may_fuse_linear` adds to :func:`unobserved` what the fused
oneDNN Linear itself needs (CPU, one dtype it computes here, no gradient).

Imports torch only: no package of this project (the Keras twin imports it on the torch backend
only, the core never).
"""

from __future__ import annotations

from typing import Iterable, Optional

import torch
from torch import nn
from torch.nn.modules import module as _module

__all__ = ["HAS_ONEDNN", "FUSED_DTYPES", "unobserved", "may_fuse_linear", "linear_pointwise"]

HAS_ONEDNN: bool = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _onednn_runs_bfloat16() -> bool:
    """Whether oneDNN's fused Linear takes bfloat16 on this CPU: torch's check of the instruction
    set, then one tiny call (a CPU without bfloat16 kernels has no primitive for it)."""
    if not HAS_ONEDNN or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False
    x = torch.ones(1, 8, dtype=torch.bfloat16)
    try:
        torch.ops.mkldnn._linear_pointwise(x, torch.ones(4, 8, dtype=torch.bfloat16), None, "none", [], None)
    except RuntimeError:
        return False
    return True


#: the dtypes the fused call computes on this CPU (float32 always; bfloat16 where oneDNN has kernels for it).
FUSED_DTYPES: tuple[torch.dtype, ...] = (torch.float32,) + ((torch.bfloat16,) if _onednn_runs_bfloat16() else ())

_PLAIN_TENSOR_TYPES = (torch.Tensor, nn.Parameter)


def unobserved(modules: Iterable[nn.Module] = (), tensors: Iterable[Optional[torch.Tensor]] = ()) -> bool:
    """Whether a fast path may stand in for calling ``modules`` on ``tensors`` (None entries are
    skipped): nothing traces, intercepts or observes those calls (see the module docstring)."""
    tensors = [t for t in tensors if t is not None]
    if any(type(t) not in _PLAIN_TENSOR_TYPES for t in tensors):  # Proxies, fake and other subclassed tensors
        return False
    if _tracing() or _intercepted():
        return False
    return not any(_observed(m) for m in modules)


def may_fuse_linear(modules: Iterable[nn.Module], x: torch.Tensor, weight: torch.Tensor,
                    bias: Optional[torch.Tensor]) -> bool:
    """Whether :func:`linear_pointwise` may compute ``x @ weight.T + bias`` (and an activation)
    in place of calling ``modules``: :func:`unobserved`, and the kernel's own conditions: oneDNN
    present, CPU tensors of one dtype of :data:`FUSED_DTYPES`, strided parameters, no gradient
    needed (the kernel has no autograd formula)."""
    if not HAS_ONEDNN or not unobserved(modules, (x, weight, bias)):
        return False
    params = [p for p in (weight, bias) if p is not None]
    if x.device.type != "cpu" or x.dtype not in FUSED_DTYPES:
        return False
    if any(p.dtype != x.dtype or p.device.type != "cpu" or p.layout != torch.strided for p in params):
        return False
    return not (torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)))


def linear_pointwise(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], attr: str,
                     scalars: list, algorithm: Optional[str]) -> torch.Tensor:
    """oneDNN's ``attr(x @ weight.T + bias)`` in one call (``attr`` "none", "gelu", "relu", "swish");
    under ``torch.compile`` through the custom op ``convnext::linear_pointwise``: inductor's own
    lowering of the oneDNN op requires frozen weights, whereas an opaque custom op keeps the fused
    GEMM and lets inductor fuse everything around it."""
    if torch.compiler.is_compiling():
        return _compiled_linear(x, weight, bias, attr, algorithm or "")
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, attr, scalars, algorithm)


def _observed(m: nn.Module) -> bool:
    """A hook of any kind on ``m``, or a ``forward`` of the instance's own."""
    return bool("forward" in vars(m) or getattr(m, "_forward_hooks", None) or getattr(m, "_forward_pre_hooks", None)
                or getattr(m, "_backward_hooks", None) or getattr(m, "_backward_pre_hooks", None))


def _intercepted() -> bool:
    """Something outside the modules would see (or change) their calls: global module hooks,
    torch function / dispatch modes, autocast."""
    if (_module._global_forward_hooks or _module._global_forward_pre_hooks or _module._global_backward_hooks
            or _module._global_backward_pre_hooks):
        return True
    if torch.compiler.is_compiling():
        return False  # dynamo traces modes and autocast itself; the custom op is dispatched normally
    if torch._C._is_torch_function_mode_enabled() or torch._C._len_torch_dispatch_stack() > 0:
        return True
    return torch.is_autocast_enabled("cpu") if _AUTOCAST_TAKES_DEVICE else torch.is_autocast_cpu_enabled()


def _tracing() -> bool:
    """True where a fast path's kernels must not appear: torch.fx, TorchScript, jit tracing, export,
    and compile on a torch too old for custom ops."""
    if _is_fx_tracing() or torch.jit.is_scripting() or torch.jit.is_tracing():
        return True
    if _is_exporting():
        return True
    return torch.compiler.is_compiling() and _compiled_linear is None


def _is_fx_tracing() -> bool:
    from torch.fx import _symbolic_trace

    is_symbolic = getattr(_symbolic_trace, "is_fx_symbolic_tracing", None)  # torch >= 2.10
    return is_symbolic() if is_symbolic is not None else _symbolic_trace.is_fx_tracing()


def _is_exporting() -> bool:
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    if is_exporting is not None:
        return is_exporting()
    return torch.compiler.is_compiling()  # a torch that cannot tell export from compile


def _autocast_takes_device() -> bool:
    try:
        torch.is_autocast_enabled("cpu")
        return True
    except TypeError:  # torch < 2.4
        return False


_AUTOCAST_TAKES_DEVICE = _autocast_takes_device()


def _define_compiled_linear():
    """The oneDNN call as an opaque custom op for torch.compile (None where torch lacks custom ops)."""
    if not HAS_ONEDNN or not hasattr(torch.library, "custom_op"):
        return None

    @torch.library.custom_op("convnext::linear_pointwise", mutates_args=())
    def compiled_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], attr: str,
                        algorithm: str) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, attr, [], algorithm or None)

    @compiled_linear.register_fake
    def _(x, weight, bias, attr, algorithm):
        return x.new_empty((*x.shape[:-1], weight.shape[0]))

    return compiled_linear


_compiled_linear = _define_compiled_linear()

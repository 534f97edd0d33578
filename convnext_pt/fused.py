"""oneDNN's fused Linear + activation for CPU inference, used only where it is provably invisible.

A ConvNeXt block spends most of its CPU time in the two 1x1 convs (Linears) and the GELU after
the first. oneDNN computes ``act(x @ W.T + b)`` in one pass over the output. It has no autograd
formula and it bypasses the modules, so :func:`linear_act` uses it only when calling the modules
would compute the same thing:

- the modules are exactly ``nn.Linear`` and an activation whose formula the post-op encodes
  (``nn.GELU`` with its ``approximate``, ``nn.ReLU``, ``nn.SiLU``), read at call time: a module
  replaced by the user, wrapped by an adapter (peft), quantized or parametrized is another type
  and runs as itself;
- nothing observes or alters the call: no hooks of any kind on either module, no global module
  hooks, no instance-level ``forward`` override, no ``__torch_function__`` / dispatch mode, no
  tensor subclass;
- no gradient is needed, the input and the parameters are plain CPU tensors of one dtype that
  oneDNN computes here: float32, or bfloat16 where oneDNN has bfloat16 kernels for the CPU
  (AVX-512 and up, fast with AVX512-BF16 or AMX; probed once at import, :data:`FUSED_DTYPES`);
  elsewhere (AVX2) a bfloat16 model runs its modules as they are. Nothing is being traced (torch.fx, TorchScript, torch.export:
  traced programs hold the standard ops).
- autocast is off: under autocast the modules run as autocast casts them (the Linear in its
  lower-precision dtype, reading the float32 weights), which the fused call would not reproduce.

Otherwise the modules are simply called. Agreement with the unfused ops is that of two GEMM
kernels: within the dtype's rounding (the tests bound it), not bit for bit on every CPU. In
bfloat16 both accumulate in float32; the fused call rounds once after the activation where the
modules round the Linear's output before it.

Under ``torch.compile`` the call goes through the custom op ``convnext::linear_pointwise``:
inductor's own lowering of the oneDNN op requires frozen weights, whereas an opaque custom op
keeps the fused GEMM and lets inductor fuse everything around it.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn.modules import module as _module

_HAS_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _onednn_runs_bfloat16() -> bool:
    """Whether oneDNN's fused Linear takes bfloat16 on this CPU: torch's check of the instruction
    set, then one tiny call (a CPU without bfloat16 kernels has no primitive for it)."""
    if not _HAS_ONEDNN or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False
    x = torch.ones(1, 8, dtype=torch.bfloat16)
    try:
        torch.ops.mkldnn._linear_pointwise(x, torch.ones(4, 8, dtype=torch.bfloat16), None, "none", [], None)
    except RuntimeError:
        return False
    return True


#: the dtypes the fused call computes on this CPU (float32 always; bfloat16 where oneDNN has kernels for it).
FUSED_DTYPES: tuple[torch.dtype, ...] = (torch.float32,) + ((torch.bfloat16,) if _onednn_runs_bfloat16() else ())

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
    if torch.compiler.is_compiling():
        return _compiled_linear(x, linear.weight, linear.bias, attr, algorithm or "")
    return torch.ops.mkldnn._linear_pointwise(x, linear.weight, linear.bias, attr, scalars, algorithm)


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
    if not _HAS_ONEDNN or type(x) is not torch.Tensor:  # Proxies, fake and other subclassed tensors
        return False
    if x.device.type != "cpu" or x.dtype not in FUSED_DTYPES or _tracing() or _intercepted():
        return False
    if not _plain_module(linear) or (act is not None and not _plain_module(act)):
        return False
    params = [p for p in (linear.weight, linear.bias) if p is not None]
    if any(type(p) not in (nn.Parameter, torch.Tensor) or p.dtype != x.dtype or p.device.type != "cpu"
           or p.layout != torch.strided for p in params):
        return False
    return not (torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)))


def _plain_module(m: nn.Module) -> bool:
    """``m`` is exactly a torch class with torch's forward, and nothing is attached to it."""
    cls = type(m)
    return (_PLAIN_FORWARD.get(cls) is cls.forward and "forward" not in m.__dict__
            and not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks))


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
    """True where the fused kernels must not appear: torch.fx, TorchScript, jit tracing, export,
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
    return torch.compiler.is_compiling()  # older torch cannot tell export from compile


def _autocast_takes_device() -> bool:
    try:
        torch.is_autocast_enabled("cpu")
        return True
    except TypeError:  # torch < 2.4
        return False


_AUTOCAST_TAKES_DEVICE = _autocast_takes_device()


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

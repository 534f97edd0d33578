"""Deployment of the PyTorch twin: ONNX verified with onnxruntime, torch.export and torch.compile.

Every function checks its result against the eager model on two inputs (the export shape and
another batch at an odd size, see :func:`convnext_common.export.verification_shapes`) and reports
docs/DESIGN.md's ``rel`` per output.

- :func:`export_onnx`: opset 18 by default (:func:`supported_opsets` gives each exporter's range),
  dynamic batch, height and width. The default exporter is torch's torch.export-based one
  (``dynamo``, needs ``onnxscript``); ``exporter="torchscript"`` selects the older tracing exporter
  (deprecated in torch; needs no onnxscript; the one exporter of torch < 2.5).
- :func:`export_program`: ``torch.export.export`` with symbolic batch/height/width.
- :func:`check_compile`: ``torch.compile(fullgraph=True)`` (a graph break is an error) against eager.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import warnings
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from convnext_common.export import (
    ONNX_OPSET, ONNX_TOLERANCE, Check, ExportReport, ExportVerificationError, compare_outputs, default_image_size,
    random_pixels, require, staged_output, total_stride, trace_image_size, verification_shapes,
)

from .modeling import ConvNextBackbone, ConvNextForImageClassification, ConvNextModel

EXPORTERS = ("dynamo", "torchscript")
INPUT_NAME = "pixel_values"
# ONNX files hold at most 2 GiB; bigger weights go to a "<file>.data" file beside the model.
_EXTERNAL_DATA_BYTES = 1_800_000_000


def output_names(model: nn.Module) -> tuple[str, ...]:
    """The tensors an exported graph returns, by model class (transformers' field names)."""
    if isinstance(model, ConvNextForImageClassification):
        return ("logits",)
    if isinstance(model, ConvNextBackbone):
        return tuple(f"feature_maps_{i}" for i in range(len(model.out_features)))  # as the Keras twin serves
    if isinstance(model, ConvNextModel):
        return ("last_hidden_state", "pooler_output")
    raise TypeError(f"export needs a ConvNext(V2)Model, ForImageClassification or Backbone, got {type(model).__name__}")


class TensorOutputs(nn.Module):
    """``pixel_values`` (B, C, H, W) -> the model's outputs as a plain tensor tuple, in
    :func:`output_names` order (exporters and compilers want tensors, not output objects)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.names = output_names(model)
        self.train(model.training)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(pixel_values, return_dict=True)
        if isinstance(self.model, ConvNextBackbone):
            return tuple(out.feature_maps)
        return tuple(getattr(out, name) for name in self.names)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Export in inference mode (no drop path) and give the model back in the mode it came in."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _check_float32(model: nn.Module) -> None:
    dtypes = {p.dtype for p in model.parameters()}
    if dtypes != {torch.float32}:
        raise ValueError(f"export needs float32 weights, the model has {', '.join(map(str, sorted(dtypes, key=str)))} "
                         "(call model.float() first)")


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def eager_outputs(model: nn.Module, pixel_values: np.ndarray) -> dict[str, np.ndarray]:
    """The reference: the eager model's outputs for a numpy NCHW batch, by output name."""
    with _eval_mode(model):
        wrapper = TensorOutputs(model)
        outs = wrapper(torch.from_numpy(pixel_values).to(_device(model)))
    return {name: t.detach().cpu().numpy() for name, t in zip(wrapper.names, outs)}


def _shapes(model: nn.Module, check_shapes: Optional[Sequence[Sequence[int]]], batch_size: int,
            image_size: Optional[Sequence[int]]) -> list[tuple[int, ...]]:
    if check_shapes is not None:
        return [tuple(int(s) for s in shape) for shape in check_shapes]
    return verification_shapes(model.config, batch_size, image_size)


def _trace_shape(model: nn.Module, shape: Sequence[int]) -> tuple[int, ...]:
    """``shape`` raised to a batch of 2 and sizes of :func:`min_dynamic_size`: torch.export treats
    a size of 1 (a batch of 1, or a 1x1 last feature map) as a constant and would freeze it."""
    least = min_dynamic_size(model)
    b, c, h, w = shape
    return max(b, 2), c, max(h, least), max(w, least)


# ------------------------------------------------------------------------------------------------
# ONNX
# ------------------------------------------------------------------------------------------------
def run_onnx(path: Union[str, os.PathLike], pixel_values: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs of an ONNX file under onnxruntime on the CPU, by output name."""
    ort = require("onnxruntime", "running an ONNX model")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: shape-inference notes are not failures
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {INPUT_NAME: np.ascontiguousarray(pixel_values, np.float32)})))


def _dynamic_axes(names: Sequence[str], example: tuple) -> dict[str, dict[int, str]]:
    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
    for name, tensor in zip(names, example):
        axes[name] = {0: "batch", 2: f"{name}_height", 3: f"{name}_width"} if tensor.ndim == 4 else {0: "batch"}
    return axes


#: Lowest opset the graphs can use at all: LayerNormalization is a native op from 17.
MIN_OPSET = 17


def supported_opsets(exporter: str = "dynamo") -> tuple[int, int]:
    """(lowest, highest) ONNX opset ``exporter`` writes as asked with the installed torch and onnx.

    The torch.export-based exporter implements its ops from opset 18 on (asked for less, it writes
    18 and tries a version conversion that fails for this model); the TorchScript one stops at
    torch's ``ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET``. The ``onnx`` package caps both.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    onnx = require("onnx", "ONNX export")
    constants = getattr(torch.onnx, "_constants", None)
    if exporter == "dynamo":
        try:
            from torch.onnx._internal.exporter._constants import TORCHLIB_OPSET as lowest
        except ImportError:  # torch versions without it: the opset its torchlib started at
            lowest = 18
        highest = getattr(constants, "ONNX_MAX_OPSET", lowest)
    else:
        lowest = MIN_OPSET
        highest = getattr(constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET",
                          getattr(constants, "ONNX_MAX_OPSET", ONNX_OPSET))
    return max(int(lowest), MIN_OPSET), min(int(highest), int(onnx.defs.onnx_opset_version()))


def check_opset(opset: int, exporter: str = "dynamo") -> int:
    """``opset`` when ``exporter`` writes it, else a one-line ValueError naming the supported ranges."""
    lowest, highest = supported_opsets(exporter)
    if lowest <= opset <= highest:
        return opset
    others = [f"; the {name} exporter writes {lo}-{hi}" for name in EXPORTERS if name != exporter
              for lo, hi in [supported_opsets(name)] if lo <= opset <= hi]
    raise ValueError(f"opset {opset} is not supported by the {exporter} ONNX exporter: it writes opsets "
                     f"{lowest}-{highest} with torch {torch.__version__.split('+')[0]}{''.join(others)}")


def file_opset(path: Union[str, os.PathLike]) -> int:
    """The default-domain (``ai.onnx``) opset an ONNX file declares."""
    onnx = require("onnx", "reading an ONNX file")
    proto = onnx.load(str(path), load_external_data=False)
    versions = [entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")]
    if not versions:
        raise ValueError(f"{path}: declares no ai.onnx opset")
    return int(versions[0])


def _export_dynamo(wrapper: TensorOutputs, x: torch.Tensor, path: Path, opset: int) -> None:
    require("onnxscript", "ONNX export with exporter='dynamo'")
    if "dynamo" not in inspect.signature(torch.onnx.export).parameters:
        raise ValueError(f"exporter='dynamo' needs torch >= 2.5 (this is {torch.__version__}); "
                         "use exporter='torchscript'")
    n_bytes = sum(p.numel() * p.element_size() for p in wrapper.parameters())
    # torch logs "torchvision is not installed" warnings while it registers ops: not about us.
    registration_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration_log.level
    registration_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch-internal pytree deprecations
            program = torch.onnx.export(
                wrapper, (x,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                output_names=list(wrapper.names), verbose=False,
                # named string dims are "dynamic, any size": the ONNX graph itself carries no guards
                dynamic_shapes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"}})
    finally:
        registration_log.setLevel(level)
    program.save(str(path), external_data=n_bytes > _EXTERNAL_DATA_BYTES)


def _export_torchscript(wrapper: TensorOutputs, x: torch.Tensor, path: Path, opset: int) -> None:
    with torch.no_grad():
        example = wrapper(x)
    kwargs = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with warnings.catch_warnings():
        # The deprecation notice is torch's; the tracer warns about the input-channel check in
        # the stem, a static dimension. Any size frozen by mistake fails the verification below.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(wrapper, (x,), str(path), opset_version=opset, input_names=[INPUT_NAME],
                          output_names=list(wrapper.names), dynamic_axes=_dynamic_axes(wrapper.names, example),
                          **kwargs)


def _add_metadata(path: Path, model: nn.Module, exporter: str) -> None:
    """config.json (labels included) and provenance in the ONNX file's metadata_props."""
    onnx = require("onnx", "ONNX export")
    proto = onnx.load(str(path), load_external_data=False)  # external tensors keep their references
    entries = {"convnext_config": model.config.to_json_string(),
               "convnext_class": type(model).__name__, "convnext_exporter": exporter}
    for key, value in entries.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.save(proto, str(path))


def export_onnx(model: nn.Module, path: Union[str, os.PathLike], *, opset: int = ONNX_OPSET,
                exporter: str = "dynamo", batch_size: int = 2, image_size: Optional[Sequence[int]] = None,
                check_shapes: Optional[Sequence[Sequence[int]]] = None, tolerance: Optional[float] = ONNX_TOLERANCE,
                overwrite: bool = False) -> ExportReport:
    """Write ``model`` as ONNX at ``path`` and verify it with onnxruntime (CPU) against the model.

    The graph takes ``pixel_values`` (batch, C, height, width) float32, all three sizes dynamic,
    and returns :func:`output_names` (``logits`` (batch, num_labels) for a classifier). It is
    traced at ``batch_size`` x ``image_size`` (default: ``config.image_size`` square) and checked
    there and at another batch and odd size (or at ``check_shapes``). When an output's ``rel``
    exceeds ``tolerance`` an :class:`~convnext_common.export.ExportVerificationError` is raised
    and nothing is written; otherwise the file appears at ``path`` in one step (an existing file
    is replaced only with ``overwrite``).
    """
    require("onnx", "ONNX export")
    require("onnxruntime", "ONNX export (verification)")
    opset = check_opset(int(opset), exporter)
    _check_float32(model)
    shapes = _shapes(model, check_shapes, batch_size, image_size)
    x = torch.from_numpy(random_pixels(_trace_shape(model, shapes[0]), seed=0)).to(_device(model))
    with _eval_mode(model), staged_output(path, overwrite=overwrite) as tmp:
        wrapper = TensorOutputs(model)
        (_export_dynamo if exporter == "dynamo" else _export_torchscript)(wrapper, x, tmp, opset)
        written = file_opset(tmp)
        if written != opset:  # the report states what the file is; a silent substitution is an error
            raise ExportVerificationError(f"the {exporter} exporter wrote opset {written} where {opset} was asked; "
                                          "nothing was written")
        _add_metadata(tmp, model, exporter)
        checks = []
        for i, shape in enumerate(shapes):
            pixels = random_pixels(shape, seed=i)
            checks.append(compare_outputs(run_onnx(tmp, pixels), eager_outputs(model, pixels), shape, tolerance,
                                          f"ONNX export of {type(model).__name__}"))
    return ExportReport("onnx", Path(path), "PyTorch eager", tolerance, checks,
                        {"opset": written, "exporter": exporter, "dynamic axes": "batch, height, width"})


# ------------------------------------------------------------------------------------------------
# OpenVINO IR (from the verified ONNX export)
# ------------------------------------------------------------------------------------------------
#: OpenVINO's CPU plugin computes in bfloat16 by default where the CPU has it; verification and
#: ``precision="fp32"`` pin float32 so that the IR is checked as written.
OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16", "default": None}


def compile_openvino(path_or_model, precision: str = "fp32"):
    """An OpenVINO CPU compiled model of an IR (``.xml``) or ONNX file, or of an ``ov.Model``,
    at ``precision`` (a key of :data:`OPENVINO_PRECISIONS`; ``"default"``: the plugin's choice)."""
    ov = require("openvino", "running an OpenVINO model", extra="openvino")
    if precision not in OPENVINO_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(OPENVINO_PRECISIONS)}, got {precision!r}")
    core = ov.Core()
    model = core.read_model(str(path_or_model)) if isinstance(path_or_model, (str, os.PathLike)) else path_or_model
    hint = OPENVINO_PRECISIONS[precision]
    return core.compile_model(model, "CPU", {} if hint is None else {"INFERENCE_PRECISION_HINT": hint})


def run_openvino(compiled, pixel_values: np.ndarray) -> dict[str, np.ndarray]:
    """Outputs of a compiled OpenVINO model, by output name."""
    result = compiled(np.ascontiguousarray(pixel_values, np.float32))
    return {out.get_any_name(): np.asarray(result[out], dtype=np.float32) for out in compiled.outputs}


def export_openvino(model: nn.Module, path: Union[str, os.PathLike], *, opset: int = ONNX_OPSET,
                    exporter: str = "dynamo", batch_size: int = 2, image_size: Optional[Sequence[int]] = None,
                    check_shapes: Optional[Sequence[Sequence[int]]] = None,
                    tolerance: Optional[float] = ONNX_TOLERANCE, overwrite: bool = False) -> ExportReport:
    """Write ``model`` as OpenVINO IR (``path``: the ``.xml``; its weights go to the ``.bin`` beside
    it) and verify it on OpenVINO's CPU plugin in float32 against the model.

    The IR is converted from :func:`export_onnx`'s file (itself verified with onnxruntime first), so
    it has the same inputs, outputs and dynamic sizes. Weights stay float32 (no float16 compression).
    Nothing is written when an output misses ``tolerance``.
    """
    ov = require("openvino", "OpenVINO export", extra="openvino")
    path = Path(path)
    if path.suffix != ".xml":
        raise ValueError(f"{path}: an OpenVINO IR is written as NAME.xml (+ NAME.bin)")
    shapes = _shapes(model, check_shapes, batch_size, image_size)
    with staged_output(path, overwrite=overwrite) as tmp:
        onnx_path = tmp.parent / f"{path.stem}.source.onnx"
        onnx_report = export_onnx(model, onnx_path, opset=opset, exporter=exporter, check_shapes=shapes,
                                  tolerance=tolerance)
        ov.save_model(ov.Core().read_model(str(onnx_path)), str(tmp), compress_to_fp16=False)
        for f in onnx_path.parent.glob(onnx_path.name + "*"):
            f.unlink()  # the ONNX file (and any external data) is a step, not an output
        compiled = compile_openvino(tmp, "fp32")
        checks = []
        for i, shape in enumerate(shapes):
            pixels = random_pixels(shape, seed=i)
            checks.append(compare_outputs(run_openvino(compiled, pixels), eager_outputs(model, pixels), shape,
                                          tolerance, f"OpenVINO export of {type(model).__name__}"))
        del compiled
    return ExportReport("openvino", path, "PyTorch eager", tolerance, checks,
                        {"weights": str(path.with_suffix(".bin")), "openvino": ov.__version__.split("-")[0],
                         "via": f"ONNX opset {onnx_report.details['opset']} ({exporter})",
                         "dynamic axes": "batch, height, width"})


# ------------------------------------------------------------------------------------------------
# torch.export and torch.compile
# ------------------------------------------------------------------------------------------------
def min_dynamic_size(model: nn.Module) -> int:
    """Smallest height/width a dynamic torch.export program accepts: twice the total stride.

    torch.export assumes a symbolic size is never 1, and below this size the last feature map
    is 1 pixel high or wide; export statically (``dynamic=False``) for such inputs.
    """
    return 2 * total_stride(model.config)


def export_program(model: nn.Module, *, batch_size: int = 2, image_size: Optional[Sequence[int]] = None,
                   dynamic: bool = True) -> "torch.export.ExportedProgram":
    """``torch.export.export`` of the model (outputs as a tensor tuple, :func:`output_names` order).

    With ``dynamic`` the batch (>= 1), height and width (>= :func:`min_dynamic_size`) are symbolic;
    the example input then needs ``batch_size`` >= 2 (torch.export freezes a size of 1).
    """
    _check_float32(model)
    if dynamic and batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 for a dynamic export (a batch of 1 is frozen), got {batch_size}")
    size = trace_image_size(model.config) if dynamic else default_image_size(model.config)
    h, w = image_size if image_size is not None else (size, size)
    x = torch.from_numpy(random_pixels((batch_size, model.config.num_channels, h, w))).to(_device(model))
    dynamic_shapes = None
    if dynamic:
        Dim = torch.export.Dim
        least = min_dynamic_size(model)
        dynamic_shapes = {INPUT_NAME: {0: Dim("batch", min=1), 2: Dim("height", min=least),
                                       3: Dim("width", min=least)}}
    with _eval_mode(model):
        return torch.export.export(TensorOutputs(model), (x,), dynamic_shapes=dynamic_shapes)


@torch.no_grad()
def check_program(model: nn.Module, program: "torch.export.ExportedProgram",
                  shapes: Sequence[Sequence[int]], tolerance: Optional[float] = ONNX_TOLERANCE) -> list[Check]:
    """Run an exported program at ``shapes`` and compare with the eager model."""
    names = output_names(model)
    module = program.module()
    checks = []
    for i, shape in enumerate(shapes):
        pixels = random_pixels(shape, seed=i)
        outs = module(torch.from_numpy(pixels).to(_device(model)))
        ours = {n: t.detach().cpu().numpy() for n, t in zip(names, outs)}
        checks.append(compare_outputs(ours, eager_outputs(model, pixels), shape, tolerance, "torch.export program"))
    return checks


@torch.no_grad()
def check_compile(model: nn.Module, *, backend: str = "inductor", dynamic: Optional[bool] = False,
                  shapes: Optional[Sequence[Sequence[int]]] = None,
                  tolerance: Optional[float] = ONNX_TOLERANCE) -> list[Check]:
    """``torch.compile(model, fullgraph=True)`` against eager at ``shapes`` (default: the
    verification shapes). A graph break raises instead of falling back to eager."""
    shapes = list(shapes) if shapes is not None else verification_shapes(model.config)
    names = output_names(model)
    with _eval_mode(model):
        compiled = torch.compile(TensorOutputs(model), fullgraph=True, backend=backend, dynamic=dynamic)
        checks = []
        for i, shape in enumerate(shapes):
            pixels = random_pixels(shape, seed=i)
            outs = compiled(torch.from_numpy(pixels).to(_device(model)))
            ours = {n: t.detach().cpu().numpy() for n, t in zip(names, outs)}
            checks.append(compare_outputs(ours, eager_outputs(model, pixels), shape, tolerance,
                                          f"torch.compile(backend={backend!r})"))
    return checks

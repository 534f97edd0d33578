"""torch.compile(fullgraph=True) and torch.export.export of the PyTorch twin against eager.

torch.compile uses backend="aot_eager" here: it traces the whole model through dynamo and AOT
autograd (a graph break is an error with fullgraph=True) without inductor's C++ compilation,
which takes minutes on a small CPU. The inductor check is `check_compile(model)` with its default
backend (see README, "Export and deployment").
"""

import numpy as np
import pytest
import torch

import convnext_torch_kernels
from conftest import rel_err
from convnext_common.export import random_pixels
from convnext_pt import ConvNextBackbone, ConvNextForImageClassification
from convnext_pt.export import check_compile, check_program, eager_outputs, export_program, min_dynamic_size
from helpers import tiny_classifier

TOL = 1e-5


def tiny(v2: bool = False):
    return tiny_classifier(v2, seed=5, depths=[1, 1, 1, 1], num_labels=4)


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_compile_fullgraph_matches_eager(v2):
    torch._dynamo.reset()
    model = tiny(v2)
    (check,) = check_compile(model, backend="aot_eager", shapes=[(2, 3, 64, 96)])
    assert check.max_rel <= TOL


def test_compile_reports_a_graph_break():
    """The check is real: a model with a graph break fails under fullgraph=True."""
    torch._dynamo.reset()
    model = tiny()
    original = model.classifier.forward

    def breaking_forward(x):
        torch._dynamo.graph_break()
        return original(x)

    model.classifier.forward = breaking_forward
    with pytest.raises(Exception, match="(?i)graph.?break"):
        check_compile(model, backend="aot_eager", shapes=[(1, 3, 32, 32)])


def _compiled_ops(model, x):
    """The call targets dynamo hands to the backend for ``model(x)`` under inference_mode, and the output."""
    seen = []

    def capture(gm, example_inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm.forward

    torch._dynamo.reset()
    with torch.inference_mode():
        out = torch.compile(model, fullgraph=True, backend=capture)(x).logits
    return seen, out


@pytest.mark.skipif(convnext_torch_kernels._compiled_linear is None, reason="needs oneDNN and torch.library.custom_op")
def test_compiled_inference_keeps_the_fused_linear():
    model = tiny()
    x = torch.from_numpy(random_pixels((2, 3, 64, 96)))
    seen, out = _compiled_ops(model, x)
    # two per block (pwconv1 + act, pwconv2), four blocks; the classifier stays a plain linear
    assert seen.count("convnext.linear_pointwise.default") == 8
    with torch.inference_mode():
        assert rel_err(out.numpy(), model(x).logits.numpy()) <= TOL


def test_compile_with_gradients_uses_plain_ops():
    model = tiny()
    seen = []

    def capture(gm, example_inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm.forward

    torch._dynamo.reset()
    torch.compile(model, fullgraph=True, backend=capture)(torch.zeros(1, 3, 32, 32)).logits.sum().backward()
    assert seen and not any("linear_pointwise" in s for s in seen)


@pytest.mark.skipif(convnext_torch_kernels._compiled_linear is None, reason="needs oneDNN and torch.library.custom_op")
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")  # inductor's own
def test_inductor_compiled_inference_matches_eager():
    # the real backend once, on a small model: the custom op's fake (shape) function must agree
    # with the kernel for inductor's generated code around it to be right
    torch._dynamo.reset()
    model = tiny(v2=True)
    x = torch.from_numpy(random_pixels((2, 3, 64, 96)))
    with torch.inference_mode():
        out = torch.compile(model, fullgraph=True)(x).logits
        assert rel_err(out.numpy(), model(x).logits.numpy()) <= TOL


def test_export_without_gradients_holds_standard_ops_only():
    with torch.no_grad():
        program = export_program(tiny())
    targets = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert targets and not any("linear_pointwise" in t for t in targets)


@pytest.fixture(scope="module")
def fixture_program(fixtures_dir):
    model = ConvNextForImageClassification.from_pretrained(fixtures_dir / "hf-convnext")
    return model, export_program(model)


def test_exported_program_has_symbolic_batch_and_size(fixture_program):
    model, program = fixture_program
    (x,) = [n for n in program.graph.nodes if n.op == "placeholder" and n.name == "pixel_values"]
    batch, channels, height, width = x.meta["val"].shape
    assert channels == 3
    assert all(isinstance(d, torch.SymInt) for d in (batch, height, width))
    ranges = {str(k): (v.lower, v.upper) for k, v in program.range_constraints.items()}
    assert ranges[str(batch.node.expr)][0] == 1
    assert ranges[str(height.node.expr)][0] == min_dynamic_size(model) == 64


@pytest.mark.slow
def test_exported_program_matches_eager_and_transformers(fixture_program, fixtures_dir, inputs):
    model, program = fixture_program
    checks = check_program(model, program, [(1, 3, 64, 64), (3, 3, 70, 90), (2, 3, 96, 160)])
    assert max(c.max_rel for c in checks) <= TOL
    expected = np.load(fixtures_dir / "hf-convnext" / "expected.npz")
    module = program.module()
    for x, key in [(inputs["pixel_values"], "logits"), (inputs["pixel_values_odd"], "logits_odd")]:
        (logits,) = module(torch.from_numpy(x))
        assert rel_err(logits.detach().numpy(), expected[key]) <= 1e-4


@pytest.mark.slow
def test_exported_backbone_and_v2(fixtures_dir, inputs):
    for model in (ConvNextBackbone.from_pretrained(fixtures_dir / "hf-convnext-backbone"), tiny(v2=True)):
        program = export_program(model, batch_size=3, image_size=(64, 80))
        (check,) = check_program(model, program, [(2, 3, 70, 90)])
        assert check.max_rel <= TOL
        outs = program.module()(torch.from_numpy(inputs["pixel_values_odd"]))
        ref = eager_outputs(model, inputs["pixel_values_odd"])
        for out, name in zip(outs, ref):
            assert rel_err(out.detach().numpy(), ref[name]) <= TOL


def test_dynamic_export_refuses_a_batch_of_one():
    with pytest.raises(ValueError, match="batch_size"):
        export_program(tiny(), batch_size=1)

"""ONNX export of the PyTorch twin, run by onnxruntime: the transformers fixtures, random-weight
models, the embedded digits model, the file's contents, and what happens when it goes wrong.

The reference is independent of the exporter: transformers' outputs in the fixtures' expected.npz
(docs/DESIGN.md's bound rel <= 1e-4) and the eager PyTorch twin (the issue's bound rel <= 1e-5).
"""

import json
import sys

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402

from conftest import rel_err  # noqa: E402
from convnext_common import ConvNextConfig  # noqa: E402
from convnext_common.export import ExportVerificationError, MissingExportDependency  # noqa: E402
from convnext_app.inference import default_model_dir  # noqa: E402
from convnext_pt import (  # noqa: E402
    ConvNextBackbone, ConvNextForImageClassification, ConvNextModel,
)
from convnext_pt.export import eager_outputs, export_onnx, run_onnx  # noqa: E402
from helpers import tiny_classifier  # noqa: E402

ONNX_TOL = 1e-5       # issue 8: exported vs the PyTorch twin
HF_TOL = 1e-4         # docs/DESIGN.md: vs transformers


def tiny(v2: bool = False, **kw):
    return tiny_classifier(v2, seed=3, **kw)


def _fixture_pairs(inputs):
    """(input, suffix of the matching names in expected.npz) for the two fixture inputs."""
    return [(inputs["pixel_values"], ""), (inputs["pixel_values_odd"], "_odd")]


@pytest.fixture(scope="module")
def fixture_onnx(tmp_path_factory, fixtures_dir):
    """hf-convnext through the default (torch.export-based) exporter: the one slow export here."""
    pytest.importorskip("onnxscript")
    model = ConvNextForImageClassification.from_pretrained(fixtures_dir / "hf-convnext")
    path = tmp_path_factory.mktemp("onnx") / "hf-convnext.onnx"
    report = export_onnx(model, path, image_size=(64, 64))
    return model, path, report


@pytest.mark.slow
def test_fixture_model_matches_transformers_and_eager(fixture_onnx, fixtures_dir, inputs):
    model, path, report = fixture_onnx
    assert report.details["exporter"] == "dynamo" and report.details["opset"] == 18
    assert report.max_rel <= ONNX_TOL and len(report.checks) >= 2
    # the checks ran at another batch and size than the traced 2x3x64x64
    assert {c.shape[0] for c in report.checks} >= {1, 2}
    assert len({c.shape[2:] for c in report.checks}) >= 2
    expected = np.load(fixtures_dir / "hf-convnext" / "expected.npz")
    for x, suffix in _fixture_pairs(inputs):
        ours = run_onnx(path, x)["logits"]
        assert rel_err(ours, expected["logits" + suffix]) <= HF_TOL
        assert rel_err(ours, eager_outputs(model, x)["logits"]) <= ONNX_TOL


@pytest.mark.slow
def test_file_declares_opset_dynamic_axes_and_config(fixture_onnx):
    model, path, _ = fixture_onnx
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    assert {o.domain: o.version for o in proto.opset_import}[""] == 18
    (inp,) = proto.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "pixel_values" and dims == ["batch", 3, "height", "width"]
    (out,) = proto.graph.output
    assert out.name == "logits"
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 10]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert ConvNextConfig.from_dict(json.loads(meta["convnext_config"])) == model.config
    assert meta["convnext_class"] == "ConvNextForImageClassification"


@pytest.mark.slow
def test_any_batch_and_size_runs(fixture_onnx):
    """Sizes never seen at export: batch 5, the smallest input (32: a 1x1 last map), a tall one."""
    model, path, _ = fixture_onnx
    for shape in [(5, 3, 32, 32), (1, 3, 200, 36)]:
        x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
        assert rel_err(run_onnx(path, x)["logits"], eager_outputs(model, x)["logits"]) <= ONNX_TOL, shape


@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_random_weight_models_torchscript_exporter(tmp_path, v2):
    model = tiny(v2)
    report = export_onnx(model, tmp_path / "m.onnx", exporter="torchscript", image_size=(64, 96))
    assert report.max_rel <= ONNX_TOL
    x = np.random.default_rng(11).standard_normal((3, 3, 70, 90)).astype(np.float32)
    assert rel_err(run_onnx(tmp_path / "m.onnx", x)["logits"], eager_outputs(model, x)["logits"]) <= ONNX_TOL


@pytest.mark.parametrize("folder, cls, names", [
    ("hf-convnext-base", ConvNextModel, ["last_hidden_state", "pooler_output"]),
    ("hf-convnext-backbone", ConvNextBackbone, ["feature_maps_0", "feature_maps_1", "feature_maps_2"]),
])
def test_base_model_and_backbone_outputs(tmp_path, fixtures_dir, inputs, folder, cls, names):
    model = cls.from_pretrained(fixtures_dir / folder)
    report = export_onnx(model, tmp_path / "m.onnx", exporter="torchscript", image_size=(64, 64))
    assert report.max_rel <= ONNX_TOL
    expected = np.load(fixtures_dir / folder / "expected.npz")
    for x, suffix in _fixture_pairs(inputs):
        ours = run_onnx(tmp_path / "m.onnx", x)
        assert sorted(ours) == sorted(names)
        for name in names:
            assert rel_err(ours[name], expected[name + suffix]) <= HF_TOL, name


def test_embedded_model(tmp_path):
    folder = default_model_dir()
    if not (folder / "config.json").is_file():
        pytest.skip("the embedded default model is not in this checkout")
    model = ConvNextForImageClassification.from_pretrained(folder)
    report = export_onnx(model, tmp_path / "digits.onnx", exporter="torchscript")
    assert report.max_rel <= ONNX_TOL
    assert (1, 3, 32, 32) in [c.shape for c in report.checks]  # the size the model is used at
    assert all(c.top1_agree == 1.0 for c in report.checks)


def test_failed_verification_leaves_nothing(tmp_path):
    model = tiny()
    target = tmp_path / "m.onnx"
    with pytest.raises(ExportVerificationError, match="above the tolerance"):
        export_onnx(model, target, exporter="torchscript", tolerance=1e-12)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_needs_overwrite(tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="m.onnx"):
        export_onnx(tiny(), target, exporter="torchscript")
    assert target.read_bytes() == b"keep me"
    export_onnx(tiny(), target, exporter="torchscript", overwrite=True)
    assert onnx.load(str(target)).graph.input[0].name == "pixel_values"


def test_model_mode_and_dtype(tmp_path):
    model = tiny().train()
    export_onnx(model, tmp_path / "m.onnx", exporter="torchscript")
    assert model.training  # given back as it came
    with pytest.raises(ValueError, match="float32"):
        export_onnx(tiny().half(), tmp_path / "h.onnx", exporter="torchscript")
    with pytest.raises(ValueError, match="exporter"):
        export_onnx(tiny(), tmp_path / "x.onnx", exporter="tracing")


def test_missing_onnxruntime_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now fails
    with pytest.raises(MissingExportDependency, match=r"convnext-twins\[export\]"):
        export_onnx(tiny(), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


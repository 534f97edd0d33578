"""bfloat16 inference in the PyTorch twin: ``from_pretrained(dtype=...)``, the fused Linear+GELU
in bfloat16 (oneDNN where the CPU has bfloat16 kernels, else the modules as they are), and
``--precision bf16`` on the commands.

References: the same model's modules called without the fused path (fused.py's promise is that
the fast path computes what the modules compute, within the dtype's rounding), and the float32
model for the commands' answers. Held-out agreement is in app/test_default_model.py.
"""

from __future__ import annotations

import json

import pytest
import torch

from convnext_app import cli
from convnext_app.inference import default_model_dir, load_classifier, sample_image_paths
from convnext_pt import AutoModelForImageClassification, fused
from helpers import tiny_classifier


def _model(v2: bool):
    return tiny_classifier(v2, seed=3)


def test_from_pretrained_dtype_and_torch_dtype():
    folder = default_model_dir()
    for kwargs in ({"dtype": torch.bfloat16}, {"dtype": "bfloat16"}, {"torch_dtype": torch.bfloat16},
                   {"dtype": torch.bfloat16, "torch_dtype": torch.bfloat16}):
        model = AutoModelForImageClassification.from_pretrained(folder, **kwargs)
        assert {p.dtype for p in model.parameters()} == {torch.bfloat16}, kwargs
        assert "dtype" not in model.config.to_dict() or model.config.to_dict()["dtype"] != torch.bfloat16
    with pytest.raises(ValueError, match="disagree"):
        AutoModelForImageClassification.from_pretrained(folder, dtype=torch.bfloat16, torch_dtype=torch.float32)


@pytest.mark.parametrize("v2", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bf16_model_computes_what_its_modules_compute(v2, seed, monkeypatch):
    """Where oneDNN has no bfloat16 kernels the fused path steps aside (bit-equal to the modules);
    where it has them, the fused GEMM+GELU is as close to the float32 model as the modules run in
    bfloat16 are (both round every block's output to bfloat16; within twice the modules' error plus
    one bfloat16 step)."""
    model = _model(v2)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        reference = model(x).logits
    model, x = model.to(torch.bfloat16), x.to(torch.bfloat16)
    taken = []
    real = fused._fusable
    monkeypatch.setattr(fused, "_fusable", lambda *a: taken.append(real(*a)) or taken[-1])
    with torch.no_grad():
        fast = model(x).logits.float()
    assert taken and all(t == (torch.bfloat16 in fused.FUSED_DTYPES) for t in taken)
    monkeypatch.setattr(fused, "_fusable", lambda *a: False)
    with torch.no_grad():
        plain = model(x).logits.float()
    if torch.bfloat16 in fused.FUSED_DTYPES:
        scale = max(1.0, reference.abs().max().item())
        fast_error = (fast - reference).abs().max().item() / scale
        plain_error = (plain - reference).abs().max().item() / scale
        assert fast_error <= 2 * plain_error + 2 ** -8, (fast_error, plain_error)
    else:
        assert torch.equal(fast, plain)


def test_mixed_dtypes_are_never_fused():
    """bfloat16 input into float32 parameters (or the reverse) runs the modules, which raise or
    promote as torch does, never a fused call on reinterpreted data."""
    lin, act = torch.nn.Linear(8, 16), torch.nn.GELU()
    with torch.no_grad():
        assert not fused._fusable(lin, act, torch.randn(2, 8).to(torch.bfloat16))
        assert not fused._fusable(lin.to(torch.bfloat16), act, torch.randn(2, 8))


def test_bf16_probe_matches_oneDNN():
    """FUSED_DTYPES lists bfloat16 exactly when oneDNN's fused Linear accepts it here."""
    if not fused._HAS_ONEDNN:
        pytest.skip("no oneDNN")
    x, w = torch.randn(2, 8).to(torch.bfloat16), torch.randn(4, 8).to(torch.bfloat16)
    try:
        out = torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], None)
        works = torch.allclose(out.float(), x.float() @ w.float().T, rtol=0.02, atol=0.02)
    except RuntimeError:
        works = False
    assert (torch.bfloat16 in fused.FUSED_DTYPES) == (works and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def test_predict_precision_bf16_json(capsys):
    samples = sample_image_paths()[:4]
    code = cli.main(["predict", *map(str, samples), "--precision", "bf16", "--json", "--top-k", "1"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["precision"] == "bf16"
    fp32 = load_classifier(default_model_dir(), "pt")
    from convnext_app.inference import load_processor, preprocess_files, top_k, softmax

    expected = top_k(softmax(fp32.logits(preprocess_files(load_processor(default_model_dir()), samples))), 1,
                     fp32.labels)
    assert [r["top_k"]["pt"][0]["label"] for r in doc["results"]] == [e[0][0] for e in expected]
    assert [r["top_k"]["pt"][0]["probability"] for r in doc["results"]] != [e[0][1] for e in expected]


def test_unknown_precision_is_one_line(capsys):
    with pytest.raises(SystemExit):
        cli.main(["predict", "--precision", "fp8"])
    assert "fp8" in capsys.readouterr().err


def test_bulk_predict_runs_in_the_precision_asked(tmp_path, capsys):
    """``predict --output`` hands --precision to the bulk run: the labels are fp32's, the
    probabilities bf16's (not bit-equal to fp32's)."""
    samples = [str(p) for p in sample_image_paths()[:4]]
    rows = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / f"{precision}.jsonl"
        assert cli.main(["predict", *samples, "--output", str(out), "--precision", precision, "--workers", "0",
                         "-q", "--top-k", "1"]) == 0
        rows[precision] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["labels"] for r in rows["bf16"]] == [r["labels"] for r in rows["fp32"]]
    assert [r["probabilities"] for r in rows["bf16"]] != [r["probabilities"] for r in rows["fp32"]]
    for low, ref in zip(rows["bf16"], rows["fp32"]):
        assert abs(low["probabilities"][0] - ref["probabilities"][0]) < 0.02

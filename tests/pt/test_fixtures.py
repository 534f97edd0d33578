"""The PyTorch twin reproduces transformers' outputs on the shared fixtures (docs/DESIGN.md: rel <= 1e-4)."""

import numpy as np
import pytest
import torch

from conftest import rel_err
from helpers import outputs_by_name
from convnext_pt import (
    ConvNextBackbone, ConvNextForImageClassification, ConvNextModel, ConvNextV2ForImageClassification,
)

TOL = 1e-4
CASES = [
    ("hf-convnext", ConvNextForImageClassification),
    ("hf-convnext-base", ConvNextModel),
    ("hf-convnext-backbone", ConvNextBackbone),
    ("hf-convnextv2", ConvNextV2ForImageClassification),
]


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
@pytest.mark.parametrize("folder, cls", CASES)
def test_fixture_outputs(fixtures_dir, inputs, folder, cls, weights, tmp_path):
    src = fixtures_dir / folder
    # load each weights format on its own: a folder holding only that file
    (tmp_path / "config.json").write_bytes((src / "config.json").read_bytes())
    (tmp_path / weights).write_bytes((src / weights).read_bytes())
    model = cls.from_pretrained(tmp_path)
    expected = np.load(src / "expected.npz")
    for key, suffix in (("pixel_values", ""), ("pixel_values_odd", "_odd")):
        with torch.no_grad():
            out = model(torch.from_numpy(inputs[key]), output_hidden_states=True)
        ours = outputs_by_name(out)
        wanted = [k[: len(k) - len(suffix)] for k in expected.files if k.endswith(suffix)
                  and (suffix or not k.endswith("_odd"))]
        assert wanted
        for name in wanted:
            assert rel_err(ours[name], expected[name + suffix]) <= TOL, (folder, name + suffix)


def test_backbone_from_base_checkpoint_and_tuple_access(fixtures_dir, inputs):
    model = ConvNextForImageClassification.from_pretrained(fixtures_dir / "hf-convnext")
    x = torch.from_numpy(inputs["pixel_values"])
    with torch.no_grad():
        out = model(x, output_hidden_states=True)
        tup = model(x, output_hidden_states=True, return_dict=False)
    assert torch.equal(tup[0], out.logits) and torch.equal(out["logits"], out.logits)
    assert len(out.hidden_states) == 5
    assert [h.shape[1] for h in out.hidden_states] == [16, 16, 32, 64, 128]
    assert out.hidden_states[-1].shape[-2:] == (2, 2)

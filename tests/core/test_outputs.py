"""Model outputs read as transformers' ``ModelOutput``: an ordered dict of the fields that are not
None, attributes and keys in sync, integer/slice indexing over the values; torch.export sees into them."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from convnext_common.outputs import BackboneOutput, BaseModelOutputWithPoolingAndNoAttention, ImageClassifierOutputWithNoAttention
from convnext_pt import ConvNextConfig, ConvNextForImageClassification, ConvNextModel, ConvNextV2Backbone, ConvNextV2Config


def _small(**kwargs) -> ConvNextConfig:
    return ConvNextConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32], num_labels=3, **kwargs)


def test_output_is_an_ordered_dict_of_the_fields_that_are_set():
    logits, hidden = np.ones((2, 3)), (np.zeros(1), np.zeros(2))
    out = ImageClassifierOutputWithNoAttention(logits=logits, hidden_states=hidden)
    assert isinstance(out, dict)
    assert list(out) == ["logits", "hidden_states"]  # iteration yields keys, loss (None) is absent
    assert "logits" in out and "loss" not in out
    assert list(out.keys()) == ["logits", "hidden_states"]
    assert [k for k, _ in out.items()] == ["logits", "hidden_states"]
    assert list(out.values())[0] is logits
    assert out[0] is logits and out["logits"] is logits and out.logits is logits
    assert out[1:] == (hidden,) and out.to_tuple() == (logits, hidden) and len(out) == 2
    assert out.loss is None
    with pytest.raises(KeyError):
        out["loss"]


def test_attribute_and_key_stay_in_sync():
    out = BaseModelOutputWithPoolingAndNoAttention(last_hidden_state=np.ones(2))
    out.pooler_output = np.zeros(3)  # not yet a key: an attribute only, as transformers
    assert "pooler_output" not in out
    out["pooler_output"] = np.zeros(4)
    assert out.pooler_output.shape == (4,) and list(out) == ["last_hidden_state", "pooler_output"]
    out.last_hidden_state = np.full(5, 2.0)  # an existing key follows its attribute
    assert out["last_hidden_state"].shape == (5,)
    for refused in (lambda: out.pop("pooler_output"), lambda: out.update({}), lambda: out.setdefault("x", 1)):
        with pytest.raises(Exception):
            refused()
    with pytest.raises(Exception):
        del out["pooler_output"]


def test_rebuilt_from_pairs_and_pickled():
    logits = np.ones((1, 2))
    out = ImageClassifierOutputWithNoAttention([("logits", logits)])  # how tree utilities rebuild a mapping
    assert list(out) == ["logits"] and out.logits is logits and out.loss is None
    assert list(ImageClassifierOutputWithNoAttention({"logits": logits})) == ["logits"]
    # a lone first field that is a tuple of arrays is that field, not pairs
    maps = (np.ones(1), np.ones(2))
    assert BackboneOutput(maps).feature_maps is maps
    again = pickle.loads(pickle.dumps(out))
    assert type(again) is ImageClassifierOutputWithNoAttention and list(again) == ["logits"]


@pytest.mark.slow
@pytest.mark.parametrize("strict", [True, False])
def test_torch_export_sees_into_outputs(strict):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    for model in (ConvNextForImageClassification(_small()).eval(), ConvNextModel(_small()).eval(),
                  ConvNextV2Backbone(ConvNextV2Config(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32],
                                                     out_features=["stage2", "stage4"])).eval()):
        program = torch.export.export(model, (x,), strict=strict)
        with torch.no_grad():
            expected, got = model(x), program.module()(x)
        assert type(got) is type(expected) and list(got) == list(expected)
        for key in expected:
            for a, b in zip(torch.utils._pytree.tree_leaves(expected[key]), torch.utils._pytree.tree_leaves(got[key])):
                torch.testing.assert_close(a, b)


def test_model_outputs_iterate_keys():
    model = ConvNextForImageClassification(_small()).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32), labels=torch.tensor([1]), output_hidden_states=True)
    assert list(out) == ["loss", "logits", "hidden_states"]
    assert out[0] is out.loss and out[-1] is out.hidden_states

"""``from_pretrained`` on a size name (``convnext-atto``) that is neither a folder nor a cached hub repo:
one line saying how to build it, before any hub request; in both twins and through the command."""

from __future__ import annotations

import pytest

import convnext_common.hub as hub
from convnext_common import ConvNextConfig, ConvNextV2Config
from convnext_common.pretrained import VariantNameError


@pytest.fixture
def no_hub(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(hub, "_download", refuse)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.chdir(tmp_path)  # no folder of that name here


@pytest.mark.parametrize("name, config_class", [("convnext-atto", ConvNextConfig), ("convnextv2_nano", ConvNextV2Config)])
def test_pytorch_twin_names_the_way_to_build_a_size(no_hub, name, config_class):
    from convnext_pt import AutoModelForImageClassification, ConvNextForImageClassification

    with pytest.raises(VariantNameError) as info:
        ConvNextForImageClassification.from_pretrained(name)
    message = str(info.value)
    assert "\n" not in message
    assert f"from_config({config_class.__name__}.from_variant('{name}'))" in message
    with pytest.raises(FileNotFoundError):  # an OSError, as transformers' missing-model errors
        AutoModelForImageClassification.from_pretrained(name)
    # and the line is true: that call builds it
    model = ConvNextForImageClassification.from_config(ConvNextConfig.from_variant("convnext-atto"))
    assert model.config.hidden_sizes == [40, 80, 160, 320]


@pytest.mark.tf
@pytest.mark.slow
def test_keras_twin_names_the_way_to_build_a_size(no_hub):
    from convnext_tf import TFConvNextForImageClassification

    with pytest.raises(VariantNameError, match=r"TFConvNextForImageClassification\.from_config\(ConvNextConfig"):
        TFConvNextForImageClassification.from_pretrained("convnext-atto")
    model = TFConvNextForImageClassification.from_config(ConvNextConfig.from_variant("convnext-atto", num_labels=3))
    assert model.classifier.units == 3


def test_a_folder_of_that_name_is_still_a_folder(no_hub, tmp_path):
    from convnext_pt import ConvNextForImageClassification

    config = ConvNextConfig(depths=[1], hidden_sizes=[8], num_stages=1, num_labels=2)
    ConvNextForImageClassification(config).save_pretrained(tmp_path / "convnext-atto")
    assert ConvNextForImageClassification.from_pretrained("convnext-atto").config.hidden_sizes == [8]

"""Licences travel with the weights: converted and re-saved folders carry the source's licence in a
model card (README.md front matter, as the hub writes it), and `convnext predict` prints one notice
for a licence that is not permissive.

The references are the licences the sources are published under: facebookresearch/dinov3's DINOv3
License (its repos' ``license: other`` / ``license_name: dinov3-license``), a timm pretrained_cfg's
own ``license``, CC-BY-NC 4.0 for the official ConvNeXt-V2 weights.
"""

from __future__ import annotations

import shutil

import pytest

from conftest import FIXTURES
from convnext_app import cli
from convnext_common.checkpoints.pipeline import convert
from convnext_common.licences import read_licence, licence_notice
from convnext_pt import AutoModel

DINOV3 = FIXTURES / "dinov3-convnext"


def front_matter(folder) -> list[str]:
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    return text.split("---\n")[1].splitlines()


@pytest.mark.parametrize("source", ["official-tiny.pth", "timm-tiny"])
def test_dinov3_weights_carry_the_dinov3_licence_through_convert_and_save(tmp_path, source):
    result = convert(DINOV3 / source, tmp_path / "out", progress=False)
    assert "README.md" in result.files
    lines = front_matter(tmp_path / "out")
    assert "license: other" in lines and "license_name: dinov3-license" in lines
    assert any(line.startswith("license_link: https://ai.meta.com/") for line in lines)
    assert str(DINOV3 / source) in (tmp_path / "out" / "README.md").read_text()  # the source is named
    model = AutoModel.from_pretrained(tmp_path / "out")
    assert model.licence.name == "dinov3-license"
    model.save_pretrained(tmp_path / "resaved")
    assert read_licence(tmp_path / "resaved") == read_licence(tmp_path / "out")


def test_convnextv2_official_weights_are_cc_by_nc_and_predict_says_so_once(tmp_path, capsys):
    convert(FIXTURES / "convert_random" / "official-04" / "checkpoint.pth", tmp_path / "v2", to="pt",
            progress=False)
    assert "license: cc-by-nc-4.0" in front_matter(tmp_path / "v2")
    code = cli.main(["predict", str(FIXTURES / "images" / "flower.png"), str(FIXTURES / "images" / "china.jpg"),
                     "--model", str(tmp_path / "v2")])
    err = capsys.readouterr().err
    assert code == 0
    notices = [line for line in err.splitlines() if "cc-by-nc-4.0" in line]
    assert len(notices) == 1, err


def test_no_notice_for_permissive_or_unknown_licences(tmp_path):
    convert(FIXTURES / "convert_random" / "official-02" / "checkpoint.pth", tmp_path / "v1", to="pt",
            progress=False)  # the official ConvNeXt (V1) weights: MIT
    assert "license: mit" in front_matter(tmp_path / "v1")
    assert licence_notice(tmp_path / "v1") is None
    shutil.copytree(FIXTURES / "hf-convnext", tmp_path / "plain")  # no model card: nothing known
    assert read_licence(tmp_path / "plain") is None and licence_notice(tmp_path / "plain") is None


def test_embed_says_so_once_too(tmp_path, capsys):
    convert(FIXTURES / "convert_random" / "official-04" / "checkpoint.pth", tmp_path / "v2", to="pt",
            progress=False)
    code = cli.main(["embed", str(FIXTURES / "images" / "flower.png"), "--model", str(tmp_path / "v2"),
                     "--output", str(tmp_path / "e.npy"), "--quiet", "--workers", "0"])
    err = capsys.readouterr().err
    assert code == 0
    assert len([line for line in err.splitlines() if "cc-by-nc-4.0" in line]) == 1, err


def test_a_hub_id_is_read_from_its_cached_model_card(tmp_path, monkeypatch):
    import huggingface_hub.constants
    from hubcache import build_cache

    convert(DINOV3 / "official-tiny.pth", tmp_path / "out", progress=False)
    files = {name: tmp_path / "out" / name for name in ("config.json", "README.md", "model.safetensors")}
    cache = build_cache(tmp_path / "hub", {"test-org/dinov3-tiny": files})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    notice = licence_notice("test-org/dinov3-tiny")
    assert notice is not None and notice.startswith("note: test-org/dinov3-tiny:") and "dinov3-license" in notice
    assert licence_notice("test-org/not-cached") is None  # offline and absent: no notice, no error

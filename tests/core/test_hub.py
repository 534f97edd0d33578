"""Hub ids in the Python API: loading from a real (temporary) hub cache, offline, in both twins;
weights chosen per twin and only that file downloaded; the one-line errors.

The cache is laid out as huggingface_hub lays it out (tests/hubcache.py); "online" tests talk to an
in-process stand-in hub through huggingface_hub's own client (no network). Numbers are checked
against the source libraries' recorded outputs (transformers, timm).
"""

import json

import numpy as np
import pytest
import torch

from conftest import rel_err
from convnext_common import ConvNextConfig, ConvNextImageProcessor, ConvNextV2Config
from convnext_common.config import ConfigError
from convnext_common.hub import HubError, parse_hub_id
from convnext_common.pretrained import NotAConvNextError
from convnext_pt import (
    ConvNextForImageClassification, ConvNextModel, ConvNextV2ForImageClassification,
)
from hubcache import COMMIT, FIXTURES, HUB_FIXTURES, REPOS, FakeHub, build_cache

HF, HF_V2, TIMM = "test-org/convnext-hf", "test-org/convnextv2-hf", "timm/convnext_test.fixture"
TIMM_V2 = "timm/convnextv2_test.fixture"
TIMM_LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TOL = 1e-4


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    return build_cache(tmp_path_factory.mktemp("hf_home") / "hub")


@pytest.fixture
def offline(monkeypatch, hub_cache):
    """HF_HUB_OFFLINE=1 with the test cache as the default cache (what HF_HOME would give)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    return hub_cache


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """An empty cache and the stand-in hub (online)."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    hub = FakeHub().install(monkeypatch)
    yield hub
    FakeHub.uninstall()


def expected(name):
    return dict(np.load(FIXTURES / name / "expected.npz"))


def pt_logits(model, inputs, key="pixel_values"):
    with torch.no_grad():
        return model(torch.from_numpy(inputs[key])).logits.numpy()


# --- hub ids ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, repo, revision", [
    ("facebook/convnext-tiny-224", "facebook/convnext-tiny-224", None),
    ("hf-hub:timm/convnext_tiny.fb_in1k", "timm/convnext_tiny.fb_in1k", None),
    ("timm/convnext_tiny.fb_in1k@v1.0", "timm/convnext_tiny.fb_in1k", "v1.0"),
    ("gpt2", "gpt2", None),
])
def test_parse_hub_id(text, repo, revision):
    hub_id = parse_hub_id(text)
    assert (hub_id.repo_id, hub_id.revision) == (repo, revision)


@pytest.mark.parametrize("text", ["./model", "a/b/c", "org/na--me", "~/model", "/abs/path", "org/..x",
                                  "missing.safetensors", "runs/ckpt.pth"])
def test_not_hub_ids(text):
    assert parse_hub_id(text) is None


def test_existing_local_path_wins_over_hub_id(tmp_path, monkeypatch):
    (tmp_path / "org" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert parse_hub_id("org/name") is None


# --- PyTorch twin, offline from the cache ------------------------------------------------------------
@pytest.mark.parametrize("repo, cls, fixture", [
    (HF, ConvNextForImageClassification, "hf-convnext"),
    (HF_V2, ConvNextV2ForImageClassification, "hf-convnextv2"),
])
def test_pt_transformers_ids_offline_match_transformers(offline, inputs, repo, cls, fixture):
    model = cls.from_pretrained(repo)
    ref = expected(fixture)
    assert rel_err(pt_logits(model, inputs), ref["logits"]) <= TOL
    assert rel_err(pt_logits(model, inputs, "pixel_values_odd"), ref["logits_odd"]) <= TOL
    assert model.preprocessor_config["size"] == {"shortest_edge": 224}


@pytest.mark.parametrize("name", [TIMM, "hf-hub:" + TIMM, f"{TIMM}@{COMMIT}"])
def test_pt_timm_id_offline_matches_timm(offline, inputs, name):
    model = ConvNextForImageClassification.from_pretrained(name)
    ref = expected("timm-convnext")
    assert rel_err(pt_logits(model, inputs), ref["logits"]) <= TOL
    assert rel_err(pt_logits(model, inputs, "pixel_values_odd"), ref["logits_odd"]) <= TOL
    assert [model.config.id2label[i] for i in range(10)] == TIMM_LABELS  # timm's label_names
    assert model.config.image_size == 96


def test_pt_timm_v2_id_offline_matches_timm(offline, inputs):
    model = ConvNextV2ForImageClassification.from_pretrained(TIMM_V2)
    assert rel_err(pt_logits(model, inputs), expected("timm-convnextv2")["logits"]) <= TOL
    with pytest.raises(ConfigError, match="ConvNextV2Config"):
        ConvNextForImageClassification.from_pretrained(TIMM_V2)


@pytest.mark.parametrize("repo, fixture", [(TIMM, "timm-convnext"), (TIMM_V2, "timm-convnextv2")])
def test_timm_processor_settings_are_timms_default_evaluation(offline, repo, fixture):
    # timm evaluates at input_size (not test_input_size) with crop_pct (data_config.json: what
    # timm.data.resolve_data_config gives for the model timm loads from the same config.json)
    timm_cfg = json.loads((HUB_FIXTURES / fixture / "data_config.json").read_text())
    processor = ConvNextImageProcessor.from_pretrained(repo)
    assert processor.size == {"shortest_edge": timm_cfg["input_size"][-1]}
    assert processor.crop_pct == pytest.approx(timm_cfg["crop_pct"])
    assert list(processor.image_mean) == pytest.approx(timm_cfg["mean"])
    assert list(processor.image_std) == pytest.approx(timm_cfg["std"])
    assert processor.resample == {"bilinear": 2, "bicubic": 3}[timm_cfg["interpolation"]]


def test_pt_base_model_from_timm_id(offline, inputs):
    # a classification checkpoint into the base model: same trunk (pooled output checked through the head)
    base = ConvNextModel.from_pretrained(TIMM)
    full = ConvNextForImageClassification.from_pretrained(TIMM)
    with torch.no_grad():
        pooled = base(torch.from_numpy(inputs["pixel_values"])).pooler_output
        logits = full.classifier(pooled).numpy()
    assert rel_err(logits, expected("timm-convnext")["logits"]) <= TOL


def test_timm_model_carries_the_same_preprocessing(offline):
    model = ConvNextForImageClassification.from_pretrained(TIMM)
    assert ConvNextImageProcessor.from_dict(model.preprocessor_config) == ConvNextImageProcessor.from_pretrained(TIMM)


def test_timm_pipeline_on_an_image_matches_timm(offline):
    from PIL import Image

    processor = ConvNextImageProcessor.from_pretrained(TIMM)
    model = ConvNextForImageClassification.from_pretrained(TIMM)
    pixels = processor(Image.open(HUB_FIXTURES / "square.png"), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        logits = model(pixels).logits.numpy()
    ref = np.load(HUB_FIXTURES / "expected.npz")["timm_square"]
    assert rel_err(logits, ref) <= TOL


def test_configs_and_processors_by_hub_id(offline, hub_cache):
    config = ConvNextConfig.from_pretrained(HF)
    assert config.depths == [2, 2, 3, 2] and config.id2label[0] == "digit_0"
    assert isinstance(ConvNextV2Config.from_pretrained(HF_V2), ConvNextV2Config)
    with pytest.raises(ConfigError, match="convnextv2"):
        ConvNextConfig.from_pretrained(HF_V2)
    processor = ConvNextImageProcessor.from_pretrained(HF, cache_dir=hub_cache, local_files_only=True)
    assert processor == ConvNextImageProcessor.from_pretrained(
        FIXTURES / "image-processor" / "hub_tiny_224")
    timm_config = ConvNextConfig.from_pretrained(TIMM)  # from converting timm's weights
    assert timm_config.hidden_sizes == [16, 32, 64, 128] and timm_config.id2label[9] == "nine"


def test_cache_dir_argument(offline, tmp_path, monkeypatch, inputs):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    with pytest.raises(HubError, match=HF):
        ConvNextForImageClassification.from_pretrained(HF)
    model = ConvNextForImageClassification.from_pretrained(HF, cache_dir=offline)
    assert rel_err(pt_logits(model, inputs), expected("hf-convnext")["logits"]) <= TOL


def test_revision_argument_offline(offline):
    assert ConvNextConfig.from_pretrained(HF, revision=COMMIT).depths == [2, 2, 3, 2]
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        ConvNextConfig.from_pretrained(HF, revision="v2.0")  # a tag never downloaded
    with pytest.raises(ValueError, match="revision"):
        ConvNextConfig.from_pretrained(f"{HF}@v1", revision="v2")


# --- Keras twin ------------------------------------------------------------------------------------
@pytest.mark.tf
@pytest.mark.parametrize("repo, name, fixture", [
    (HF, "TFConvNextForImageClassification", "hf-convnext"),
    (HF_V2, "TFConvNextV2ForImageClassification", "hf-convnextv2"),
    (TIMM, "TFConvNextForImageClassification", "timm-convnext"),
    ("hf-hub:" + TIMM, "TFConvNextForImageClassification", "timm-convnext"),
    (TIMM_V2, "TFConvNextV2ForImageClassification", "timm-convnextv2"),
])
def test_tf_ids_offline_match_the_source_library(offline, inputs, repo, name, fixture):
    import convnext_tf

    model = getattr(convnext_tf, name).from_pretrained(repo)
    ref = expected(fixture)
    for key in ("pixel_values", "pixel_values_odd"):
        logits = np.asarray(model(inputs[key], training=False).logits)
        assert rel_err(logits, ref[key.replace("pixel_values", "logits")]) <= TOL


# --- which weights file, and only that one -----------------------------------------------------------
def test_pt_downloads_only_model_safetensors(fake_hub, inputs):
    model = ConvNextForImageClassification.from_pretrained(HF)
    assert fake_hub.downloads(HF) == ["config.json", "preprocessor_config.json", "model.safetensors"]
    assert rel_err(pt_logits(model, inputs), expected("hf-convnext")["logits"]) <= TOL


@pytest.mark.tf
def test_tf_downloads_only_tf_model_h5(fake_hub, inputs):
    from convnext_tf import TFConvNextForImageClassification

    model = TFConvNextForImageClassification.from_pretrained(HF)
    assert fake_hub.downloads(HF) == ["config.json", "preprocessor_config.json", "tf_model.h5"]
    logits = np.asarray(model(inputs["pixel_values"], training=False).logits)
    assert rel_err(logits, expected("hf-convnext")["logits"]) <= TOL


def test_pt_falls_back_to_pytorch_model_bin(fake_hub, inputs):
    repo = "test-org/bin-only"
    fake_hub.repos = {**REPOS, repo: {n: FIXTURES / "hf-convnext" / n for n in ("config.json", "pytorch_model.bin",
                                                                                  "tf_model.h5")}}
    model = ConvNextForImageClassification.from_pretrained(repo)
    assert fake_hub.downloads(repo) == ["config.json", "pytorch_model.bin"]
    assert model.preprocessor_config is None
    assert rel_err(pt_logits(model, inputs), expected("hf-convnext")["logits"]) <= TOL


def test_sharded_checkpoint_downloads_index_and_shards(fake_hub, tmp_path, inputs):
    source = ConvNextForImageClassification.from_pretrained(FIXTURES / "hf-convnext")
    source.save_pretrained(tmp_path / "sharded", max_shard_size=400_000)
    files = {p.name: p for p in (tmp_path / "sharded").iterdir()}
    assert "model.safetensors.index.json" in files and len(files) > 3
    repo = "test-org/sharded"
    fake_hub.repos = {**REPOS, repo: files}
    model = ConvNextForImageClassification.from_pretrained(repo)
    shards = sorted(n for n in files if n.startswith("model-"))
    assert fake_hub.downloads(repo) == ["config.json", "model.safetensors.index.json"] + shards
    assert rel_err(pt_logits(model, inputs), expected("hf-convnext")["logits"]) <= TOL


def test_downloaded_then_offline(fake_hub, monkeypatch, inputs):
    ConvNextForImageClassification.from_pretrained(TIMM)  # fills the (empty) cache
    assert fake_hub.downloads(TIMM) == ["config.json", "model.safetensors"]
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    fake_hub.requests.clear()
    model = ConvNextForImageClassification.from_pretrained(TIMM)
    assert rel_err(pt_logits(model, inputs), expected("timm-convnext")["logits"]) <= TOL


def test_token_is_passed_to_the_hub(fake_hub, monkeypatch):
    seen = []
    handler = fake_hub.handler
    fake_hub.handler = lambda request: (seen.append(request.headers.get("authorization")), handler(request))[1]
    fake_hub.install(monkeypatch)
    ConvNextConfig.from_pretrained(HF, token="hf_secret_for_test")
    assert seen and all(h == "Bearer hf_secret_for_test" for h in seen)


# --- errors: one line each ---------------------------------------------------------------------------
def one_line(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text
    return text


def test_offline_and_not_cached(offline, tmp_path):
    with pytest.raises(HubError) as e:
        ConvNextForImageClassification.from_pretrained("facebook/convnext-tiny-224")
    text = one_line(e)
    assert "facebook/convnext-tiny-224" in text and "HF_HUB_OFFLINE" in text and str(offline) in text


def test_local_files_only_and_not_cached(tmp_path):
    with pytest.raises(HubError) as e:
        ConvNextConfig.from_pretrained("facebook/convnext-tiny-224", cache_dir=tmp_path, local_files_only=True)
    assert "local_files_only" in one_line(e)


def test_weights_not_cached_offline(offline, tmp_path):
    # config cached, weights not: says which files were looked for
    build_cache(tmp_path, {"test-org/config-only": {"config.json": FIXTURES / "hf-convnext" / "config.json"}})
    with pytest.raises(HubError) as e:
        ConvNextForImageClassification.from_pretrained("test-org/config-only", cache_dir=tmp_path)
    text = one_line(e)
    assert "test-org/config-only" in text and "model.safetensors" in text and "HF_HUB_OFFLINE" in text


def test_hub_unreachable(fake_hub, monkeypatch):
    def refuse(request):
        from hubcache import _httpx

        raise _httpx().ConnectError("no route to host", request=request)

    fake_hub.handler = refuse
    fake_hub.install(monkeypatch)
    with pytest.raises(HubError) as e:
        ConvNextConfig.from_pretrained(HF)
    text = one_line(e)
    assert HF in text and "could not be reached" in text


def test_no_such_repo(fake_hub):
    with pytest.raises(HubError) as e:
        ConvNextForImageClassification.from_pretrained("test-org/no-such-model")
    text = one_line(e)
    assert "test-org/no-such-model" in text and "no such repo" in text and "token" in text


def test_no_such_revision(fake_hub):
    with pytest.raises(HubError) as e:
        ConvNextForImageClassification.from_pretrained(HF, revision="v9")
    text = one_line(e)
    assert HF in text and "no revision 'v9'" in text


def test_gated_repo_mentions_the_token(fake_hub):
    fake_hub.gated = (HF,)
    with pytest.raises(HubError) as e:
        ConvNextForImageClassification.from_pretrained(HF)
    text = one_line(e)
    assert HF in text and "gated" in text and "HF_TOKEN" in text


def test_repo_without_weights(fake_hub):
    fake_hub.repos = {**REPOS, "test-org/empty": {"config.json": FIXTURES / "hf-convnext" / "config.json"}}
    with pytest.raises(HubError) as e:
        ConvNextForImageClassification.from_pretrained("test-org/empty")
    assert "no weights file" in one_line(e)


@pytest.mark.parametrize("repo, says", [
    ("test-org/vit-hf", "is a 'vit' model (ViTForImageClassification), not a ConvNeXt"),
    ("timm/vit_tiny_patch16_224.augreg_in21k", "is a timm vit_tiny_patch16_224 model, not a ConvNeXt"),
])
def test_not_a_convnext_is_refused_before_downloading_weights(fake_hub, repo, says):
    with pytest.raises(NotAConvNextError) as e:
        ConvNextForImageClassification.from_pretrained(repo)
    assert one_line(e).startswith(f"{repo}: {says}")
    assert fake_hub.downloads(repo) == ["config.json"]


@pytest.mark.parametrize("repo", ["test-org/vit-hf", "timm/vit_tiny_patch16_224.augreg_in21k"])
def test_not_a_convnext_offline_too(offline, repo):
    for load in (ConvNextForImageClassification.from_pretrained, ConvNextConfig.from_pretrained,
                 ConvNextImageProcessor.from_pretrained):
        with pytest.raises(NotAConvNextError, match="not a ConvNeXt"):
            load(repo)


# --- the preprocessor config travels with the model ----------------------------------------------------
def test_pt_save_pretrained_writes_the_sources_preprocessor_config(offline, tmp_path):
    model = ConvNextForImageClassification.from_pretrained(HF)
    model.save_pretrained(tmp_path / "out")
    written = json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())
    assert written == json.loads((FIXTURES / "image-processor/hub_tiny_224/preprocessor_config.json").read_text())


def test_pt_resaved_model_is_run_at_its_training_size(tmp_path):
    # trained at 128 px (the processor given), re-saved from Python: predict preprocesses at 128 px
    from convnext_app.inference import default_model_dir, load_processor

    model = ConvNextForImageClassification.from_pretrained(default_model_dir())
    processor = ConvNextImageProcessor.from_pretrained(default_model_dir(), size={"shortest_edge": 128})
    model.save_pretrained(tmp_path / "given", image_processor=processor)
    assert load_processor(tmp_path / "given").size == {"shortest_edge": 128}
    model.preprocessor_config = processor
    model.save_pretrained(tmp_path / "remembered")
    assert load_processor(tmp_path / "remembered") == processor
    reloaded = ConvNextForImageClassification.from_pretrained(tmp_path / "remembered")
    assert reloaded.preprocessor_config["size"] == {"shortest_edge": 128}


def test_model_without_a_source_writes_no_preprocessor_config(tmp_path):
    model = ConvNextForImageClassification(ConvNextConfig(depths=[1, 1], hidden_sizes=[8, 16], num_stages=2))
    assert model.preprocessor_config is None
    model.save_pretrained(tmp_path)
    assert not (tmp_path / "preprocessor_config.json").exists()


def test_timm_model_saved_is_a_hub_folder_with_timms_preprocessing(offline, tmp_path, inputs):
    ConvNextForImageClassification.from_pretrained(TIMM).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "convnext"
    assert ConvNextImageProcessor.from_pretrained(tmp_path) == ConvNextImageProcessor.from_pretrained(TIMM)
    model = ConvNextForImageClassification.from_pretrained(tmp_path)
    assert rel_err(pt_logits(model, inputs), expected("timm-convnext")["logits"]) <= TOL


@pytest.mark.tf
def test_tf_save_pretrained_writes_the_preprocessor_config(offline, tmp_path):
    from convnext_app.inference import default_model_dir, load_processor
    from convnext_tf import TFConvNextForImageClassification

    model = TFConvNextForImageClassification.from_pretrained(HF)
    model.save_pretrained(tmp_path / "a")
    assert load_processor(tmp_path / "a").size == {"shortest_edge": 224}
    digits = TFConvNextForImageClassification.from_pretrained(default_model_dir())
    processor = ConvNextImageProcessor.from_pretrained(default_model_dir(), size={"shortest_edge": 128})
    digits.preprocessor_config = processor
    digits.save_pretrained(tmp_path / "b")
    assert load_processor(tmp_path / "b") == processor

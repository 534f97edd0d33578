"""The conversion's refusals, detection, atomic output, progress bar and command line."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from conftest import FIXTURES, REPO
from convnext_common.checkpoints import pipeline as convert_module
from convnext_app.cli import main as cli_main
from convnext_common.checkpoints.pipeline import (
    canonical_name, convert, detect_format, identify_h5, strip_wrappers, to_canonical, write_safetensors,
)
from convnext_common.checkpoints.canonical import check_state_fits, infer_config
from convnext_common.checkpoints.errors import CheckpointError, UnsupportedCheckpointError
from convnext_common.checkpoints.formats.files import load_state_dict
from convnext_common.progress import Progress

ROOT = REPO
TIMM = FIXTURES / "timm-convnext" / "model.safetensors"

pytestmark = pytest.mark.badinput


def timm_state() -> dict[str, np.ndarray]:
    return load_state_dict(TIMM)


def save(tmp_path: Path, state: dict, name: str = "ckpt.safetensors") -> Path:
    path = tmp_path / name
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(path))
    return path


# --- detection ------------------------------------------------------------------------------------
@pytest.mark.parametrize("rel, fmt", [
    ("timm-convnext/model.safetensors", "timm"), ("timm-convnextv2/model.safetensors", "timm"),
    ("official-convnext/checkpoint.pth", "official"), ("official-convnextv2/checkpoint.pth", "official"),
    ("torchvision-convnext/convnext.pth", "torchvision"), ("hf-convnext/model.safetensors", "hf"),
    ("hf-convnext-base/pytorch_model.bin", "hf"), ("hf-convnext-backbone/model.safetensors", "hf"),
])
def test_detects_the_writer(rel, fmt):
    assert detect_format(load_state_dict(FIXTURES / rel), rel) == fmt


@pytest.mark.parametrize("rel, kind", [("keras-applications-convnext/convnext_fixture.h5", "keras"),
                                       ("hf-convnext/tf_model.h5", "hf"), ("hf-convnext-base/tf_model.h5", "hf")])
def test_tells_h5_kinds_apart(rel, kind):
    assert identify_h5(FIXTURES / rel).name == kind


def test_unknown_names_cannot_be_detected():
    with pytest.raises(CheckpointError, match="cannot tell which library.*source="):
        detect_format({"encoder.layer.0.attention.weight": np.zeros(3)}, "bert.bin")


def test_data_parallel_prefix_is_stripped(tmp_path):
    state = {"module." + k: v for k, v in timm_state().items()}
    assert detect_format(strip_wrappers(state)) == "timm"
    result = convert(save(tmp_path, state), tmp_path / "out", to="pt", progress=False)
    assert result.source_format == "timm"


def test_rule_tables_map_stage_indices():
    # torchvision numbers stem, stages and downsamplings together: features.5 is stage 2, features.6 downsamples into 3
    assert canonical_name("features.5.1.block.3.weight", "torchvision", "convnext.") == (
        "convnext.encoder.stages.2.layers.1.pwconv1.weight", "linear")
    assert canonical_name("features.6.1.bias", "torchvision", "")[0] == "encoder.stages.3.downsampling_layer.1.bias"
    # keras numbers downsampling blocks from 0 for stage 1
    assert canonical_name("downsampling_conv_0/kernel", "keras", "")[0] == "encoder.stages.1.downsampling_layer.1.weight"
    assert canonical_name("stem.0.weight", "official", "") is None


def test_consuming_conversion_releases_source_arrays():
    state = timm_state()
    n = len(state)
    out = to_canonical(state, "timm", "timm", consume=True)
    assert state == {} and len(out) == n


# --- refusals -------------------------------------------------------------------------------------
def _overlap_stem(state):
    state.pop("stem.0.weight"), state.pop("stem.0.bias"), state.pop("stem.1.weight"), state.pop("stem.1.bias")
    state["stem.0.weight"] = np.zeros((8, 3, 3, 3), np.float32)
    state["stem.1.weight"] = np.zeros((16, 8, 3, 3), np.float32)
    state["stem.2.weight"] = np.ones(16, np.float32)
    state["stem.2.bias"] = np.zeros(16, np.float32)


def _head_norm_first(state):
    state["norm_pre.weight"] = state.pop("head.norm.weight")
    state["norm_pre.bias"] = state.pop("head.norm.bias")


def _head_mlp(state):
    state["head.pre_logits.fc.weight"] = np.zeros((128, 128), np.float32)
    state["head.pre_logits.fc.bias"] = np.zeros(128, np.float32)


def _kernel_5x5(state):
    state["stages.1.blocks.0.conv_dw.weight"] = np.zeros((32, 1, 5, 5), np.float32)


def _mlp_ratio_3(state):
    state["stages.2.blocks.1.mlp.fc1.weight"] = np.zeros((192, 64), np.float32)
    state["stages.2.blocks.1.mlp.fc1.bias"] = np.zeros(192, np.float32)
    state["stages.2.blocks.1.mlp.fc2.weight"] = np.zeros((64, 192), np.float32)


def _rms_norm(state):
    state.pop("stages.0.blocks.1.norm.bias")


@pytest.mark.parametrize("edit, reason", [
    (_overlap_stem, "overlapping stem"), (_head_norm_first, "head_norm_first"), (_head_mlp, "head MLP"),
    (_kernel_5x5, "7x7 depthwise"), (_mlp_ratio_3, "MLP ratio"), (_rms_norm, "RMSNorm"),
])
def test_refuses_what_the_hub_layout_cannot_express(tmp_path, edit, reason):
    state = timm_state()
    edit(state)
    with pytest.raises(UnsupportedCheckpointError, match=reason):
        convert(save(tmp_path, state), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_unknown_tensors_are_listed(tmp_path):
    state = timm_state()
    state["stages.0.blocks.0.attn.qkv.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(CheckpointError, match=r"not part of a ConvNeXt in timm layout: stages\.0\.blocks\.0\.attn"):
        convert(save(tmp_path, state), tmp_path / "out", progress=False)


def test_config_that_does_not_fit_is_refused(tmp_path):
    cfg_path = tmp_path / "config.json"
    canonical = to_canonical(timm_state(), "timm")
    config = infer_config(canonical)
    config.copy(depths=[2, 2, 4, 2]).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"config\.json: the weights do not match the config: missing 9"):
        convert(TIMM, tmp_path / "out", config=cfg_path, progress=False)
    assert check_state_fits(canonical, config) == "classification"


def test_notop_checkpoint_becomes_a_base_model(tmp_path):
    state = {k: v for k, v in timm_state().items() if not k.startswith("head.")}
    result = convert(save(tmp_path, state), tmp_path / "out", to="pt", progress=False)
    assert result.head == "base" and result.config.architectures == ["ConvNextModel"]
    saved = load_state_dict(tmp_path / "out" / "model.safetensors")
    np.testing.assert_array_equal(saved["layernorm.weight"], np.ones(128, np.float32))
    assert not any(k.startswith("convnext.") for k in saved)


# --- atomic output ----------------------------------------------------------------------------------
def test_existing_output_is_kept_unless_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        convert(TIMM, out, to="pt", progress=False)
    assert (out / "keep.txt").read_text() == "mine"
    convert(TIMM, out, to="pt", overwrite=True, progress=False)
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()


@pytest.mark.parametrize("exc", [KeyboardInterrupt, OSError])
def test_failure_while_writing_leaves_nothing(tmp_path, monkeypatch, exc):
    def write_then_fail(state, path, progress=None, metadata=None):
        Path(path).write_bytes(b"partial")
        raise exc("disk full")

    monkeypatch.setattr(convert_module, "write_safetensors", write_then_fail)
    with pytest.raises(exc):
        convert(TIMM, tmp_path / "out", to="pt", progress=False)
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its temporary sibling


def test_failed_overwrite_keeps_the_old_folder(tmp_path, monkeypatch):
    out = tmp_path / "out"
    convert(TIMM, out, to="pt", progress=False)
    before = (out / "model.safetensors").read_bytes()
    monkeypatch.setattr(convert_module, "write_safetensors", lambda *a, **k: (_ for _ in ()).throw(OSError("x")))
    with pytest.raises(OSError):
        convert(TIMM, out, to="pt", overwrite=True, progress=False)
    assert (out / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --- writer and progress ----------------------------------------------------------------------------
def test_streaming_safetensors_writer_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    state = {"a": rng.standard_normal((3, 4)).astype(np.float32),
             "b.t": rng.standard_normal((5, 3)).astype(np.float32).T,  # not contiguous
             "c": rng.standard_normal(7).astype(np.float16), "d": np.arange(6, dtype=np.int64).reshape(2, 3)}
    write_safetensors(state, tmp_path / "x.safetensors")
    back = load_file(str(tmp_path / "x.safetensors"))
    assert sorted(back) == sorted(state)
    for k in state:
        assert back[k].dtype == state[k].dtype and np.array_equal(back[k], state[k])


def test_progress_bar_reports_on_stderr_only_for_large_jobs():
    stream = io.StringIO()
    with Progress("writing x", 1000, stream, min_bytes=100) as bar:
        for _ in range(10):
            bar.advance(100)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("writing x:") and "100%" in lines[-1] and "0.98k/0.98k" in lines[-1]
    assert len(lines) <= 4  # off a terminal: a line per quarter, not per step
    quiet = io.StringIO()
    with Progress("small", 10, quiet, min_bytes=100) as bar:
        bar.advance(10)
    assert quiet.getvalue() == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_counts_items_with_metrics():
    """What a training epoch shows: a count of steps with the running metrics; off a terminal only the
    final line, on a terminal one line redrawn in place."""
    log = io.StringIO()
    bar = Progress("epoch 1/2", 4, log, unit="it", lines_off_terminal=1)
    for i in range(4):
        bar.update(1, loss=1.0 / (i + 1), acc=0.25 * i)
    assert log.getvalue() == ""
    bar.close(loss=0.5, acc=0.75)
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("epoch 1/2:") and "4/4" in lines[0]
    assert "loss 0.5000" in lines[0] and "acc 0.7500" in lines[0]
    tty = _Terminal()
    bar = Progress("epoch 2/2", 3, tty, unit="it")
    for _ in range(3):
        bar.update(1, loss=0.25)
    bar.close(loss=0.125)
    out = tty.getvalue()
    assert "\r" in out and out.count("\n") == 1 and "3/3" in out and "loss 0.1250" in out.rsplit("\r", 1)[-1]


# --- command line -----------------------------------------------------------------------------------
def run_cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(["convert", *(str(a) for a in argv)])
    return code, out.getvalue(), err.getvalue()


def test_cli_converts_and_summarises(tmp_path):
    code, out, err = run_cli(FIXTURES / "official-convnext" / "checkpoint.pth", tmp_path / "o", "--to", "pt")
    assert code == 0 and "from official" in out and "ConvNextForImageClassification" in out
    assert (tmp_path / "o" / "config.json").is_file()


@pytest.mark.parametrize("argv, message", [
    (["missing.safetensors", "OUT"], "no such file or folder"),
    (["GARBAGE", "OUT"], "garbage.bin: "),
    (["hf-convnext/model.safetensors", "OUT", "--from", "torchvision"], "not part of a ConvNeXt in torchvision"),
    (["keras-applications-convnext/convnext_fixture.h5", "OUT", "--from", "timm"], "keras-applications"),
])
def test_cli_errors_are_one_line(tmp_path, argv, message):
    (tmp_path / "garbage.bin").write_bytes(b"PK\x03\x04 not really a zip")
    argv = [str(FIXTURES / a) if "/" in a else a for a in argv]
    argv = [str(tmp_path / "garbage.bin") if a == "GARBAGE" else a for a in argv]
    argv[1] = str(tmp_path / "out")
    code, out, err = run_cli(*argv)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("convnext convert: error: ") and message in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_cli_script_exit_codes_and_debug(tmp_path):
    script = [sys.executable, str(ROOT / "tools" / "convert_weights.py")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    (tmp_path / "out").mkdir()
    fail = subprocess.run(script + [str(TIMM), str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert fail.returncode == 1 and fail.stderr.strip().count("\n") == 0 and "--overwrite" in fail.stderr
    debug = subprocess.run(script + [str(TIMM), str(tmp_path / "out"), "--debug"], capture_output=True, text=True,
                           env=env)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "FileExistsError" in debug.stderr
    ok = subprocess.run(script + [str(TIMM), str(tmp_path / "new"), "--to", "pt", "--quiet"], capture_output=True,
                        text=True, env=env)
    assert ok.returncode == 0 and ok.stdout == "" and ok.stderr == ""
    assert (tmp_path / "new" / "model.safetensors").is_file()


def test_mapped_safetensors_reader_matches_the_library(tmp_path):
    import torch
    from safetensors.torch import save_file as save_torch

    from convnext_common.checkpoints.formats.safetensors import map_safetensors

    tensors = {"w": torch.randn(4, 3), "h": torch.randn(5).half(), "b": torch.randn(2, 2).bfloat16()}
    save_torch(tensors, str(tmp_path / "t.safetensors"))
    mapped = map_safetensors(tmp_path / "t.safetensors")
    for k, t in tensors.items():
        np.testing.assert_array_equal(mapped[k], t.float().numpy() if k == "b" else t.numpy())
    raw = (tmp_path / "t.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[:-10])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors: not a readable safetensors file"):
        map_safetensors(tmp_path / "cut.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(CheckpointError, match=r"junk\.safetensors: .*header length"):
        map_safetensors(tmp_path / "junk.safetensors")


# --- what the tensors do not show: the source's config, file layout and training checkpoints -----------
def timm_hub(tmp_path: Path, model_args: dict | None = None, architecture: str = "convnext_tiny", **extra) -> Path:
    """The timm fixture's weights in a folder with a timm config.json."""
    import json

    folder = tmp_path / "timm-hub"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(TIMM.read_bytes())
    cfg = {"architecture": architecture, "num_classes": 10, "model_args": model_args or {}, **extra}
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize("model_args, hidden_act", [({"act_layer": "relu"}, "relu"),
                                                    ({"act_layer": "gelu_tanh"}, "gelu_pytorch_tanh"),
                                                    ({"global_pool": "avg", "norm_eps": 1e-6}, "gelu")])
def test_timm_model_args_the_hub_layout_expresses_are_mapped(tmp_path, model_args, hidden_act):
    result = convert(timm_hub(tmp_path, model_args), tmp_path / "out", to="pt", progress=False)
    assert result.config.hidden_act == hidden_act and result.config.layer_norm_eps == 1e-6


@pytest.mark.parametrize("model_args, architecture, reason", [
    ({"act_layer": "hard_swish"}, "convnext_tiny", r"model_args\.act_layer: activation 'hard_swish'"),
    ({"global_pool": "max"}, "convnext_tiny", r"model_args\.global_pool: global pooling 'max'"),
    ({"output_stride": 16}, "convnext_tiny", r"model_args\.output_stride: .*dilates .*stage 3 by 2"),
    ({"norm_layer": "groupnorm1"}, "convnext_tiny", r"norm layer 'groupnorm1'"),
    ({"norm_eps": 1e-2}, "convnext_tiny", r"model_args\.norm_eps: norm epsilon 0\.01"),
    ({}, "test_convnext", r"timm's test_convnext: .*epsilon 1e-05"),
    ({"layer_type": "x"}, "convnext_tiny", r"layer_type='x' is not one this converter knows"),
    ({}, "my_convnext", r"architecture 'my_convnext' is not one"),
])
def test_timm_model_args_the_hub_layout_cannot_express_are_refused(tmp_path, model_args, architecture, reason):
    with pytest.raises(UnsupportedCheckpointError, match=reason):
        convert(timm_hub(tmp_path, model_args, architecture), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_timm_config_given_with_config_describes_a_bare_state_dict(tmp_path):
    import json

    cfg = tmp_path / "timm_config.json"
    cfg.write_text(json.dumps({"architecture": "convnext_tiny", "model_args": {"act_layer": "silu"}}))
    assert convert(TIMM, tmp_path / "out", config=cfg, to="pt", progress=False).config.hidden_act == "silu"


@pytest.mark.parametrize("kernel", [8, 16])
def test_timm_patch_stem_of_8_or_more_is_refused_as_dilated(tmp_path, kernel):
    """timm stops striding once the total stride reaches 32 and dilates the later stages instead."""
    state = timm_state()
    state["stem.0.weight"] = np.zeros((16, 3, kernel, kernel), np.float32)
    with pytest.raises(UnsupportedCheckpointError, match=rf"stem patch size {kernel}\).*dilates"):
        convert(save(tmp_path, state), tmp_path / "out", progress=False)


def test_conv_bias_false_converts_with_zero_biases(tmp_path):
    state = timm_state()
    convs = [k for k in state if k.endswith(("conv_dw.bias", "stem.0.bias")) or re.fullmatch(r"stages\.\d\.downsample\.1\.bias", k)]
    for k in convs:
        del state[k]
    result = convert(save(tmp_path, state), tmp_path / "out", to="pt", progress=False)
    saved = load_state_dict(tmp_path / "out" / "model.safetensors")
    assert saved["convnext.embeddings.patch_embeddings.bias"].tolist() == [0.0] * 16
    assert any(f"{len(convs)} spatial convolutions have no bias" in n for n in result.notes)
    state = timm_state()
    del state["stages.1.blocks.0.conv_dw.bias"]  # one bias missing is a damaged file, not conv_bias=False
    with pytest.raises(CheckpointError, match=r"missing 1: .*stages\.1\.layers\.0\.dwconv\.bias"):
        convert(save(tmp_path, state, "one.safetensors"), tmp_path / "out2", progress=False)


def test_stage_without_blocks_converts(tmp_path):
    state = {k: v for k, v in timm_state().items() if not k.startswith("stages.1.blocks.")}
    result = convert(save(tmp_path, state), tmp_path / "out", to="pt", progress=False)
    assert result.config.depths == [2, 0, 3, 2] and result.config.hidden_sizes == [16, 32, 64, 128]


def _training_checkpoint(tmp_path: Path) -> Path:
    import argparse

    import torch

    model = torch.load(FIXTURES / "official-convnext" / "checkpoint.pth", weights_only=True)["model"]
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in model.items()}
    path = tmp_path / "checkpoint-9.pth"
    torch.save({"model": model, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999)}]},
                "epoch": 9, "scaler": {"scale": 1024.0}, "model_ema": ema,
                "args": argparse.Namespace(model="convnext_tiny", lr=4e-3, model_ema=True, data_path="/data")}, path)
    return path


@pytest.mark.parametrize("ema", [False, True])
def test_training_checkpoint_with_argparse_args_loads_model_or_ema(tmp_path, ema):
    import torch

    path = _training_checkpoint(tmp_path)
    result = convert(path, tmp_path / "out", to="pt", ema=ema, progress=False)
    want = torch.load(path, weights_only=False)["model_ema" if ema else "model"]["head.weight"].numpy()
    np.testing.assert_array_equal(load_state_dict(tmp_path / "out" / "model.safetensors")["classifier.weight"], want)
    assert any(f"'{'model_ema' if ema else 'model'}' entry" in n for n in result.notes)
    assert any("ema=True converts those" in n for n in result.notes) != ema


def test_ema_of_a_file_without_one_is_a_one_line_error(tmp_path):
    with pytest.raises(CheckpointError, match=r"ema=True given, but the checkpoint holds no EMA weights"):
        convert(FIXTURES / "official-convnext" / "checkpoint.pth", tmp_path / "out", ema=True, progress=False)
    with pytest.raises(CheckpointError, match=r"ema=True reads a training checkpoint"):
        convert(TIMM, tmp_path / "out", ema=True, progress=False)


def test_timm_hub_folder_gets_timms_default_eval_size_with_its_crop(tmp_path):
    # timm.data.resolve_model_data_config: input_size with crop_pct (test_input_size and
    # test_crop_pct are validate.py's, and a pair is never mixed); the config's image_size follows
    import json

    cfg = {"input_size": [3, 224, 224], "crop_pct": 0.95, "test_input_size": [3, 288, 288], "test_crop_pct": 1.0,
           "interpolation": "bilinear", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    convert(timm_hub(tmp_path, pretrained_cfg=cfg), tmp_path / "out", to="pt", progress=False)
    pre = json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())
    assert pre["size"] == {"shortest_edge": 224} and pre["crop_pct"] == 0.95 and pre["resample"] == 2
    assert pre["image_mean"] == [0.5] * 3 and pre["image_std"] == [0.25] * 3
    assert json.loads((tmp_path / "out" / "config.json").read_text())["image_size"] == 224
    (tmp_path / "timm-hub" / "config.json").write_text(json.dumps({"architecture": "convnext_tiny",
                                                                    "pretrained_cfg": {}}))
    convert(tmp_path / "timm-hub", tmp_path / "out2", to="pt", progress=False)
    pre = json.loads((tmp_path / "out2" / "preprocessor_config.json").read_text())
    assert pre["size"] == {"shortest_edge": 224} and pre["crop_pct"] == 0.875  # timm's defaults


@pytest.mark.parametrize("channels", [1, 4])
def test_mean_and_std_have_one_value_per_input_channel(tmp_path, channels):
    import json

    state = timm_state()
    state["stem.0.weight"] = np.repeat(state["stem.0.weight"][:, :1], channels, axis=1)
    result = convert(save(tmp_path, state), tmp_path / "out", to="pt", progress=False)
    pre = json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())
    assert result.config.num_channels == channels
    assert len(pre["image_mean"]) == len(pre["image_std"]) == channels
    if channels == 4:
        assert pre["image_mean"][:3] == [0.485, 0.456, 0.406]


def test_base_model_summary_names_no_labels(tmp_path):
    state = {k: v for k, v in timm_state().items() if not k.startswith("head.fc")}
    result = convert(save(tmp_path, state), tmp_path / "out", to="pt", progress=False)
    summary = next(n for n in result.notes if n.startswith("config inferred"))
    assert "labels" not in summary and "base model (no classifier)" in summary


def test_verify_batch_fits_the_model():
    from convnext_app.convert import verify_input_shape
    from convnext_common.config import ConvNextConfig

    assert verify_input_shape(ConvNextConfig(num_channels=1)) == (2, 1, 64, 64)
    assert verify_input_shape(ConvNextConfig(num_channels=4, patch_size=16)) == (2, 4, 256, 256)


def test_convnext_convert_errors_start_with_the_command_name(tmp_path, capsys):
    from convnext_app.cli import main as cli_main

    assert cli_main(["convert", str(tmp_path / "missing.pth"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("convnext convert: error: ") and err.count("\n") == 1


def test_a_one_channel_timm_folder_is_preprocessed_alike_by_convert_and_predict(tmp_path):
    # one decision: predict reads the folder's preprocessing without converting it, and must get
    # what the converter writes (one mean and std per input channel)
    import json

    from safetensors.numpy import load_file, save_file

    from convnext_common.pretrained import preprocessor_config_of

    weights = load_file(str(TIMM))
    weights["stem.0.weight"] = weights["stem.0.weight"][:, :1].copy()
    folder = tmp_path / "timm-gray"
    folder.mkdir()
    save_file(weights, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"architecture": "convnext_atto", "num_classes": 10,
                                                    "model_args": {"in_chans": 1},
                                                    "pretrained_cfg": {"input_size": [1, 64, 64]}}))
    convert(folder, tmp_path / "out", to="pt", progress=False)
    written = json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())
    assert len(written["image_mean"]) == len(written["image_std"]) == 1
    read = preprocessor_config_of(folder)  # what convnext predict builds its processor from
    for key in ("image_mean", "image_std", "size", "crop_pct", "resample"):
        assert read[key] == written[key], key

"""The conversion's refusals, detection, atomic output, progress bar and command line."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from convnext_common.checkpoints import convert as convert_module
from convnext_common.checkpoints.convert import build_parser, convert, run_convert, write_safetensors
from convnext_common.checkpoints.detect import detect_format, h5_kind, strip_wrappers
from convnext_common.checkpoints.foreign import canonical_name, to_canonical
from convnext_common.checkpoints.infer import UnsupportedCheckpointError, check_state_fits, infer_config
from convnext_common.checkpoints.io import CheckpointError, load_state_dict
from convnext_common.checkpoints.progress import Progress

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
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
    assert h5_kind(FIXTURES / rel) == kind


def test_unknown_names_cannot_be_detected():
    with pytest.raises(CheckpointError, match="cannot tell which library.*--from"):
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
    with pytest.raises(FileExistsError, match="--overwrite"):
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
    assert lines[0].startswith("writing x [") and lines[-1].endswith("0/0 MiB") and "100%" in lines[-1]
    assert len(lines) <= 6  # not a line per step in a log
    quiet = io.StringIO()
    with Progress("small", 10, quiet, min_bytes=100) as bar:
        bar.advance(10)
    assert quiet.getvalue() == ""


# --- command line -----------------------------------------------------------------------------------
def run_cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    args = build_parser().parse_args([str(a) for a in argv])
    return run_convert(args, stdout=out, stderr=err), out.getvalue(), err.getvalue()


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
    assert err.count("\n") == 1 and err.startswith("convert_weights.py: error: ") and message in err
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

    from convnext_common.checkpoints.convert import map_safetensors

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

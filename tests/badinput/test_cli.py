"""Every failure through ``convnext predict`` / ``convnext convert``: one line on stderr naming the
file and the problem, no traceback (unless ``--debug``), a non-zero exit; a failed or interrupted
convert leaves OUTPUT_DIR absent, or exactly as it was.

The table runs the command's ``main(argv)`` in this process (a subprocess per case would start
the interpreter and the frameworks again); the subprocess tests run ``python -m convnext_app`` itself for the properties
only a real process shows: the exit status, the absence of a traceback, Ctrl-C.
"""

from __future__ import annotations

import json
import re
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from badinput.support import (
    FIXTURES, HF, REPO, RunsShell, assert_one_line_error, cli, has_module, hf_config, hf_state, write_folder,
)

pytestmark = pytest.mark.skipif(not (has_module("convnext_app.cli") and has_module("convnext_app.__main__")),
                                reason="the convnext command (convnext_common/cli.py, __main__.py) is not present")

PREPROCESSOR = {"do_resize": True, "size": {"shortest_edge": 64}, "crop_pct": 0.875, "resample": 3,
                "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
                "image_processor_type": "ConvNextImageProcessor"}


def _model(folder: Path, state=None, config=None, weights: str = "model.safetensors") -> Path:
    write_folder(folder, hf_state() if state is None else state, config, weights=weights)
    (folder / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR))
    return folder


def _image(path: Path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(path)
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _leftovers(parent: Path, name: str) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(f".{name}.")]


def run_main(argv: list[str], capsys) -> tuple[int, list[str]]:
    """``convnext ARGV`` in this process: (exit status, non-empty stderr lines)."""
    from convnext_app.cli import main

    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse usage errors exit from inside main
        code = e.code if isinstance(e.code, int) else 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, err


# --- predict -----------------------------------------------------------------------------------------
def _poisoned_state():
    state = hf_state()
    state["classifier.weight"] = state["classifier.weight"].copy()
    state["classifier.weight"][0, 0] = np.nan
    return state


def _predict_case(kind: str, tmp: Path) -> tuple[list[str], list[str], str]:
    """(argv, names stderr must contain, problem regex) for one failure."""
    good_model, good_image = tmp / "good-model", tmp / "good.png"
    if not good_model.exists():
        _model(good_model)
        _image(good_image)
    base = ["--framework", "pt"]
    if kind == "not-an-image":
        bad = tmp / "notes.jpg"
        bad.write_text("not a picture")
        return ["predict", str(bad), "--model", str(good_model), *base], [str(bad)], r"not an image"
    if kind == "zero-byte-image":
        bad = tmp / "empty.png"
        bad.write_bytes(b"")
        return ["predict", str(bad), "--model", str(good_model), *base], [str(bad)], r"not an image"
    if kind == "decompression-bomb":
        from badinput.test_images import png_header_only

        bad = tmp / "bomb.png"
        bad.write_bytes(png_header_only(100_000, 100_000))
        return ["predict", str(bad), "--model", str(good_model), *base], [str(bad)], r"decompression bomb"
    if kind == "missing-image":
        bad = tmp / "nowhere.png"
        return ["predict", str(bad), "--model", str(good_model), *base], [str(bad)], r"no such"
    if kind == "folder-without-images":
        bad = tmp / "docs"
        bad.mkdir()
        (bad / "readme.txt").write_text("hi")
        return ["predict", str(bad), "--model", str(good_model), *base], [str(bad)], r"no image files"
    if kind == "missing-model":
        bad = tmp / "no-model"
        return ["predict", str(good_image), "--model", str(bad), *base], [str(bad)], r"no "
    if kind == "config-not-json":
        bad = _model(tmp / "bad-config", config="{oops")
        return ["predict", str(good_image), "--model", str(bad), *base], [str(bad / "config.json")], r"not valid JSON"
    if kind == "nan-weights":
        bad = _model(tmp / "nan-model", state=_poisoned_state())
        return (["predict", str(good_image), "--model", str(bad), *base], [str(bad / "model.safetensors"),
                                                                          "classifier.weight"], r"NaN or inf")
    if kind == "truncated-weights":
        bad = _model(tmp / "cut-model")
        data = (bad / "model.safetensors").read_bytes()
        (bad / "model.safetensors").write_bytes(data[: len(data) // 3])
        return (["predict", str(good_image), "--model", str(bad), *base], [str(bad / "model.safetensors")],
                r"not a readable safetensors")
    if kind == "hostile-pickle-model":
        import torch

        bad = write_folder(tmp / "evil-model")
        (bad / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR))
        torch.save({"w": RunsShell(tmp / "marker")}, bad / "pytorch_model.bin")
        return (["predict", str(good_image), "--model", str(bad), *base], [str(bad / "pytorch_model.bin")],
                r"refused")
    if kind == "top-k-zero":
        return ["predict", str(good_image), "--model", str(good_model), "--top-k", "0", *base], ["--top-k"], \
            r"positive integer"
    raise KeyError(kind)


PREDICT_CASES = ["not-an-image", "zero-byte-image", "decompression-bomb", "missing-image", "folder-without-images",
                 "missing-model", "config-not-json", "nan-weights", "truncated-weights", "hostile-pickle-model",
                 "top-k-zero"]


def test_predict_works_on_the_good_model_and_image(tmp_path, capsys):
    """The control: the failures below come from the one bad input, not from the setup."""
    _model(tmp_path / "good-model")
    _image(tmp_path / "good.png")
    code, err = run_main(["predict", str(tmp_path / "good.png"), "--model", str(tmp_path / "good-model"),
                          "--framework", "pt", "--json"], capsys)
    assert code == 0 and err == []


@pytest.mark.parametrize("kind", PREDICT_CASES)
def test_predict_failure_is_one_line(tmp_path, capsys, kind):
    argv, names, problem = _predict_case(kind, tmp_path)
    code, err = run_main(argv, capsys)
    assert code != 0
    assert len(err) == 1, err
    assert err[0].startswith("convnext predict: error:") and "Traceback" not in err[0]
    for name in names:
        assert name in err[0], err[0]
    assert re.search(problem, err[0], re.IGNORECASE), err[0]
    assert not (tmp_path / "marker").exists()


# --- convert -----------------------------------------------------------------------------------------
def _convert_case(kind: str, tmp: Path) -> tuple[list[str], list[str], str]:
    out = tmp / "out"
    if kind == "nan-weights":
        src = write_folder(tmp / "src", _poisoned_state())
        return ["convert", str(src), str(out)], [str(src / "model.safetensors"), "classifier.weight"], r"NaN or inf"
    if kind == "truncated-safetensors":
        src = tmp / "cut.safetensors"
        src.write_bytes((HF / "model.safetensors").read_bytes()[:5000])
        return ["convert", str(src), str(out)], [str(src)], r"not a readable safetensors"
    if kind == "hostile-pickle":
        import torch

        src = tmp / "checkpoint.pth"
        torch.save({"model": RunsShell(tmp / "marker")}, src)
        return ["convert", str(src), str(out)], [str(src)], r"refused"
    if kind == "another-architecture":
        src = tmp / "resnet.safetensors"
        from safetensors.numpy import save_file

        save_file({"conv1.weight": np.zeros((64, 3, 7, 7), np.float32), "fc.weight": np.zeros((10, 64), np.float32)},
                  str(src))
        return ["convert", str(src), str(out)], [str(src), "conv1.weight"], r"cannot tell which library"
    if kind == "missing-input":
        src = tmp / "nothing-here"
        return ["convert", str(src), str(out)], [str(src)], r"no such"
    if kind == "config-not-json":
        cfg = tmp / "my_config.json"
        cfg.write_text("{'depths': [2, 2, 3, 2]}")
        return ["convert", str(HF / "model.safetensors"), str(out), "--config", str(cfg)], [str(cfg)], \
            r"not valid JSON"
    if kind == "config-disagrees-with-weights":
        cfg = tmp / "wide.json"
        cfg.write_text(json.dumps({**hf_config(), "hidden_sizes": [32, 64, 128, 256]}))
        return ["convert", str(HF / "model.safetensors"), str(out), "--config", str(cfg)], \
            ["patch_embeddings.weight"], r"do not match|wrong shape"
    if kind == "wrong-source-format":
        return ["convert", str(HF / "model.safetensors"), str(out), "--from", "timm"], \
            [str(HF / "model.safetensors")], r"not part of a ConvNeXt in timm layout"
    if kind == "unknown-source-format":
        return ["convert", str(HF / "model.safetensors"), str(out), "--from", "caffe"], ["--from"], r"invalid choice"
    raise KeyError(kind)


CONVERT_CASES = ["nan-weights", "truncated-safetensors", "hostile-pickle", "another-architecture", "missing-input",
                 "config-not-json", "config-disagrees-with-weights", "wrong-source-format", "unknown-source-format"]


@pytest.mark.parametrize("existing", [False, True], ids=["new-output", "existing-output-with-overwrite"])
@pytest.mark.parametrize("kind", CONVERT_CASES)
def test_convert_failure_is_one_line_and_leaves_output_alone(tmp_path, capsys, kind, existing):
    argv, names, problem = _convert_case(kind, tmp_path)
    out = tmp_path / "out"
    before = None
    if existing:
        out.mkdir()
        (out / "config.json").write_text('{"keep": "me"}')
        (out / "notes.txt").write_text("my notes")
        before = _snapshot(out)
        argv = argv + ["--overwrite"]
    code, err = run_main(argv, capsys)
    assert code != 0
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    for name in names:
        assert name in err[0], err[0]
    assert re.search(problem, err[0], re.IGNORECASE), err[0]
    if existing:
        assert _snapshot(out) == before, "a failed convert changed the existing OUTPUT_DIR"
    else:
        assert not out.exists(), "a failed convert left OUTPUT_DIR behind"
    assert _leftovers(tmp_path, "out") == []
    assert not (tmp_path / "marker").exists()


def test_convert_refuses_an_existing_output_without_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep")
    code, err = run_main(["convert", str(HF), str(out)], capsys)
    assert code != 0 and len(err) == 1 and str(out) in err[0] and "--overwrite" in err[0]
    assert _snapshot(out) == {"precious.txt": b"keep"}


@pytest.mark.parametrize("failure", [OSError("No space left on device"), KeyboardInterrupt()],
                         ids=["disk-full", "ctrl-c"])
@pytest.mark.parametrize("existing", [False, True], ids=["new-output", "existing-output-with-overwrite"])
def test_convert_failing_late_leaves_output_alone(tmp_path, capsys, monkeypatch, failure, existing):
    """A failure after model.safetensors is written (while writing tf_model.h5)."""
    import convnext_common.checkpoints.pipeline as convert_module

    def fail(*args, **kwargs):
        assert any(p.name == "model.safetensors" for p in tmp_path.rglob("*")), "fails too early to test anything"
        raise failure

    monkeypatch.setattr(convert_module, "_write_tf", fail)
    out = tmp_path / "out"
    argv = ["convert", str(HF), str(out), "--quiet"]
    before = None
    if existing:
        out.mkdir()
        (out / "config.json").write_text("{}")
        before = _snapshot(out)
        argv.append("--overwrite")
    code, err = run_main(argv, capsys)
    assert code == (130 if isinstance(failure, KeyboardInterrupt) else 1)
    assert len(err) == 1, err
    assert (r"interrupted" if isinstance(failure, KeyboardInterrupt) else "No space left") in err[0]
    assert (_snapshot(out) == before) if existing else not out.exists()
    assert _leftovers(tmp_path, "out") == []


# --- real processes ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_subprocess_predict_failure_one_line_and_debug_traceback(tmp_path):
    model = _model(tmp_path / "model")
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a picture")
    args = ["predict", str(bad), "--model", str(model), "--framework", "pt"]
    assert_one_line_error(cli(*args), str(bad), problem=r"not an image")
    debug = cli(*args, "--debug")
    assert debug.returncode != 0 and "Traceback" in debug.stderr and str(bad) in debug.stderr


_HANG_AFTER_FIRST_FILE = """
import sys, time, pathlib
import convnext_common.checkpoints.pipeline as convert_module
ready = pathlib.Path(sys.argv[1])
real_write = convert_module.write_safetensors
def write_then_hang(*args, **kwargs):
    real_write(*args, **kwargs)
    ready.write_text("model.safetensors written")
    time.sleep(120)
convert_module.write_safetensors = write_then_hang
from convnext_app.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("existing", [False, True], ids=["new-output", "existing-output-with-overwrite"])
def test_subprocess_convert_interrupted_by_sigint(tmp_path, existing):
    out = tmp_path / "out"
    ready = tmp_path / "ready"
    argv = ["convert", str(HF), str(out), "--quiet"]
    before = None
    if existing:
        shutil.copytree(FIXTURES / "hf-convnext-base", out)
        before = _snapshot(out)
        argv.append("--overwrite")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", _HANG_AFTER_FIRST_FILE, str(ready), *argv], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # a suite started in the background inherits SIGINT ignored; the child must
                            # get the default disposition so that Python installs its KeyboardInterrupt
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 90
        while not ready.exists():
            assert proc.poll() is None, f"convert ended before the interrupt: {proc.communicate()}"
            assert time.monotonic() < deadline, "convert never reached the point to interrupt"
            time.sleep(0.05)
        assert _leftovers(tmp_path, "out"), "the partial output should exist while converting"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted" in lines[0], stderr
    assert (_snapshot(out) == before) if existing else not out.exists()
    assert _leftovers(tmp_path, "out") == []

"""The `convnext` command: help, lazy imports, one-line errors and exit codes (in-process, fast)."""

import json
import subprocess
import sys
import types

import pytest

from conftest import REPO
from convnext_app import cli


def run_main(capsys, *argv):
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    assert "error:" in lines[0]
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


def test_import_and_help_load_neither_framework():
    code = ("import sys; from convnext_app import cli\n"
            "for name in cli.COMMANDS:\n"
            "    try: cli.build_parser(name)\n"
            "    except cli.CommandUnavailable: pass\n"
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_top_level_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in ("predict", "evaluate", "train", "convert"):
        assert name in out


@pytest.mark.parametrize("command", ["predict", "evaluate", "train", "convert"])
def test_subcommand_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: convnext {command}")
    if command != "convert":
        assert "--model" in out


def test_no_command_prints_help_and_fails(capsys):
    code, out, err = run_main(capsys)
    assert code == 2 and "COMMAND" in err


def test_unknown_command_is_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["frobnicate"])
    assert exc.value.code == 2
    assert_one_line_error(capsys.readouterr().err, "frobnicate")


@pytest.mark.parametrize("argv, fragments", [
    (["predict", "--top-k", "0"], ["--top-k", "positive integer"]),
    (["predict", "--framework", "jax"], ["--framework", "jax"]),
    (["train", "--data", "x"], ["--model", "--out"]),
    (["evaluate"], ["--data"]),
])
def test_usage_errors_are_one_line_exit_2(argv, fragments, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert_one_line_error(capsys.readouterr().err, *fragments)


def test_missing_image_is_one_line(tmp_path, capsys):
    missing = tmp_path / "nope.png"
    code, out, err = run_main(capsys, "predict", str(missing))
    assert code == 1 and out == ""
    assert_one_line_error(err, "convnext predict", str(missing))


def test_corrupt_image_is_one_line(tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    code, _, err = run_main(capsys, "predict", str(bad))
    assert code == 1
    assert_one_line_error(err, "broken.png")


def test_model_folder_without_config_is_one_line(tmp_path, capsys):
    code, _, err = run_main(capsys, "predict", "--model", str(tmp_path))
    assert code == 1
    assert_one_line_error(err, str(tmp_path), "config.json")


def test_base_model_folder_is_refused(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from convnext_common import ConvNextConfig
    from convnext_pt import ConvNextModel

    torch.manual_seed(0)
    ConvNextModel(ConvNextConfig(depths=[1, 1], hidden_sizes=[8, 16], num_stages=2)).save_pretrained(tmp_path)
    code, _, err = run_main(capsys, "predict", "--model", str(tmp_path))
    assert code == 1
    assert_one_line_error(err, "ConvNextModel", "classification head")


def test_evaluate_missing_folder_is_one_line(tmp_path, capsys):
    code, _, err = run_main(capsys, "evaluate", "--data", str(tmp_path / "absent"))
    assert code == 1
    assert_one_line_error(err, "absent")


def test_train_bad_variant_is_one_line(tmp_path, capsys):
    data = tmp_path / "data"
    for name in ("a", "b"):
        (data / name).mkdir(parents=True)
        from PIL import Image

        for i in range(2):
            Image.new("RGB", (40, 40), (i * 50, 0, 0)).save(data / name / f"{i}.png")
    code, _, err = run_main(capsys, "train", "--data", str(data), "--model", "convnext-gigantic",
                            "--out", str(tmp_path / "out"))
    assert code == 1
    assert_one_line_error(err, "convnext-gigantic")
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        cli.main(["predict", str(tmp_path / "nope.png"), "--debug"])


def test_lazy_command_with_missing_module_says_so(capsys, monkeypatch):
    monkeypatch.setitem(cli.COMMANDS, "export", "convnext_common.not_a_module")
    code, _, err = run_main(capsys, "export")
    assert code == 1
    assert_one_line_error(err, "'export' is not available", "convnext_common.not_a_module")


def test_registration_adds_a_subcommand(capsys, monkeypatch):
    """A module with the five names of convnext_app.commands, registered by name, is a subcommand."""
    seen = {}
    bench = types.ModuleType("bench_command")
    bench.HELP, bench.DESCRIPTION, bench.EPILOG = "benchmarks", None, None

    def add(parser):
        parser.add_argument("--n", type=int, default=1)

    def run(args):
        seen["n"] = args.n
        return 3

    bench.add_arguments, bench.run = add, run
    monkeypatch.setitem(sys.modules, "bench_command", bench)
    monkeypatch.setitem(cli.COMMANDS, "bench", "bench_command")
    code, _, _ = run_main(capsys, "bench", "--n", "7")
    assert (code, seen) == (3, {"n": 7})
    del bench.run  # a module without one of the five names is refused in one line
    code, _, err = run_main(capsys, "bench")
    assert code == 1
    assert_one_line_error(err, "'bench' is not available", "bench_command has no run")


def test_every_builtin_command_has_the_same_shape():
    import importlib

    for name in cli.BUILTIN:
        module = importlib.import_module(f"convnext_app.commands.{name}")
        assert isinstance(module.HELP, str) and callable(module.add_arguments) and callable(module.run), name
        assert cli.COMMANDS[name] == module.__name__


def test_python_dash_m_entry_point(tmp_path):
    """`python -m convnext_app` is the same command: errors are one line with a non-zero exit."""
    proc = subprocess.run([sys.executable, "-m", "convnext_common", "predict", str(tmp_path / "x.png")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert_one_line_error(proc.stderr, "x.png")
    version = subprocess.run([sys.executable, "-m", "convnext_common", "--version"], cwd=REPO,
                             capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("convnext ")


def test_one_line_flattens_multiline_messages():
    from convnext_app.errors import one_line

    assert one_line(ValueError("first\n  second")) == "first second"
    assert one_line(RuntimeError("boom")) == "RuntimeError: boom"
    assert one_line(KeyError("k")) == "k"
    json.dumps(one_line(OSError()))  # an empty message still gives text

"""A write that fails for want of space, permission or a writable filesystem is one line naming the
file and what writing it needed, whichever command writes (``convnext_common.fileio.WriteError``).

Full disks are real: the file a writer opens is redirected to ``/dev/full``, where the kernel answers
every write with ENOSPC. Permissions are real too (a folder without write permission), but root
ignores them, so those tests skip there; a read-only filesystem needs a mount, so EROFS is raised
by the opened file instead.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from convnext_app import cli
from convnext_app.errors import one_line
from convnext_common import fileio
from convnext_common.fileio import WriteError, atomic_directory, atomic_write_stream, atomic_write_text

from app.conftest import train_args
from conftest import FIXTURES, REPO

FULL = Path("/dev/full")
needs_full = pytest.mark.skipif(not FULL.exists(), reason="no /dev/full on this system")
not_root = pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                              reason="root writes into folders without write permission")


def full_disk(monkeypatch, name: str | None = None) -> None:
    """Every file fileio opens for writing (or only the one whose temporary name starts ``.name.``)
    is /dev/full."""
    real = fileio.open_for_writing

    def opened(path):
        if name is None or Path(path).name.startswith(f".{name}."):
            return open(FULL, "wb")
        return real(path)

    monkeypatch.setattr(fileio, "open_for_writing", opened)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- the helper ------------------------------------------------------------------------------------
@needs_full
def test_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    target = tmp_path / "state.bin"
    target.write_bytes(b"previous")
    full_disk(monkeypatch)
    with pytest.raises(WriteError) as e:
        atomic_write_stream(target, lambda f: f.write(b"x" * 100_000))
    assert e.value.errno == errno.ENOSPC
    assert str(e.value) == (f"{target}: cannot write (no space left on device); writing it needs free space on "
                            f"the device holding {tmp_path}")
    assert target.read_bytes() == b"previous" and sorted(os.listdir(tmp_path)) == ["state.bin"]


def test_a_read_only_filesystem_names_the_file(tmp_path, monkeypatch):
    def refused(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(fileio, "open_for_writing", refused)
    with pytest.raises(WriteError, match=rf"^{tmp_path / 'x.bin'}: cannot write \(read-only file system\); "
                                         rf"writing it needs a writable file system for {tmp_path}$"):
        atomic_write_stream(tmp_path / "x.bin", lambda f: None)


def test_a_file_in_a_folder_being_built_is_named_at_its_final_place(tmp_path, monkeypatch):
    def refused(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a write: no file named

    monkeypatch.setattr(fileio, "open_for_writing", refused)
    out = tmp_path / "model"
    with pytest.raises(WriteError) as e:
        with atomic_directory(out) as tmp:
            atomic_write_stream(tmp / "weights.bin", lambda f: None)
    assert e.value.path == out / "weights.bin" and str(out) in e.value.needed and ".partial" not in str(e.value)
    assert os.listdir(tmp_path) == []


def test_other_errors_pass_through(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write_text(tmp_path / "absent" / "x.txt", "text")
    error = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "f"))
    assert one_line(error) == (f"{tmp_path / 'f'}: cannot write (no space left on device); writing it needs free "
                               f"space on the device holding {tmp_path}")
    assert fileio.write_failure(OSError(errno.ENOSPC, "No space left on device")) is None  # names no file


@not_root
def test_a_folder_without_write_permission(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    try:
        with pytest.raises(WriteError, match=rf"permission denied\); writing it needs write permission on {folder}$"):
            atomic_write_text(folder / "x.txt", "text")
    finally:
        folder.chmod(0o755)


# ---- the commands ----------------------------------------------------------------------------------
@needs_full
def test_train_on_a_full_disk_keeps_the_last_checkpoint(digit_folder, tiny_model, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert cli.main(train_args(digit_folder, tiny_model, out, "--epochs", "2", "--stop-after", "1")) == 0
    checkpoint = out / "last_checkpoint.pt"
    before = sha256(checkpoint)
    capsys.readouterr()
    full_disk(monkeypatch, "last_checkpoint.pt")
    assert cli.main(train_args(digit_folder, tiny_model, out, "--epochs", "2", "--resume")) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (f"convnext train: error: {checkpoint}: cannot write (no space left on device); writing it "
                       f"needs free space on the device holding {out}"), err
    assert not any("Traceback" in line or "enforce fail" in line for line in err)
    assert sha256(checkpoint) == before
    assert not [p for p in os.listdir(out) if p.startswith(".last_checkpoint")]  # no temporary left behind


def test_convert_onto_a_read_only_filesystem_names_the_output(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):  # what a read-only mount answers when the temporary folder is made
        if Path(path).name.startswith(f".{out.name}."):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    timm = FIXTURES / "timm-convnext" / "model.safetensors"
    assert cli.main(["convert", str(timm), str(out), "--to", "pt", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err == (f"convnext convert: error: {out}: cannot write (read-only file system); writing it needs a "
                   f"writable file system for {tmp_path}\n")
    assert not out.exists()


@needs_full
def test_predict_output_on_a_full_disk(tmp_path, monkeypatch, capsys):
    from convnext_app.bulk import outputs

    images = REPO / "convnext_app" / "data" / "samples"
    output = tmp_path / "out.jsonl"

    def opened(file, mode="r", *args, **kwargs):
        if "w" in mode or "a" in mode:
            return open(FULL, mode, *args, **kwargs)
        return open(file, mode, *args, **kwargs)

    monkeypatch.setattr(outputs, "open", opened, raising=False)
    code = cli.main(["predict", str(images), "--output", str(output), "--workers", "0", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("convnext predict: error: "), err
    assert f"error: {output}: cannot write (no space left on device)" in err, err


def test_save_pretrained_onto_a_read_only_filesystem(tmp_path, monkeypatch):
    from convnext_common import ConvNextConfig
    from convnext_pt import ConvNextForImageClassification

    folder = tmp_path / "model"
    folder.mkdir()
    real_open = os.open

    def os_open(path, flags, *args, **kwargs):  # a read-only mount refuses to create the temporary files
        if Path(path).parent == folder and flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", os_open)
    model = ConvNextForImageClassification(ConvNextConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 8, 8]))
    with pytest.raises(WriteError) as e:
        model.save_pretrained(folder)
    assert e.value.path.parent == folder and not e.value.path.name.startswith(".")
    assert str(e.value) == (f"{e.value.path}: cannot write (read-only file system); writing it needs a writable "
                            f"file system for {folder}")
    assert os.listdir(folder) == []


@pytest.mark.slow
def test_export_onto_a_read_only_filesystem_names_the_output(tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnx")
    out = tmp_path / "m.onnx"
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):  # the checked export renamed into place on a read-only mount
        if Path(dst) == out:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    assert cli.main(["export", "--format", "onnx", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (f"convnext export: error: {out}: cannot write (read-only file system); writing it "
                                    f"needs a writable file system for {tmp_path}")
    assert os.listdir(tmp_path) == []


def test_a_permission_error_of_a_read_is_not_called_a_write(tmp_path):
    error = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "model" / "config.json"))
    assert one_line(error) == f"[Errno 13] Permission denied: '{tmp_path / 'model' / 'config.json'}'"
    with pytest.raises(PermissionError):  # reading a source while a folder is built: not the folder's fault
        with atomic_directory(tmp_path / "out"):
            raise error
    assert os.listdir(tmp_path) == []

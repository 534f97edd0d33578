"""Writes that never leave a half-written file: write to a temporary sibling, then rename.

The temporary files and folders are created with the modes a plain ``open(path, "w")`` or
``os.mkdir(path)`` gives (0o666 / 0o777 less the umask), not the owner-only modes of
``tempfile.mkstemp`` / ``mkdtemp``: what is renamed into place is what users, servers and
other accounts expect to read (a model folder written at image build time, say).

A write that fails for want of space, permission or a writable filesystem is :class:`WriteError`:
one line naming the file and what writing it needed (:func:`writing` translates; the atomic writers
here use it, and so does any other writer that names its destination).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Optional

#: errno -> (what went wrong, what writing needed, said of the folder it was written in)
_WRITE_FAILURES = {
    errno.ENOSPC: ("no space left on device", "free space on the device holding {folder}"),
    errno.EDQUOT: ("disk quota exceeded", "quota for the files in {folder}"),
    errno.EACCES: ("permission denied", "write permission on {folder}"),
    errno.EPERM: ("operation not permitted", "write permission on {folder}"),
    errno.EROFS: ("read-only file system", "a writable file system for {folder}"),
}


class WriteError(OSError):
    """A file could not be written (no space, no permission, a read-only filesystem): one line naming
    the file and what writing it needed. ``errno`` is the system's; ``path`` the file named."""

    def __init__(self, code: int, path: str | os.PathLike, reason: str, needed: str):
        super().__init__(code, reason)
        self.path, self.reason, self.needed = Path(path), reason, needed

    def __str__(self) -> str:
        return f"{self.path}: cannot write ({self.reason}); writing it needs {self.needed}"

    def renamed(self, old: Path, new: Path) -> "WriteError":
        """The same failure, naming the path under ``new`` for one under ``old`` (a temporary folder)."""
        try:
            path = new / self.path.relative_to(old)
        except ValueError:
            return self
        return WriteError(self.errno, path, self.reason, self.needed.replace(str(old), str(new)))


#: errors only a write gives (a permission error may come from a read)
_ONLY_WRITES = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def write_failure(error: BaseException, path: Optional[str | os.PathLike] = None,
                  writing_only: bool = True) -> Optional[WriteError]:
    """``error`` as a :class:`WriteError` naming ``path`` (else the file the error names), or None
    when it is not a failure to write for want of space, permission or a writable filesystem.
    ``writing_only=False``: the error may come from a read too, so a permission error is left alone."""
    if isinstance(error, WriteError):
        return error
    if not isinstance(error, OSError) or error.errno not in _WRITE_FAILURES:
        return None
    if not writing_only and error.errno not in _ONLY_WRITES:
        return None
    target = path if path is not None else error.filename
    if target is None:
        return None
    target = Path(target)
    reason, needed = _WRITE_FAILURES[error.errno]
    return WriteError(error.errno, target, reason, needed.format(folder=target.parent))


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Translate a failure to write inside the block into a :class:`WriteError` naming ``path``."""
    try:
        yield
    except OSError as e:
        failure = write_failure(e, path)
        if failure is None or failure is e:
            raise
        raise failure from e


def open_for_writing(path: str | os.PathLike) -> IO[bytes]:
    """``path`` opened for binary writing (the one place the writers here open a file, so that every
    write goes through Python's file object and fails as an OSError)."""
    return open(path, "wb")


_ATTEMPTS = 100  # fresh random names tried before giving up (a clash is already unlikely at 2**32)


def _fresh_sibling(directory: Path, prefix: str, suffix: str, create: Callable[[Path], None]) -> Path:
    """``create(candidate)`` for fresh random names in ``directory`` until one does not exist yet."""
    for _ in range(_ATTEMPTS):
        candidate = directory / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            create(candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"{directory}: could not create a temporary name starting {prefix!r}")


def _create_file(path: Path) -> None:
    # O_EXCL: never open a file (or a link) someone else put there; 0o666 less the umask, as open() does.
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666))


def _create_folder(path: Path) -> None:
    os.mkdir(path, 0o777)  # less the umask, as mkdir does


def temporary_file_beside(path: str | os.PathLike, suffix: str = ".tmp") -> Path:
    """A new empty file ``.<name>.<random><suffix>`` beside ``path``, with a plain new file's mode."""
    path = Path(path)
    return _fresh_sibling(path.parent, f".{path.name}.", suffix, _create_file)


def temporary_folder_beside(path: str | os.PathLike, suffix: str = ".partial") -> Path:
    """A new empty folder ``.<name>.<random><suffix>`` beside ``path``, with a plain new folder's mode."""
    path = Path(path)
    return _fresh_sibling(path.parent, f".{path.name}.", suffix, _create_folder)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    with writing(path):
        tmp_path = temporary_file_beside(path)
        try:
            mode = stat.S_IMODE(tmp_path.stat().st_mode)  # a new file's mode here, read without touching the umask
            yield tmp_path
            # Some writers make their own file (safetensors writes 0o600 whatever the umask): give it that mode back.
            os.chmod(tmp_path, mode)
            os.replace(tmp_path, path)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and move the result to ``path`` only if it returns."""
    with atomic_path(path) as tmp:
        writer(tmp)


def atomic_write_stream(path: str | os.PathLike, writer: Callable[[IO[bytes]], None]) -> None:
    """Call ``writer(file)`` on a binary file beside ``path`` and move it to ``path`` only if it returns.
    For writers that take a file object: their failures are Python's OSErrors, which name no file and
    would otherwise surface as a library's own error."""
    with atomic_path(path) as tmp:
        with open_for_writing(tmp) as f:
            writer(f)


@contextlib.contextmanager
def atomic_directory(directory: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder in a temporary sibling and rename it into place when the block succeeds.

    An existing ``directory`` is refused unless ``overwrite``; on any error (Ctrl-C included) the
    temporary folder is removed and ``directory`` is left as it was.
    """
    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory}: already exists (pass overwrite to replace it)")
    with writing(directory):
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_folder_beside(directory)
    try:
        try:
            yield tmp
        except OSError as e:  # a file of the folder: named under its final place, not the temporary one
            inside = e.filename is not None and Path(e.filename).is_relative_to(tmp)
            failure = write_failure(e, e.filename if e.filename is not None else tmp, writing_only=inside)
            if failure is None:
                raise
            raise failure.renamed(tmp, directory) from e
        with writing(directory):
            if directory.exists():
                old = directory.with_name(f".{directory.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(directory, old)
                os.replace(tmp, directory)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_json_file(path: str | os.PathLike, what: str, error: type[ValueError] = ValueError) -> Any:
    """Parsed JSON of ``path``; a missing file is FileNotFoundError, undecodable text or invalid
    JSON is ``error``, each naming the file (``what`` says which kind of file was expected)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such {what}") from None
    except UnicodeDecodeError as e:
        raise error(f"{path}: not a UTF-8 text file ({e.reason})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None


_SIZE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def size_in_bytes(size: int | str) -> int:
    """A file size as transformers spells ``max_shard_size``: an int (bytes), ``"5GB"`` (10**9),
    ``"5GiB"`` (2**30), ``"150kB"``; a unit ending in a lower-case ``b`` counts bits."""
    if isinstance(size, int) and not isinstance(size, bool):
        return size
    text = str(size).strip()
    number = text.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    unit = text[len(number):]
    if not number or unit.upper() not in _SIZE_UNITS:
        raise ValueError(f"max_shard_size {size!r} is not a size in bytes, nor like '5GB', '150kB' or '2GiB'")
    value = int(float(number) * _SIZE_UNITS[unit.upper()])
    return value // 8 if unit.endswith("b") and unit != "b" and not unit.endswith("B") else value

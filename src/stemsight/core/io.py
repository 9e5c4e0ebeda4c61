"""Atomic output: write into a temporary sibling and rename, so that a crash or bad input never leaves a
half-written file or folder behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from stemsight.core.errors import InputError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it replaces `path`, on error it is removed.

    The folder gets the usual permissions (0o777 less the umask), not the private ones of a temporary
    folder. An existing `path` is replaced as a whole, and restored if the final rename fails.
    """
    path = check_output_folder(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    except OSError as exc:
        raise InputError(f"{path.parent}: cannot write there ({exc.strerror or exc})") from None
    try:
        tmp.chmod(0o777 & ~_umask())
        yield tmp
        if path.exists() or path.is_symlink():
            if not overwrite:
                raise FileExistsError(path)
            _replace(path, tmp)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_output_folder(path: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
    """`path` as an output folder that may be created or replaced as a whole, its parent created.

    InputError when `path` is an existing file (not a folder), the current folder or one holding it, a
    folder holding one of `inputs` (replacing it would delete them), or when its parent cannot be made.
    """
    path = Path(path)
    where = path.resolve()
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: is a file, not an output folder (an output folder is replaced as a whole)")
    if where == Path.cwd().resolve() or where in Path.cwd().resolve().parents:
        raise InputError(f"{path}: is the current folder or holds it; give a new or expendable output folder")
    for item in inputs:
        item_path = Path(item).resolve()
        if item_path == where or where in item_path.parents:
            raise InputError(f"{path}: holds the input {item}; writing there would replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{path.parent}: cannot create this folder ({exc.strerror or exc})") from None
    return path


def _replace(path: Path, new: Path) -> None:
    """Swap `new` in for the existing `path`: move the old one aside (into a fresh private folder, so that
    no leftover of an earlier crash is in the way), rename, then delete the old one."""
    trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    old = trash / path.name
    try:
        path.rename(old)
    except OSError as exc:
        shutil.rmtree(trash, ignore_errors=True)
        raise InputError(f"{path}: cannot be replaced ({exc.strerror or exc})") from None
    try:
        new.rename(path)
    except BaseException:
        old.rename(path)
        shutil.rmtree(trash, ignore_errors=True)
        raise
    shutil.rmtree(trash, ignore_errors=True)


def read_text(path: str | Path, *, missing: str = "no such file") -> str:
    """The text of `path`; InputError naming the file when it is missing (`missing` says how) or unreadable
    (a folder, no permission). Decoding errors stay UnicodeDecodeError, for the caller's format message."""
    path = Path(path)
    try:
        return path.read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: {missing}") from None
    except UnicodeDecodeError:
        raise
    except OSError as exc:
        raise InputError(f"{path}: unreadable ({exc.strerror or exc})") from None


def read_json(path: str | Path, *, missing: str = "no such file") -> Any:
    """The parsed JSON of `path`; InputError naming the file when it is missing, unreadable or not JSON."""
    import json

    path = Path(path)
    try:
        return json.loads(read_text(path, missing=missing))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise

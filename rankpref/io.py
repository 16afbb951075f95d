"""Atomic file writes: write to a temporary file beside the target, fsync, then rename.

A crash never leaves a half-written file or folder under the final name, and the old one
stays until the new one is complete. Temporary names carry the writer's process id
(``.<name>.<pid>.<random>.tmp``), so the next write to the same place removes what a killed
writer left (its process is gone) and never touches a live writer's. A failed write (a full
disk, a read-only folder) is a one-line :class:`WriteError` naming the path; nothing changes.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rankpref.errors import RankprefError

_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                 errno.EIO, errno.EFBIG)
# what libraries that do their own I/O (safetensors, FAISS, torch) say when a write fails
_IO_MARKERS = tuple(os.strerror(code) for code in _WRITE_ERRNOS)


class WriteError(RankprefError):
    """A file or folder could not be written; the previous one (if any) is unchanged."""


def io_failure(exc: BaseException) -> str | None:
    """Why ``exc`` is a failed write (``"No space left on device"``), or None if it is not."""
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        return exc.strerror or str(exc)
    text = str(exc)
    return next((marker for marker in _IO_MARKERS if marker in text), None)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(path: Path) -> None:
    """Remove the temporary files/folders that dead writers left beside ``path``, and bring
    back an old folder a writer moved aside but never replaced."""
    parent = path.parent
    if not parent.is_dir():
        return
    for stale in parent.glob(f".{path.name}.*.tmp"):
        parts = stale.name[len(path.name) + 2:].split(".")
        if not parts[0].isdigit() or _alive(int(parts[0])):
            continue
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    old = parent / f".{path.name}.old"
    if old.is_dir() and not path.exists():
        os.replace(old, path)  # killed between the two renames: the old folder is whole


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_error(path: str | Path, exc: BaseException) -> WriteError | None:
    """The one-line error for a write to ``path`` that failed with ``exc``, or None when
    ``exc`` is not an I/O failure."""
    reason = io_failure(exc)
    if reason is None:
        return None
    return WriteError(f"{path}: could not write it ({reason}); nothing was changed")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; fsync and rename it onto ``path`` on success."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                                   dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise (write_error(path, exc) or exc) from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; use the usual mode
        os.replace(tmp_path, path)
    except Exception as exc:
        error = write_error(path, exc)
        if error is None:
            raise
        raise error from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def _seal(folder: Path) -> None:
    """Usual permissions (mkdtemp makes 0700, some writers 0600) and fsync, for every entry."""
    mask = _umask()
    for root, dirs, files in os.walk(folder):
        for name in files:
            file = Path(root) / name
            os.chmod(file, 0o666 & ~mask)
            _fsync(file)
        for name in dirs:
            os.chmod(Path(root) / name, 0o777 & ~mask)
    os.chmod(folder, 0o777 & ~mask)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``path`` (an old folder is removed
    only once the new one is in place)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                                    dir=path.parent))
    except OSError as exc:
        raise (write_error(path, exc) or exc) from None
    try:
        yield tmp
        _seal(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except Exception as exc:
        error = write_error(path, exc)
        if error is None:
            raise
        raise error from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)

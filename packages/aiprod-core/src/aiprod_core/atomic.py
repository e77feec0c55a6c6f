"""Atomic file writes: readers see the old file or the new one, never a partial one.

Everything that matters on disk (checkpoints, caches, manifests, reports) is written
through here: a temporary file beside the target is written, flushed and fsynced, then
renamed over the target, and the folder is fsynced so the rename survives a power loss.
On any failure, an interrupt included, the temporary file is removed and the target is
left as it was.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path


def temporary_sibling(target: Path, suffix: str = "") -> Path:
    """A fresh hidden path in ``target``'s folder, e.g. ``.model.safetensors.3f9a.tmp``.

    ``suffix`` is appended after ``.tmp`` for writers that pick a format by extension.
    """
    return target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp{suffix}")


@contextlib.contextmanager
def atomic_path(target: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write; on success it is fsynced and renamed to ``target``.

    For writers that want a file name rather than a stream (video encoders, safetensors).
    A replaced file keeps its permissions; if the block raises, ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = temporary_sibling(target, suffix)
    try:
        yield temp
        if not temp.is_file():
            raise FileNotFoundError(f"{temp}: the writer did not create the file")
        _fsync_file(temp)
        with contextlib.suppress(FileNotFoundError):
            temp.chmod(stat.S_IMODE(target.stat().st_mode))
        temp.replace(target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Replace ``target`` with ``data``.

    A new file gets the usual umask-based permissions (``tempfile.mkstemp`` would make it
    owner-only); a replaced file keeps its permissions.
    """
    with atomic_path(target) as temp:
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)


def atomic_write_text(target: Path, text: str) -> None:
    """Replace ``target`` with ``text`` encoded as UTF-8 with ``\\n`` line endings."""
    atomic_write_bytes(target, text.encode("utf-8"))


def _fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_directory(folder: Path) -> None:
    """Persist a rename by fsyncing its folder (not possible on every OS or filesystem)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

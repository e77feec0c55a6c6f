"""Atomic writes: readers see the old file (or folder) or the new one, never a partial one.

Everything that matters on disk (checkpoints, caches, manifests, reports, videos) is
written through here: a temporary file or folder beside the target is written, flushed
and fsynced, then renamed over the target, and the parent folder is fsynced so the rename
survives a power loss. On any failure, an interrupt included, the temporary file or folder
is removed and the target is left as it was.

Errors are ``OSError`` s whose message names the target and what went wrong or what was
expected (``cannot write out/clip.mp4: it is a folder; expected a file path``). A failed
system call keeps its type and ``errno`` (a ``PermissionError`` stays one) and is chained
as ``__cause__``, so callers can catch precisely or show the message as is.

A process killed in the middle of a write (SIGKILL, a power loss) cannot clean up: its
temporary file or folder stays behind under a name :data:`TEMPORARY_NAME` matches. Whoever
owns the folder removes those orphans with :func:`remove_orphans` when it next writes there.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

#: Random bytes in a temporary name, written as 12 hex digits.
_TOKEN_BYTES = 6

#: The names :func:`temporary_sibling` makes: ``.<target>.<12 hex digits>.tmp<suffix>``,
#: the suffix empty or starting with a dot; the group ``target`` is the name of the file or
#: folder being written. (scripts/maintenance/clean.py, which imports nothing of the
#: project, holds a copy that its tests compare with this one.)
TEMPORARY_NAME = re.compile(
    r"\.(?P<target>.+)\.(?P<token>[0-9a-f]{12})\.tmp(?P<suffix>(?:\..*)?)", re.DOTALL
)


def temporary_sibling(target: Path, suffix: str = "") -> Path:
    """A fresh hidden path in ``target``'s folder, e.g. ``.model.safetensors.3f9a0b1c2d3e.tmp``.

    ``suffix`` is appended after ``.tmp`` for writers that pick a format by extension (and
    ``.old`` marks a folder being replaced). The name always matches :data:`TEMPORARY_NAME`.
    """
    return target.with_name(f".{target.name}.{secrets.token_hex(_TOKEN_BYTES)}.tmp{suffix}")


def temporary_target(name: str) -> str | None:
    """The name of the file or folder a temporary ``name`` was written for, or None.

    ``temporary_target(".model.safetensors.3f9a0b1c2d3e.tmp") == "model.safetensors"``.
    """
    match = TEMPORARY_NAME.fullmatch(name)
    return match.group("target") if match is not None else None


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` is one :func:`temporary_sibling` makes."""
    return temporary_target(name) is not None


@dataclass(frozen=True)
class RemovedPath:
    """A file or folder that was deleted, and the bytes that freed (apparent sizes)."""

    path: Path
    bytes: int


def remove_orphans(
    folder: Path, owned: Callable[[str], bool] | Collection[str]
) -> list[RemovedPath]:
    """Delete the temporary files and folders interrupted writes left in ``folder``.

    Only entries directly in ``folder`` whose name matches :data:`TEMPORARY_NAME` and
    whose target name is ``owned`` (a predicate on the name, or a collection of names)
    go, so temporary files of other programs' or of other writers' targets stay.
    Symbolic links are never removed or followed. Call it only where no other process is
    writing the same targets: a temporary file still being written would be deleted.

    Returns:
        What was deleted, sorted by name; nothing when ``folder`` does not exist.

    Raises:
        OSError: ``folder`` cannot be listed or an orphan cannot be deleted; the message
            names it.
    """
    folder = Path(folder)
    is_owned = owned if callable(owned) else frozenset(owned).__contains__
    try:
        entries = sorted(folder.iterdir()) if folder.is_dir() else []
    except OSError as exc:
        raise _reworded(exc, f"cannot list {folder} to remove unfinished writes ({exc})") from exc
    removed: list[RemovedPath] = []
    for entry in entries:
        target = temporary_target(entry.name)
        if target is None or not is_owned(target) or entry.is_symlink():
            continue
        removed.append(remove_path(entry, "left by an interrupted write"))
    return removed


def remove_path(path: Path, why: str) -> RemovedPath:
    """Delete a file or a folder tree (links inside are unlinked, never followed).

    Raises:
        OSError: of the failed call's type, reading ``cannot remove <path>, <why> (...)``.
    """
    try:
        return RemovedPath(path, _delete(path))
    except OSError as exc:
        raise _reworded(exc, f"cannot remove {path}, {why} ({exc})") from exc


def _delete(path: Path) -> int:
    """Delete a file or a folder tree; return its apparent size."""
    if not path.is_dir():
        size = path.lstat().st_size
        path.unlink()
        return size
    size = 0
    for root, dirs, files in os.walk(path):  # links to folders are listed, not entered
        here = Path(root)
        entries = [here / name for name in files]
        entries.extend(here / name for name in dirs if (here / name).is_symlink())
        size += sum(entry.lstat().st_size for entry in entries)
    shutil.rmtree(path)
    return size


@contextlib.contextmanager
def atomic_path(target: Path, suffix: str = "", *, create: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is fsynced and renamed to ``target``.

    For writers that want a file name rather than a stream (video encoders, safetensors).
    With ``create=True`` the temporary file already exists, empty, with the permissions a
    plain ``open(target, "w")`` would give (0666 less the umask) rather than the
    owner-only ones of ``tempfile.mkstemp``. A replaced file keeps its permissions.
    Missing parent folders are created. If the block raises, ``target`` is untouched.

    Raises:
        IsADirectoryError: ``target`` is a folder.
        FileNotFoundError: the block finished without creating the temporary file.
        OSError: the parent folder, the temporary file or the final rename failed.
    """
    target = Path(target)
    if target.is_dir():
        raise IsADirectoryError(f"cannot write {target}: it is a folder; expected a file path")
    _make_parent(target)
    temp = temporary_sibling(target, suffix)
    if create:
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except OSError as exc:
            raise _reworded(
                exc, f"cannot write {target}: cannot create a temporary file beside it ({exc})"
            ) from exc
    try:
        yield temp
        if not temp.is_file():
            raise FileNotFoundError(
                f"cannot write {target}: the writer did not create the file {temp.name}"
            )
        _move_file_into_place(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


@contextlib.contextmanager
def atomic_folder(
    target: Path, replaceable: Callable[[Path], bool], *, replaceable_name: str = "replaceable"
) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it takes ``target``'s place.

    An existing folder at ``target`` is replaced only when ``replaceable(entry)`` holds for
    every entry in it, so a folder holding anything else is never deleted;
    ``replaceable_name`` names those entries in the error (e.g. ``"frames"``). Every file
    written into the temporary folder is fsynced before the swap. The old folder is moved
    aside, the new one renamed in, and only then is the old one deleted; should the second
    rename fail, the old folder is moved back. Missing parent folders are created.

    Raises:
        NotADirectoryError: ``target`` exists and is not a folder.
        FileExistsError: ``target`` holds entries ``replaceable`` rejects.
        OSError: the parent folder, the temporary folder or the swap failed.
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"cannot write {target}: it is a file; expected a folder path")
    if target.is_dir():
        foreign = sorted(entry.name for entry in target.iterdir() if not replaceable(entry))
        if foreign:
            raise FileExistsError(
                f"cannot write {target}: the folder already holds files that are not "
                f"{replaceable_name} ({', '.join(foreign[:3])}); expected an empty or new folder"
            )
    _make_parent(target)
    temp = temporary_sibling(target)
    try:
        temp.mkdir()
    except OSError as exc:
        raise _reworded(
            exc, f"cannot write {target}: cannot create a temporary folder beside it ({exc})"
        ) from exc
    try:
        yield temp
        _move_folder_into_place(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    _fsync_directory(target.parent)


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Replace ``target`` with ``data``.

    A new file gets the usual umask-based permissions; a replaced file keeps its own.
    """
    with atomic_path(target, create=True) as temp:
        temp.write_bytes(data)


def atomic_write_text(target: Path, text: str) -> None:
    """Replace ``target`` with ``text`` encoded as UTF-8 with ``\\n`` line endings."""
    atomic_write_bytes(target, text.encode("utf-8"))


def _make_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _reworded(exc, f"cannot write {target}: cannot create its folder ({exc})") from exc


def _move_file_into_place(temp: Path, target: Path) -> None:
    try:
        _fsync_file(temp)
        with contextlib.suppress(FileNotFoundError):
            temp.chmod(stat.S_IMODE(target.stat().st_mode))
        temp.replace(target)
    except OSError as exc:
        raise _reworded(
            exc, f"cannot write {target}: cannot move the finished file into place ({exc})"
        ) from exc


def _move_folder_into_place(temp: Path, target: Path) -> None:
    try:
        _fsync_tree(temp)
        _swap_in(temp, target)
    except OSError as exc:
        raise _reworded(
            exc, f"cannot write {target}: cannot move the finished folder into place ({exc})"
        ) from exc


def _swap_in(new: Path, target: Path) -> None:
    """Rename ``new`` to ``target``, moving an existing ``target`` aside and back on failure.

    Once ``new`` is in place the old folder is deleted as far as possible: the write has
    succeeded, so a folder that cannot be fully deleted is not reported as a failure.
    """
    if not target.exists():
        new.replace(target)
        return
    old = temporary_sibling(target, ".old")
    target.replace(old)
    try:
        new.replace(target)
    except BaseException:
        old.replace(target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _reworded(exc: OSError, message: str) -> OSError:
    """``message`` as an exception of ``exc``'s type with its ``errno``."""
    try:
        error = type(exc)(message)
    except TypeError:  # an OSError subclass whose constructor needs more arguments
        error = OSError(message)
    error.errno = exc.errno
    return error


def _fsync_tree(folder: Path) -> None:
    """Persist every regular file and folder under ``folder``, then ``folder`` itself."""
    for entry in folder.rglob("*"):
        if entry.is_dir():
            _fsync_directory(entry)
        elif entry.is_file():
            _fsync_file(entry)
    _fsync_directory(folder)


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

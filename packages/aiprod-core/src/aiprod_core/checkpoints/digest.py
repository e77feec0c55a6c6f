"""SHA-256 digests of checkpoint files and their ``<file>.sha256`` sidecars.

A sidecar holds one line in the format of ``sha256sum``: ``<hex digest>  <file name>``, so
``sha256sum -c model.safetensors.sha256`` checks the file from a shell.

A file read with no digest known (none given, no sidecar) is read unverified: that is
logged once per file and process (logger ``aiprod_core.checkpoints``), naming the file and
how to record its digest.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path

from aiprod_core.atomic import atomic_path, atomic_write_text
from aiprod_core.checkpoints.errors import CheckpointError
from aiprod_core.problems import shorten

SIDECAR_SUFFIX = ".sha256"
#: A sidecar is one line of about 70 characters plus the file name; more is not a sidecar.
SIDECAR_MAX_BYTES = 4096
_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20

logger = logging.getLogger("aiprod_core.checkpoints")
_reported: set[tuple[Path, str]] = set()
_reported_lock = threading.Lock()


def sidecar_path(path: Path) -> Path:
    """Where the digest of ``path`` is recorded: ``model.safetensors.sha256`` beside it."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def file_sha256(path: Path, progress: Callable[[int], object] | None = None) -> str:
    """The lowercase hex SHA-256 of a file, read in chunks.

    ``progress`` (when given) is called with the number of bytes of each chunk read.
    """
    with Path(path).open("rb") as stream:
        if progress is None:
            return hashlib.file_digest(stream, "sha256").hexdigest()
        digest = hashlib.sha256()
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
            progress(len(chunk))
        return digest.hexdigest()


def normalise_digest(digest: str, source: str) -> str:
    """``digest`` in lowercase; a CheckpointError naming ``source`` unless it is 64 hex digits."""
    value = digest.strip().lower()
    if not _HEX_DIGEST.match(value):
        raise CheckpointError(
            f"{source}: expected a sha256 of 64 hex digits, got {shorten(digest)}"
        )
    return value


def write_sidecar(path: Path, digest: str) -> Path:
    """Record ``digest`` for ``path`` in its sidecar (atomically); returns the sidecar path."""
    path = Path(path)
    target = sidecar_path(path)
    atomic_write_text(target, f"{normalise_digest(digest, str(target))}  {path.name}\n")
    return target


def write_with_sidecar(path: Path, write: Callable[[Path], object]) -> str:
    """Write ``path`` atomically with ``write(temporary_path)``, then its sidecar; the digest.

    The old sidecar is removed just before the new file takes its place, so a crash in
    between leaves a file without a sidecar (read unverified, with a warning), never a new
    file beside the old file's digest (which would read as corrupt). A failure before that
    leaves the old file and its sidecar as they were.
    """
    path = Path(path)
    with atomic_path(path) as temp:
        write(temp)
        digest = file_sha256(temp)
        sidecar_path(path).unlink(missing_ok=True)
    write_sidecar(path, digest)
    return digest


def read_sidecar(path: Path) -> str | None:
    """The digest recorded for ``path``, or None when it has no sidecar."""
    sidecar = sidecar_path(path)
    try:
        with sidecar.open("rb") as stream:
            data = stream.read(SIDECAR_MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckpointError(f"{sidecar}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > SIDECAR_MAX_BYTES:
        raise CheckpointError(
            f"{sidecar}: is larger than {SIDECAR_MAX_BYTES} bytes, so it is no sidecar; "
            f"expected one line '<sha256>  {Path(path).name}' (delete it, or restore it)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{sidecar}: cannot be read ({exc})") from None
    fields = text.split()
    if not fields:
        raise CheckpointError(f"{sidecar}: is empty; expected '<sha256>  {Path(path).name}'")
    return normalise_digest(fields[0], str(sidecar))


def verify_sha256(path: Path, expected: str | None) -> str | None:
    """Check ``path`` against ``expected``, else against its sidecar when it has one.

    Returns the verified digest, or None when no digest is known for the file.
    """
    path = Path(path)
    if expected is not None:
        wanted, source = normalise_digest(expected, f"sha256 given for {path}"), "the caller"
    else:
        recorded = read_sidecar(path)
        if recorded is None:
            return None
        wanted, source = recorded, f"its sidecar {sidecar_path(path).name}"
    actual = file_sha256(path)
    if actual != wanted:
        hint = (
            "the file is corrupt or was replaced; restore it, or if it was replaced on "
            f"purpose delete {sidecar_path(path).name}"
            if expected is None
            else "the file is corrupt or not the one expected; obtain it again"
        )
        raise CheckpointError(
            f"{path}: sha256 mismatch: expected {wanted} (from {source}), file has {actual}; {hint}"
        )
    return actual


def warn_unverified(path: Path, reason: str, fix: str, log: logging.Logger | None = None) -> bool:
    """Log that ``path`` is loaded with no digest known, once per file and process.

    The warning reads ``<path>: no sha256 is known for this file (<reason>), so it is
    loaded unverified; <fix>``. Returns whether it was logged now (False: said before).
    """
    return warn_once(
        path,
        "%s: no sha256 is known for this file (%s), so it is loaded unverified; %s",
        reason,
        fix,
        log=log,
    )


def warn_once(path: Path, message: str, *args: object, log: logging.Logger | None = None) -> bool:
    """Log ``message % (path, *args)`` as a warning once per (file, message) and process;
    returns whether it was logged now."""
    key = (Path(path).absolute(), message)
    with _reported_lock:
        if key in _reported:
            return False
        _reported.add(key)
    (log or logger).warning(message, path, *args)
    return True

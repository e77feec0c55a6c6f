"""SHA-256 digests of checkpoint files and their ``<file>.sha256`` sidecars.

A sidecar holds one line in the format of ``sha256sum``: ``<hex digest>  <file name>``, so
``sha256sum -c model.safetensors.sha256`` checks the file from a shell.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from aiprod_core.atomic import atomic_write_text
from aiprod_core.checkpoints.errors import CheckpointError

SIDECAR_SUFFIX = ".sha256"
_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def sidecar_path(path: Path) -> Path:
    """Where the digest of ``path`` is recorded: ``model.safetensors.sha256`` beside it."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def file_sha256(path: Path) -> str:
    """The lowercase hex SHA-256 of a file, read in chunks."""
    with Path(path).open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def normalise_digest(digest: str, source: str) -> str:
    """``digest`` in lowercase; a CheckpointError naming ``source`` unless it is 64 hex digits."""
    value = digest.strip().lower()
    if not _HEX_DIGEST.match(value):
        raise CheckpointError(f"{source}: expected a sha256 of 64 hex digits, got {digest!r}")
    return value


def write_sidecar(path: Path, digest: str) -> Path:
    """Record ``digest`` for ``path`` in its sidecar (atomically); returns the sidecar path."""
    path = Path(path)
    target = sidecar_path(path)
    atomic_write_text(target, f"{normalise_digest(digest, str(target))}  {path.name}\n")
    return target


def read_sidecar(path: Path) -> str | None:
    """The digest recorded for ``path``, or None when it has no sidecar."""
    sidecar = sidecar_path(path)
    try:
        text = sidecar.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
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

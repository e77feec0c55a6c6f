"""SHA-256 sidecars: written like sha256sum, read back, and checked."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from aiprod_core.checkpoints import (
    CheckpointError,
    file_sha256,
    read_sidecar,
    sidecar_path,
    verify_sha256,
    write_sidecar,
)


@pytest.fixture
def blob(tmp_path: Path) -> Path:
    path = tmp_path / "blob.safetensors"
    path.write_bytes(b"some bytes" * 1000)
    return path


def test_file_sha256_matches_hashlib(blob: Path) -> None:
    assert file_sha256(blob) == hashlib.sha256(blob.read_bytes()).hexdigest()


def test_sidecar_round_trip_in_sha256sum_format(blob: Path) -> None:
    digest = file_sha256(blob)
    written = write_sidecar(blob, digest.upper())
    assert written == sidecar_path(blob) == blob.with_name("blob.safetensors.sha256")
    assert written.read_text() == f"{digest}  blob.safetensors\n"
    assert read_sidecar(blob) == digest
    assert verify_sha256(blob, None) == digest


def test_no_sidecar_means_nothing_to_verify(blob: Path) -> None:
    assert read_sidecar(blob) is None
    assert verify_sha256(blob, None) is None


def test_given_digest_is_checked_and_normalised(blob: Path) -> None:
    digest = file_sha256(blob)
    assert verify_sha256(blob, f" {digest.upper()}\n") == digest
    with pytest.raises(
        CheckpointError, match="the file is corrupt or not the one expected"
    ) as caught:
        verify_sha256(blob, "f" * 64)
    message = str(caught.value)
    assert str(blob) in message
    assert "f" * 64 in message
    assert digest in message


def test_stale_sidecar_says_how_to_fix_it(blob: Path) -> None:
    write_sidecar(blob, "0" * 64)
    with pytest.raises(CheckpointError, match=r"delete blob\.safetensors\.sha256"):
        verify_sha256(blob, None)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "is empty"), ("xyz  blob.safetensors\n", "expected a sha256 of 64 hex digits")],
)
def test_malformed_sidecars(blob: Path, text: str, message: str) -> None:
    sidecar_path(blob).write_text(text)
    with pytest.raises(CheckpointError, match=message) as caught:
        read_sidecar(blob)
    assert "blob.safetensors.sha256" in str(caught.value)


def test_unreadable_sidecar(blob: Path) -> None:
    sidecar_path(blob).write_bytes(b"\xff\xfe\x00")
    with pytest.raises(CheckpointError, match=r"blob\.safetensors\.sha256: cannot be read"):
        read_sidecar(blob)


def test_bad_digest_argument(blob: Path) -> None:
    with pytest.raises(CheckpointError, match=r"sha256 given for .*blob\.safetensors"):
        verify_sha256(blob, "not-a-digest")
    with pytest.raises(CheckpointError, match="64 hex digits"):
        write_sidecar(blob, "123")

"""SHA-256 sidecars: written like sha256sum, read back (bounded), checked, kept in step."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

from aiprod_core.checkpoints import (
    CheckpointError,
    file_sha256,
    read_sidecar,
    sidecar_path,
    verify_sha256,
    warn_unverified,
    write_sidecar,
    write_with_sidecar,
)
from aiprod_core.checkpoints import digest as digest_module
from aiprod_core.checkpoints.digest import SIDECAR_MAX_BYTES


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


@pytest.mark.fault("files")
def test_an_oversized_sidecar_is_refused_without_reading_it_all(blob: Path) -> None:
    sidecar_path(blob).write_text(file_sha256(blob) + "  " + "x" * 10_000_000)
    with pytest.raises(CheckpointError) as caught:
        read_sidecar(blob)
    message = str(caught.value)
    assert message.startswith(f"{sidecar_path(blob)}: is larger than {SIDECAR_MAX_BYTES} bytes")
    assert len(message) < 300


@pytest.mark.fault("files")
def test_a_long_bad_digest_is_shown_truncated(blob: Path) -> None:
    sidecar_path(blob).write_text("z" * 3000 + "  blob.safetensors\n")
    with pytest.raises(CheckpointError, match="expected a sha256 of 64 hex digits") as caught:
        read_sidecar(blob)
    assert len(str(caught.value)) < 300


def test_file_sha256_reports_progress(blob: Path) -> None:
    seen: list[int] = []
    assert file_sha256(blob, progress=seen.append) == file_sha256(blob)
    assert sum(seen) == blob.stat().st_size


def test_write_with_sidecar_writes_the_file_then_its_digest(tmp_path: Path) -> None:
    path = tmp_path / "weights.safetensors"
    digest = write_with_sidecar(path, lambda temp: temp.write_bytes(b"new weights"))
    assert path.read_bytes() == b"new weights"
    assert digest == hashlib.sha256(b"new weights").hexdigest()
    assert read_sidecar(path) == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, sidecar_path(path).name]


@pytest.mark.fault("interrupted", guards_data=True)
def test_a_crash_before_the_new_sidecar_never_leaves_the_old_digest_beside_the_new_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "weights.safetensors"
    write_with_sidecar(path, lambda temp: temp.write_bytes(b"old weights"))

    def crash(target: Path, value: str) -> Path:
        raise KeyboardInterrupt

    monkeypatch.setattr(digest_module, "write_sidecar", crash)
    with pytest.raises(KeyboardInterrupt):
        write_with_sidecar(path, lambda temp: temp.write_bytes(b"new weights"))
    # The new file is in place and reads as unverified, not as corrupt.
    assert path.read_bytes() == b"new weights"
    assert read_sidecar(path) is None
    assert verify_sha256(path, None) is None
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.fault("interrupted", guards_data=True)
def test_a_failed_write_keeps_the_old_file_and_its_sidecar(tmp_path: Path) -> None:
    path = tmp_path / "weights.safetensors"
    digest = write_with_sidecar(path, lambda temp: temp.write_bytes(b"old weights"))

    def fail(temp: Path) -> None:
        temp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_with_sidecar(path, fail)
    assert path.read_bytes() == b"old weights"
    assert verify_sha256(path, None) == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, sidecar_path(path).name]


def test_unverified_files_are_reported_once_per_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = tmp_path / "first.safetensors", tmp_path / "second.safetensors"
    with caplog.at_level(logging.WARNING, logger="aiprod_core.checkpoints"):
        assert warn_unverified(first, "no sidecar", "record it")
        assert not warn_unverified(first, "no sidecar", "record it")
        assert warn_unverified(second, "no sidecar", "record it")
    said = "no sha256 is known for this file (no sidecar), so it is loaded unverified; record it"
    assert [r.getMessage() for r in caplog.records] == [f"{first}: {said}", f"{second}: {said}"]
    assert all(r.levelno == logging.WARNING for r in caplog.records)

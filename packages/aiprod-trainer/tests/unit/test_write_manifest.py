"""write_manifest: the file format, the round trip, and atomicity when a write fails."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from aiprod_trainer import (
    ManifestError,
    ManifestIssue,
    ManifestRecord,
    load_manifest,
    write_manifest,
)

MakeRecord = Callable[..., ManifestRecord]


def test_writes_one_json_object_per_line_in_field_order(
    tmp_path: Path, make_record: MakeRecord
) -> None:
    path = tmp_path / "train.jsonl"

    returned = write_manifest([make_record(media="a.mp4", caption="Café — night")], path)

    assert returned == path
    assert path.read_text(encoding="utf-8") == (
        '{"media": "a.mp4", "caption": "Café — night", "width": 768, "height": 512, '
        '"frames": 49, "fps": 24.0}\n'
    )


def test_round_trip_preserves_every_record(tmp_path: Path, fixtures_dir: Path) -> None:
    original = load_manifest(fixtures_dir / "valid.jsonl").records
    path = tmp_path / "copy.jsonl"

    write_manifest(original, path)

    assert load_manifest(path).records == original


def test_round_trip_of_a_generator(tmp_path: Path, make_record: MakeRecord) -> None:
    records = [make_record(media=f"clip{index}.mp4", frames=index + 1) for index in range(3)]
    path = tmp_path / "train.jsonl"

    write_manifest((record for record in records), path)

    assert load_manifest(path).records == tuple(records)


def test_empty_record_list_writes_an_empty_manifest(tmp_path: Path) -> None:
    path = write_manifest([], tmp_path / "train.jsonl")

    assert path.read_bytes() == b""
    assert len(load_manifest(path)) == 0


def test_missing_parent_folders_are_created(tmp_path: Path, make_record: MakeRecord) -> None:
    path = tmp_path / "data" / "v2" / "train.jsonl"

    write_manifest([make_record()], path)

    assert len(load_manifest(path)) == 1


def test_overwrites_an_existing_manifest(tmp_path: Path, make_record: MakeRecord) -> None:
    path = tmp_path / "train.jsonl"
    write_manifest([make_record(media="old.mp4")], path)

    write_manifest([make_record(media="new.mp4")], path)

    assert [record.media for record in load_manifest(path)] == ["new.mp4"]
    assert sorted(item.name for item in tmp_path.iterdir()) == ["train.jsonl"]


def test_duplicate_media_is_refused_and_nothing_is_written(
    tmp_path: Path, make_record: MakeRecord
) -> None:
    path = tmp_path / "train.jsonl"
    records = [make_record(media="a.mp4"), make_record(media="b.mp4"), make_record(media="./a.mp4")]

    with pytest.raises(ManifestError) as caught:
        write_manifest(records, path)

    assert caught.value.issues == (
        ManifestIssue(
            str(path),
            3,
            "media",
            'expected a media path not listed before, got "./a.mp4" (already on line 1)',
        ),
    )
    assert not path.exists()


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failed_write_keeps_the_previous_manifest_and_leaves_no_temp_file(
    tmp_path: Path, make_record: MakeRecord, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    path = tmp_path / "train.jsonl"
    write_manifest([make_record(media="good.mp4")], path)
    before = path.read_bytes()

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, failing, fail)

    with pytest.raises(OSError, match="No space left on device"):
        write_manifest([make_record(media="new.mp4")], path)

    assert path.read_bytes() == before
    assert [item.name for item in tmp_path.iterdir()] == ["train.jsonl"]


def test_interrupted_write_removes_its_temp_file(
    tmp_path: Path, make_record: MakeRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "train.jsonl"
    seen: list[Path] = []
    real_replace = os.replace

    def interrupt(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        seen.append(Path(source))
        assert json.loads(Path(source).read_text(encoding="utf-8"))["media"] == "a.mp4"
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_manifest([make_record(media="a.mp4")], path)
    monkeypatch.setattr(os, "replace", real_replace)

    assert seen[0].parent == tmp_path
    assert seen[0].name.startswith(".train.jsonl.")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_folder_fsync_failure_does_not_fail_the_write(
    tmp_path: Path, make_record: MakeRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open

    def refuse_folders(path: str | os.PathLike[str], flags: int, *args: int) -> int:
        if Path(path).is_dir():
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refuse_folders)
    path = write_manifest([make_record()], tmp_path / "train.jsonl")
    monkeypatch.undo()

    assert len(load_manifest(path)) == 1


def test_new_manifest_follows_the_umask_and_a_replaced_one_keeps_its_mode(
    tmp_path: Path, make_record: MakeRecord
) -> None:
    umask = os.umask(0o022)
    try:
        created = write_manifest([make_record()], tmp_path / "new.jsonl")
        assert created.stat().st_mode & 0o777 == 0o644

        created.chmod(0o640)
        write_manifest([make_record(media="other.mp4")], created)
        assert created.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(umask)


def test_relative_target_detects_an_absolute_duplicate(
    tmp_path: Path, make_record: MakeRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    records = [make_record(media="a.mp4"), make_record(media=str(tmp_path / "a.mp4"))]

    with pytest.raises(ManifestError) as caught:
        write_manifest(records, "train.jsonl")

    assert [(issue.file, issue.line) for issue in caught.value.issues] == [("train.jsonl", 2)]

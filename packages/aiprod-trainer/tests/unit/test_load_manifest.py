"""load_manifest: valid manifests load; every kind of bad line is reported with line and field."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from aiprod_trainer import (
    ManifestError,
    ManifestFileError,
    ManifestIssue,
    load_manifest,
)

WriteLines = Callable[[Sequence[str]], Path]
RecordData = Callable[..., dict[str, Any]]


def line(data: object) -> str:
    return json.dumps(data)


def issues_of(path: Path, *, check_media: bool = False) -> list[str]:
    """The error lines load_manifest reports for ``path``, with the folder part removed."""
    with pytest.raises(ManifestError) as caught:
        load_manifest(path, check_media=check_media)
    assert str(caught.value) == "\n".join(str(issue) for issue in caught.value.issues)
    return [str(issue).removeprefix(f"{path.parent}/") for issue in caught.value.issues]


# --- valid manifests ------------------------------------------------------------------


def test_valid_fixture_loads_every_record_in_order(fixtures_dir: Path) -> None:
    manifest = load_manifest(fixtures_dir / "valid.jsonl")

    assert len(manifest) == 5
    assert [record.media for record in manifest] == [
        "clips/fox.mp4",
        "clips/harbour.mp4",
        "clips/dancer.mp4",
        "images/terrace.png",
        "clips/rain.mp4",
    ]
    terrace = manifest.records[3]
    assert terrace.caption == "Café terrace at night — oil painting"
    assert (terrace.width, terrace.height, terrace.frames, terrace.fps) == (1024, 1024, 1, 1.0)
    assert manifest.records[4].fps == pytest.approx(23.976)


def test_manifest_path_is_absolute_and_media_resolves_against_its_folder(
    fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(fixtures_dir.parent)
    manifest = load_manifest(Path("fixtures") / "valid.jsonl")

    assert manifest.path == fixtures_dir / "valid.jsonl"
    assert manifest.root == fixtures_dir
    assert manifest.media_path(manifest.records[0]) == fixtures_dir / "clips" / "fox.mp4"


def test_absolute_media_path_is_kept(
    tmp_path: Path, write_lines: WriteLines, record_data: RecordData
) -> None:
    absolute = tmp_path / "elsewhere" / "clip.mp4"
    manifest = load_manifest(write_lines([line(record_data(media=str(absolute)))]))

    assert manifest.media_path(manifest.records[0]) == absolute


def test_blank_lines_crlf_and_byte_order_mark_are_accepted(
    tmp_path: Path, record_data: RecordData
) -> None:
    path = tmp_path / "train.jsonl"
    text = (
        "\ufeff"
        + line(record_data(media="a.mp4"))
        + "\r\n   \r\n\r\n"
        + line(record_data(media="b.mp4"))
    )
    path.write_bytes(text.encode("utf-8"))

    assert [record.media for record in load_manifest(path)] == ["a.mp4", "b.mp4"]


def test_line_separator_inside_a_caption_does_not_split_the_line(
    write_lines: WriteLines, record_data: RecordData
) -> None:
    caption = "first part\u2028second part"
    path = write_lines([json.dumps(record_data(caption=caption), ensure_ascii=False)])

    assert [record.caption for record in load_manifest(path)] == [caption]


def test_empty_manifest_has_no_records(write_lines: WriteLines) -> None:
    assert len(load_manifest(write_lines(["", "  "]))) == 0


# --- each kind of error, with its line number and field --------------------------------


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        (
            '{"media": "b.mp4", "caption": "x", "width": -5, "height": 1, "frames": 1, "fps": 1}',
            "train.jsonl:3: width: expected an integer > 0, got -5",
        ),
        (
            '{"media": "b.mp4", "caption": "x", "width": 1, "height": 1.5, "frames": 1, "fps": 1}',
            "train.jsonl:3: height: expected an integer > 0, got 1.5",
        ),
        (
            '{"media": "b.mp4", "caption": "x", "width": 1, "height": 1, "frames": true, "fps": 1}',
            "train.jsonl:3: frames: expected an integer > 0, got true",
        ),
        (
            '{"media": "b.mp4", "caption": "x", "width": 1, "height": 1, "frames": 1, "fps": 0}',
            "train.jsonl:3: fps: expected a finite number > 0, got 0",
        ),
        (
            '{"media": "b.mp4", "caption": "x", "width": 1, "height": 1, "frames": 1, "fps": NaN}',
            "train.jsonl:3: fps: expected a finite number > 0, got NaN",
        ),
        (
            '{"media": "b.mp4", "caption": " ", "width": 1, "height": 1, "frames": 1, "fps": 1}',
            'train.jsonl:3: caption: expected a non-empty string, got " "',
        ),
        (
            '{"media": "", "caption": "x", "width": 1, "height": 1, "frames": 1, "fps": 1}',
            'train.jsonl:3: media: expected a non-empty path string, got ""',
        ),
        (
            '{"caption": "x", "width": 1, "height": 1, "frames": 1, "fps": 1}',
            "train.jsonl:3: media: expected a non-empty path string, but the field is missing",
        ),
        (
            '{"media": "b.mp4", "caption": "x", "width": 1, "height": 1, "frames": 1, "fps": 1, "seed": 7}',
            "train.jsonl:3: seed: unknown field; expected only media, caption, width, height, frames, fps",
        ),
        (
            '{"media": "b.mp4", "caption": "x", "caption": "y", "width": 1, "height": 1, "frames": 1, "fps": 1}',
            "train.jsonl:3: caption: expected the field once, got it more than once",
        ),
        (
            '{"media": "b.mp4", "caption": "x", "width": 1,',
            (
                "train.jsonl:3: record: expected a JSON object, got invalid JSON "
                "at column 47: Expecting property name enclosed in double quotes"
            ),
        ),
        (
            '["b.mp4", "x", 1, 1, 1, 1]',
            "train.jsonl:3: record: expected a JSON object, got a JSON array",
        ),
        ('"b.mp4"', "train.jsonl:3: record: expected a JSON object, got a JSON string"),
        ("42", "train.jsonl:3: record: expected a JSON object, got the value 42"),
        ("null", "train.jsonl:3: record: expected a JSON object, got null"),
        (
            '# {"media": "b.mp4"}',
            "train.jsonl:3: record: expected a JSON object, got a comment (JSONL has no comments)",
        ),
        (
            '{"media": "./a.mp4", "caption": "x", "width": 1, "height": 1, "frames": 1, "fps": 1}',
            (
                'train.jsonl:3: media: expected a media path not listed before, got "./a.mp4" '
                "(already on line 1)"
            ),
        ),
    ],
)
def test_bad_line_is_reported_with_line_and_field(
    write_lines: WriteLines, record_data: RecordData, bad_line: str, expected: str
) -> None:
    path = write_lines([line(record_data(media="a.mp4")), "", bad_line])

    assert issues_of(path) == [expected]


def test_long_bad_value_is_shortened(write_lines: WriteLines, record_data: RecordData) -> None:
    path = write_lines([line(record_data(width="w" * 200))])

    (message,) = issues_of(path)
    assert message == 'train.jsonl:1: width: expected an integer > 0, got "' + "w" * 56 + "..."


def test_line_that_is_not_utf8_is_reported(tmp_path: Path, record_data: RecordData) -> None:
    path = tmp_path / "train.jsonl"
    path.write_bytes(line(record_data()).encode() + b"\n\xff\xfe{}\n")

    assert issues_of(path) == [
        "train.jsonl:2: record: expected UTF-8 text, got bytes that are not UTF-8"
    ]


def test_duplicate_is_detected_between_relative_and_absolute_paths(
    tmp_path: Path, write_lines: WriteLines, record_data: RecordData
) -> None:
    absolute = str(tmp_path / "clips" / "a.mp4")
    path = write_lines([line(record_data(media="clips/a.mp4")), line(record_data(media=absolute))])

    assert issues_of(path) == [
        (
            f'train.jsonl:2: media: expected a media path not listed before, got "{absolute}" '
            "(already on line 1)"
        )
    ]


def test_every_error_of_the_invalid_fixture_is_collected(fixtures_dir: Path) -> None:
    path = fixtures_dir / "invalid.jsonl"

    with pytest.raises(ManifestError) as caught:
        load_manifest(path)

    shown = str(path)
    assert caught.value.issues == (
        ManifestIssue(shown, 2, "width", "expected an integer > 0, got -5"),
        ManifestIssue(
            shown,
            3,
            "record",
            "expected a JSON object, got invalid JSON at column 112: Expecting ',' delimiter",
        ),
        ManifestIssue(shown, 4, "record", "expected a JSON object, got a JSON array"),
        ManifestIssue(
            shown,
            5,
            "seed",
            "unknown field; expected only media, caption, width, height, frames, fps",
        ),
        ManifestIssue(shown, 6, "fps", "expected a finite number > 0, but the field is missing"),
        ManifestIssue(
            shown,
            7,
            "media",
            'expected a media path not listed before, got "clips/a.mp4" (already on line 1)',
        ),
        ManifestIssue(
            shown, 9, "record", "expected a JSON object, got a comment (JSONL has no comments)"
        ),
        ManifestIssue(shown, 10, "caption", 'expected a non-empty string, got "   "'),
        ManifestIssue(shown, 10, "height", 'expected an integer > 0, got "512"'),
        ManifestIssue(shown, 10, "frames", "expected an integer > 0, got 0"),
    )
    assert isinstance(caught.value, ValueError)
    assert str(caught.value).splitlines()[0] == f"{shown}:2: width: expected an integer > 0, got -5"


def test_issue_to_dict(fixtures_dir: Path) -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifest(fixtures_dir / "invalid.jsonl")

    assert caught.value.issues[0].to_dict() == {
        "file": str(fixtures_dir / "invalid.jsonl"),
        "line": 2,
        "field": "width",
        "message": "expected an integer > 0, got -5",
    }


# --- the manifest file itself ----------------------------------------------------------


def test_missing_manifest_is_a_clear_file_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"

    with pytest.raises(ManifestFileError) as caught:
        load_manifest(path)

    assert str(caught.value) == f"{path}: manifest not found (expected a JSONL file)"
    assert isinstance(caught.value, ManifestError)
    assert caught.value.issues == ()


def test_directory_instead_of_manifest_is_a_file_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestFileError, match="expected a JSONL manifest file, got a directory"):
        load_manifest(tmp_path)


def test_unreadable_manifest_is_a_file_error(
    write_lines: WriteLines, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_lines([])

    def deny(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", deny)

    with pytest.raises(ManifestFileError) as caught:
        load_manifest(path)
    assert str(caught.value) == f"{path}: manifest cannot be read (Permission denied)"


# --- media checks ----------------------------------------------------------------------


def test_check_media_reports_each_missing_file(
    tmp_path: Path, write_lines: WriteLines, record_data: RecordData
) -> None:
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "present.mp4").write_bytes(b"\x00")
    (tmp_path / "clips" / "folder.mp4").mkdir()
    path = write_lines(
        [
            line(record_data(media="clips/present.mp4")),
            line(record_data(media="clips/absent.mp4")),
            line(record_data(media="clips/folder.mp4")),
        ]
    )

    assert issues_of(path, check_media=True) == [
        (
            'train.jsonl:2: media: expected an existing file, got "clips/absent.mp4" '
            f"(no file at {tmp_path / 'clips' / 'absent.mp4'})"
        ),
        (
            'train.jsonl:3: media: expected an existing file, got "clips/folder.mp4" '
            f"(no file at {tmp_path / 'clips' / 'folder.mp4'})"
        ),
    ]
    assert len(load_manifest(path)) == 3


def test_check_media_passes_when_every_file_exists(
    tmp_path: Path, write_lines: WriteLines, record_data: RecordData
) -> None:
    (tmp_path / "a.mp4").write_bytes(b"\x00")
    (tmp_path / "b.mp4").write_bytes(b"\x00")
    path = write_lines([line(record_data(media="a.mp4")), line(record_data(media="b.mp4"))])

    assert [record.media for record in load_manifest(path, check_media=True)] == ["a.mp4", "b.mp4"]

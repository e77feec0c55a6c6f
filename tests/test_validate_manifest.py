"""scripts/data/validate_manifest.py: exit codes, human and JSON output, errors on stderr."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

RECORDS = [
    {"media": "clips/a.mp4", "caption": "a", "width": 768, "height": 512, "frames": 49, "fps": 24},
    {"media": "clips/b.mp4", "caption": "b", "width": 512, "height": 512, "frames": 25, "fps": 24},
    {"media": "clips/c.mp4", "caption": "c", "width": 768, "height": 512, "frames": 49, "fps": 30},
]


@pytest.fixture
def script(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("data/validate_manifest.py")


def write_manifest(folder: Path, lines: list[str]) -> Path:
    path = folder / "train.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def valid(tmp_path: Path) -> Path:
    return write_manifest(tmp_path, [json.dumps(record) for record in RECORDS])


@pytest.fixture
def invalid(tmp_path: Path) -> Path:
    bad_width = dict(RECORDS[1], width=-5)
    return write_manifest(tmp_path, [json.dumps(RECORDS[0]), json.dumps(bad_width), "{oops"])


def test_valid_manifest_prints_a_summary_and_exits_0(
    script: ModuleType, valid: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert script.main([str(valid)]) == 0

    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"{valid}: valid, 3 records in 2 buckets",
        "  bucket      records",
        "  512x512x25        1",
        "  768x512x49        2",
    ]
    assert err == ""


def test_valid_manifest_as_json(
    script: ModuleType, valid: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert script.main([str(valid), "--json"]) == 0

    assert json.loads(capsys.readouterr().out) == {
        "manifest": str(valid),
        "valid": True,
        "media_checked": False,
        "records": 3,
        "buckets": [
            {"label": "512x512x25", "width": 512, "height": 512, "frames": 25, "records": 1},
            {"label": "768x512x49", "width": 768, "height": 512, "frames": 49, "records": 2},
        ],
    }


def test_single_record_summary_uses_singular_words(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_manifest(tmp_path, [json.dumps(RECORDS[0])])

    assert script.main([str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"{path}: valid, 1 record in 1 bucket"


def test_empty_manifest_is_valid_with_no_bucket_table(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_manifest(tmp_path, [])

    assert script.main([str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: valid, 0 records in 0 buckets\n"


def test_invalid_manifest_lists_every_error_on_stderr_and_exits_1(
    script: ModuleType, invalid: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert script.main([str(invalid)]) == 1

    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{invalid}:2: width: expected an integer > 0, got -5",
        (
            f"{invalid}:3: record: expected a JSON object, got invalid JSON "
            "at column 2: Expecting property name enclosed in double quotes"
        ),
        f"{invalid}: invalid, 2 problems",
    ]


def test_invalid_manifest_as_json(
    script: ModuleType, invalid: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert script.main([str(invalid), "--json"]) == 1

    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["valid"] is False
    assert [(error["line"], error["field"]) for error in result["errors"]] == [
        (2, "width"),
        (3, "record"),
    ]
    assert result["errors"][0]["message"] == "expected an integer > 0, got -5"
    assert f"{invalid}:2: width:" in err


def test_check_media_reports_missing_files(
    script: ModuleType, valid: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (valid.parent / "clips").mkdir()
    (valid.parent / "clips" / "a.mp4").write_bytes(b"\x00")
    (valid.parent / "clips" / "c.mp4").write_bytes(b"\x00")

    assert script.main([str(valid), "--check-media"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith(
        f'{valid}:2: media: expected an existing file, got "clips/b.mp4"'
    )
    assert err.splitlines()[-1] == f"{valid}: invalid, 1 problem"

    (valid.parent / "clips" / "b.mp4").write_bytes(b"\x00")
    assert script.main([str(valid), "--check-media"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        f"{valid}: valid, 3 records in 2 buckets, media files checked"
    )


def test_missing_manifest_exits_2_with_a_clear_message(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.jsonl"

    assert script.main([str(missing)]) == 2

    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"error: {missing}: manifest not found (expected a JSONL file)\n"


def test_missing_manifest_as_json(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.jsonl"

    assert script.main([str(missing), "--json"]) == 2

    assert json.loads(capsys.readouterr().out) == {
        "manifest": str(missing),
        "valid": False,
        "error": f"{missing}: manifest not found (expected a JSONL file)",
    }


def test_directory_instead_of_manifest_exits_2(
    script: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert script.main([str(tmp_path)]) == 2
    assert "got a directory" in capsys.readouterr().err


def test_help_describes_the_arguments(
    script: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        script.main(["--help"])

    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "Validate a dataset manifest" in out
    for option in ("manifest", "--check-media", "--json"):
        assert option in out


def test_missing_argument_is_a_usage_error(
    script: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        script.main([])

    assert exited.value.code == 2
    assert "the following arguments are required: manifest" in capsys.readouterr().err


def test_script_has_a_pep723_header_naming_the_trainer(repo_root: Path) -> None:
    text = (repo_root / "scripts" / "data" / "validate_manifest.py").read_text(encoding="utf-8")

    assert text.startswith("# /// script\n")
    assert '# dependencies = ["aiprod-trainer"]' in text

"""The dataset manifest: one JSON object per line describing one training clip.

A manifest is a UTF-8 JSONL file. Each non-blank line is an object with exactly these fields::

    {"media": "clips/0001.mp4", "caption": "a red fox in snow", "width": 768,
     "height": 512, "frames": 49, "fps": 24}

``media`` is relative to the folder holding the manifest, or absolute. Blank lines are
skipped. Comment lines (``# ...``) are *not* allowed: JSONL tools (jq, pandas, datasets)
reject them and :func:`write_manifest` could not preserve them, so a manifest that loads
here loads everywhere.

:func:`load_manifest` validates every line and reports all problems in one
:class:`~aiprod_trainer.data.manifest_errors.ManifestError`; :func:`write_manifest` writes
atomically, so a crash mid-write leaves the previous manifest intact.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aiprod_core.atomic import atomic_write_text
from aiprod_core.documents import LINE_LIMITS, DocumentError, document_problem, parse_json
from aiprod_core.problems import Problem, clip, validation_problems
from aiprod_trainer.data.manifest_errors import (
    WHOLE_RECORD,
    ManifestError,
    ManifestFileError,
    ManifestIssue,
)

#: What each field must hold, as shown in error messages ("expected <this>").
EXPECTED: dict[str, str] = {
    "media": "a non-empty path string",
    "caption": "a non-empty string",
    "width": "an integer > 0",
    "height": "an integer > 0",
    "frames": "an integer > 0",
    "fps": "a finite number > 0",
}

_MAX_SHOWN = 60  # longest rendering of a bad value inside an error message


class ManifestRecord(BaseModel):
    """One clip of a dataset: where its media is, what it shows, and its shape."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    media: str = Field(
        min_length=1, description="Path to the video or image, relative or absolute."
    )
    caption: str = Field(min_length=1, description="Text describing the clip.")
    width: int = Field(gt=0, description="Width in pixels.")
    height: int = Field(gt=0, description="Height in pixels.")
    frames: int = Field(gt=0, description="Number of frames (1 for an image).")
    fps: float = Field(gt=0, allow_inf_nan=False, description="Frames per second.")

    @field_validator("media", "caption")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


@dataclass(frozen=True)
class Manifest:
    """The validated records of one manifest file, in file order."""

    path: Path
    records: tuple[ManifestRecord, ...]

    @property
    def root(self) -> Path:
        """The folder that relative media paths are relative to."""
        return self.path.parent

    def media_path(self, record: ManifestRecord) -> Path:
        """Where ``record``'s media file is on disk."""
        return resolve_media(self.root, record.media)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ManifestRecord]:
        return iter(self.records)


def resolve_media(root: Path, media: str) -> Path:
    """``media`` as a path: unchanged when absolute, otherwise joined to ``root``."""
    return root / media  # joining an absolute path yields that path


def load_manifest(path: str | os.PathLike[str], *, check_media: bool = False) -> Manifest:
    """Read and validate the manifest at ``path``.

    Every line is checked and every problem collected; if there is any, a
    :class:`ManifestError` lists them all as ``<file>:<line>: <field>: <expected>``. Checks:
    valid JSON, a JSON object, each field present once with a valid value, no unknown fields,
    no media path listed twice (compared after resolving against the manifest's folder) and,
    with ``check_media``, that each media file exists.

    Raises:
        ManifestFileError: the file is missing, a directory, or unreadable.
        ManifestError: one or more lines are invalid.
    """
    shown = str(path)
    manifest_path = Path(path).absolute()
    issues: list[ManifestIssue] = []
    records: list[ManifestRecord] = []
    first_line_of: dict[str, int] = {}

    for number, text in _read_lines(manifest_path, shown):
        if text is not None and not text.strip():
            continue
        record, line_issues = _parse_line(text, shown, number)
        issues.extend(line_issues)
        if record is None:
            continue
        key = os.path.normpath(resolve_media(manifest_path.parent, record.media))
        if key in first_line_of:
            issues.append(_duplicate_issue(shown, number, record.media, first_line_of[key]))
            continue
        first_line_of[key] = number
        if check_media and not Path(key).is_file():
            issues.append(
                ManifestIssue(
                    shown,
                    number,
                    "media",
                    f"expected an existing file, got {_quote(record.media)} (no file at {key})",
                )
            )
        records.append(record)

    if issues:
        raise ManifestError.from_issues(issues)
    return Manifest(path=manifest_path, records=tuple(records))


def write_manifest(records: Iterable[ManifestRecord], path: str | os.PathLike[str]) -> Path:
    """Write ``records`` as a JSONL manifest at ``path``, atomically; return the path.

    The text goes to a temporary file in the same folder, is flushed and fsynced, then
    renamed over ``path``: readers see the old manifest or the new one, never half of one.
    Missing parent folders are created.

    Raises:
        ManifestError: two records name the same media file (the manifest would not load).
    """
    target = Path(path)
    records = tuple(records)
    _check_unique_media(records, target)
    text = "".join(
        json.dumps(record.model_dump(mode="json"), ensure_ascii=False) + "\n" for record in records
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, text)
    return target


def _check_unique_media(records: Sequence[ManifestRecord], target: Path) -> None:
    shown = str(target)
    first_line_of: dict[str, int] = {}
    issues: list[ManifestIssue] = []
    for number, record in enumerate(records, start=1):
        key = os.path.normpath(resolve_media(target.absolute().parent, record.media))
        if key in first_line_of:
            issues.append(_duplicate_issue(shown, number, record.media, first_line_of[key]))
        else:
            first_line_of[key] = number
    if issues:
        raise ManifestError.from_issues(issues)


def _read_lines(path: Path, shown: str) -> Iterator[tuple[int, str | None]]:
    """Yield ``(line number, text)`` per line; text is None for a line that is not UTF-8."""
    try:
        stream = path.open("rb")
    except FileNotFoundError:
        raise ManifestFileError(f"{shown}: manifest not found (expected a JSONL file)") from None
    except IsADirectoryError:
        raise ManifestFileError(
            f"{shown}: expected a JSONL manifest file, got a directory"
        ) from None
    except OSError as exc:
        raise ManifestFileError(f"{shown}: manifest cannot be read ({exc.strerror})") from None
    with stream:
        # Binary iteration splits on b"\n" only; str.splitlines would also split on
        # characters such as U+2028 that JSON allows inside strings.
        for number, raw in enumerate(stream, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield number, None
                continue
            if number == 1:
                text = text.removeprefix("\ufeff")
            yield number, text.rstrip("\r\n")


def _parse_line(
    text: str | None, shown: str, number: int
) -> tuple[ManifestRecord | None, list[ManifestIssue]]:
    """Validate one non-blank line; return its record or the issues found on it."""

    def issue(field: str, message: str) -> ManifestIssue:
        return ManifestIssue(shown, number, field, message)

    if text is None:
        return None, [issue(WHOLE_RECORD, "expected UTF-8 text, got bytes that are not UTF-8")]
    if text.lstrip().startswith("#"):
        return None, [
            issue(WHOLE_RECORD, "expected a JSON object, got a comment (JSONL has no comments)")
        ]
    repeated: list[str] = []
    try:
        data = parse_json(
            text,
            shown,
            limits=LINE_LIMITS,
            object_pairs_hook=lambda pairs: _object(pairs, repeated),
        )
    except DocumentError as exc:
        problem = document_problem(exc).replace(" at line 1 column ", " at column ")
        return None, [issue(WHOLE_RECORD, f"expected a JSON object, got {problem}")]
    if not isinstance(data, dict):
        return None, [issue(WHOLE_RECORD, f"expected a JSON object, got {_json_kind(data)}")]

    issues = [issue(name, "expected the field once, got it more than once") for name in repeated]
    try:
        record = ManifestRecord.model_validate(data)
    except ValidationError as exc:
        issues.extend(issue(*_describe(problem)) for problem in validation_problems(exc))
        return None, issues
    return (None, issues) if issues else (record, [])


def _object(pairs: list[tuple[str, Any]], repeated: list[str]) -> dict[str, Any]:
    """Build a JSON object, noting keys that appear twice (``json`` keeps the last silently)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result and key not in repeated:
            repeated.append(key)
        result[key] = value
    return result


def _describe(problem: Problem) -> tuple[str, str]:
    """Turn one validation problem into ``(field, what was expected)``."""
    field = problem.loc[0] if problem.loc else WHOLE_RECORD
    if problem.kind == "extra_forbidden":
        return field, f"unknown field; expected only {', '.join(EXPECTED)}"
    expected = EXPECTED.get(field, "a valid value")
    if problem.kind == "missing":
        return field, f"expected {expected}, but the field is missing"
    return field, f"expected {expected}, got {_show(problem.value)}"


def _quote(value: object) -> str:
    """A user's value as JSON, in full (used for paths, which must be shown whole)."""
    return json.dumps(value, ensure_ascii=False)


def _show(value: object) -> str:
    """A short JSON rendering of a user's (possibly long) bad value for an error message."""
    return clip(_quote(value), _MAX_SHOWN)


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, str):
        return "a JSON string"
    if value is None:
        return "null"
    return f"the value {_show(value)}"


def _duplicate_issue(shown: str, number: int, media: str, first: int) -> ManifestIssue:
    return ManifestIssue(
        shown,
        number,
        "media",
        f"expected a media path not listed before, got {_quote(media)} (already on line {first})",
    )

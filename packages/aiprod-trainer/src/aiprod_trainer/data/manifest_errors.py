"""Errors raised while reading or writing a dataset manifest.

Every problem found in a manifest is a :class:`ManifestIssue` that prints as
``<file>:<line>: <field>: <what was expected>`` -- the format editors and CI logs link to.
:class:`ManifestError` carries all issues of one manifest at once, so a user fixes every bad
line in one pass instead of one per run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aiprod_core.errors import AiprodError

#: The field name used for problems that concern a whole line rather than one field.
WHOLE_RECORD = "record"


@dataclass(frozen=True)
class ManifestIssue:
    """One problem on one line of a manifest."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"

    def to_dict(self) -> dict[str, str | int]:
        """The issue as plain data, for ``--json`` output."""
        return {"file": self.file, "line": self.line, "field": self.field, "message": self.message}


class ManifestError(AiprodError, ValueError):
    """A manifest is invalid; ``issues`` lists every problem found, in line order."""

    def __init__(self, message: str, issues: Sequence[ManifestIssue] = ()) -> None:
        super().__init__(message)
        self.issues: tuple[ManifestIssue, ...] = tuple(issues)

    @classmethod
    def from_issues(cls, issues: Sequence[ManifestIssue]) -> ManifestError:
        """An error whose message is one issue per line."""
        return cls("\n".join(str(issue) for issue in issues), issues)


class ManifestFileError(ManifestError):
    """The manifest file itself cannot be opened: missing, a directory, or unreadable."""

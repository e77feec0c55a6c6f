"""The one exception type that video IO raises for problems a user can cause."""

from __future__ import annotations

from aiprod_core.errors import AiprodError


class VideoIOError(AiprodError, ValueError):
    """A video or image could not be read or written.

    The message names the file (when there is one) and what was expected, so that a CLI
    or HTTP handler can show it as is. Like every error a user can cause it is an
    :class:`AiprodError`; it is also a :class:`ValueError` because every cause is a bad
    value: a bad path, a bad file, or a bad array.
    """

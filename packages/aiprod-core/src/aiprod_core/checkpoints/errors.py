"""The error every checkpoint problem a user can cause is reported as."""

from __future__ import annotations

from aiprod_core.errors import AiprodError


class CheckpointError(AiprodError):
    """A checkpoint is missing, corrupt, unsafe (pickle) or does not fit the requested model.

    The message names the file and what was expected.
    """

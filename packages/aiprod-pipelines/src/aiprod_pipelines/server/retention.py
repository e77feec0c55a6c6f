"""Which finished videos to delete, and deleting them from whichever store holds them.

A finished job's video expires ``serving.output_ttl_seconds`` after the job finished
(:func:`expires_at`); ``serving.output_retention`` caps how many videos are kept, the
oldest going first (:func:`over_limit`). The job store knows each video's key and expiry;
these functions decide and delete, so the same rules hold for a local folder and for a
bucket:

    gone = delete_expired(storage, [(job.output, job.expires_at) for job in finished])

A key whose deletion fails is logged and left out of the result, so its job is kept and
the next sweep tries again; a key already gone counts as deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from aiprod_pipelines.server.storage import VideoStorage

logger = logging.getLogger(__name__)

KeysWithExpiry = Mapping[str, datetime] | Iterable[tuple[str, datetime]]


def expires_at(finished_at: datetime, ttl_seconds: float) -> datetime:
    """When the video of a job that finished at ``finished_at`` expires."""
    if ttl_seconds < 0:
        raise ValueError(f"ttl_seconds must be >= 0, got {ttl_seconds}")
    return finished_at + timedelta(seconds=ttl_seconds)


def expired(keys_with_expiry: KeysWithExpiry, now: datetime) -> list[str]:
    """The keys whose expiry is at or before ``now``, the earliest expiry first.

    Expiries and ``now`` must all be timezone-aware (or all naive); a mix raises TypeError.
    """
    pairs = keys_with_expiry.items() if isinstance(keys_with_expiry, Mapping) else keys_with_expiry
    due = [(moment, key) for key, moment in pairs if moment <= now]
    return [key for _, key in sorted(due)]


def over_limit(keys_oldest_first: Sequence[str], keep: int) -> list[str]:
    """The oldest keys beyond the newest ``keep`` (``serving.output_retention``)."""
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    return list(keys_oldest_first[: max(len(keys_oldest_first) - keep, 0)])


def delete_keys(storage: VideoStorage, keys: Iterable[str]) -> list[str]:
    """Delete each key from ``storage``; return the ones deleted (failures are logged)."""
    deleted = []
    for key in keys:
        try:
            storage.delete(key)
        except (OSError, ValueError) as exc:
            logger.warning("retention: cannot delete %s from %s: %s", key, storage.url, exc)
            continue
        deleted.append(key)
    return deleted


def delete_expired(
    storage: VideoStorage, keys_with_expiry: KeysWithExpiry, now: datetime | None = None
) -> list[str]:
    """Delete the videos expired at ``now`` (default: the current UTC time) from ``storage``.

    Returns the keys deleted, the earliest expiry first.
    """
    return delete_keys(storage, expired(keys_with_expiry, now or datetime.now(UTC)))

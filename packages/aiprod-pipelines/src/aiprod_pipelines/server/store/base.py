"""What a job store holds and promises: the :class:`Job` record and the :class:`JobStore` protocol.

A job is a row: its state, the request it runs, its timestamps and, while it runs, the
worker that claimed it and the time its lease ends. Every method of a store is one
transaction, safe to call from any thread of any replica:

- :meth:`JobStore.submit` admits a job under the queue limit and the idempotency key;
- :meth:`JobStore.claim` hands the oldest queued job to exactly one worker and gives it a
  lease, which :meth:`JobStore.touch` renews (and reports a cancel request or a lost lease);
- :meth:`JobStore.recover_expired` takes back the jobs whose lease ran out (their replica
  died): queued again while ``attempts < max_attempts``, failed after that;
- :meth:`JobStore.finish` ends a job only if its worker still holds it.

Timestamps come from the database's clock for PostgreSQL (one clock for every replica)
and from the process's for SQLite (one host).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Collection
from datetime import datetime
from typing import Any, Literal, Protocol

from aiprod_core.errors import AiprodError
from aiprod_pipelines.server.schemas import FINAL_STATES, JobState

#: Claims of one job before a lost lease fails it instead of queueing it again.
MAX_ATTEMPTS = 2
#: The error of a job whose lease expired on its last attempt.
LEASE_LOST = "the replica running it stopped responding (lease expired twice)"
#: The error of a job cancelled on request (``POST /v1/videos/{id}/cancel`` or ``DELETE``).
CANCELLED = "cancelled on request"

#: What :meth:`JobStore.submit` did: created a job, found the one with the same idempotency
#: key and body, found that key with another body, or refused because the queue is full.
AdmissionOutcome = Literal["created", "existing", "conflict", "full"]
#: What :meth:`JobStore.touch` found: still ours, ours but cancel requested, or not ours.
TouchOutcome = Literal["ok", "cancel", "lost"]


class StoreError(AiprodError):
    """The job store cannot be used: unreachable, refused, or a schema this code does not know."""


def request_hash(body: dict[str, Any]) -> str:
    """A stable digest of a request body (canonical JSON), for idempotency checks."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class NewJob:
    """A job to admit.

    ``request`` is the resolved request without its images; ``images`` lists each image's
    ``frame`` and ``size`` (bytes), ``image_data`` the base64 data, kept until the job ends.
    """

    id: str
    request: dict[str, Any]
    images: list[dict[str, int]] = dataclasses.field(default_factory=list)
    image_data: list[str] = dataclasses.field(default_factory=list)
    idempotency_key: str | None = None
    request_hash: str | None = None
    webhook_url: str | None = None


@dataclasses.dataclass(frozen=True)
class Job:
    """One job as the store holds it (a snapshot: it never changes).

    ``image_data`` is only loaded by :meth:`JobStore.claim` (None elsewhere);
    ``queue_position`` is 1-based among queued jobs (None when not queued, or not computed).
    """

    id: str
    seq: int
    status: JobState
    request: dict[str, Any]
    images: list[dict[str, int]]
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = None
    progress: float = 0.0
    error: str | None = None
    video_key: str | None = None
    video_removed: bool = False
    idempotency_key: str | None = None
    request_hash: str | None = None
    webhook_url: str | None = None
    worker_id: str | None = None
    lease_expires_at: datetime | None = None
    attempts: int = 0
    cancel_requested: bool = False
    delete_requested: bool = False
    queue_position: int | None = None
    image_data: list[str] | None = dataclasses.field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        """Whether the job has ended (succeeded, failed or cancelled)."""
        return self.status in FINAL_STATES


@dataclasses.dataclass(frozen=True)
class Admission:
    """The answer of :meth:`JobStore.submit`.

    ``job`` is the new job (``created``), the earlier one with the same key (``existing``,
    ``conflict``) or None (``full``); ``queued`` counts the queued jobs before this one.
    """

    outcome: AdmissionOutcome
    job: Job | None
    queued: int


class JobStore(Protocol):
    """Durable jobs shared by every worker and replica (SQLite or PostgreSQL)."""

    #: "sqlite" or "postgresql".
    engine: str
    #: Where the jobs live, without a password (for logs and messages).
    url: str

    def migrate(self) -> list[str]:
        """Apply the migrations not applied yet; their names (empty when up to date)."""
        ...

    def schema_version(self) -> int:
        """The latest migration applied (0 before any)."""
        ...

    def submit(self, job: NewJob, *, queue_size: int) -> Admission:
        """Admit ``job`` unless the queue holds ``queue_size`` jobs or its key was used."""
        ...

    def get(self, job_id: str) -> Job | None:
        """The job (with its queue position), or None."""
        ...

    def page(
        self, *, limit: int, status: JobState | None = None, before: int | None = None
    ) -> list[Job]:
        """Up to ``limit`` jobs, newest first: of ``status`` only if given, and with a
        ``seq`` below ``before`` if given (the cursor of the previous page)."""
        ...

    def counts(self) -> dict[JobState, int]:
        """How many jobs are in each state."""
        ...

    def claim(self, worker_id: str, lease_seconds: float) -> Job | None:
        """Take the oldest queued job for ``worker_id`` (running, leased, its image data loaded)."""
        ...

    def touch(
        self, job_id: str, worker_id: str, progress: float, lease_seconds: float
    ) -> TouchOutcome:
        """Record progress and renew the lease of a job ``worker_id`` holds."""
        ...

    def finish(
        self,
        job_id: str,
        worker_id: str,
        *,
        status: JobState,
        error: str | None,
        video_key: str | None,
        ttl_seconds: float,
    ) -> Job | None:
        """End a job ``worker_id`` still holds; a success requested cancelled ends cancelled.

        Returns the ended job, or None when the worker no longer holds it.
        """
        ...

    def cancel(self, job_id: str, ttl_seconds: float) -> tuple[Job | None, bool]:
        """Cancel a queued job now, or ask the worker of a running one to stop.

        Returns the job as it is now (None if unknown) and whether this call ended it.
        """
        ...

    def delete(self, job_id: str) -> tuple[Job | None, bool]:
        """Delete a job that is not running; a running one is asked to stop and be deleted.

        Returns the job as it was (None if unknown) and whether its row is gone.
        """
        ...

    def remove(self, job_ids: Collection[str]) -> None:
        """Delete these jobs' rows whatever their state (once their videos are deleted)."""
        ...

    def recover_expired(self, *, max_attempts: int, ttl_seconds: float) -> list[Job]:
        """Take back running jobs whose lease ended: queue them again or fail them.

        A job asked to stop ends cancelled. Returns the jobs changed, as they are now.
        """
        ...

    def expired(self, limit: int) -> list[Job]:
        """Finished jobs whose ``expires_at`` has passed, the earliest first."""
        ...

    def videos_over_limit(self, keep: int) -> list[Job]:
        """Succeeded jobs whose video is older than the newest ``keep`` videos, oldest first."""
        ...

    def mark_removed(self, job_ids: Collection[str]) -> None:
        """Record that the videos of these jobs were deleted (retention)."""
        ...

    def existing(self, job_ids: Collection[str]) -> set[str]:
        """The ids among ``job_ids`` that name a job."""
        ...

    def close(self) -> None:
        """Close the connections."""
        ...

"""Generation jobs on a durable store: admission, reads, cancellation and deletion.

Jobs live in the job store (:mod:`aiprod_pipelines.server.store`), so every replica sees
every job and a restart loses none. A job is ``queued`` until a worker of some replica
claims it, ``running`` while it generates and writes its mp4, then ``succeeded``,
``failed`` (with the reason) or ``cancelled``. A claim comes with a lease that this
process renews (:class:`~aiprod_pipelines.server.keeper.JobKeeper`); if the process dies
the lease runs out and another replica queues the job again, once, then fails it.

:class:`JobManager` admits jobs (``serving.queue_size`` counts every replica's queued
jobs; an ``Idempotency-Key`` returns the first job), reads, cancels and deletes them; its
worker threads, cancellation at the next denoising step and the shutdown rules are in
:mod:`aiprod_pipelines.server.workers`.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import uuid
from collections.abc import Callable

from aiprod_core.errors import AiprodError
from aiprod_pipelines.server.generator import VideoGenerator
from aiprod_pipelines.server.retention import delete_keys
from aiprod_pipelines.server.schemas import JobState, ResolvedVideoRequest
from aiprod_pipelines.server.storage import VideoStorage
from aiprod_pipelines.server.store import Job, JobStore, NewJob
from aiprod_pipelines.server.views import iso
from aiprod_pipelines.server.workers import (
    CANCEL_WAIT_S,
    POLL_S,
    SHUTTING_DOWN,
    JobCancelled,
    JobWorkers,
    WebhookNotifier,
    join_until,
    stored_request,
)

__all__ = [
    "CANCEL_WAIT_S",
    "SHUTTING_DOWN",
    "IdempotencyConflict",
    "Job",
    "JobCancelled",
    "JobManager",
    "QueueFullError",
    "ShuttingDownError",
    "Submission",
    "WebhookNotifier",
    "iso",
    "join_until",
    "stored_request",
]

#: Seeds drawn for requests without one (kept small so people can type them back).
RANDOM_SEED_BOUND = 2**31
#: Retry-After when no generation has finished yet to estimate from.
DEFAULT_RETRY_AFTER_S = 10
MAX_RETRY_AFTER_S = 3600


class QueueFullError(Exception):
    """The queue holds ``serving.queue_size`` jobs; try again after ``retry_after`` seconds."""

    def __init__(self, size: int, retry_after: int) -> None:
        super().__init__(f"the job queue is full ({size} jobs waiting); retry in {retry_after} s")
        self.retry_after = retry_after


class ShuttingDownError(Exception):
    """The server is shutting down and takes no new jobs."""


class IdempotencyConflict(AiprodError):
    """An ``Idempotency-Key`` already used for a different request (answered 409)."""

    def __init__(self, key: str, job_id: str) -> None:
        shown = key if len(key) <= 80 else key[:80] + "..."
        super().__init__(
            f"Idempotency-Key {shown!r} was already used for a different request (job "
            f"{job_id}); send a new key with a new request"
        )
        self.job_id = job_id


@dataclasses.dataclass(frozen=True)
class Submission:
    """A submitted job, and whether this submission created it (False: an idempotent replay)."""

    job: Job
    created: bool


class JobManager(JobWorkers):
    """Admits jobs into the store, reads, cancels and deletes them; its workers
    (:class:`~aiprod_pipelines.server.workers.JobWorkers`) run them."""

    def __init__(
        self,
        generator: VideoGenerator,
        store: JobStore,
        videos: VideoStorage,
        *,
        queue_size: int,
        workers: int = 1,
        lease_seconds: float = 30.0,
        ttl_seconds: float = 86400.0,
        keep: int = 100,
        poll_seconds: float = POLL_S,
        observe_generation: Callable[[float], None] | None = None,
        webhooks: WebhookNotifier | None = None,
        replica: str | None = None,
    ) -> None:
        if queue_size < 1 or workers < 1:
            raise ValueError(f"queue_size and workers must be >= 1, got {queue_size}, {workers}")
        super().__init__(
            generator,
            store,
            videos,
            workers=workers,
            lease_seconds=lease_seconds,
            ttl_seconds=ttl_seconds,
            keep=keep,
            poll_seconds=poll_seconds,
            observe_generation=observe_generation,
            webhooks=webhooks,
            replica=replica,
        )
        self.queue_size = queue_size

    # ------------------------------------------------------------------ submit and read
    def submit(
        self,
        request: ResolvedVideoRequest,
        *,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        webhook_url: str | None = None,
    ) -> Submission:
        """Queue ``request`` (a missing seed is drawn now).

        With ``idempotency_key``, a second submission with the same ``request_hash`` returns
        the first job (``created`` False) and one with another hash raises
        :class:`IdempotencyConflict`. Raises :class:`QueueFullError` when
        ``queue_size`` jobs are queued (in the whole store), :class:`ShuttingDownError`
        once shutdown began.
        """
        with self._cond:
            if self._stopping:
                raise ShuttingDownError(SHUTTING_DOWN)
        if request.seed is None:
            request = request.model_copy(update={"seed": secrets.randbelow(RANDOM_SEED_BOUND)})
        values = request.model_dump(mode="json", exclude={"images", "webhook_url"})
        admission = self.store.submit(
            NewJob(
                id=uuid.uuid4().hex,
                request=values,
                images=[{"frame": image.frame, "size": image.size} for image in request.images],
                image_data=[image.data for image in request.images],
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                webhook_url=webhook_url,
            ),
            queue_size=self.queue_size,
        )
        if admission.outcome == "full":
            raise QueueFullError(admission.queued, self._retry_after())
        assert admission.job is not None  # every other outcome names a job
        if admission.outcome == "conflict":
            raise IdempotencyConflict(idempotency_key or "", admission.job.id)
        if admission.outcome == "created":
            self.wake()
        return Submission(admission.job, admission.outcome == "created")

    def get(self, job_id: str) -> Job | None:
        """The job, or None when the id is unknown (never existed, deleted or expired).

        A job running in this process reports its latest progress; one running elsewhere
        the progress its replica last recorded (at most half a second old).
        """
        job = self.store.get(job_id)
        return None if job is None else self._fresh(job)

    def _fresh(self, job: Job) -> Job:
        """``job`` with the latest progress, when it runs in this process."""
        if job.status != "running":
            return job
        with self._cond:
            local = self._running.get(job.id)
        return job if local is None else dataclasses.replace(job, progress=local.progress)

    def page(
        self, *, limit: int, status: JobState | None = None, before: int | None = None
    ) -> tuple[list[Job], int | None]:
        """Up to ``limit`` jobs, newest first, and the cursor of the next page (None: last)."""
        jobs = [
            self._fresh(job)
            for job in self.store.page(limit=limit + 1, status=status, before=before)
        ]
        if len(jobs) <= limit:
            return jobs, None
        return jobs[:limit], jobs[limit - 1].seq

    def counts(self) -> dict[JobState, int]:
        """How many jobs the store holds in each state (every replica's)."""
        return self.store.counts()

    def queue_depth(self) -> int:
        """Jobs waiting for a worker of any replica."""
        return self.counts()["queued"]

    def _retry_after(self) -> int:
        """Seconds until a slot is likely free: a worker frees one every mean time / workers."""
        with self._cond:
            durations = list(self._durations)
        if not durations:
            return DEFAULT_RETRY_AFTER_S
        mean = sum(durations) / len(durations)
        return min(MAX_RETRY_AFTER_S, max(1, math.ceil(mean / self.workers)))

    # --------------------------------------------------------------- cancel and delete
    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued job (it never starts) or stop a running one at its next step.

        Returns the job as it is now (``cancelled``, or ``running`` until it stops), or None.
        """
        job, ended = self.store.cancel(job_id, self.ttl_seconds)
        if job is None:
            return None
        if job.status == "running":
            self._halt_local(job_id)
        if ended:
            self.notify_ended(job)
        return job

    def delete(self, job_id: str) -> tuple[Job | None, bool]:
        """Delete a job and its video; a running job is cancelled and deleted once it stops.

        Returns the job (None if unknown) and whether it is gone now.
        """
        job, gone = self.store.delete(job_id)
        if job is None:
            return None, False
        if gone:
            if job.video_key is not None and not job.video_removed:
                delete_keys(self.videos, [job.video_key])  # a failure: the orphan sweep retries
        else:
            self._halt_local(job_id)
        return job, gone

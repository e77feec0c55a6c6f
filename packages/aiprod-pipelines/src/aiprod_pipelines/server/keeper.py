"""The job manager's background thread: leases, lapsed jobs and retention.

Every :data:`TOUCH_S` seconds (a third of the lease at most) it records the progress of
the jobs this process runs and renews their leases; the same write reads each job's
``cancel_requested`` flag, so a cancel sent to any replica stops the generation at its
next denoising step. A job whose lease this process lost (it was queued again elsewhere)
is stopped the same way and its video discarded.

Every :data:`RECOVER_S` seconds (half the lease at most) it takes back the jobs whose
lease ran out, whichever replica held them: queued again while they have attempts left
(:data:`~aiprod_pipelines.server.store.MAX_ATTEMPTS`), failed after that. A job asked to
stop ends cancelled instead. So a replica that dies mid-job costs its jobs at most one
lease plus :data:`RECOVER_S` before another replica picks them up.

Every :data:`SWEEP_S` seconds (and at start-up) it applies retention: finished jobs past
their ``expires_at`` are deleted with their videos, videos beyond
``serving.output_retention`` are deleted (their jobs answer 410), and videos whose job no
longer exists (a crash between the two deletions, an earlier run) are deleted.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import TYPE_CHECKING

from aiprod_pipelines.server.retention import delete_keys
from aiprod_pipelines.server.store import MAX_ATTEMPTS, Job, StoreError

if TYPE_CHECKING:
    from aiprod_pipelines.server.workers import JobWorkers

logger = logging.getLogger(__name__)

#: Seconds between lease renewals and cancel checks (less when the lease is short).
TOUCH_S = 0.5
#: Seconds between looks for lapsed leases (less when the lease is short).
RECOVER_S = 5.0
#: Seconds between retention sweeps.
SWEEP_S = 60.0
#: Expired jobs deleted per sweep (the next sweep takes the rest).
SWEEP_BATCH = 1000
#: Seconds :meth:`JobKeeper.stop` waits for the thread.
STOP_WAIT_S = 10.0


def video_name(job: Job) -> str:
    """The name a job's video is written under: its id, plus the attempt after the first
    (a replica that lost the lease never overwrites, or deletes, the next attempt's video)."""
    return job.id if job.attempts <= 1 else f"{job.id}-{job.attempts}"


def job_id_of(video_key: str) -> str:
    """The job a video key belongs to (``<id>.mp4`` or ``<id>-<attempt>.mp4``)."""
    return video_key.rsplit(".", 1)[0].partition("-")[0]


@dataclasses.dataclass
class Running:
    """A job this process runs: its latest progress and why it must stop, if it must.

    ``reason``: "cancel" (requested), "shutdown" (the grace period ended; the job was
    marked failed) or "lost" (the lease ran out and the job went back to the queue).
    """

    job_id: str
    worker_id: str
    progress: float = 0.0
    reason: str | None = None
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)

    def halt(self, reason: str) -> None:
        """Stop the generation at its next step (the first reason given wins)."""
        if self.reason is None:
            self.reason = reason
        self.stop.set()


@dataclasses.dataclass(frozen=True)
class Sweep:
    """What one retention sweep deleted (video keys, job ids)."""

    expired_jobs: list[str]
    videos_over_limit: list[str]
    orphan_videos: list[str]


class JobKeeper:
    """Renews the leases of the running jobs of :class:`JobWorkers`, recovers lapsed ones, sweeps."""

    def __init__(self, manager: JobWorkers) -> None:
        self.manager = manager
        lease = manager.lease_seconds
        self.touch_every = min(TOUCH_S, lease / 3)
        self.recover_every = min(RECOVER_S, lease / 2)
        self.sweep_every = SWEEP_S
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the thread (only the first call does anything)."""
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._loop, name="aiprod-keeper", daemon=True
                )
                self._thread.start()

    def stop(self, timeout: float = STOP_WAIT_S) -> None:
        """Stop the thread and wait for it (bounded)."""
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _loop(self) -> None:
        next_recover = next_sweep = time.monotonic()
        while not self._stop.wait(self.touch_every):
            for step, due in (
                (self.touch, 0.0),
                (self.recover, next_recover),
                (self.sweep, next_sweep),
            ):
                if time.monotonic() < due:
                    continue
                try:
                    step()
                except (StoreError, OSError) as exc:
                    logger.warning("keeper: %s failed: %s", step.__name__, exc)
                except Exception:
                    logger.exception("keeper: %s failed", step.__name__)
            now = time.monotonic()
            if now >= next_recover:
                next_recover = now + self.recover_every
            if now >= next_sweep:
                next_sweep = now + self.sweep_every

    # ---------------------------------------------------------------------- leases
    def touch(self) -> None:
        """Renew the leases of this process's running jobs; stop the cancelled and the lost."""
        manager = self.manager
        for local in manager.running():
            outcome = manager.store.touch(
                local.job_id, local.worker_id, local.progress, manager.lease_seconds
            )
            if outcome == "cancel":
                local.halt("cancel")
            elif outcome == "lost" and local.reason is None:
                logger.warning(
                    "job %s: %s lost its lease (the store queued the job again or it ended); "
                    "stopping it",
                    local.job_id,
                    local.worker_id,
                )
                local.halt("lost")

    def recover(self) -> list[Job]:
        """Take back the jobs whose lease ran out; the jobs changed, as they are now."""
        manager = self.manager
        changed = manager.store.recover_expired(
            max_attempts=MAX_ATTEMPTS, ttl_seconds=manager.ttl_seconds
        )
        for job in changed:
            if job.status == "queued":
                logger.warning(
                    "job %s: the replica running it stopped renewing its lease; queued again "
                    "(attempt %d of %d next)",
                    job.id,
                    job.attempts + 1,
                    MAX_ATTEMPTS,
                )
                continue
            logger.error("job %s: its lease ran out; %s: %s", job.id, job.status, job.error)
            if job.delete_requested:
                manager.store.remove([job.id])
            manager.notify_ended(job)
        if any(job.status == "queued" for job in changed):
            manager.wake()
        return changed

    # ------------------------------------------------------------------- retention
    def sweep(self) -> Sweep:
        """Delete expired jobs and their videos, videos over the limit, and orphan videos."""
        manager = self.manager
        expired = manager.store.expired(SWEEP_BATCH)
        videos = [job.video_key for job in expired if job.video_key and not job.video_removed]
        deleted = set(delete_keys(manager.videos, videos))
        gone = [
            job.id
            for job in expired
            if not job.video_key or job.video_removed or job.video_key in deleted
        ]
        manager.store.remove(gone)
        over = self.trim()
        orphans = self._orphans()
        if gone or over or orphans:
            logger.info(
                "retention: %d expired job(s) deleted, %d video(s) over serving.output_retention "
                "and %d video(s) without a job deleted",
                len(gone),
                len(over),
                len(orphans),
            )
        return Sweep(gone, over, orphans)

    def trim(self) -> list[str]:
        """Delete the videos beyond the newest ``serving.output_retention``; their keys."""
        manager = self.manager
        over = manager.store.videos_over_limit(manager.keep)
        deleted = set(delete_keys(manager.videos, [job.video_key for job in over if job.video_key]))
        manager.store.mark_removed([job.id for job in over if job.video_key in deleted])
        return sorted(deleted)

    def _orphans(self) -> list[str]:
        manager = self.manager
        keys = manager.videos.keys()
        owners = {key: job_id_of(key) for key in keys}
        known = manager.store.existing(set(owners.values()))
        return delete_keys(
            manager.videos, [key for key, owner in owners.items() if owner not in known]
        )

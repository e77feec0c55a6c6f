"""The worker threads of a :class:`~aiprod_pipelines.server.jobs.JobManager`.

Each worker claims the oldest queued job from the store (polling every ``poll_seconds``,
woken at once by a submission to this process), runs the generator with a progress
callback that stops it at the next denoising step once the job must stop (cancelled, its
lease lost, or the shutdown grace over), writes the video under :func:`video_name` and
ends the job in the store, which only its lease holder can do. Shutdown stops the claims,
leaves queued jobs queued, gives running jobs the grace period, then cancels them, marks
them failed and joins the threads (bounded by :data:`CANCEL_WAIT_S`).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from aiprod_pipelines.server.generator import VideoGenerator
from aiprod_pipelines.server.keeper import JobKeeper, Running, video_name
from aiprod_pipelines.server.retention import delete_keys
from aiprod_pipelines.server.schemas import JobState, ResolvedVideoRequest
from aiprod_pipelines.server.storage import VideoStorage
from aiprod_pipelines.server.store import CANCELLED, Job, JobStore, StoreError
from aiprod_pipelines.server.views import job_view

logger = logging.getLogger("aiprod_pipelines.server.jobs")

SHUTTING_DOWN = "server shutting down"
#: Generation times remembered for the Retry-After estimate.
DURATION_WINDOW = 20
#: Seconds shutdown waits, after cancelling a running job, for its worker thread to end:
#: the cancel takes effect at the next denoising step (or after the decode and write that
#: follow the last step).
CANCEL_WAIT_S = 30.0
#: How often a shutdown wait checks whether it was hurried.
JOIN_POLL_S = 0.05
#: How often an idle worker looks for a job another replica queued.
POLL_S = 0.5


class JobCancelled(Exception):
    """Raised inside a generation (from its progress callback) to abort it."""


class WebhookNotifier(Protocol):
    """Sends a finished job's view to its ``webhook_url`` in the background
    (:class:`aiprod_pipelines.server.webhooks.WebhookSender`)."""

    def send(self, url: str, payload: dict[str, Any]) -> None: ...

    def close(self, timeout: float) -> None: ...


def stored_request(job: Job) -> ResolvedVideoRequest:
    """The request ``job`` runs, its images' data included (as :meth:`JobStore.claim` loads it)."""
    data = job.image_data or []
    images = [
        {"data": text, "frame": image["frame"]}
        for text, image in zip(data, job.images, strict=True)
    ]
    return ResolvedVideoRequest.model_validate({**job.request, "images": images})


class JobWorkers:
    """Worker threads, the lease keeper and shutdown, over a job store and a video storage."""

    def __init__(
        self,
        generator: VideoGenerator,
        store: JobStore,
        videos: VideoStorage,
        *,
        workers: int = 1,
        lease_seconds: float = 30.0,
        ttl_seconds: float = 86400.0,
        keep: int = 100,
        poll_seconds: float = POLL_S,
        observe_generation: Callable[[float], None] | None = None,
        webhooks: WebhookNotifier | None = None,
        replica: str | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.generator = generator
        self.store = store
        self.videos = videos
        self.workers = workers
        self.lease_seconds = lease_seconds
        self.ttl_seconds = ttl_seconds
        self.keep = keep
        self.poll_seconds = poll_seconds
        self.webhooks = webhooks
        #: This process among the replicas; worker ids are ``<replica>/<index>``.
        self.replica = replica or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._observe = observe_generation
        self._durations: deque[float] = deque(maxlen=DURATION_WINDOW)
        self._cond = threading.Condition()
        self._running: dict[str, Running] = {}
        self._submitted = 0
        self._threads: list[threading.Thread] = []
        self._stopping = False
        #: Set by :meth:`hurry`: shutdown waits (these, and the app's) end at once.
        self.hurried = threading.Event()
        self.keeper = JobKeeper(self)

    def live_workers(self) -> int:
        """Worker threads still running (they end after shutdown, or after a cancelled job)."""
        with self._cond:
            return sum(thread.is_alive() for thread in self._threads)

    def _halt_local(self, job_id: str) -> None:
        with self._cond:
            local = self._running.get(job_id)
        if local is not None:
            local.halt("cancel")

    def notify_ended(self, job: Job) -> None:
        """Send the view of a job that just ended to its webhook, if it has one."""
        if job.webhook_url is None or self.webhooks is None:
            return
        try:
            self.webhooks.send(job.webhook_url, job_view(job).model_dump(mode="json"))
        except Exception:
            logger.exception("job %s: cannot queue its webhook", job.id)

    def start(self) -> None:
        """Start the lease keeper and the worker threads (once the model is loaded)."""
        with self._cond:
            if self._threads or self._stopping:
                return
            self.keeper.start()
            for index in range(self.workers):
                thread = threading.Thread(
                    target=self._work, args=(index,), name=f"aiprod-worker-{index}", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def running(self) -> list[Running]:
        """The jobs this process runs now."""
        with self._cond:
            return list(self._running.values())

    def wake(self) -> None:
        """Make idle workers look for a job now (one was queued again)."""
        with self._cond:
            self._submitted += 1
            self._cond.notify_all()

    def _work(self, index: int) -> None:
        worker_id = f"{self.replica}/{index}"
        while True:
            with self._cond:
                if self._stopping:
                    return
                seen = self._submitted
            try:
                job = self.store.claim(worker_id, self.lease_seconds)
            except StoreError as exc:
                logger.warning("%s cannot claim a job: %s", worker_id, exc)
                job = None
            if job is None:
                with self._cond:
                    if not self._stopping and self._submitted == seen:
                        self._cond.wait(self.poll_seconds)
                continue
            self._run(job, worker_id)

    def _run(self, job: Job, worker_id: str) -> None:
        local = Running(job.id, worker_id, progress=job.progress)
        with self._cond:
            self._running[job.id] = local
        started = time.perf_counter()
        key: str | None = None
        status: JobState = "failed"
        error: str | None = None

        def progress(step: int, total: int) -> None:
            if local.stop.is_set():
                raise JobCancelled(local.reason)
            if total > 0:
                local.progress = min(max(step / total, 0.0), 1.0)

        try:
            request = stored_request(job)
            frames = self.generator.generate(request, progress)
            if local.stop.is_set():  # asked to stop after the last step
                raise JobCancelled(local.reason)
            key = self.videos.write(video_name(job), frames, fps=request.fps)
            status = "succeeded"
        except JobCancelled:
            status, error = "cancelled", CANCELLED
        except Exception as exc:
            logger.exception("job %s failed", job.id)
            error = f"generation failed: {exc}"
        finally:
            with self._cond:
                self._running.pop(job.id, None)
        self._finish(job, local, status, error, key, time.perf_counter() - started)

    def _finish(
        self,
        job: Job,
        local: Running,
        status: JobState,
        error: str | None,
        key: str | None,
        seconds: float,
    ) -> None:
        if local.reason in ("shutdown", "lost"):  # no longer this worker's job
            self._discard(key)
            return
        try:
            ended = self.store.finish(
                job.id,
                local.worker_id,
                status=status,
                error=error,
                video_key=key,
                ttl_seconds=self.ttl_seconds,
            )
        except StoreError as exc:  # the lease runs out; the job is retried or failed then
            logger.error("job %s: cannot record its end: %s", job.id, exc)
            ended = None
        if ended is None or ended.video_key != key:
            self._discard(key)  # lost meanwhile, or cancelled at the last moment
        if ended is None:
            return
        if ended.status == "succeeded":
            with self._cond:
                self._durations.append(seconds)
            if self._observe is not None:
                self._observe(seconds)
        try:  # housekeeping: the job itself is recorded; a later sweep redoes what fails here
            if ended.status == "succeeded":
                self.keeper.trim()
            if ended.delete_requested:
                self.store.remove([ended.id])
        except StoreError as exc:
            logger.error("job %s: housekeeping after its end failed: %s", job.id, exc)
        self.notify_ended(ended)

    def _discard(self, key: str | None) -> None:
        if key is not None:
            delete_keys(self.videos, [key])

    # ----------------------------------------------------------------------- shutdown
    def hurry(self) -> None:
        """End the waits of :meth:`shutdown` now (a second Ctrl-C): cancel without waiting."""
        self.hurried.set()

    def shutdown(self, grace_seconds: float, cancel_wait_seconds: float | None = None) -> list[str]:
        """Stop claiming jobs and give the running ones ``grace_seconds`` to finish.

        Queued jobs stay queued in the store. A job still running after the grace period
        is cancelled (its generation stops at the next denoising step) and marked failed
        at once. The worker threads are then joined: each gets ``cancel_wait_seconds``
        more (default :data:`CANCEL_WAIT_S`) to reach its next step, or to finish decoding
        and writing a video it was already writing. :meth:`hurry` ends both waits early.

        Returns:
            The names of worker threads still alive after the waits (empty after a clean
            stop); a thread named here is stuck inside the generator and is logged.
        """
        cancel_wait = CANCEL_WAIT_S if cancel_wait_seconds is None else cancel_wait_seconds
        with self._cond:
            first = not self._stopping
            self._stopping = True
            self._cond.notify_all()
            threads = list(self._threads)
        join_until(threads, time.monotonic() + max(grace_seconds, 0.0), self.hurried)
        if first:
            self._cancel_running(grace_seconds)
        join_until(threads, time.monotonic() + max(cancel_wait, 0.0), self.hurried)
        self.keeper.stop()
        alive = [thread.name for thread in threads if thread.is_alive()]
        if alive:
            logger.error(
                "shutdown: %s still inside the generator %g s after its job was cancelled",
                ", ".join(alive),
                cancel_wait,
            )
        return alive

    def _cancel_running(self, grace_seconds: float) -> None:
        reason = (
            f"{SHUTTING_DOWN}: generation did not finish within the {grace_seconds:g} s "
            "grace period"
        )
        for local in self.running():
            local.halt("shutdown")
            try:
                ended = self.store.finish(
                    local.job_id,
                    local.worker_id,
                    status="failed",
                    error=reason,
                    video_key=None,
                    ttl_seconds=self.ttl_seconds,
                )
            except StoreError as exc:
                logger.error("shutdown: cannot mark job %s failed: %s", local.job_id, exc)
                continue
            if ended is not None:
                logger.warning("shutdown: running job %s marked failed: %s", local.job_id, reason)
                if ended.delete_requested:
                    self.store.remove([ended.id])
                self.notify_ended(ended)


def join_until(threads: list[threading.Thread], deadline: float, hurry: threading.Event) -> None:
    """Join ``threads`` until they end, ``deadline`` (monotonic) passes or ``hurry`` is set."""
    for thread in threads:
        while thread.is_alive() and not hurry.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            thread.join(min(remaining, JOIN_POLL_S))

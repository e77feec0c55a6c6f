"""Generation jobs: a bounded queue, one worker thread per device, and a graceful shutdown.

A job is ``queued`` until a worker takes it, ``running`` while it generates and writes
its mp4, then ``succeeded`` or ``failed`` (with an error message). Nothing is dropped
silently: on shutdown every queued job is marked failed ("server shutting down"), and a
running job either finishes within the grace period or is cancelled and marked failed;
shutdown then joins the worker threads (bounded by :data:`CANCEL_WAIT_S`), so none is
left inside the model when the process exits.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import secrets
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from aiprod_pipelines.server.generator import VideoGenerator
from aiprod_pipelines.server.outputs import OutputStore
from aiprod_pipelines.server.schemas import (
    JOB_STATES,
    ImageView,
    JobState,
    ResolvedVideoRequest,
)

logger = logging.getLogger(__name__)

SHUTTING_DOWN = "server shutting down"
#: Seeds drawn for requests without one (kept small so people can type them back).
RANDOM_SEED_BOUND = 2**31
#: Retry-After when no generation has finished yet to estimate from.
DEFAULT_RETRY_AFTER_S = 10
MAX_RETRY_AFTER_S = 3600
#: Generation times remembered for the Retry-After estimate.
DURATION_WINDOW = 20
#: Seconds shutdown waits, after cancelling a running job, for its worker thread to end:
#: the cancel takes effect at the next denoising step (or after the decode and write that
#: follow the last step).
CANCEL_WAIT_S = 30.0
#: How often a shutdown wait checks whether it was hurried.
JOIN_POLL_S = 0.05


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and a ``Z``: ``2025-01-31T12:00:00.123Z``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class QueueFullError(Exception):
    """The queue holds ``serving.queue_size`` jobs; try again after ``retry_after`` seconds."""

    def __init__(self, size: int, retry_after: int) -> None:
        super().__init__(f"the job queue is full ({size} jobs waiting); retry in {retry_after} s")
        self.retry_after = retry_after


class ShuttingDownError(Exception):
    """The server is shutting down and takes no new jobs."""


class JobCancelled(Exception):
    """Raised inside a generation (from its progress callback) to abort it."""


@dataclasses.dataclass
class Job:
    """One generation job. The manager hands out copies, so a copy never changes.

    ``images`` describes the request's images; their data is dropped from ``request`` once
    the job has finished, so finished jobs kept for status queries stay small.
    """

    id: str
    request: ResolvedVideoRequest
    created_at: datetime
    images: list[ImageView] = dataclasses.field(default_factory=list)
    status: JobState = "queued"
    progress: float = 0.0
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    output: Path | None = None
    removed: bool = False

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed")


class JobManager:
    """Holds every job, feeds a bounded queue to worker threads and applies retention."""

    def __init__(
        self,
        generator: VideoGenerator,
        outputs: OutputStore,
        *,
        queue_size: int,
        workers: int = 1,
        history: int = 10_000,
        observe_generation: Callable[[float], None] | None = None,
    ) -> None:
        if queue_size < 1 or workers < 1:
            raise ValueError(f"queue_size and workers must be >= 1, got {queue_size}, {workers}")
        self.generator = generator
        self.outputs = outputs
        self.queue_size = queue_size
        self.workers = workers
        self.history = max(history, outputs.keep)
        self._observe = observe_generation
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._queue: deque[Job] = deque()
        self._finished: deque[str] = deque()
        self._cancel: dict[str, threading.Event] = {}
        self._durations: deque[float] = deque(maxlen=DURATION_WINDOW)
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        #: Set by :meth:`hurry`: shutdown waits (these, and the app's) end at once.
        self.hurried = threading.Event()

    # ------------------------------------------------------------------ submit and read
    def submit(self, request: ResolvedVideoRequest) -> Job:
        """Queue ``request`` (a missing seed is drawn now) and return the new job."""
        if request.seed is None:
            request = request.model_copy(update={"seed": secrets.randbelow(RANDOM_SEED_BOUND)})
        with self._cond:
            if self._stopping:
                raise ShuttingDownError(SHUTTING_DOWN)
            if len(self._queue) >= self.queue_size:
                raise QueueFullError(len(self._queue), self._retry_after())
            images = [ImageView(frame=image.frame, size=image.size) for image in request.images]
            job = Job(id=uuid.uuid4().hex, request=request, created_at=utc_now(), images=images)
            self._jobs[job.id] = job
            self._queue.append(job)
            self._cond.notify()
            return dataclasses.replace(job)

    def get(self, job_id: str) -> Job | None:
        """A copy of the job, or None when the id is unknown (or long forgotten)."""
        with self._cond:
            job = self._jobs.get(job_id)
            return None if job is None else dataclasses.replace(job)

    def counts(self) -> dict[JobState, int]:
        """How many jobs the manager holds in each state."""
        with self._cond:
            counts = dict.fromkeys(JOB_STATES, 0)
            for job in self._jobs.values():
                counts[job.status] += 1
            return counts

    def queue_depth(self) -> int:
        """Jobs waiting for a worker."""
        with self._cond:
            return len(self._queue)

    def live_workers(self) -> int:
        """Worker threads still running (they end after shutdown, or after a cancelled job)."""
        with self._cond:
            return sum(thread.is_alive() for thread in self._threads)

    def _retry_after(self) -> int:
        """Seconds until a slot is likely free: a worker frees one every mean time / workers."""
        if not self._durations:
            return DEFAULT_RETRY_AFTER_S
        mean = sum(self._durations) / len(self._durations)
        return min(MAX_RETRY_AFTER_S, max(1, math.ceil(mean / self.workers)))

    # ------------------------------------------------------------------------ workers
    def start(self) -> None:
        """Start the worker threads (once the model is loaded); no-op when stopping."""
        with self._cond:
            if self._threads or self._stopping:
                return
            for index in range(self.workers):
                thread = threading.Thread(
                    target=self._work, name=f"aiprod-worker-{index}", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._queue.popleft()
                job.status = "running"
                job.started_at = utc_now()
                cancel = self._cancel.setdefault(job.id, threading.Event())
            self._run(job, cancel)

    def _run(self, job: Job, cancel: threading.Event) -> None:
        started = time.perf_counter()

        def progress(step: int, total: int) -> None:
            if cancel.is_set():
                raise JobCancelled(SHUTTING_DOWN)
            with self._cond:
                if total > 0 and job.status == "running":
                    job.progress = min(max(step / total, 0.0), 1.0)

        path: Path | None = None
        error: str | None = None
        try:
            frames = self.generator.generate(job.request, progress)
            path = self.outputs.write(job.id, frames, fps=job.request.fps)
        except JobCancelled:
            error = SHUTTING_DOWN
        except Exception as exc:
            logger.exception("job %s failed", job.id)
            error = f"generation failed: {exc}"
        self._finish(job, path, error, time.perf_counter() - started)

    def _finish(self, job: Job, path: Path | None, error: str | None, seconds: float) -> None:
        with self._cond:
            self._cancel.pop(job.id, None)
            if job.status != "running":  # marked failed by shutdown meanwhile
                if path is not None:
                    self.outputs.discard(path)
                return
            job.finished_at = utc_now()
            if error is not None or path is None:
                job.status, job.error = "failed", error or "generation failed"
            else:
                job.status, job.progress, job.output = "succeeded", 1.0, path
                self._durations.append(seconds)
                if self._observe is not None:
                    self._observe(seconds)
                for removed in self.outputs.add(path):
                    self._mark_removed(removed)
            self._remember_finished(job)

    def _mark_removed(self, path: Path) -> None:
        old = self._jobs.get(path.stem)
        if old is not None and old.output == path:
            old.removed = True

    def _remember_finished(self, job: Job) -> None:
        if job.request.images:  # the worker holds its own reference while it still runs
            job.request = job.request.model_copy(update={"images": []})
        self._finished.append(job.id)
        while len(self._finished) > self.history:
            self._jobs.pop(self._finished.popleft(), None)

    def _fail(self, job: Job, error: str) -> None:
        job.status, job.error, job.finished_at = "failed", error, utc_now()
        self._remember_finished(job)

    # ----------------------------------------------------------------------- shutdown
    def hurry(self) -> None:
        """End the waits of :meth:`shutdown` now (a second Ctrl-C): cancel without waiting."""
        self.hurried.set()

    def shutdown(self, grace_seconds: float, cancel_wait_seconds: float | None = None) -> list[str]:
        """Stop taking jobs, fail the queued ones and give running ones ``grace_seconds``.

        A job still running after the grace period is cancelled (its generation stops at
        the next denoising step) and marked failed at once; nothing is left queued or
        running. The worker threads are then joined: each gets ``cancel_wait_seconds``
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
            queued = list(self._queue)
            self._queue.clear()
            for job in queued:
                self._fail(job, SHUTTING_DOWN)
            self._cond.notify_all()
            threads = list(self._threads)
        if queued:
            logger.warning("shutdown: %d queued job(s) marked failed", len(queued))
        join_until(threads, time.monotonic() + max(grace_seconds, 0.0), self.hurried)
        if first:
            self._cancel_running(grace_seconds)
        join_until(threads, time.monotonic() + max(cancel_wait, 0.0), self.hurried)
        alive = [thread.name for thread in threads if thread.is_alive()]
        if alive:
            logger.error(
                "shutdown: %s still inside the generator %g s after its job was cancelled",
                ", ".join(alive),
                cancel_wait,
            )
        return alive

    def _cancel_running(self, grace_seconds: float) -> None:
        with self._cond:
            for job in self._jobs.values():
                if job.status == "running":
                    self._cancel.setdefault(job.id, threading.Event()).set()
                    reason = (
                        f"{SHUTTING_DOWN}: generation did not finish within the "
                        f"{grace_seconds:g} s grace period"
                    )
                    self._fail(job, reason)
                    logger.warning("shutdown: running job %s marked failed: %s", job.id, reason)


def join_until(threads: list[threading.Thread], deadline: float, hurry: threading.Event) -> None:
    """Join ``threads`` until they end, ``deadline`` (monotonic) passes or ``hurry`` is set."""
    for thread in threads:
        while thread.is_alive() and not hurry.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            thread.join(min(remaining, JOIN_POLL_S))

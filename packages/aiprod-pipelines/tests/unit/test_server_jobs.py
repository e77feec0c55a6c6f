"""JobManager on a SQLite job store, without HTTP: admission, workers, retention, shutdown."""

from __future__ import annotations

import base64
import io
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from aiprod_pipelines.server.jobs import (
    DEFAULT_RETRY_AFTER_S,
    SHUTTING_DOWN,
    JobManager,
    QueueFullError,
    ShuttingDownError,
    iso,
)
from aiprod_pipelines.server.schemas import VideoRequest
from aiprod_pipelines.server.storage import LocalStorage
from aiprod_pipelines.server.store import SQLiteJobStore
from aiprod_pipelines.server.testing import SYNTHETIC_DEFAULTS, SyntheticVideoGenerator, wait_until

WAIT_S = 30.0
REQUEST = VideoRequest(prompt="a lighthouse", width=16, height=16, frames=5, seed=1).resolved(
    SYNTHETIC_DEFAULTS
)
STATES = ("queued", "running", "succeeded", "failed", "cancelled")

Factory = Callable[..., JobManager]


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[Factory]:
    """``manager(generator, keep=..., **options)``: a JobManager on ``tmp_path/server``.

    Every manager made here is shut down at the end (running jobs cancelled at once) and its
    store closed once no worker thread can still write to it.
    """
    made: list[JobManager] = []

    def make(generator: Any = None, *, keep: int = 10, **options: Any) -> JobManager:
        folder = tmp_path / "server"
        store = options.pop("store", None) or SQLiteJobStore(folder / "jobs.sqlite3")
        store.migrate()
        options.setdefault("queue_size", 4)
        options.setdefault("poll_seconds", 0.02)
        jobs = JobManager(
            generator or SyntheticVideoGenerator(),
            store,
            LocalStorage(folder),
            keep=keep,
            **options,
        )
        made.append(jobs)
        return jobs

    yield make
    for jobs in made:
        if not jobs.shutdown(0, cancel_wait_seconds=10):
            jobs.store.close()


def wait_status(jobs: JobManager, job_id: str, status: str) -> None:
    assert wait_until(lambda: jobs.get(job_id).status == status, WAIT_S), jobs.get(job_id)


def test_iso_is_utc_with_milliseconds_and_z() -> None:
    moment = datetime(2025, 1, 31, 13, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert iso(moment) == "2025-01-31T12:00:00.123Z"
    assert iso(None) is None


@pytest.mark.parametrize("options", [{"queue_size": 0}, {"queue_size": 1, "workers": 0}])
def test_sizes_must_be_positive(manager: Factory, options: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        manager(**options)


def test_jobs_wait_until_started_then_succeed(manager: Factory, tmp_path: Path) -> None:
    jobs = manager(ttl_seconds=3600)
    job = jobs.submit(REQUEST).job
    assert (job.status, job.queue_position, job.finished) == ("queued", 1, False)
    assert jobs.queue_depth() == 1
    assert jobs.counts() == dict(zip(STATES, (1, 0, 0, 0, 0), strict=True))
    jobs.start()
    jobs.start()  # a second start adds no workers
    wait_status(jobs, job.id, "succeeded")
    done = jobs.get(job.id)
    assert done.finished
    assert (done.progress, done.queue_position, done.attempts) == (1.0, None, 1)
    assert done.video_key == f"{job.id}.mp4"
    assert (tmp_path / "server" / done.video_key).is_file()
    assert done.created_at <= done.started_at <= done.finished_at
    assert done.expires_at - done.finished_at == timedelta(hours=1)
    assert done.created_at.tzinfo is UTC
    assert done.worker_id is not None
    assert done.worker_id.startswith(jobs.replica)
    assert jobs.live_workers() == 1
    jobs.shutdown(WAIT_S)
    assert jobs.live_workers() == 0


def png_data(size: tuple[int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 10)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_image_data_is_kept_until_the_job_ends(manager: Factory, tmp_path: Path) -> None:
    jobs = manager()
    data = [png_data((24, 24)), png_data((8, 8))]
    images = [{"data": data[0], "frame": 0}, {"data": data[1], "frame": 4}]
    request = VideoRequest.model_validate({**dict(REQUEST), "images": images})
    queued = jobs.submit(request.resolved(SYNTHETIC_DEFAULTS)).job
    sizes = [len(base64.b64decode(text)) for text in data]
    assert queued.images == [{"frame": 0, "size": sizes[0]}, {"frame": 4, "size": sizes[1]}]
    assert "images" not in queued.request

    def stored_data() -> Any:
        with sqlite3.connect(tmp_path / "server" / "jobs.sqlite3") as db:
            row = db.execute("SELECT image_data FROM aiprod_jobs WHERE id = ?", (queued.id,))
            return row.fetchone()[0]

    assert stored_data() is not None  # the worker needs it
    jobs.start()
    wait_status(jobs, queued.id, "succeeded")
    assert stored_data() is None
    assert jobs.get(queued.id).images == queued.images


def test_a_snapshot_never_changes(manager: Factory) -> None:
    jobs = manager()
    snapshot = jobs.submit(REQUEST).job
    jobs.start()
    wait_status(jobs, snapshot.id, "succeeded")
    assert snapshot.status == "queued"


def test_a_missing_seed_is_drawn(manager: Factory) -> None:
    jobs = manager(queue_size=5)
    seeds = {
        jobs.submit(REQUEST.model_copy(update={"seed": None})).job.request["seed"] for _ in range(4)
    }
    assert None not in seeds
    assert len(seeds) > 1
    assert jobs.submit(REQUEST).job.request["seed"] == 1


def test_a_full_queue_refuses_with_a_retry_estimate(manager: Factory) -> None:
    jobs = manager(queue_size=2, workers=2)
    jobs.submit(REQUEST)
    jobs.submit(REQUEST)
    with pytest.raises(QueueFullError, match=r"queue is full \(2 jobs waiting\)") as refused:
        jobs.submit(REQUEST)
    assert refused.value.retry_after == DEFAULT_RETRY_AFTER_S
    assert jobs.counts()["queued"] == 2

    jobs._durations.extend([3.0, 5.0])  # two generations of 4 s on average, two workers
    with pytest.raises(QueueFullError) as estimated:
        jobs.submit(REQUEST)
    assert estimated.value.retry_after == 2
    jobs._durations.extend([0.001] * 40)
    with pytest.raises(QueueFullError) as quick:
        jobs.submit(REQUEST)
    assert quick.value.retry_after == 1


def test_the_queue_limit_counts_every_process_on_the_store(manager: Factory) -> None:
    first = manager(queue_size=2)
    second = manager(queue_size=2, store=SQLiteJobStore(first.store.path))
    first.submit(REQUEST)
    second.submit(REQUEST)
    with pytest.raises(QueueFullError):
        first.submit(REQUEST)


def test_queue_positions_count_from_the_oldest(manager: Factory) -> None:
    gate = threading.Event()
    jobs = manager(SyntheticVideoGenerator(gate=gate))
    ids = [jobs.submit(REQUEST).job.id for _ in range(3)]
    assert [jobs.get(i).queue_position for i in ids] == [1, 2, 3]
    jobs.start()
    wait_status(jobs, ids[0], "running")
    assert [jobs.get(i).queue_position for i in ids] == [None, 1, 2]
    gate.set()
    wait_status(jobs, ids[2], "succeeded")


def test_idempotency_keys_return_the_first_job_or_conflict(manager: Factory) -> None:
    from aiprod_pipelines.server.jobs import IdempotencyConflict

    jobs = manager()
    first = jobs.submit(REQUEST, idempotency_key="k1", request_hash="h1")
    again = jobs.submit(REQUEST, idempotency_key="k1", request_hash="h1")
    assert (first.created, again.created) == (True, False)
    assert again.job.id == first.job.id
    with pytest.raises(IdempotencyConflict, match=f"already used .*job {first.job.id}"):
        jobs.submit(REQUEST, idempotency_key="k1", request_hash="h2")
    other = jobs.submit(REQUEST, idempotency_key="k2", request_hash="h1")
    assert other.created
    assert jobs.counts()["queued"] == 2


def test_pages_are_newest_first_with_a_cursor_and_a_status_filter(manager: Factory) -> None:
    jobs = manager(queue_size=10)
    ids = [jobs.submit(REQUEST).job.id for _ in range(5)]
    jobs.cancel(ids[1])
    page, cursor = jobs.page(limit=2)
    assert [job.id for job in page] == [ids[4], ids[3]]
    page, cursor = jobs.page(limit=2, before=cursor)
    assert [job.id for job in page] == [ids[2], ids[1]]
    page, last = jobs.page(limit=2, before=cursor)
    assert ([job.id for job in page], last) == ([ids[0]], None)
    queued, _ = jobs.page(limit=10, status="queued")
    assert [job.id for job in queued] == [ids[4], ids[3], ids[2], ids[0]]
    assert [job.queue_position for job in queued] == [4, 3, 2, 1]
    cancelled, _ = jobs.page(limit=10, status="cancelled")
    assert [job.id for job in cancelled] == [ids[1]]


def test_progress_follows_the_generator_steps(manager: Factory) -> None:
    gate = threading.Event()
    seen: list[float] = []

    class Watched(SyntheticVideoGenerator):
        def generate(self, request: VideoRequest, progress_callback: Any) -> np.ndarray:
            progress_callback(0, 0)  # a total of 0 is ignored
            for step in range(1, 5):
                progress_callback(step, 4)
                seen.append(jobs.get(job.id).progress)
            assert gate.wait(WAIT_S)
            return super().generate(request, lambda step, total: None)

    jobs = manager(Watched())
    job = jobs.submit(REQUEST).job
    jobs.start()
    assert wait_until(lambda: len(seen) == 4, WAIT_S)
    assert seen == [0.25, 0.5, 0.75, 1.0]
    assert jobs.get(job.id).status == "running"
    # The keeper records it in the store, for the other replicas.
    assert wait_until(lambda: jobs.store.get(job.id).progress == 1.0, WAIT_S)
    gate.set()
    wait_status(jobs, job.id, "succeeded")


def test_generation_errors_fail_the_job_with_the_reason(manager: Factory, tmp_path: Path) -> None:
    class Broken(SyntheticVideoGenerator):
        def generate(self, request: VideoRequest, progress_callback: Any) -> np.ndarray:
            return np.zeros((2, 3), np.uint8)  # not a video: the writer refuses it

    jobs = manager(Broken())
    job = jobs.submit(REQUEST).job
    jobs.start()
    wait_status(jobs, job.id, "failed")
    failed = jobs.get(job.id)
    assert failed.error is not None
    assert failed.error.startswith("generation failed: ")
    assert failed.video_key is None
    assert list((tmp_path / "server").glob("*.mp4")) == []


def test_retention_marks_the_oldest_videos_removed(manager: Factory, tmp_path: Path) -> None:
    observed: list[float] = []
    jobs = manager(keep=2, observe_generation=observed.append)
    jobs.start()
    ids = []
    for _ in range(3):
        job = jobs.submit(REQUEST).job
        wait_status(jobs, job.id, "succeeded")
        ids.append(job.id)
    # The worker trims after recording the job's end: wait for the trim, not the status.
    removed = lambda: [jobs.get(i).video_removed for i in ids]  # noqa: E731
    assert wait_until(lambda: removed() == [True, False, False], WAIT_S), removed()
    assert sorted(p.name for p in (tmp_path / "server").glob("*.mp4")) == sorted(
        f"{i}.mp4" for i in ids[1:]
    )
    assert len(observed) == 3
    assert all(seconds > 0 for seconds in observed)


def test_a_sweep_deletes_expired_jobs_their_videos_and_videos_without_a_job(
    manager: Factory, tmp_path: Path
) -> None:
    now = [time.time()]
    store = SQLiteJobStore(tmp_path / "server" / "jobs.sqlite3", clock=lambda: now[0])
    jobs = manager(store=store, ttl_seconds=60)
    jobs.start()
    old = jobs.submit(REQUEST).job
    wait_status(jobs, old.id, "succeeded")
    now[0] += 30
    fresh = jobs.submit(REQUEST).job
    wait_status(jobs, fresh.id, "succeeded")
    stranger = tmp_path / "server" / "0123.mp4"  # a video an earlier run left without a job
    stranger.write_bytes(b"old")
    now[0] += 31  # the first job is 61 s old, the second 31 s
    swept = jobs.keeper.sweep()
    assert swept.expired_jobs == [old.id]
    assert swept.orphan_videos == ["0123.mp4"]
    assert jobs.get(old.id) is None
    assert jobs.get(fresh.id).status == "succeeded"
    assert sorted(p.name for p in (tmp_path / "server").glob("*.mp4")) == [f"{fresh.id}.mp4"]


def test_cancelling_a_queued_job_means_it_never_starts(manager: Factory) -> None:
    generator = SyntheticVideoGenerator()
    ended: list[tuple[str, dict[str, Any]]] = []
    jobs = manager(generator, webhooks=Recorder(ended))
    job = jobs.submit(REQUEST, webhook_url="http://127.0.0.1:9/hook").job
    cancelled = jobs.cancel(job.id)
    assert (cancelled.status, cancelled.error) == ("cancelled", "cancelled on request")
    assert cancelled.finished_at is not None
    assert jobs.cancel(job.id).status == "cancelled"  # again: nothing changes
    jobs.start()
    later = jobs.submit(REQUEST).job
    wait_status(jobs, later.id, "succeeded")
    assert generator.generated == 1
    assert jobs.get(job.id).status == "cancelled"
    assert [(url, payload["id"], payload["status"]) for url, payload in ended] == [
        ("http://127.0.0.1:9/hook", job.id, "cancelled")
    ]
    assert jobs.cancel("unknown") is None


class Recorder:
    """A webhook sender that records what it is asked to send."""

    def __init__(self, sent: list[tuple[str, dict[str, Any]]]) -> None:
        self.sent = sent

    def send(self, url: str, payload: dict[str, Any]) -> None:
        self.sent.append((url, payload))

    def close(self, timeout: float) -> None:
        """Nothing to wait for."""


class Endless(SyntheticVideoGenerator):
    """Reports a step every few milliseconds and never finishes on its own."""

    def generate(self, request: VideoRequest, progress_callback: Any) -> np.ndarray:
        step = 0
        while True:
            step += 1
            time.sleep(0.005)
            progress_callback(step, step + 1)


def test_cancelling_a_running_job_stops_it_at_the_next_step(
    manager: Factory, tmp_path: Path
) -> None:
    ended: list[tuple[str, dict[str, Any]]] = []
    jobs = manager(Endless(), webhooks=Recorder(ended))
    job = jobs.submit(REQUEST, webhook_url="http://127.0.0.1:9/hook").job
    jobs.start()
    assert wait_until(lambda: jobs.get(job.id).progress > 0, WAIT_S)
    asked = jobs.cancel(job.id)
    assert (asked.status, asked.cancel_requested) == ("running", True)
    wait_status(jobs, job.id, "cancelled")
    assert jobs.get(job.id).error == "cancelled on request"
    assert [payload["status"] for _, payload in ended] == ["cancelled"]
    assert list((tmp_path / "server").glob("*.mp4")) == []
    assert jobs.live_workers() == 1  # the worker goes on with the next job


def test_a_cancel_sent_to_another_process_reaches_the_worker(manager: Factory) -> None:
    jobs = manager(Endless())
    other = manager(store=SQLiteJobStore(jobs.store.path))
    job = jobs.submit(REQUEST).job
    jobs.start()
    assert wait_until(lambda: jobs.get(job.id).progress > 0, WAIT_S)
    assert other.cancel(job.id).status == "running"
    wait_status(jobs, job.id, "cancelled")


def test_a_finished_job_cannot_be_cancelled(manager: Factory) -> None:
    jobs = manager()
    job = jobs.submit(REQUEST).job
    jobs.start()
    wait_status(jobs, job.id, "succeeded")
    assert jobs.cancel(job.id).status == "succeeded"


def test_delete_removes_a_job_and_its_video(manager: Factory, tmp_path: Path) -> None:
    jobs = manager()
    queued = jobs.submit(REQUEST).job
    done = jobs.submit(REQUEST).job
    assert jobs.delete(queued.id)[1] is True
    jobs.start()
    wait_status(jobs, done.id, "succeeded")
    assert (tmp_path / "server" / f"{done.id}.mp4").is_file()
    job, gone = jobs.delete(done.id)
    assert (job.id, gone) == (done.id, True)
    assert jobs.get(done.id) is None
    assert jobs.get(queued.id) is None
    assert list((tmp_path / "server").glob("*.mp4")) == []
    assert jobs.delete(done.id) == (None, False)


def test_deleting_a_running_job_cancels_it_then_deletes_it(manager: Factory) -> None:
    jobs = manager(Endless())
    job = jobs.submit(REQUEST).job
    jobs.start()
    wait_status(jobs, job.id, "running")
    found, gone = jobs.delete(job.id)
    assert (found.status, found.delete_requested, gone) == ("running", True, False)
    assert wait_until(lambda: jobs.get(job.id) is None, WAIT_S)


def test_shutdown_keeps_queued_jobs_queued_and_refuses_new_ones(manager: Factory) -> None:
    jobs = manager()
    queued = [jobs.submit(REQUEST).job for _ in range(3)]
    jobs.shutdown(WAIT_S)
    jobs.shutdown(WAIT_S)  # a second call changes nothing
    assert [jobs.get(job.id).status for job in queued] == ["queued"] * 3
    with pytest.raises(ShuttingDownError, match=SHUTTING_DOWN):
        jobs.submit(REQUEST)
    jobs.start()  # no workers once stopping
    assert jobs.live_workers() == 0


def test_queued_jobs_run_after_a_restart(manager: Factory, tmp_path: Path) -> None:
    before = manager()
    ids = [before.submit(REQUEST).job.id for _ in range(2)]
    before.shutdown(WAIT_S)
    before.store.close()
    after = manager(store=SQLiteJobStore(tmp_path / "server" / "jobs.sqlite3"))
    after.start()
    for job_id in ids:
        wait_status(after, job_id, "succeeded")


def test_a_job_whose_process_died_runs_again_after_its_lease(
    manager: Factory, tmp_path: Path
) -> None:
    path = tmp_path / "server" / "jobs.sqlite3"
    died = manager(store=SQLiteJobStore(path))
    job = died.submit(REQUEST).job
    claimed = died.store.claim("dead-replica/0", lease_seconds=0.3)  # then it "dies"
    died.store.close()
    assert claimed.id == job.id
    restarted = manager(store=SQLiteJobStore(path), lease_seconds=2.0)
    restarted.start()
    wait_status(restarted, job.id, "succeeded")
    done = restarted.get(job.id)
    assert done.attempts == 2
    assert done.video_key == f"{job.id}-2.mp4"
    assert done.worker_id.startswith(restarted.replica)


def test_a_job_whose_lease_expires_twice_fails_with_the_reason(manager: Factory) -> None:
    jobs = manager(lease_seconds=0.6)
    job = jobs.submit(REQUEST).job
    for attempt in (1, 2):
        claimed = jobs.store.claim(f"dead-{attempt}/0", lease_seconds=0.1)
        assert (claimed.id, claimed.attempts) == (job.id, attempt)
        time.sleep(0.15)
        (changed,) = jobs.keeper.recover()
        assert changed.status == ("queued" if attempt == 1 else "failed")
    failed = jobs.get(job.id)
    assert failed.error == "the replica running it stopped responding (lease expired twice)"
    assert failed.finished_at is not None


def test_a_worker_that_lost_its_lease_stops_and_discards_its_video(
    manager: Factory, tmp_path: Path
) -> None:
    jobs = manager(Endless())
    job = jobs.submit(REQUEST).job
    jobs.start()
    wait_status(jobs, job.id, "running")
    with sqlite3.connect(tmp_path / "server" / "jobs.sqlite3") as db:  # another replica took it
        db.execute("UPDATE aiprod_jobs SET worker_id = 'other/0' WHERE id = ?", (job.id,))
    assert wait_until(lambda: not jobs.running(), WAIT_S)
    still = jobs.get(job.id)
    assert (still.status, still.worker_id) == ("running", "other/0")
    assert list((tmp_path / "server").glob("*.mp4")) == []


class Late(SyntheticVideoGenerator):
    """Ignores cancellation: blocks without reporting progress, then returns frames."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def generate(self, request: VideoRequest, progress_callback: Any) -> np.ndarray:
        assert self.release.wait(WAIT_S)
        return super().generate(request, lambda step, total: None)


def test_a_video_finished_after_the_grace_period_is_discarded(
    manager: Factory, tmp_path: Path
) -> None:
    generator = Late()
    jobs = manager(generator)
    job = jobs.submit(REQUEST).job
    jobs.start()
    wait_status(jobs, job.id, "running")
    assert jobs.shutdown(0.05, cancel_wait_seconds=0.05) == ["aiprod-worker-0"]
    failed = jobs.get(job.id)
    assert failed.status == "failed"
    assert "grace period" in failed.error
    generator.release.set()
    assert wait_until(lambda: jobs.live_workers() == 0, WAIT_S)
    assert jobs.get(job.id).status == "failed"
    assert list((tmp_path / "server").glob("*.mp4")) == []


@pytest.mark.fault("threads")
def test_shutdown_cancels_a_running_job_and_joins_its_worker(
    manager: Factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    jobs = manager(Endless())
    job = jobs.submit(REQUEST).job
    jobs.start()
    assert wait_until(lambda: jobs.get(job.id).progress > 0, WAIT_S)
    with caplog.at_level(logging.WARNING, logger="aiprod_pipelines.server.jobs"):
        assert jobs.shutdown(0.05) == []
    assert jobs.live_workers() == 0
    failed = jobs.get(job.id)
    reason = f"{SHUTTING_DOWN}: generation did not finish within the 0.05 s grace period"
    assert (failed.status, failed.error) == ("failed", reason)
    assert f"running job {job.id} marked failed: {reason}" in caplog.text
    assert list((tmp_path / "server").glob("*.mp4")) == []


@pytest.mark.fault("threads")
def test_a_worker_that_ignores_the_cancel_is_reported_after_a_bounded_wait(
    manager: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    generator = Late()
    jobs = manager(generator)
    job = jobs.submit(REQUEST).job
    jobs.start()
    wait_status(jobs, job.id, "running")
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="aiprod_pipelines.server.jobs"):
        assert jobs.shutdown(0.05, cancel_wait_seconds=0.2) == ["aiprod-worker-0"]
    assert 0.2 <= time.monotonic() - started < WAIT_S
    assert "aiprod-worker-0 still inside the generator 0.2 s after its job was cancelled" in (
        caplog.text
    )
    generator.release.set()
    assert wait_until(lambda: jobs.live_workers() == 0, WAIT_S)


@pytest.mark.fault("threads")
def test_hurry_ends_the_shutdown_waits(manager: Factory) -> None:
    generator = Late()
    jobs = manager(generator)
    job = jobs.submit(REQUEST).job
    jobs.start()
    wait_status(jobs, job.id, "running")
    threading.Timer(0.1, jobs.hurry).start()
    started = time.monotonic()
    assert jobs.shutdown(WAIT_S, cancel_wait_seconds=WAIT_S) == ["aiprod-worker-0"]
    assert time.monotonic() - started < WAIT_S / 2
    assert jobs.get(job.id).status == "failed"
    generator.release.set()
    assert wait_until(lambda: jobs.live_workers() == 0, WAIT_S)

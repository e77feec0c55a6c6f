"""JobManager without HTTP: queue bounds, workers, retention, history and shutdown."""

from __future__ import annotations

import base64
import io
import logging
import threading
import time
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
from aiprod_pipelines.server.outputs import OutputStore
from aiprod_pipelines.server.schemas import ImageView, VideoRequest
from aiprod_pipelines.server.testing import SYNTHETIC_DEFAULTS, SyntheticVideoGenerator, wait_until

WAIT_S = 30.0
REQUEST = VideoRequest(prompt="a lighthouse", width=16, height=16, frames=5, seed=1).resolved(
    SYNTHETIC_DEFAULTS
)


def manager(tmp_path: Path, generator: Any = None, *, keep: int = 10, **options: Any) -> JobManager:
    outputs = OutputStore(tmp_path / "server", keep=keep)
    outputs.prepare()
    options.setdefault("queue_size", 4)
    return JobManager(generator or SyntheticVideoGenerator(), outputs, **options)


def wait_status(jobs: JobManager, job_id: str, status: str) -> None:
    assert wait_until(lambda: jobs.get(job_id).status == status, WAIT_S), jobs.get(job_id)


def test_iso_is_utc_with_milliseconds_and_z() -> None:
    moment = datetime(2025, 1, 31, 13, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert iso(moment) == "2025-01-31T12:00:00.123Z"
    assert iso(None) is None


@pytest.mark.parametrize("options", [{"queue_size": 0}, {"queue_size": 1, "workers": 0}])
def test_sizes_must_be_positive(tmp_path: Path, options: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        manager(tmp_path, **options)


def test_jobs_wait_until_started_then_succeed(tmp_path: Path) -> None:
    jobs = manager(tmp_path)
    job = jobs.submit(REQUEST)
    assert job.status == "queued"
    assert not job.finished
    assert jobs.queue_depth() == 1
    assert jobs.counts() == {"queued": 1, "running": 0, "succeeded": 0, "failed": 0}
    jobs.start()
    jobs.start()  # a second start adds no workers
    wait_status(jobs, job.id, "succeeded")
    done = jobs.get(job.id)
    assert done.finished
    assert done.progress == 1.0
    assert done.output == tmp_path / "server" / f"{job.id}.mp4"
    assert done.output.is_file()
    assert done.created_at <= done.started_at <= done.finished_at
    assert done.created_at.tzinfo is UTC
    assert jobs.live_workers() == 1
    jobs.shutdown(WAIT_S)
    assert jobs.live_workers() == 0


def png_data(size: tuple[int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 200, 10)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_image_data_is_dropped_once_a_job_finished(tmp_path: Path) -> None:
    jobs = manager(tmp_path)
    data = [png_data((24, 24)), png_data((8, 8))]
    images = [{"data": data[0], "frame": 0}, {"data": data[1], "frame": 4}]
    request = REQUEST.model_validate({**dict(REQUEST), "images": images})
    queued = jobs.submit(request.resolved(SYNTHETIC_DEFAULTS))
    assert [image.data for image in queued.request.images] == data  # the worker needs it
    expected = [
        ImageView(frame=frame, size=len(base64.b64decode(text)))
        for frame, text in zip((0, 4), data, strict=True)
    ]
    assert queued.images == expected
    jobs.start()
    wait_status(jobs, queued.id, "succeeded")

    done = jobs.get(queued.id)
    assert done.request.images == []
    assert done.images == expected
    assert done.request.model_copy(update={"images": request.images}) == request
    jobs.shutdown(WAIT_S)


def test_a_copy_never_changes(tmp_path: Path) -> None:
    jobs = manager(tmp_path)
    copy = jobs.submit(REQUEST)
    jobs.start()
    wait_status(jobs, copy.id, "succeeded")
    assert copy.status == "queued"
    jobs.shutdown(WAIT_S)


def test_a_missing_seed_is_drawn(tmp_path: Path) -> None:
    jobs = manager(tmp_path, queue_size=5)
    seeds = {jobs.submit(REQUEST.model_copy(update={"seed": None})).request.seed for _ in range(4)}
    assert None not in seeds
    assert len(seeds) > 1
    assert jobs.submit(REQUEST).request.seed == 1


def test_a_full_queue_refuses_with_a_retry_estimate(tmp_path: Path) -> None:
    jobs = manager(tmp_path, queue_size=2, workers=2)
    jobs.submit(REQUEST)
    jobs.submit(REQUEST)
    with pytest.raises(QueueFullError, match=r"queue is full \(2 jobs waiting\)") as refused:
        jobs.submit(REQUEST)
    assert refused.value.retry_after == DEFAULT_RETRY_AFTER_S

    jobs._durations.extend([3.0, 5.0])  # two generations of 4 s on average, two workers
    with pytest.raises(QueueFullError) as estimated:
        jobs.submit(REQUEST)
    assert estimated.value.retry_after == 2
    jobs._durations.extend([0.001] * 40)
    with pytest.raises(QueueFullError) as quick:
        jobs.submit(REQUEST)
    assert quick.value.retry_after == 1


def test_progress_follows_the_generator_steps(tmp_path: Path) -> None:
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

    jobs = manager(tmp_path, Watched())
    job = jobs.submit(REQUEST)
    jobs.start()
    assert wait_until(lambda: len(seen) == 4, WAIT_S)
    assert seen == [0.25, 0.5, 0.75, 1.0]
    assert jobs.get(job.id).status == "running"
    gate.set()
    wait_status(jobs, job.id, "succeeded")
    jobs.shutdown(WAIT_S)


def test_generation_errors_fail_the_job_with_the_reason(tmp_path: Path) -> None:
    class Broken(SyntheticVideoGenerator):
        def generate(self, request: VideoRequest, progress_callback: Any) -> np.ndarray:
            return np.zeros((2, 3), np.uint8)  # not a video: the writer refuses it

    jobs = manager(tmp_path, Broken())
    job = jobs.submit(REQUEST)
    jobs.start()
    wait_status(jobs, job.id, "failed")
    failed = jobs.get(job.id)
    assert failed.error is not None
    assert failed.error.startswith("generation failed: ")
    assert failed.output is None
    assert list((tmp_path / "server").iterdir()) == []
    jobs.shutdown(WAIT_S)


def test_retention_marks_the_oldest_jobs_removed(tmp_path: Path) -> None:
    observed: list[float] = []
    jobs = manager(tmp_path, keep=2, observe_generation=observed.append)
    jobs.start()
    ids = []
    for _ in range(3):
        job = jobs.submit(REQUEST)
        wait_status(jobs, job.id, "succeeded")
        ids.append(job.id)
    assert [jobs.get(i).removed for i in ids] == [True, False, False]
    assert not jobs.get(ids[0]).output.exists()
    assert len(observed) == 3
    assert all(seconds > 0 for seconds in observed)
    jobs.shutdown(WAIT_S)


def test_files_of_an_earlier_run_are_removed_without_a_job(tmp_path: Path) -> None:
    folder = tmp_path / "server"
    folder.mkdir()
    stranger = folder / "0123.mp4"
    stranger.write_bytes(b"old")
    jobs = manager(tmp_path, keep=1)
    jobs.start()
    job = jobs.submit(REQUEST)
    wait_status(jobs, job.id, "succeeded")
    assert not stranger.exists()
    assert not jobs.get(job.id).removed
    jobs.shutdown(WAIT_S)


def test_the_oldest_finished_jobs_are_forgotten(tmp_path: Path) -> None:
    jobs = manager(tmp_path, keep=1, history=2)
    assert jobs.history == 2
    jobs.start()
    ids = []
    for _ in range(3):
        job = jobs.submit(REQUEST)
        wait_status(jobs, job.id, "succeeded")
        ids.append(job.id)
    assert jobs.get(ids[0]) is None
    assert [jobs.get(i).status for i in ids[1:]] == ["succeeded", "succeeded"]
    assert sum(jobs.counts().values()) == 2
    jobs.shutdown(WAIT_S)


def test_history_is_at_least_the_retention(tmp_path: Path) -> None:
    assert manager(tmp_path, keep=50, history=3).history == 50


def test_shutdown_fails_queued_jobs_and_refuses_new_ones(tmp_path: Path) -> None:
    jobs = manager(tmp_path)
    queued = [jobs.submit(REQUEST) for _ in range(3)]
    jobs.shutdown(WAIT_S)
    jobs.shutdown(WAIT_S)  # a second call changes nothing
    for job in queued:
        failed = jobs.get(job.id)
        assert (failed.status, failed.error) == ("failed", SHUTTING_DOWN)
        assert failed.finished_at is not None
    with pytest.raises(ShuttingDownError, match=SHUTTING_DOWN):
        jobs.submit(REQUEST)
    jobs.start()  # no workers once stopping
    assert jobs.live_workers() == 0


class Late(SyntheticVideoGenerator):
    """Ignores cancellation: blocks without reporting progress, then returns frames."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def generate(self, request: VideoRequest, progress_callback: Any) -> np.ndarray:
        assert self.release.wait(WAIT_S)
        return super().generate(request, lambda step, total: None)


class Endless(SyntheticVideoGenerator):
    """Reports a step every few milliseconds and never finishes on its own."""

    def generate(self, request: VideoRequest, progress_callback: Any) -> np.ndarray:
        step = 0
        while True:
            step += 1
            time.sleep(0.005)
            progress_callback(step, step + 1)


def test_a_video_finished_after_the_grace_period_is_discarded(tmp_path: Path) -> None:
    generator = Late()
    jobs = manager(tmp_path, generator)
    job = jobs.submit(REQUEST)
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
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    jobs = manager(tmp_path, Endless())
    job = jobs.submit(REQUEST)
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
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    generator = Late()
    jobs = manager(tmp_path, generator)
    job = jobs.submit(REQUEST)
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
def test_hurry_ends_the_shutdown_waits(tmp_path: Path) -> None:
    generator = Late()
    jobs = manager(tmp_path, generator)
    job = jobs.submit(REQUEST)
    jobs.start()
    wait_status(jobs, job.id, "running")
    threading.Timer(0.1, jobs.hurry).start()
    started = time.monotonic()
    assert jobs.shutdown(WAIT_S, cancel_wait_seconds=WAIT_S) == ["aiprod-worker-0"]
    assert time.monotonic() - started < WAIT_S / 2
    assert jobs.get(job.id).status == "failed"
    generator.release.set()
    assert wait_until(lambda: jobs.live_workers() == 0, WAIT_S)

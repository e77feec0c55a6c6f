"""Several server replicas on one PostgreSQL job store and one video folder.

The replicas are JobManagers (and, for the HTTP test, apps under uvicorn) in this process,
each with its own connection pool, worker threads and lease keeper, as separate processes
would have; the database is the session's real PostgreSQL server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aiprod_core.config import ServingConfig
from aiprod_pipelines.server import ServerSettings, create_app
from aiprod_pipelines.server.jobs import JobManager
from aiprod_pipelines.server.schemas import VideoRequest
from aiprod_pipelines.server.storage import LocalStorage
from aiprod_pipelines.server.store import open_store
from aiprod_pipelines.server.testing import (
    SYNTHETIC_DEFAULTS,
    LiveServer,
    SyntheticVideoGenerator,
    wait_until,
)

pytestmark = pytest.mark.integration

WAIT_S = 30.0
REQUEST = VideoRequest(prompt="a harbour", width=16, height=16, frames=5, seed=3).resolved(
    SYNTHETIC_DEFAULTS
)
Factory = Callable[..., JobManager]


@pytest.fixture
def replica(postgres_url: str, tmp_path: Path) -> Iterator[Factory]:
    """``replica(generator, **options)``: a JobManager on the test's database and folder."""
    made: list[JobManager] = []

    def make(generator: Any = None, **options: Any) -> JobManager:
        store = open_store(postgres_url, tmp_path)
        store.migrate()
        options.setdefault("queue_size", 64)
        options.setdefault("poll_seconds", 0.05)
        jobs = JobManager(
            generator or SyntheticVideoGenerator(),
            store,
            LocalStorage(tmp_path / "videos"),
            **options,
        )
        made.append(jobs)
        return jobs

    yield make
    for jobs in made:  # closed once no worker thread can still write to the store
        if not jobs.shutdown(0, cancel_wait_seconds=10):
            jobs.store.close()


def test_two_replicas_run_every_job_exactly_once(replica: Factory, tmp_path: Path) -> None:
    generators = [
        SyntheticVideoGenerator(step_seconds=0.005),
        SyntheticVideoGenerator(step_seconds=0.005),
    ]
    replicas = [replica(generator, workers=2) for generator in generators]
    ids = [replicas[index % 2].submit(REQUEST).job.id for index in range(16)]
    for jobs in replicas:
        jobs.start()
    for job_id in ids:
        assert wait_until(
            lambda job_id=job_id: replicas[1].get(job_id).status == "succeeded", WAIT_S
        )
    assert sum(generator.generated for generator in generators) == len(ids)
    workers = {replicas[0].get(job_id).worker_id.rsplit("/", 1)[0] for job_id in ids}
    assert workers <= {jobs.replica for jobs in replicas}
    assert all(replicas[0].get(job_id).attempts == 1 for job_id in ids)
    assert sorted(p.name for p in (tmp_path / "videos").glob("*.mp4")) == sorted(
        f"{i}.mp4" for i in ids
    )


class Endless(SyntheticVideoGenerator):
    """Reports a step every few milliseconds and never finishes on its own."""

    def generate(self, request: VideoRequest, progress_callback: Any) -> Any:
        step = 0
        while True:
            step += 1
            threading.Event().wait(0.005)
            progress_callback(step, step + 1)


def test_a_cancel_sent_to_one_replica_stops_the_job_on_the_other(replica: Factory) -> None:
    runner = replica(Endless())
    other = replica()
    job = runner.submit(REQUEST).job
    runner.start()
    assert wait_until(lambda: other.get(job.id).progress > 0, WAIT_S)  # recorded by the keeper
    assert other.cancel(job.id).status == "running"
    assert wait_until(lambda: other.get(job.id).status == "cancelled", WAIT_S)


def test_a_job_of_a_replica_that_stopped_renewing_runs_on_another(replica: Factory) -> None:
    dying = replica(Endless(), lease_seconds=1.0)
    job = dying.submit(REQUEST).job
    dying.start()
    assert wait_until(lambda: dying.get(job.id).status == "running", WAIT_S)
    dying.keeper.stop()  # as if the replica died: its lease is no longer renewed
    survivor = replica(lease_seconds=2.0)
    survivor.start()
    assert wait_until(lambda: survivor.get(job.id).status == "succeeded", WAIT_S)
    done = survivor.get(job.id)
    assert done.attempts == 2
    assert done.worker_id.startswith(survivor.replica)
    assert done.video_key == f"{job.id}-2.mp4"


def test_any_replica_answers_for_a_job_submitted_to_another(
    postgres_url: str, tmp_path: Path
) -> None:
    serving = ServingConfig(default_model="aiprod-tiny", lease_seconds=5)
    lives, clients = [], []
    try:
        for _ in range(2):
            settings = ServerSettings(
                serving=serving,
                output_dir=tmp_path / "videos",
                database_url=postgres_url,
                shutdown_grace_seconds=5.0,
            )
            live = LiveServer(create_app(settings, SyntheticVideoGenerator())).start()
            lives.append(live)
            clients.append(httpx.Client(base_url=live.url, timeout=10.0))
        a, b = clients
        for client in clients:
            assert wait_until(
                lambda client=client: client.get("/readyz").status_code == 200, WAIT_S
            )
        body = {"prompt": "two replicas", "width": 32, "height": 32, "frames": 5, "seed": 9}
        submitted = a.post("/v1/videos", json=body)
        assert submitted.status_code == 202
        job_id = submitted.json()["id"]
        assert wait_until(
            lambda: b.get(f"/v1/videos/{job_id}").json()["status"] == "succeeded", WAIT_S
        )
        download = b.get(f"/v1/videos/{job_id}/content")
        assert download.status_code == 200
        assert download.content == (tmp_path / "videos" / f"{job_id}.mp4").read_bytes()
        assert [job["id"] for job in b.get("/v1/videos").json()["data"]] == [job_id]
        assert b.delete(f"/v1/videos/{job_id}").json() == {"id": job_id, "deleted": True}
        assert a.get(f"/v1/videos/{job_id}").status_code == 404
    finally:
        for client in clients:
            client.close()
        for live in lives:
            live.stop()

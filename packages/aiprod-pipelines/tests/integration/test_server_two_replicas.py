"""Two real ``aiprod-serve`` processes on one PostgreSQL job store and one videos folder.

Both processes run a model-free generator (``SyntheticVideoGenerator``) from the same
configuration folder, so they share ``<paths.outputs>/server`` for videos, and the same
``AIPROD_DATABASE_URL`` (a new database on the session's PostgreSQL server). Jobs are
submitted to replica A and polled and downloaded from replica B:

- with both alive, every job runs exactly once (one attempt, one video, listed once), any
  replica serves any job, and no answer is a 5xx;
- with A killed (SIGKILL) while it runs jobs, every accepted job still ends: the jobs A
  held are queued again once their lease (``AIPROD_SERVING__LEASE_SECONDS=2``) ran out
  and succeed on B at their second attempt; none stays ``running``.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from aiprod_pipelines.server.store import Job, JobStore, open_store
from aiprod_pipelines.server.testing import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WAIT_S = 60.0
LEASE_S = 2
BODY = {"prompt": "two replicas, one store", "width": 16, "height": 16, "frames": 5}
FINAL = ("succeeded", "failed", "cancelled")


class Replica:
    """One ``aiprod-serve`` process on the shared store; its stderr goes to ``<tmp>/<name>.log``.

    ``client`` counts the status codes of its answers to ``/v1/`` requests in ``statuses``
    (``/readyz`` answers 503 while the model loads, as it should).
    """

    def __init__(
        self,
        served_process: ModuleType,
        tmp_path: Path,
        name: str,
        database_url: str,
        *,
        step_seconds: float,
        workers: int = 1,
    ) -> None:
        self.name = name
        self.log = tmp_path / f"{name}.log"
        port = served_process.free_port()
        self.process = served_process.launch(
            served_process.synthetic_command(tmp_path, step_seconds),
            port,
            self.log,
            tmp_path / "config",
            {
                "AIPROD_DATABASE_URL": database_url,
                "AIPROD_SERVING__LEASE_SECONDS": str(LEASE_S),
                "AIPROD_SERVING__WORKERS_PER_DEVICE": str(workers),
            },
        )
        self.statuses: Counter[int] = Counter()
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            timeout=10.0,
            trust_env=False,
            event_hooks={"response": [self._count]},
        )
        assert wait_until(self.ready, WAIT_S, 0.05), self.log.read_text()

    def _count(self, response: httpx.Response) -> None:
        if response.request.url.path.startswith("/v1/"):
            self.statuses[response.status_code] += 1

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited: {self.log.read_text()}")
        try:
            return self.client.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    def runs(self, job: Job) -> bool:
        """Whether this process's worker holds (or last held) ``job``.

        Worker ids are ``<host>:<pid>:<random>/<index>``.
        """
        return job.worker_id is not None and f":{self.process.pid}:" in job.worker_id

    def submit(self, seed: int) -> str:
        answer = self.client.post("/v1/videos", json={**BODY, "seed": seed})
        assert answer.status_code == 202, answer.text
        job_id: str = answer.json()["id"]
        return job_id

    def status(self, job_id: str) -> dict[str, object]:
        answer = self.client.get(f"/v1/videos/{job_id}")
        assert answer.status_code == 200, answer.text
        view: dict[str, object] = answer.json()
        return view

    def server_errors(self) -> int:
        return sum(count for code, count in self.statuses.items() if code >= 500)

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT_S)


@pytest.fixture
def shared(
    postgres_url: str, tmp_path: Path, served_process: ModuleType
) -> Iterator[tuple[str, JobStore]]:
    """The database URL both replicas use, a store on it for the test to read, the config."""
    served_process.write_config(tmp_path, queue_size=64, output_retention=1000)
    store = open_store(postgres_url, tmp_path)
    yield postgres_url, store
    store.close()


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    started: list[Replica] = []
    yield started
    for replica in started:
        replica.stop()


def wait_for_final(replica: Replica, ids: list[str]) -> dict[str, dict[str, object]]:
    """Poll ``replica`` until every job ended; the last view of each."""
    views: dict[str, dict[str, object]] = {}

    def ended() -> bool:
        for job_id in ids:
            if views.get(job_id, {}).get("status") not in FINAL:
                views[job_id] = replica.status(job_id)
        return all(view["status"] in FINAL for view in views.values())

    assert wait_until(ended, WAIT_S, 0.1), (views, replica.log.read_text()[-4000:])
    return views


def listed_ids(replica: Replica) -> list[str]:
    """Every job id ``GET /v1/videos`` lists, following the pages."""
    ids: list[str] = []
    params: dict[str, str | int] = {"limit": 7}
    while True:
        page = replica.client.get("/v1/videos", params=params).json()
        ids += [job["id"] for job in page["data"]]
        if not page["has_more"]:
            return ids
        params["page_token"] = page["next_page_token"]


def test_jobs_submitted_to_one_replica_run_once_and_are_served_by_the_other(
    shared: tuple[str, JobStore],
    replicas: list[Replica],
    tmp_path: Path,
    served_process: ModuleType,
) -> None:
    url, store = shared
    a = Replica(served_process, tmp_path, "a", url, step_seconds=0.05)
    replicas.append(a)
    b = Replica(served_process, tmp_path, "b", url, step_seconds=0.05)
    replicas.append(b)
    ids = [a.submit(seed) for seed in range(24)]
    views = wait_for_final(b, ids)
    assert {view["status"] for view in views.values()} == {"succeeded"}  # 0 lost

    videos = tmp_path / "outputs" / "server"
    for job_id in ids:
        download = b.client.get(f"/v1/videos/{job_id}/content")
        assert download.status_code == 200
        assert download.headers["content-type"] == "video/mp4"
        assert download.content[4:8] == b"ftyp"
        assert download.content == (videos / f"{job_id}.mp4").read_bytes()

    jobs = [store.get(job_id) for job_id in ids]
    assert all(job is not None for job in jobs)
    assert [job.attempts for job in jobs if job] == [1] * len(ids)  # each ran once
    assert [job.video_key for job in jobs if job] == [f"{job_id}.mp4" for job_id in ids]
    assert all(a.runs(job) or b.runs(job) for job in jobs if job)
    assert any(b.runs(job) for job in jobs if job), "B's workers claimed none of A's jobs"
    assert sorted(path.name for path in videos.glob("*.mp4")) == sorted(f"{i}.mp4" for i in ids)
    listed = listed_ids(b)
    assert sorted(listed) == sorted(ids)
    assert len(set(listed)) == len(ids)
    assert store.counts()["succeeded"] == len(ids)
    assert a.statuses == Counter({202: len(ids)})
    assert b.server_errors() == 0
    assert b.statuses[200] >= 2 * len(ids)


@pytest.mark.fault("interrupted")
def test_jobs_of_a_killed_replica_end_on_the_other(
    shared: tuple[str, JobStore],
    replicas: list[Replica],
    tmp_path: Path,
    served_process: ModuleType,
) -> None:
    url, store = shared
    a = Replica(served_process, tmp_path, "a", url, step_seconds=5.0, workers=2)  # 20 s per job
    replicas.append(a)
    b = Replica(served_process, tmp_path, "b", url, step_seconds=0.05)
    replicas.append(b)
    ids = [a.submit(seed) for seed in range(6)]

    def held_by_a() -> list[str]:
        return [
            job.id
            for job in map(store.get, ids)
            if job is not None and job.status == "running" and a.runs(job)
        ]

    assert wait_until(lambda: len(held_by_a()) == 2, WAIT_S, 0.05), a.log.read_text()
    killed = held_by_a()
    a.process.send_signal(signal.SIGKILL)
    a.process.wait(WAIT_S)

    views = wait_for_final(b, ids)  # none stays running
    assert {view["status"] for view in views.values()} == {"succeeded"}, views
    for job_id in ids:
        job = store.get(job_id)
        assert job is not None
        assert b.runs(job)
        retried = job_id in killed
        assert job.attempts == (2 if retried else 1)
        assert job.video_key == (f"{job_id}-2.mp4" if retried else f"{job_id}.mp4")
        download = b.client.get(f"/v1/videos/{job_id}/content")
        assert download.status_code == 200
        assert download.content[4:8] == b"ftyp"
    videos = tmp_path / "outputs" / "server"
    assert len(list(videos.glob("*.mp4"))) == len(ids)
    assert b.log.read_text().count("stopped renewing its lease; queued again") == len(killed)
    assert b.server_errors() == 0
    assert a.server_errors() == 0
    assert store.counts()["running"] == 0

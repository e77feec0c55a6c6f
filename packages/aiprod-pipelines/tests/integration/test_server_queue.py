"""The bounded queue (429 + Retry-After), concurrent clients, and shutdown with work in flight.

Shutdown leaves queued jobs queued in the job store (SQLite here), for the next start."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from aiprod_core.config import ServingConfig
from aiprod_pipelines.server import ServerSettings, create_app
from aiprod_pipelines.server.app import ServerState
from aiprod_pipelines.server.store import SQLiteJobStore
from aiprod_pipelines.server.testing import LiveServer, SyntheticVideoGenerator, wait_until

pytestmark = pytest.mark.integration

TOKEN = "queue-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WAIT_S = 30.0
REQUEST = {"prompt": "rain on a window", "width": 32, "height": 32, "frames": 5}


def start(
    tmp_path: Path,
    generator: SyntheticVideoGenerator,
    *,
    grace: float = 10.0,
    **serving: Any,
) -> tuple[LiveServer, httpx.Client, ServerState]:
    settings = ServerSettings(
        serving=ServingConfig(default_model="aiprod-tiny", **serving),
        output_dir=tmp_path / "server",
        api_token=TOKEN,
        shutdown_grace_seconds=grace,
    )
    app = create_app(settings, generator)
    live = LiveServer(app).start()
    client = httpx.Client(base_url=live.url, headers=AUTH, timeout=10.0)
    assert wait_until(lambda: client.get("/readyz").status_code == 200, WAIT_S)
    return live, client, app.state.server


def status_of(client: httpx.Client, job_id: str) -> str:
    return str(client.get(f"/v1/videos/{job_id}").json()["status"])


def test_a_full_queue_answers_429_with_retry_after(tmp_path: Path) -> None:
    gate = threading.Event()
    live, client, _ = start(tmp_path, SyntheticVideoGenerator(gate=gate), queue_size=2)
    try:
        running = client.post("/v1/videos", json=REQUEST).json()["id"]
        assert wait_until(lambda: status_of(client, running) == "running", WAIT_S)
        queued = [client.post("/v1/videos", json=REQUEST) for _ in range(2)]
        assert [answer.status_code for answer in queued] == [202, 202]

        refused = client.post("/v1/videos", json=REQUEST)
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert "queue is full" in refused.json()["detail"]
        assert "aiprod_queue_depth 2.0" in client.get("/metrics").text

        gate.set()
        for job_id in [running, *(answer.json()["id"] for answer in queued)]:
            assert wait_until(
                lambda job_id=job_id: status_of(client, job_id) == "succeeded", WAIT_S
            )
        assert client.post("/v1/videos", json=REQUEST).status_code == 202
    finally:
        gate.set()
        client.close()
        live.stop()


def test_concurrent_clients_lose_no_job(tmp_path: Path) -> None:
    generator = SyntheticVideoGenerator(step_seconds=0.002, steps=2)
    live, client, _ = start(tmp_path, generator, queue_size=3, output_retention=100)
    clients, per_client = 8, 6

    def submit_many(_: int) -> list[tuple[int, str | None]]:
        results = []
        with httpx.Client(base_url=live.url, headers=AUTH, timeout=10.0) as own:
            for _ in range(per_client):
                answer = own.post("/v1/videos", json=REQUEST)
                results.append((answer.status_code, answer.json().get("id")))
        return results

    try:
        with ThreadPoolExecutor(clients) as pool:
            results = [item for batch in pool.map(submit_many, range(clients)) for item in batch]
        codes = {code for code, _ in results}
        assert codes <= {202, 429}
        accepted = [job_id for code, job_id in results if code == 202]
        assert accepted
        assert len(set(accepted)) == len(accepted)
        for job_id in accepted:
            assert wait_until(
                lambda job_id=job_id: status_of(client, job_id) == "succeeded", WAIT_S
            )
        assert generator.generated == len(accepted)
        assert len(list((tmp_path / "server").glob("*.mp4"))) == len(accepted)
        metrics = client.get("/metrics").text
        assert f'aiprod_jobs{{state="succeeded"}} {float(len(accepted))}' in metrics
        refused = len(results) - len(accepted)
        if refused:
            line = f'aiprod_requests_total{{code="429",method="POST",path="/v1/videos"}} {float(refused)}'
            assert line in metrics
    finally:
        client.close()
        live.stop()


def stored(tmp_path: Path) -> SQLiteJobStore:
    """The job store the server left in its folder, opened again (as after a restart)."""
    return SQLiteJobStore(tmp_path / "server" / "jobs.sqlite3")


def test_shutdown_lets_the_running_job_finish_and_keeps_the_queued_ones(tmp_path: Path) -> None:
    gate = threading.Event()
    live, client, state = start(tmp_path, SyntheticVideoGenerator(gate=gate), grace=WAIT_S)
    running = client.post("/v1/videos", json=REQUEST).json()["id"]
    assert wait_until(lambda: status_of(client, running) == "running", WAIT_S)
    queued = [client.post("/v1/videos", json=REQUEST).json()["id"] for _ in range(3)]
    client.close()

    stopper = threading.Thread(target=live.stop, kwargs={"timeout": WAIT_S})
    stopper.start()
    assert wait_until(lambda: state.jobs._stopping, WAIT_S)
    assert state.jobs.get(running).status == "running"
    gate.set()
    stopper.join(WAIT_S)
    assert not stopper.is_alive()

    store = stored(tmp_path)
    try:
        finished = store.get(running)
        assert finished.status == "succeeded"
        assert (tmp_path / "server" / f"{running}.mp4").is_file()
        assert [store.get(job_id).status for job_id in queued] == ["queued"] * 3
        assert store.counts() == {
            "queued": 3,
            "running": 0,
            "succeeded": 1,
            "failed": 0,
            "cancelled": 0,
        }
    finally:
        store.close()


def test_shutdown_marks_a_job_failed_when_it_outlives_the_grace_period(tmp_path: Path) -> None:
    gate = threading.Event()
    generator = SyntheticVideoGenerator(gate=gate)
    live, client, state = start(tmp_path, generator, grace=0.2)
    stuck = client.post("/v1/videos", json=REQUEST).json()["id"]
    assert wait_until(lambda: status_of(client, stuck) == "running", WAIT_S)
    client.close()

    stopper = threading.Thread(target=live.stop, kwargs={"timeout": WAIT_S})
    stopper.start()
    reason = "server shutting down: generation did not finish within the 0.2 s grace period"
    store = stored(tmp_path)
    try:
        assert wait_until(lambda: store.get(stuck).status == "failed", WAIT_S)
        assert store.get(stuck).error == reason
        gate.set()  # the worker wakes up, sees the cancellation and stops at its next step
        stopper.join(WAIT_S)
        assert not stopper.is_alive()
        assert state.jobs.live_workers() == 0
        assert store.get(stuck).status == "failed"
    finally:
        store.close()
    assert generator.generated == 0
    assert list((tmp_path / "server").glob("*.mp4")) == []

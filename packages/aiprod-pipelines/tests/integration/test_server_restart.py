"""``aiprod-serve`` killed mid-job (SIGKILL) and started again on the same SQLite job store.

The first process runs a slow job with another one queued behind it and is killed. The
second process, on the same videos folder (and so the same ``jobs.sqlite3``), runs the
queued job and, once the killed process's lease has run out, the job that was running:
nothing accepted is lost, and the retried job writes its video under its second attempt.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from aiprod_pipelines.server.testing import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WAIT_S = 60.0
LEASE_S = 2


class Server:
    """One ``aiprod-serve`` process; its stderr goes to ``<tmp>/<name>.log``."""

    def __init__(
        self, served_process: ModuleType, tmp_path: Path, name: str, step_seconds: float
    ) -> None:
        self.url = f"http://127.0.0.1:{(port := served_process.free_port())}"
        self.log = tmp_path / f"{name}.log"
        self.process = served_process.launch(
            served_process.synthetic_command(tmp_path, step_seconds),
            port,
            self.log,
            tmp_path / "config",
        )
        assert wait_until(self.ready, WAIT_S, 0.05), self.log.read_text()

    def ready(self) -> bool:
        try:
            return httpx.get(self.url + "/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def job(self, job_id: str) -> dict[str, object]:
        answer: dict[str, object] = httpx.get(f"{self.url}/v1/videos/{job_id}", timeout=5).json()
        return answer

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT_S)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


@pytest.mark.fault("interrupted")
def test_jobs_survive_a_killed_server(
    tmp_path: Path, servers: list[Server], served_process: ModuleType
) -> None:
    served_process.write_config(tmp_path, lease_seconds=LEASE_S)
    first = Server(served_process, tmp_path, "first", step_seconds=5.0)
    servers.append(first)
    body = {"prompt": "a windmill", "width": 16, "height": 16, "frames": 5, "seed": 2}
    running = httpx.post(first.url + "/v1/videos", json=body, timeout=10).json()["id"]
    queued = httpx.post(first.url + "/v1/videos", json=body, timeout=10).json()["id"]
    assert wait_until(lambda: first.job(running)["status"] == "running", WAIT_S, 0.05)
    assert first.job(queued)["queue_position"] == 1
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(WAIT_S)

    second = Server(served_process, tmp_path, "second", step_seconds=0.01)
    servers.append(second)
    for job_id in (queued, running):
        assert wait_until(
            lambda job_id=job_id: second.job(job_id)["status"] == "succeeded", WAIT_S
        ), (
            second.job(job_id),
            second.log.read_text(),
        )
    videos = sorted(path.name for path in (tmp_path / "outputs" / "server").glob("*.mp4"))
    assert videos == sorted([f"{queued}.mp4", f"{running}-2.mp4"])
    assert "stopped renewing its lease; queued again" in second.log.read_text()
    listed = httpx.get(second.url + "/v1/videos", timeout=5).json()["data"]
    assert [job["id"] for job in listed] == [queued, running]

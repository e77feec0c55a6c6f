"""``aiprod-serve`` stopped by SIGTERM in a real process, with threads still inside torch.

Each test starts the command in a subprocess on a loopback port, sends SIGTERM while a
job runs past ``--shutdown-grace`` (or while the model loads) and checks the exit status
and the log: a clean stop, or the documented status 3, never an abort (status 134,
"terminate called without an active exception") from threads left inside torch while the
interpreter finalises.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from aiprod_pipelines.server.cli import EXIT_STOPPED, EXIT_THREADS_LEFT
from aiprod_pipelines.server.testing import wait_until

pytestmark = pytest.mark.integration

WAIT_S = 60.0
ABORTED = "terminate called"

#: Runs ``aiprod-serve`` with a generator whose load or generation keeps a thread busy in
#: torch without looking at the cancellation. argv: mode, CANCEL_WAIT_S, CLI arguments.
STUBBORN_SERVER = '''
import sys
import time

import torch

from aiprod_pipelines.server import cli, jobs
from aiprod_pipelines.server.testing import SyntheticVideoGenerator

MODE = sys.argv[1]
jobs.CANCEL_WAIT_S = float(sys.argv[2])


def busy(seconds):
    """Matrix products for ``seconds``: torch releases the GIL in each, as a model does."""
    x = torch.randn(128, 128)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        x = torch.tanh(x @ x)


class Stubborn(SyntheticVideoGenerator):
    random_weights = False

    def __init__(self, config, **options):
        super().__init__(model_name=MODE)

    def check(self):
        """Nothing to check: there are no weights."""

    def load(self):
        if MODE == "slow-load":
            busy(2.0)
        super().load()

    def generate(self, request, progress_callback):
        progress_callback(1, 2)
        busy(3600.0)


cli.PipelineVideoGenerator = Stubborn
sys.exit(cli.main(sys.argv[3:]))
'''


class Served:
    """``aiprod-serve`` in a subprocess; its stderr goes to a file read back by the test."""

    def __init__(self, served_process: ModuleType, tmp_path: Path, command: list[str]) -> None:
        self.port = served_process.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "stderr.txt"
        # Many steps allowed: the jobs here run until they are stopped.
        config = served_process.write_config(tmp_path, max_steps=5000)
        self.process = served_process.launch(command, self.port, self.log, config)

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str) -> None:
        assert wait_until(
            lambda: text in self.stderr() or self.process.poll() is not None, WAIT_S, 0.05
        )
        assert text in self.stderr(), self.stderr()

    def status(self, path: str) -> int:
        try:
            return httpx.get(self.url + path, timeout=5).status_code
        except httpx.TransportError:
            return 0

    def submit(self, body: dict[str, object]) -> str:
        assert wait_until(lambda: self.status("/readyz") == 200, WAIT_S, 0.05), self.stderr()
        answer = httpx.post(self.url + "/v1/videos", json=body, timeout=10)
        assert answer.status_code == 202, answer.text
        job_id: str = answer.json()["id"]
        return job_id

    def wait_progress(self, job_id: str) -> None:
        def stepped() -> bool:
            job = httpx.get(f"{self.url}/v1/videos/{job_id}", timeout=5).json()
            return bool(job["status"] == "running" and job["progress"] > 0)

        assert wait_until(stepped, WAIT_S, 0.05), self.stderr()

    def terminate(self) -> int:
        """SIGTERM, then the exit status (bounded)."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(WAIT_S)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT_S)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for server in started:
        server.kill()


def serve_cli(
    served_process: ModuleType, tmp_path: Path, started: list[Served], *argv: str
) -> Served:
    command = [sys.executable, "-m", "aiprod_pipelines.server.cli", *argv]
    started.append(Served(served_process, tmp_path, command))
    return started[-1]


def serve_stubborn(
    served_process: ModuleType,
    tmp_path: Path,
    started: list[Served],
    mode: str,
    cancel_wait: float,
    *argv: str,
) -> Served:
    script = tmp_path / "stubborn_server.py"
    script.write_text(STUBBORN_SERVER)
    command = [sys.executable, str(script), mode, str(cancel_wait), *argv]
    started.append(Served(served_process, tmp_path, command))
    return started[-1]


@pytest.mark.fault("server")
def test_sigterm_past_the_grace_cancels_the_job_and_exits_0(
    tmp_path: Path, served: list[Served], served_process: ModuleType
) -> None:
    server = serve_cli(
        served_process,
        tmp_path,
        served,
        *("--random-weights", "--preset", "tiny", "--device", "cpu", "--shutdown-grace", "0.5"),
    )
    body = {"prompt": "a slow sunrise", "width": 128, "height": 128, "frames": 17, "steps": 2000}
    job_id = server.submit(body)
    server.wait_progress(job_id)

    assert server.terminate() == EXIT_STOPPED
    log = server.stderr()
    assert ABORTED not in log
    assert (
        f"running job {job_id} marked failed: server shutting down: generation did not "
        "finish within the 0.5 s grace period"
    ) in log
    assert "still running after the shutdown waits" not in log
    assert "aiprod-serve: stopped (SIGTERM)" in log
    assert list((tmp_path / "outputs" / "server").glob("*.mp4")) == []


@pytest.mark.fault("server")
def test_a_generation_that_ignores_the_cancel_exits_3_without_aborting(
    tmp_path: Path, served: list[Served], served_process: ModuleType
) -> None:
    server = serve_stubborn(
        served_process, tmp_path, served, "stubborn", 0.5, "--shutdown-grace", "0.2"
    )
    job_id = server.submit({"prompt": "a lighthouse", "width": 16, "height": 16, "frames": 5})
    server.wait_progress(job_id)

    assert server.terminate() == EXIT_THREADS_LEFT
    log = server.stderr()
    assert ABORTED not in log
    assert f"running job {job_id} marked failed: server shutting down" in log
    assert "aiprod-worker-0 still inside the generator 0.5 s after its job was cancelled" in log
    assert "aiprod-worker-0 still running after the shutdown waits; exiting without it" in log


@pytest.mark.fault("server")
@pytest.mark.parametrize(
    ("cancel_wait", "status", "message"),
    [
        (30.0, EXIT_STOPPED, "aiprod-serve: stopped (SIGTERM)"),
        (0.2, EXIT_THREADS_LEFT, "aiprod-loader still running after the shutdown waits"),
    ],
)
def test_sigterm_while_the_model_loads_never_aborts(
    tmp_path: Path,
    served: list[Served],
    served_process: ModuleType,
    cancel_wait: float,
    status: int,
    message: str,
) -> None:
    server = serve_stubborn(
        served_process, tmp_path, served, "slow-load", cancel_wait, "--shutdown-grace", "0"
    )
    server.wait_for("loading model slow-load")
    assert server.status("/readyz") == 503

    assert server.terminate() == status
    log = server.stderr()
    assert ABORTED not in log
    assert message in log

"""The server under a real uvicorn on 127.0.0.1: a job from submission to a readable mp4.

Generation comes from the model-free SyntheticVideoGenerator, so these tests exercise the
HTTP layer, the queue, the video files and retention in well under a second each. The
mp4 is decoded with imageio-ffmpeg's ffmpeg binary, not with PyAV that wrote it.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import imageio_ffmpeg
import numpy as np
import pytest

from aiprod_core.config import ServingConfig
from aiprod_pipelines.server import ServerSettings, VideoRequest, create_app
from aiprod_pipelines.server.testing import (
    LiveServer,
    SyntheticVideoGenerator,
    synthetic_frames,
    wait_until,
)

pytestmark = pytest.mark.integration

TOKEN = "lifecycle-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WAIT_S = 30.0
REQUEST = {"prompt": "a red fox", "width": 64, "height": 32, "frames": 9, "seed": 7, "fps": 12}


def settings_for(tmp_path: Path, **serving: Any) -> ServerSettings:
    return ServerSettings(
        serving=ServingConfig(default_model="aiprod-tiny", **serving),
        output_dir=tmp_path / "server",
        api_token=TOKEN,
        shutdown_grace_seconds=5.0,
    )


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., tuple[LiveServer, httpx.Client]]]:
    """Start an app under uvicorn: ``serve(generator, **serving) -> (live, client)``."""
    started: list[tuple[LiveServer, httpx.Client]] = []

    def start(generator: Any = None, **serving: Any) -> tuple[LiveServer, httpx.Client]:
        app = create_app(settings_for(tmp_path, **serving), generator or SyntheticVideoGenerator())
        live = LiveServer(app).start()
        client = httpx.Client(base_url=live.url, headers=AUTH, timeout=10.0)
        started.append((live, client))
        return live, client

    yield start
    for live, client in started:
        client.close()
        live.stop()


def wait_ready(client: httpx.Client) -> None:
    assert wait_until(lambda: client.get("/readyz").status_code == 200, WAIT_S)


def wait_finished(client: httpx.Client, job_id: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def finished() -> bool:
        seen.update(client.get(f"/v1/videos/{job_id}").json())
        return seen["status"] in ("succeeded", "failed")

    assert wait_until(finished, WAIT_S), f"job {job_id} still {seen.get('status')}"
    return seen


def parse_time(text: str) -> datetime:
    assert text.endswith("Z"), text
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() is not None
    assert moment.utcoffset().total_seconds() == 0
    return moment


def decode_with_ffmpeg(path: Path, height: int, width: int) -> np.ndarray:
    """All frames of ``path`` as uint8 (F, height, width, 3), decoded by imageio-ffmpeg's ffmpeg."""
    decoded = subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            *("-v", "error", "-i", str(path)),
            *("-f", "rawvideo", "-pix_fmt", "rgb24", "-"),
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    frame_bytes = height * width * 3
    assert len(decoded) % frame_bytes == 0, "decoded size is not a whole number of frames"
    return np.frombuffer(decoded, np.uint8).reshape(-1, height, width, 3)


def test_job_lifecycle_ends_in_a_readable_mp4(serve: Callable[..., Any], tmp_path: Path) -> None:
    gate = threading.Event()
    generator = SyntheticVideoGenerator(gate=gate, steps=4)
    _, client = serve(generator)
    wait_ready(client)

    submitted = client.post("/v1/videos", json=REQUEST)
    assert submitted.status_code == 202
    accepted = submitted.json()
    assert accepted["status"] == "queued"
    assert submitted.headers["location"] == f"/v1/videos/{accepted['id']}"
    created = parse_time(accepted["created_at"])

    assert wait_until(
        lambda: client.get(submitted.headers["location"]).json()["status"] == "running", WAIT_S
    )
    running = client.get(submitted.headers["location"]).json()
    assert running["content_url"] is None
    assert 0.0 <= running["progress"] < 1.0
    assert client.get(f"/v1/videos/{accepted['id']}/content").status_code == 409
    gate.set()

    job = wait_finished(client, accepted["id"])
    assert job["status"] == "succeeded", job
    assert job["progress"] == 1.0
    assert job["error"] is None
    assert created <= parse_time(job["started_at"]) <= parse_time(job["finished_at"])
    assert job["request"] == {
        **REQUEST,
        "negative_prompt": "",
        "steps": None,
        "guidance_scale": None,
        "images": [],
    }
    assert job["content_url"] == f"/v1/videos/{accepted['id']}/content"

    content = client.get(job["content_url"])
    assert content.status_code == 200
    assert content.headers["content-type"] == "video/mp4"
    assert int(content.headers["content-length"]) == len(content.content)
    download = tmp_path / "download.mp4"
    download.write_bytes(content.content)
    assert download.read_bytes() == (tmp_path / "server" / f"{accepted['id']}.mp4").read_bytes()

    count, seconds = imageio_ffmpeg.count_frames_and_secs(str(download))
    assert (count, seconds) == (9, pytest.approx(9 / 12, abs=0.02))
    frames = decode_with_ffmpeg(download, height=32, width=64)
    assert frames.shape == (9, 32, 64, 3)
    expected = synthetic_frames(9, 32, 64, seed=7)
    assert np.abs(frames.astype(np.int16) - expected).mean() < 4.0


def test_a_missing_seed_is_drawn_and_reported(serve: Callable[..., Any]) -> None:
    _, client = serve()
    wait_ready(client)
    body = {key: value for key, value in REQUEST.items() if key != "seed"}
    job_id = client.post("/v1/videos", json=body).json()["id"]
    job = wait_finished(client, job_id)
    assert isinstance(job["request"]["seed"], int)
    assert job["request"]["seed"] >= 0


class GatedLoad(SyntheticVideoGenerator):
    """Loads only once ``release`` is set (or fails with ``error`` then)."""

    def __init__(self, error: str | None = None) -> None:
        super().__init__(model_name="gated")
        self.release = threading.Event()
        self.error = error

    def load(self) -> None:
        assert self.release.wait(WAIT_S)
        if self.error:
            raise RuntimeError(self.error)
        super().load()


def test_readyz_is_503_until_the_model_is_loaded(serve: Callable[..., Any]) -> None:
    generator = GatedLoad()
    _, client = serve(generator)
    assert client.get("/healthz").json() == {"status": "ok"}
    loading = client.get("/readyz")
    assert loading.status_code == 503
    assert loading.json() == {"status": "loading", "model": "gated", "detail": None}
    early = client.post("/v1/videos", json=REQUEST)
    assert early.status_code == 503
    assert int(early.headers["retry-after"]) >= 1
    assert "loading" in early.json()["detail"]

    generator.release.set()
    wait_ready(client)
    assert client.get("/readyz").json() == {"status": "ready", "model": "gated", "detail": None}
    assert client.post("/v1/videos", json=REQUEST).status_code == 202


def test_a_model_that_fails_to_load_keeps_readyz_503_with_the_reason(
    serve: Callable[..., Any],
) -> None:
    generator = GatedLoad(error="weights file is corrupt")
    generator.release.set()
    _, client = serve(generator)
    assert wait_until(lambda: client.get("/readyz").json()["status"] == "failed", WAIT_S)
    failed = client.get("/readyz")
    assert failed.status_code == 503
    assert "weights file is corrupt" in failed.json()["detail"]
    refused = client.post("/v1/videos", json=REQUEST)
    assert refused.status_code == 503
    assert "weights file is corrupt" in refused.json()["detail"]
    assert client.get("/healthz").status_code == 200


class Exploding(SyntheticVideoGenerator):
    def generate(self, request: VideoRequest, progress_callback: Any) -> np.ndarray:
        progress_callback(1, 2)
        raise RuntimeError("out of memory on the device")


def test_a_failed_generation_is_reported_and_has_no_content(serve: Callable[..., Any]) -> None:
    _, client = serve(Exploding())
    wait_ready(client)
    job_id = client.post("/v1/videos", json=REQUEST).json()["id"]
    job = wait_finished(client, job_id)
    assert job["status"] == "failed"
    assert job["error"] == "generation failed: out of memory on the device"
    assert job["content_url"] is None
    content = client.get(f"/v1/videos/{job_id}/content")
    assert content.status_code == 409
    assert "out of memory" in content.json()["detail"]


def test_unknown_ids_are_404(serve: Callable[..., Any]) -> None:
    _, client = serve()
    for path in ("/v1/videos/nope", "/v1/videos/nope/content", "/v1/videos/..%2F..%2Fetc/content"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert answer.json()["detail"]
    assert client.get("/v1/nothing-here").status_code == 404


def test_retention_keeps_the_newest_files_and_answers_410_for_the_rest(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    _, client = serve(output_retention=2)
    wait_ready(client)
    ids = []
    for seed in range(3):
        job_id = client.post("/v1/videos", json={**REQUEST, "seed": seed}).json()["id"]
        assert wait_finished(client, job_id)["status"] == "succeeded"
        ids.append(job_id)
    folder = tmp_path / "server"
    assert sorted(p.name for p in folder.glob("*.mp4")) == sorted(f"{i}.mp4" for i in ids[1:])

    oldest = client.get(f"/v1/videos/{ids[0]}")
    assert oldest.json()["status"] == "succeeded"
    assert oldest.json()["content_url"] is None
    gone = client.get(f"/v1/videos/{ids[0]}/content")
    assert gone.status_code == 410
    assert "serving.output_retention" in gone.json()["detail"]
    for job_id in ids[1:]:
        assert client.get(f"/v1/videos/{job_id}/content").status_code == 200


def test_videos_without_a_job_are_deleted_at_start_up(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    folder = tmp_path / "server"
    folder.mkdir()
    for index in range(3):
        (folder / f"old{index}.mp4").write_bytes(b"old")
    (folder / "notes.txt").write_text("kept: not a video")
    serve(output_retention=2)
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith("jobs.sqlite3")) == [
        "notes.txt"
    ]
    assert (folder / "jobs.sqlite3").is_file()


def metric(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{sample} not in the metrics")


def test_metrics_report_queue_jobs_latency_and_requests(serve: Callable[..., Any]) -> None:
    _, client = serve()
    wait_ready(client)
    job_id = client.post("/v1/videos", json=REQUEST).json()["id"]
    wait_finished(client, job_id)
    client.post("/v1/videos", json={**REQUEST, "frames": 10_000})
    client.get("/v1/videos/unknown")

    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    for name, kind in (
        ("aiprod_queue_depth", "gauge"),
        ("aiprod_jobs", "gauge"),
        ("aiprod_generation_seconds", "histogram"),
        ("aiprod_request_duration_seconds", "histogram"),
        ("aiprod_requests_total", "counter"),
    ):
        assert f"# TYPE {name} {kind}\n" in text, name
    assert metric(text, "aiprod_queue_depth") == 0.0
    assert metric(text, 'aiprod_jobs{state="succeeded"}') == 1.0
    assert metric(text, 'aiprod_jobs{state="failed"}') == 0.0
    assert metric(text, "aiprod_generation_seconds_count") == 1.0
    assert metric(text, 'aiprod_requests_total{code="202",method="POST",path="/v1/videos"}') == 1.0
    assert metric(text, 'aiprod_requests_total{code="422",method="POST",path="/v1/videos"}') == 1.0
    assert (
        metric(text, 'aiprod_requests_total{code="404",method="GET",path="/v1/videos/{id}"}') == 1.0
    )
    assert (
        metric(text, 'aiprod_request_duration_seconds_count{method="POST",path="/v1/videos"}')
        == 2.0
    )
    assert job_id not in text


def test_each_app_has_its_own_metrics(serve: Callable[..., Any]) -> None:
    _, first = serve()
    _, second = serve()
    first.get("/healthz")
    first.get("/healthz")
    second.get("/healthz")
    sample = 'aiprod_requests_total{code="200",method="GET",path="/healthz"}'
    assert metric(first.get("/metrics").text, sample) == 2.0
    assert metric(second.get("/metrics").text, sample) == 1.0

"""The server end to end with the real text-to-video pipeline: the tiny preset on CPU.

The weights are random (there is no trained model in a test), saved as a real checkpoint
where the registry expects it, so the server takes the production path: registry ->
checkpoint -> TextToVideoPipeline -> mp4. The video is read back with imageio-ffmpeg.
"""

from __future__ import annotations

import base64
import io
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from aiprod_core.checkpoints import save_checkpoint
from aiprod_core.config import AiprodConfig
from aiprod_core.models.bundle import build_model
from aiprod_core.models.presets import get_preset
from aiprod_pipelines.server import PipelineVideoGenerator, ServerSettings, create_app
from aiprod_pipelines.server.testing import LiveServer, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "pipeline-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WAIT_S = 120.0


def tiny_config(root: Path) -> AiprodConfig:
    return AiprodConfig.model_validate(
        {
            "project": {"name": "aiprod", "version": "0.1.0"},
            "paths": {
                "models_cache": str(root / "models" / "cache"),
                "checkpoints": str(root / "models" / "checkpoints"),
                "pretrained": str(root / "models" / "pretrained"),
                "outputs": str(root / "outputs"),
            },
            "models": {
                "aiprod-tiny": {
                    "file": "aiprod-tiny.safetensors",
                    "location": "checkpoints",
                    "preset": "tiny",
                    "obtain": "train it with the demo",
                }
            },
            "serving": {"default_model": "aiprod-tiny", "max_frames": 17, "max_steps": 4},
        }
    )


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> AiprodConfig:
    config = tiny_config(tmp_path_factory.mktemp("pipeline"))
    torch.manual_seed(0)
    preset = get_preset("tiny")
    save_checkpoint(build_model(preset, device="cpu"), preset, config.model_file("aiprod-tiny"))
    return config


@pytest.fixture(scope="module")
def client(config: AiprodConfig) -> Iterator[httpx.Client]:
    generator = PipelineVideoGenerator(config, device="cpu")
    generator.check()
    settings = ServerSettings.from_config(config, api_token=TOKEN, shutdown_grace_seconds=30.0)
    with (
        LiveServer(create_app(settings, generator)) as live,
        httpx.Client(base_url=live.url, headers=AUTH, timeout=30.0) as client,
    ):
        assert wait_until(lambda: client.get("/readyz").status_code == 200, WAIT_S)
        yield client


def run_job(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    submitted = client.post("/v1/videos", json=body)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    state: dict[str, Any] = {}

    def finished() -> bool:
        state.update(client.get(f"/v1/videos/{job_id}").json())
        return state["status"] in ("succeeded", "failed")

    assert wait_until(finished, WAIT_S, interval=0.05)
    return state


def decode(data: bytes, tmp_path: Path, height: int, width: int) -> np.ndarray:
    path = tmp_path / "video.mp4"
    path.write_bytes(data)
    count, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    raw = subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-v",
            "error",
            "-i",
            str(path),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)
    assert len(frames) == count
    return frames


def test_readyz_names_the_registry_model(client: httpx.Client) -> None:
    assert client.get("/readyz").json() == {
        "status": "ready",
        "model": "aiprod-tiny",
        "detail": None,
    }


def test_a_tiny_model_job_ends_in_a_readable_mp4(client: httpx.Client, tmp_path: Path) -> None:
    body = {
        "prompt": "a paper boat",
        "width": 32,
        "height": 24,
        "frames": 9,
        "steps": 2,
        "seed": 3,
        "fps": 8,
    }
    job = run_job(client, body)
    assert job["status"] == "succeeded", job
    assert job["progress"] == 1.0
    content = client.get(job["content_url"])
    assert content.status_code == 200
    assert content.headers["content-type"] == "video/mp4"
    frames = decode(content.content, tmp_path, height=24, width=32)
    assert frames.shape == (9, 24, 32, 3)
    assert frames.std() > 0  # random weights still draw something, not a blank clip


def test_the_same_seed_gives_the_same_video(client: httpx.Client, tmp_path: Path) -> None:
    body = {"prompt": "fog", "width": 16, "height": 16, "frames": 5, "steps": 1, "seed": 11}
    first, second = run_job(client, body), run_job(client, body)
    videos = [client.get(job["content_url"]).content for job in (first, second)]
    assert videos[0] == videos[1]
    other = run_job(client, {**body, "seed": 12})
    assert client.get(other["content_url"]).content != videos[0]


def png_data(colour: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 24), colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_an_image_job_runs_image_to_video_at_the_models_default_size(
    client: httpx.Client, tmp_path: Path
) -> None:
    defaults = get_preset("tiny").generation
    images = [{"data": png_data((200, 0, 0))}, {"data": png_data((0, 0, 200)), "frame": 8}]
    job = run_job(client, {"prompt": "a ball", "steps": 2, "seed": 1, "images": images})
    assert job["status"] == "succeeded", job
    request = job["request"]
    assert (request["width"], request["height"], request["frames"], request["fps"]) == (
        defaults.width,
        defaults.height,
        defaults.frames,
        defaults.fps,
    )
    assert [image["frame"] for image in request["images"]] == [0, 8]
    content = client.get(job["content_url"]).content
    frames = decode(content, tmp_path, height=defaults.height, width=defaults.width)
    assert frames.shape == (defaults.frames, defaults.height, defaults.width, 3)


def test_image_frames_the_model_cannot_take_get_422_before_queueing(
    client: httpx.Client,
) -> None:
    temporal = get_preset("tiny").vae.temporal_compression
    images = [
        {"data": png_data((200, 0, 0)), "frame": 1},
        {"data": png_data((0, 0, 200)), "frame": temporal},
    ]
    answer = client.post("/v1/videos", json={"prompt": "a ball", "images": images})
    assert answer.status_code == 422
    assert answer.json()["field"] == "images.1.frame"
    assert "fall in the same latent frame" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"width": 30}, "width", ["multiple of 8", "24 or 32"]),
        ({"height": 4}, "height", ["multiple of 8"]),
        ({"frames": 10}, "frames", ["9 or 11"]),
    ],
)
def test_sizes_the_model_cannot_take_get_422_with_the_nearest_values(
    client: httpx.Client, change: dict[str, int], field: str, words: list[str]
) -> None:
    body = {"prompt": "dunes", "width": 32, "height": 32, "frames": 9, **change}
    answer = client.post("/v1/videos", json=body)
    assert answer.status_code == 422
    assert answer.json()["field"] == field
    for word in words:
        assert word in answer.json()["detail"]

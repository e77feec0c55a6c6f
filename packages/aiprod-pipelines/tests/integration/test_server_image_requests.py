"""``POST /v1/videos`` with images, on a live server with the model-free generator.

An accepted request's images reach the generator at their frames (the synthetic generator
shows them there, so the decoded mp4 proves it); hostile or wrong images get a 422 naming
the field, bodies over the limit a 413, and the server keeps serving.
"""

from __future__ import annotations

import base64
import io
import struct
import subprocess
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from aiprod_core.config import ServingConfig
from aiprod_pipelines.server import ServerSettings, create_app
from aiprod_pipelines.server.images import MAX_IMAGE_BYTES
from aiprod_pipelines.server.limits import MAX_BODY_BYTES
from aiprod_pipelines.server.testing import (
    SYNTHETIC_DEFAULTS,
    LiveServer,
    SyntheticVideoGenerator,
    wait_until,
)

pytestmark = pytest.mark.integration

WAIT_S = 30.0


def encoded(image: Image.Image, format: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return base64.b64encode(buffer.getvalue()).decode()


RED = encoded(Image.new("RGB", (40, 30), (230, 20, 20)))
BLUE = encoded(Image.new("RGB", (16, 16), (20, 20, 230)), "JPEG")


def declared_png(width: int, height: int) -> str:
    """A small PNG whose header declares ``width x height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return base64.b64encode(b"\x89PNG\r\n\x1a\n" + body).decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = ServerSettings(
        serving=ServingConfig(default_model="aiprod-tiny", max_width=128, max_height=96),
        output_dir=tmp_path_factory.mktemp("images") / "server",
        api_token=None,
        shutdown_grace_seconds=5.0,
    )
    live = LiveServer(create_app(settings, SyntheticVideoGenerator())).start()
    assert wait_until(lambda: httpx.get(f"{live.url}/readyz").status_code == 200, WAIT_S)
    yield live
    live.stop()


def post(server: LiveServer, body: Any) -> httpx.Response:
    return httpx.post(server.url + "/v1/videos", json=body, timeout=30)


def decode_mp4(data: bytes, height: int, width: int) -> np.ndarray:
    raw = subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            *("-v", "error", "-f", "mp4", "-i", "pipe:0"),
            *("-f", "rawvideo", "-pix_fmt", "rgb24", "-"),
        ],
        input=data,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


def test_images_are_shown_at_their_frames_and_reported_without_their_data(
    server: LiveServer,
) -> None:
    last = SYNTHETIC_DEFAULTS.frames - 1
    body = {"prompt": "a ball", "images": [{"data": RED}, {"data": BLUE, "frame": last}]}
    submitted = post(server, body)
    assert submitted.status_code == 202, submitted.text
    location = server.url + submitted.headers["location"]
    assert wait_until(lambda: httpx.get(location).json()["status"] == "succeeded", WAIT_S)

    job = httpx.get(location).json()
    request = job["request"]
    defaults = SYNTHETIC_DEFAULTS
    assert (request["width"], request["height"], request["frames"], request["fps"]) == (
        defaults.width,
        defaults.height,
        defaults.frames,
        defaults.fps,
    )
    assert request["images"] == [
        {"frame": 0, "size": len(base64.b64decode(RED))},
        {"frame": last, "size": len(base64.b64decode(BLUE))},
    ]
    assert RED not in httpx.get(location).text
    video = httpx.get(server.url + job["content_url"]).content
    frames = decode_mp4(video, defaults.height, defaults.width).astype(int)
    assert frames.shape[0] == defaults.frames
    assert np.abs(frames[0] - [230, 20, 20]).mean() < 12
    assert np.abs(frames[last] - [20, 20, 230]).mean() < 12


@pytest.mark.fault("server")
@pytest.mark.parametrize(
    ("images", "field", "words"),
    [
        ([{"data": "iVBORw0KGgo=!"}], "images.0.data", "not valid base64"),
        ([{"data": base64.b64encode(b"GIF89a, or so").decode()}], "images.0.data", "not a PNG"),
        ([{"data": declared_png(6000, 5000)}], "images.0.data", "(6000x5000)"),
        ([{"data": RED, "frame": 9}], "images.0.frame", "outside the video"),
        ([{"data": RED, "frame": -1}], "images.0.frame", "greater than or equal to 0"),
        (
            [{"data": RED, "frame": 4}, {"data": BLUE, "frame": 4}],
            "images.1.frame",
            "fall in the same latent frame",
        ),
        ([{"data": RED, "frame": n} for n in range(9)], "images", "at most 8"),
        ([{"data": RED, "colour": "red"}], "images.0.colour", "Extra inputs"),
    ],
    ids=[
        "bad-base64",
        "not-an-image",
        "too-many-pixels",
        "frame-out-of-range",
        "negative-frame",
        "duplicate-frame",
        "too-many-images",
        "unknown-key",
    ],
)
def test_bad_images_get_422_naming_the_field(
    server: LiveServer, images: list[dict[str, Any]], field: str, words: str
) -> None:
    answer = post(server, {"prompt": "a ball", "images": images})
    assert answer.status_code == 422
    assert answer.json()["field"] == field
    assert answer.json()["detail"].startswith(f"{field}: ")
    assert words in answer.json()["detail"]
    assert len(answer.content) < 4096


@pytest.mark.fault("server")
def test_an_image_over_its_byte_limit_is_422_and_a_body_over_the_limit_413(
    server: LiveServer,
) -> None:
    too_big = base64.b64encode(b"\0" * (MAX_IMAGE_BYTES + 3)).decode()
    answer = post(server, {"prompt": "a ball", "images": [{"data": too_big}]})
    assert answer.status_code == 422
    assert answer.json()["field"] == "images.0.data"
    assert f"larger than {MAX_IMAGE_BYTES} bytes" in answer.json()["detail"]
    assert len(answer.content) < 4096

    image = {"data": base64.b64encode(b"\0" * (MAX_IMAGE_BYTES - 3)).decode()}
    answer = post(server, {"prompt": "a ball", "images": [image, image]})
    assert answer.status_code == 413
    assert f"larger than {MAX_BODY_BYTES} bytes" in answer.json()["detail"]
    assert post(server, {"prompt": "still serving", "images": [{"data": RED}]}).status_code == 202

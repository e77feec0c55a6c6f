"""The helpers in aiprod_pipelines.server.testing: live server, waits, synthetic generator."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from PIL import Image

from aiprod_pipelines.pipelines.request import InvalidRequestError
from aiprod_pipelines.server.schemas import VideoRequest
from aiprod_pipelines.server.testing import (
    SYNTHETIC_DEFAULTS,
    LiveServer,
    SyntheticVideoGenerator,
    synthetic_frames,
    wait_until,
)


def test_wait_until_is_bounded() -> None:
    calls: list[int] = []
    assert not wait_until(lambda: calls.append(1) or False, timeout=0.05, interval=0.01)
    assert len(calls) >= 2
    assert wait_until(lambda: True, timeout=0)


def test_a_live_server_serves_on_loopback_and_stops() -> None:
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    with LiveServer(app) as live:
        assert live.host == "127.0.0.1"
        assert live.port > 0
        assert httpx.get(live.url + "/ping", timeout=5).json() == {"pong": "yes"}
    with pytest.raises(httpx.ConnectError):
        httpx.get(live.url + "/ping", timeout=5)


def test_a_server_whose_startup_fails_is_reported() -> None:
    @asynccontextmanager
    async def broken(app: FastAPI) -> AsyncIterator[None]:
        raise RuntimeError("cannot open the outputs folder")
        yield

    live = LiveServer(FastAPI(lifespan=broken))
    with pytest.raises(RuntimeError, match="stopped during startup"):
        live.start()
    live.stop(timeout=5)


def test_startup_and_stop_timeouts() -> None:
    release = threading.Event()

    @asynccontextmanager
    async def slow(app: FastAPI) -> AsyncIterator[None]:
        import asyncio

        while not release.is_set():
            await asyncio.sleep(0.01)
        yield

    live = LiveServer(FastAPI(lifespan=slow), startup_timeout=0.1)
    with pytest.raises(RuntimeError, match=r"did not start within 0\.1 s"):
        live.start()
    with pytest.raises(RuntimeError, match=r"did not stop within 0\.05 s"):
        live.stop(timeout=0.05)
    release.set()
    live.stop(timeout=10)


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"width": 20}, "width", "16, 24"),
        ({"height": 4}, "height", "nearest valid values: 8"),
        ({"frames": 7}, "frames", "5, 9"),
        ({"prompt": " "}, "prompt", "blank"),
    ],
)
def test_the_synthetic_generator_checks_sizes_like_a_model(
    change: dict[str, Any], field: str, words: str
) -> None:
    request = VideoRequest.model_validate(
        {"prompt": "p", "width": 16, "height": 8, "frames": 5, **change}
    ).resolved(SYNTHETIC_DEFAULTS)
    with pytest.raises(InvalidRequestError, match=words) as invalid:
        SyntheticVideoGenerator().validate(request)
    assert invalid.value.field == field


def test_the_synthetic_generator_reports_steps_and_draws_the_request() -> None:
    generator = SyntheticVideoGenerator(steps=3)
    generator.load()
    assert generator.loaded.is_set()
    steps: list[tuple[int, int]] = []
    request = VideoRequest(prompt="p", width=24, height=16, frames=5, seed=9).resolved(
        SYNTHETIC_DEFAULTS
    )
    frames = generator.generate(request, lambda step, total: steps.append((step, total)))
    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert frames.shape == (5, 16, 24, 3)
    assert frames.dtype == np.uint8
    assert np.array_equal(frames, synthetic_frames(5, 16, 24, seed=9))
    assert not np.array_equal(frames[0], frames[-1])
    assert not np.array_equal(frames, synthetic_frames(5, 16, 24, seed=10))
    assert generator.generated == 1


def test_a_closed_gate_times_out() -> None:
    generator = SyntheticVideoGenerator(gate=threading.Event(), gate_timeout=0.01)
    request = VideoRequest(prompt="p", width=8, height=8, frames=1).resolved(SYNTHETIC_DEFAULTS)
    with pytest.raises(TimeoutError, match="gate not opened"):
        generator.generate(request, lambda step, total: None)


def png_data(colour: tuple[int, int, int], size: tuple[int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_the_synthetic_generator_fills_in_its_defaults_and_shows_the_images() -> None:
    generator = SyntheticVideoGenerator()
    assert generator.defaults() == SYNTHETIC_DEFAULTS
    images = [
        {"data": png_data((250, 0, 0), (40, 30)), "frame": 0},
        {"data": png_data((0, 0, 250), (8, 8)), "frame": SYNTHETIC_DEFAULTS.frames - 1},
    ]
    request = VideoRequest.model_validate({"prompt": "p", "images": images}).resolved(
        generator.defaults()
    )
    assert (request.width, request.height, request.frames, request.fps) == (32, 32, 9, 8)

    frames = generator.generate(request, lambda step, total: None)

    assert frames.shape == (9, 32, 32, 3)
    assert np.all(frames[0] == [250, 0, 0])
    assert np.all(frames[-1] == [0, 0, 250])
    plain = synthetic_frames(9, 32, 32, seed=0)
    assert np.array_equal(frames[1:-1], plain[1:-1])

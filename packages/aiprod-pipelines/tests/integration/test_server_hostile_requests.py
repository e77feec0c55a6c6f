"""Hostile request bodies: oversized (declared or streamed), deeply nested, huge values.

Each gets a 4xx in the server's error format, quickly, and the server keeps serving.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from aiprod_core.config import ServingConfig
from aiprod_pipelines.server import ServerSettings, create_app
from aiprod_pipelines.server.limits import MAX_BODY_BYTES
from aiprod_pipelines.server.testing import LiveServer, SyntheticVideoGenerator, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.fault("server")]

VALID = {"prompt": "waves at dusk", "width": 64, "height": 32, "frames": 9}
CHUNK = 256 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = ServerSettings(
        serving=ServingConfig(default_model="aiprod-tiny", max_width=128, max_height=96),
        output_dir=tmp_path_factory.mktemp("hostile") / "server",
        api_token=None,
        open_paths=frozenset({"/healthz"}),
        shutdown_grace_seconds=5.0,
    )
    live = LiveServer(create_app(settings, SyntheticVideoGenerator())).start()
    assert wait_until(lambda: httpx.get(f"{live.url}/readyz").status_code == 200, 30.0)
    yield live
    live.stop()


def post(server: LiveServer, **kwargs: object) -> httpx.Response:
    return httpx.post(server.url + "/v1/videos", timeout=30, **kwargs)  # type: ignore[arg-type]


def still_serving(server: LiveServer) -> bool:
    return httpx.get(server.url + "/healthz", timeout=10).status_code == 200


def test_declared_oversized_body_is_413_without_reading_it(server: LiveServer) -> None:
    body = b'{"prompt": "' + b"x" * (MAX_BODY_BYTES * 4) + b'"}'
    answer = post(server, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert answer.json()["field"] == "body"
    assert f"larger than {MAX_BODY_BYTES} bytes" in answer.json()["detail"]
    assert still_serving(server)


def test_streamed_oversized_body_is_413(server: LiveServer) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"prompt": "'
        for _ in range(MAX_BODY_BYTES // CHUNK + 1):
            yield b"y" * CHUNK
        yield b'"}'

    answer = post(server, content=chunks(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert still_serving(server)


@pytest.mark.parametrize("depth", [1_000, 30_000])
def test_deeply_nested_body_is_a_4xx_not_a_500(server: LiveServer, depth: int) -> None:
    body = b'{"prompt": ' + b"[" * depth + b"]" * depth + b', "width": 64, "height": 32}'
    answer = post(server, content=body, headers={"Content-Type": "application/json"})
    assert 400 <= answer.status_code < 500
    assert len(answer.content) < 4096
    assert still_serving(server)


def test_huge_field_value_is_shortened_in_the_answer(server: LiveServer) -> None:
    answer = post(server, json={**VALID, "width": [1] * 5000})
    assert answer.status_code == 422
    assert answer.json()["field"] == "width"
    assert len(answer.content) < 4096


def test_a_valid_request_still_fits(server: LiveServer) -> None:
    answer = post(server, json=VALID)
    assert answer.status_code == 202

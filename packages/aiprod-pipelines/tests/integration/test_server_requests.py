"""Bearer-token auth (401) and request validation (422 naming the field) on a live server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aiprod_core.config import ServingConfig
from aiprod_core.models.configs import GenerationDefaults
from aiprod_pipelines.server import ServerSettings, create_app
from aiprod_pipelines.server.testing import (
    SYNTHETIC_DEFAULTS,
    LiveServer,
    SyntheticVideoGenerator,
    wait_until,
)

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"
LIMITS = {
    "max_frames": 33,
    "max_width": 128,
    "max_height": 96,
    "max_steps": 6,
    "max_prompt_length": 40,
}
VALID = {"prompt": "waves at dusk", "width": 64, "height": 32, "frames": 9}


def start(
    tmp_path: Path,
    *,
    token: str | None,
    open_paths: frozenset[str] = frozenset(),
    generator: SyntheticVideoGenerator | None = None,
) -> LiveServer:
    settings = ServerSettings(
        serving=ServingConfig(default_model="aiprod-tiny", **LIMITS),
        output_dir=tmp_path / "server",
        api_token=token,
        open_paths=frozenset({"/healthz"}) | open_paths,
        shutdown_grace_seconds=5.0,
    )
    live = LiveServer(create_app(settings, generator or SyntheticVideoGenerator())).start()
    assert wait_until(
        lambda: httpx.get(f"{live.url}/readyz", headers=auth(TOKEN)).status_code == 200, 30.0
    )
    return live


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One token-protected server shared by the module's tests (they only read or reject)."""
    live = start(tmp_path_factory.mktemp("secured"), token=TOKEN)
    yield live
    live.stop()


@pytest.mark.fault("server")
@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, None),
        (auth("wrong"), "invalid_token"),
        (auth(TOKEN + "x"), "invalid_token"),
        ({"Authorization": f"Basic {TOKEN}"}, "invalid_token"),
        ({"Authorization": "Bearer"}, "invalid_token"),
    ],
    ids=["no-token", "wrong-token", "longer-token", "basic-scheme", "empty-bearer"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("POST", "/v1/videos"),
        ("GET", "/v1/videos/some-id"),
        ("GET", "/v1/videos/some-id/content"),
        ("GET", "/openapi.json"),
        ("GET", "/no/such/route"),
    ],
)
def test_requests_without_the_right_token_get_401(
    secured: LiveServer, method: str, path: str, headers: dict[str, str], error: str | None
) -> None:
    answer = httpx.request(method, secured.url + path, headers=headers, json=VALID, timeout=10)
    assert answer.status_code == 401
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="aiprod"')
    assert (f'error="{error}"' in challenge) == (error is not None)
    assert answer.json()["detail"]
    assert "s3cret" not in answer.text


def test_healthz_never_needs_the_token(secured: LiveServer) -> None:
    for headers in ({}, auth("wrong")):
        answer = httpx.get(secured.url + "/healthz", headers=headers, timeout=10)
        assert answer.status_code == 200
        assert answer.json() == {"status": "ok"}


def test_the_right_token_is_let_through(secured: LiveServer) -> None:
    with httpx.Client(base_url=secured.url, headers=auth(TOKEN), timeout=10) as client:
        assert client.get("/readyz").status_code == 200
        assert client.post("/v1/videos", json=VALID).status_code == 202
        assert client.get("/metrics").status_code == 200
        schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"] == {
        "bearer": {"type": "http", "scheme": "bearer"}
    }
    assert schema["paths"]["/healthz"]["get"]["security"] == []
    assert schema["paths"]["/v1/videos"]["post"]["security"] == [{"bearer": []}]
    assert "401" in schema["paths"]["/v1/videos"]["post"]["responses"]


def test_open_paths_can_be_added_for_probes(tmp_path: Path) -> None:
    live = start(tmp_path, token=TOKEN, open_paths=frozenset({"/readyz"}))
    try:
        assert httpx.get(live.url + "/readyz", timeout=10).status_code == 200
        assert httpx.get(live.url + "/metrics", timeout=10).status_code == 401
    finally:
        live.stop()


def test_without_a_token_nothing_needs_one(tmp_path: Path) -> None:
    live = start(tmp_path, token=None)
    try:
        assert httpx.post(live.url + "/v1/videos", json=VALID, timeout=10).status_code == 202
        schema = httpx.get(live.url + "/openapi.json", timeout=10).json()
        assert "securitySchemes" not in schema.get("components", {})
    finally:
        live.stop()


@pytest.mark.fault("server")
@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"frames": 34}, "frames", ["33", "serving.max_frames"]),
        ({"width": 136}, "width", ["128", "serving.max_width"]),
        ({"height": 104}, "height", ["96", "serving.max_height"]),
        ({"steps": 7}, "steps", ["6", "serving.max_steps"]),
        ({"prompt": "p" * 41}, "prompt", ["40", "serving.max_prompt_length"]),
        ({"negative_prompt": "n" * 41}, "negative_prompt", ["40", "serving.max_prompt_length"]),
        ({"prompt": ""}, "prompt", ["at least 1 character"]),
        ({"frames": 0}, "frames", ["greater than or equal to 1"]),
        ({"width": "wide"}, "width", ["valid integer", "'wide'"]),
        ({"guidance_scale": 0.5}, "guidance_scale", ["greater than or equal to 1"]),
        ({"seed": -1}, "seed", ["greater than or equal to 0"]),
        ({"fps": 0}, "fps", ["greater than or equal to 1"]),
        ({"colour": "red"}, "colour", ["Extra inputs are not permitted"]),
        ({"width": 60}, "width", ["multiple of 8", "56, 64"]),
        ({"frames": 10}, "frames", ["1 + k * 4", "9, 13"]),
        ({"prompt": "   "}, "prompt", ["blank"]),
    ],
)
def test_invalid_requests_get_422_naming_the_field(
    secured: LiveServer, change: dict[str, Any], field: str, words: list[str]
) -> None:
    answer = httpx.post(
        secured.url + "/v1/videos", json={**VALID, **change}, headers=auth(TOKEN), timeout=10
    )
    assert answer.status_code == 422
    body = answer.json()
    assert body["field"] == field
    assert body["detail"].startswith(f"{field}: ")
    for word in words:
        assert word in body["detail"]
    assert body["errors"][0]["field"] == field


@pytest.mark.fault("server")
def test_a_missing_prompt_is_named(secured: LiveServer) -> None:
    body = {key: value for key, value in VALID.items() if key != "prompt"}
    answer = httpx.post(secured.url + "/v1/videos", json=body, headers=auth(TOKEN), timeout=10)
    assert answer.status_code == 422
    assert answer.json()["field"] == "prompt"
    assert answer.json()["detail"] == "prompt: Field required"


def test_sizes_left_out_are_the_served_models_defaults(secured: LiveServer) -> None:
    with httpx.Client(base_url=secured.url, headers=auth(TOKEN), timeout=10) as client:
        submitted = client.post("/v1/videos", json={"prompt": "waves", "height": 16})
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        assert wait_until(
            lambda: client.get(f"/v1/videos/{job_id}").json()["status"] == "succeeded", 30.0
        )
        request = client.get(f"/v1/videos/{job_id}").json()["request"]
    defaults = SYNTHETIC_DEFAULTS
    assert (request["width"], request["height"], request["frames"], request["fps"]) == (
        defaults.width,
        16,
        defaults.frames,
        defaults.fps,
    )


@pytest.mark.fault("server")
def test_a_model_default_over_a_serving_limit_is_named(tmp_path: Path) -> None:
    big = GenerationDefaults(width=256, height=32, frames=9, fps=24)
    live = start(tmp_path, token=None, generator=SyntheticVideoGenerator(defaults=big))
    try:
        answer = httpx.post(live.url + "/v1/videos", json={"prompt": "waves"}, timeout=10)
        assert answer.status_code == 422
        assert answer.json()["field"] == "width"
        assert answer.json()["detail"] == (
            "width: width=256 (the model's default) is over serving.max_width (128): give "
            "width <= 128"
        )
        fitting = {"prompt": "waves", "width": 64}
        assert httpx.post(live.url + "/v1/videos", json=fitting, timeout=10).status_code == 202
    finally:
        live.stop()


@pytest.mark.fault("server")
@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"{not json", {"Content-Type": "application/json"}),
        (b"[1, 2]", {"Content-Type": "application/json"}),
        (b"", {"Content-Type": "application/json"}),
    ],
    ids=["broken-json", "not-an-object", "empty"],
)
def test_bodies_that_are_not_a_json_object_are_422_on_the_body(
    secured: LiveServer, content: bytes, headers: dict[str, str]
) -> None:
    answer = httpx.post(
        secured.url + "/v1/videos", content=content, headers={**headers, **auth(TOKEN)}, timeout=10
    )
    assert answer.status_code == 422
    assert answer.json()["field"] == "body"


def test_several_problems_are_all_listed(secured: LiveServer) -> None:
    body = {**VALID, "frames": 1000, "width": 1000}
    answer = httpx.post(secured.url + "/v1/videos", json=body, headers=auth(TOKEN), timeout=10)
    assert answer.status_code == 422
    assert sorted(problem["field"] for problem in answer.json()["errors"]) == ["frames", "width"]


def test_wrong_methods_get_405_in_the_error_format(secured: LiveServer) -> None:
    answer = httpx.delete(secured.url + "/v1/videos", headers=auth(TOKEN), timeout=10)
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
    assert answer.json()["detail"] == "Method Not Allowed"

"""App pieces without a network: auth decisions, loading, edge answers, the OpenAPI document."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aiprod_core.config import ServingConfig
from aiprod_pipelines.server import ServerSettings, create_app
from aiprod_pipelines.server.auth import BearerAuthMiddleware, token_problem
from aiprod_pipelines.server.loading import ModelLoader
from aiprod_pipelines.server.testing import SyntheticVideoGenerator, wait_until

WAIT_S = 30.0
REQUEST = {"prompt": "a kite", "width": 16, "height": 16, "frames": 5}


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (None, "missing bearer token"),
        ("", "missing bearer token"),
        ("Bearer tok", None),
        ("bearer tok", None),
        ("  Bearer   tok  ", None),
        ("Bearer tok2", "invalid bearer token"),
        ("Bearer", "malformed"),
        ("Token tok", "malformed"),
        ("Bearer tök", "invalid bearer token"),
    ],
)
def test_token_problem(header: str | None, problem: str | None) -> None:
    found = token_problem(header, "tok")
    assert (found is None) if problem is None else (problem in str(found))


def test_a_non_ascii_token_is_compared_as_utf8() -> None:
    assert token_problem("Bearer tök".encode().decode("latin-1"), "tök") is None


def test_auth_needs_a_token() -> None:
    with pytest.raises(ValueError, match="non-empty token"):
        BearerAuthMiddleware(app=None, token="", open_paths=())  # type: ignore[arg-type]


def test_the_loader_loads_once_and_reports() -> None:
    ready = threading.Event()
    generator = SyntheticVideoGenerator(model_name="m")
    loader = ModelLoader(generator, on_ready=ready.set)
    assert loader.state == "loading"
    assert loader.join(0) is False  # not started: still loading
    loader.start()
    loader.start()
    assert loader.join(WAIT_S)
    assert ready.is_set()
    assert (loader.state, loader.error) == ("ready", None)


def test_a_failing_load_is_kept_with_its_reason() -> None:
    class Broken(SyntheticVideoGenerator):
        def load(self) -> None:
            raise FileNotFoundError("models/x.safetensors")

    loader = ModelLoader(Broken(model_name="x"), on_ready=lambda: pytest.fail("not ready"))
    loader.start()
    assert loader.join(WAIT_S)
    assert loader.state == "failed"
    assert loader.error == "model x failed to load: models/x.safetensors"


def app_for(tmp_path: Path, **settings: Any) -> Any:
    return create_app(
        ServerSettings(
            serving=ServingConfig(default_model="m"),
            output_dir=tmp_path / "server",
            shutdown_grace_seconds=5.0,
            **settings,
        ),
        SyntheticVideoGenerator(),
    )


def test_submissions_during_shutdown_get_503(tmp_path: Path) -> None:
    app = app_for(tmp_path)
    state = app.state.server
    with TestClient(app) as client:
        assert wait_until(lambda: client.get("/readyz").status_code == 200, WAIT_S)
        state.jobs.shutdown(0)
        answer = client.post("/v1/videos", json=REQUEST)
    assert answer.status_code == 503
    assert answer.json()["detail"] == "server shutting down"


def test_a_video_deleted_behind_the_servers_back_is_410(tmp_path: Path) -> None:
    app = app_for(tmp_path)
    with TestClient(app) as client:
        assert wait_until(lambda: client.get("/readyz").status_code == 200, WAIT_S)
        job_id = client.post("/v1/videos", json=REQUEST).json()["id"]
        assert wait_until(
            lambda: client.get(f"/v1/videos/{job_id}").json()["status"] == "succeeded", WAIT_S
        )
        (tmp_path / "server" / f"{job_id}.mp4").unlink()
        answer = client.get(f"/v1/videos/{job_id}/content")
    assert answer.status_code == 410


def test_the_openapi_document_is_built_once_and_uses_the_error_format(tmp_path: Path) -> None:
    app = app_for(tmp_path)
    schema = app.openapi()
    assert app.openapi() is schema
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    job = schema["paths"]["/v1/videos/{id}"]["get"]["responses"]
    assert job["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"
    }
    assert "security" not in schema["paths"]["/v1/videos"]["post"]
    body = schema["components"]["schemas"]["VideoRequestBody"]["properties"]
    (frames,) = [branch for branch in body["frames"]["anyOf"] if branch.get("type") == "integer"]
    assert frames["maximum"] == 121
    assert "images" in body
    assert "the served model's defaults" in schema["info"]["description"]
    assert "413" in schema["paths"]["/v1/videos"]["post"]["responses"]

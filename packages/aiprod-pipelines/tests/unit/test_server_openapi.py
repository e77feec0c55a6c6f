"""The OpenAPI document states the served model's size and frame rules once it is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from aiprod_core.config import ServingConfig
from aiprod_core.models.geometry import ModelGeometry
from aiprod_core.models.presets import get_preset
from aiprod_core.vae.shapes import VideoGeometry
from aiprod_pipelines.pipelines.request import MAX_GUIDANCE_SCALE, MAX_SEED
from aiprod_pipelines.server import ServerSettings, create_app
from aiprod_pipelines.server.openapi import MAX_FRAME_CHOICES, state_geometry
from aiprod_pipelines.server.schemas import request_model
from aiprod_pipelines.server.testing import SyntheticVideoGenerator, wait_until

SERVING = ServingConfig(
    default_model="m", max_frames=17, max_width=64, max_height=48, max_steps=5, max_prompt_length=10
)


def body_schema(serving: ServingConfig = SERVING) -> dict[str, Any]:
    return request_model(serving).model_json_schema()


def integer(field: dict[str, Any]) -> dict[str, Any]:
    (branch,) = [b for b in field["anyOf"] if b.get("type") == "integer"]
    return branch


def test_sizes_are_multiples_of_spatial_compression_times_patch() -> None:
    body = body_schema()
    state_geometry(body, ModelGeometry.of(get_preset("tiny")))  # VAE 4 x patch 2
    width, height = body["properties"]["width"], body["properties"]["height"]
    assert integer(width) == {"type": "integer", "minimum": 8, "maximum": 64, "multipleOf": 8}
    assert integer(height)["multipleOf"] == 8
    assert integer(height)["maximum"] == 48
    assert width["description"].startswith(
        "pixels, a multiple of 8 (the model's spatial compression 4 x patch 2); "
        "at most serving.max_width (64)"
    )


def test_frames_are_one_plus_t_k_listed_up_to_the_limit() -> None:
    body = body_schema()
    state_geometry(body, ModelGeometry(VideoGeometry(8, 4), (1, 1, 1)))
    frames = body["properties"]["frames"]
    assert integer(frames)["enum"] == [1, 5, 9, 13, 17]
    assert integer(frames)["minimum"] == 1
    assert frames["description"].startswith(
        "frame count, 1 + 4k (the model's temporal compression 4): 1, 5, 9, 13, ...; "
        "at most serving.max_frames (17)"
    )


def test_a_temporal_patch_moves_the_first_count_and_the_step() -> None:
    body = body_schema()
    state_geometry(body, ModelGeometry(VideoGeometry(4, 2), (2, 2, 2)))
    frames = body["properties"]["frames"]
    assert integer(frames)["enum"] == [3, 7, 11, 15]
    assert (
        "3 + 4k (the model's temporal compression 2 x its patch length 2)"
        in (frames["description"])
    )


def test_limits_that_leave_no_valid_value_keep_their_schema() -> None:
    tight = SERVING.model_copy(update={"max_width": 8, "max_frames": 2})
    body = body_schema(tight)
    before = integer(body["properties"]["width"]).copy()
    state_geometry(body, ModelGeometry(VideoGeometry(16, 4), (1, 1, 1)))
    assert integer(body["properties"]["width"]) == before
    assert integer(body["properties"]["frames"])["enum"] == [1]


def test_too_many_frame_counts_are_stated_without_an_enum() -> None:
    wide = SERVING.model_copy(update={"max_frames": 2 * MAX_FRAME_CHOICES + 1})
    body = body_schema(wide)
    state_geometry(body, ModelGeometry(VideoGeometry(8, 1), (1, 1, 1)))
    frames = body["properties"]["frames"]
    assert "enum" not in integer(frames)
    assert integer(frames)["minimum"] == 1
    assert "1 + 1k (the model's temporal compression 1);" in frames["description"]


def test_seed_and_guidance_limits_are_the_pipelines() -> None:
    properties = body_schema()["properties"]
    assert integer(properties["seed"])["maximum"] == MAX_SEED == 2**53 - 1
    (guidance,) = [b for b in properties["guidance_scale"]["anyOf"] if b.get("type") == "number"]
    assert guidance["maximum"] == MAX_GUIDANCE_SCALE


def test_the_document_gains_the_rules_when_the_model_is_loaded(tmp_path: Path) -> None:
    settings = ServerSettings(serving=SERVING, output_dir=tmp_path)
    generator = SyntheticVideoGenerator(size_multiple=16, frame_multiple=8, load_seconds=0.2)
    app = create_app(settings, generator)
    loading = app.openapi()
    assert app.openapi() is loading  # built once per state
    width = loading["components"]["schemas"]["VideoRequestBody"]["properties"]["width"]
    assert "multipleOf" not in integer(width)
    assert "a multiple of the model's spatial compression x patch" in width["description"]
    with TestClient(app) as client:
        assert wait_until(lambda: client.get("/readyz").status_code == 200, 30.0)
        served = client.get("/openapi.json").json()
    properties = served["components"]["schemas"]["VideoRequestBody"]["properties"]
    assert integer(properties["width"])["multipleOf"] == 16
    assert integer(properties["frames"])["enum"] == [1, 9, 17]
    assert app.openapi() is app.openapi()

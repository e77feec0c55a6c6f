"""Request model limits from the config and the 422 error bodies."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from aiprod_core.config import ServingConfig
from aiprod_core.models.configs import GenerationDefaults
from aiprod_pipelines.server.schemas import (
    MAX_SEED,
    ErrorResponse,
    ResolvedVideoRequest,
    VideoRequest,
    error_body,
    field_problems,
    request_model,
    resolved_problems,
)

SERVING = ServingConfig(
    default_model="m", max_frames=17, max_width=64, max_height=48, max_steps=5, max_prompt_length=10
)
VALID = {"prompt": "ok", "width": 64, "height": 48, "frames": 17}


def limit_of(schema: dict[str, Any]) -> int:
    """The maximum of an optional integer field's schema (its integer branch)."""
    (integer,) = [branch for branch in schema["anyOf"] if branch.get("type") == "integer"]
    return int(integer["maximum"])


def problems(body: dict[str, object]) -> dict[str, str]:
    with pytest.raises(ValidationError) as invalid:
        request_model(SERVING).model_validate(body)
    return {p.field: p.message for p in field_problems([dict(e) for e in invalid.value.errors()])}


def test_the_request_model_is_a_video_request_with_the_config_limits() -> None:
    model = request_model(SERVING)
    assert issubclass(model, VideoRequest)
    request = model.model_validate({**VALID, "steps": 5})
    assert (request.steps, request.seed, request.fps, request.negative_prompt) == (
        5,
        None,
        None,
        "",
    )
    assert request.images == []
    schema = model.model_json_schema()["properties"]
    assert limit_of(schema["frames"]) == 17
    assert limit_of(schema["width"]) == 64
    assert limit_of(schema["height"]) == 48
    assert "the served model's default" in schema["width"]["description"]
    assert schema["images"]["maxItems"] == 8
    assert schema["prompt"]["maxLength"] == 10
    assert schema["negative_prompt"]["maxLength"] == 10
    assert "serving.max_frames (17)" in schema["frames"]["description"]
    assert model.__name__ == "VideoRequestBody"


@pytest.mark.parametrize(
    ("change", "field", "key"),
    [
        ({"frames": 18}, "frames", "serving.max_frames"),
        ({"width": 72}, "width", "serving.max_width"),
        ({"height": 56}, "height", "serving.max_height"),
        ({"steps": 6}, "steps", "serving.max_steps"),
        ({"prompt": "p" * 11}, "prompt", "serving.max_prompt_length"),
        ({"negative_prompt": "n" * 11}, "negative_prompt", "serving.max_prompt_length"),
    ],
)
def test_limits_name_their_config_key(change: dict[str, object], field: str, key: str) -> None:
    message = problems({**VALID, **change})[field]
    assert f"(limit {key})" in message
    assert ", got " in message


def test_other_bounds_and_types() -> None:
    found = problems(
        {**VALID, "seed": MAX_SEED + 1, "fps": 0, "guidance_scale": float("nan"), "extra": 1}
    )
    assert set(found) == {"seed", "fps", "guidance_scale", "extra"}
    assert "limit" not in found["seed"]


def test_missing_fields_do_not_echo_an_input() -> None:
    assert problems({"width": 8, "height": 8}) == {"prompt": "Field required"}


def test_only_the_prompt_is_required() -> None:
    request = request_model(SERVING).model_validate({"prompt": "ok"})
    assert (request.width, request.height, request.frames, request.fps) == (None,) * 4


DEFAULTS = GenerationDefaults(width=32, height=24, frames=9, fps=8)


def test_resolved_fills_in_only_what_was_left_out() -> None:
    request = request_model(SERVING).model_validate({"prompt": "ok", "width": 64, "seed": 3})
    resolved = request.resolved(DEFAULTS)
    assert isinstance(resolved, ResolvedVideoRequest)
    assert (resolved.width, resolved.height, resolved.frames, resolved.fps) == (64, 24, 9, 8)
    assert (resolved.prompt, resolved.seed, resolved.steps) == ("ok", 3, None)
    given = VideoRequest(prompt="ok", width=16, height=16, frames=5, fps=30).resolved(DEFAULTS)
    assert (given.width, given.height, given.frames, given.fps) == (16, 16, 5, 30)


def test_a_model_default_over_a_serving_limit_is_named() -> None:
    big = GenerationDefaults(width=768, height=512, frames=121, fps=24)
    request = request_model(SERVING).model_validate({"prompt": "ok", "width": 64})
    found = {p.field: p.message for p in resolved_problems(request.resolved(big), SERVING)}
    assert set(found) == {"height", "frames"}
    assert found["frames"] == (
        "frames=121 (the model's default) is over serving.max_frames (17): give frames <= 17"
    )
    assert resolved_problems(request.resolved(DEFAULTS), SERVING) == []


def test_long_inputs_are_shortened_in_messages() -> None:
    message = problems({**VALID, "prompt": "z" * 500})["prompt"]
    assert message.endswith("...")
    assert len(message) < 200


def test_body_level_problems_name_the_body() -> None:
    errors = [
        {"loc": ("body", 12), "type": "json_invalid", "msg": "JSON decode error", "input": {}},
        {"loc": ("body",), "type": "model_attributes_type", "msg": "not an object", "input": [1]},
    ]
    assert [(p.field, p.message) for p in field_problems(errors)] == [
        ("body", "JSON decode error"),
        ("body", "not an object"),
    ]


def test_error_body_leads_with_the_first_problem() -> None:
    body = error_body(field_problems([{"loc": ("body", "width"), "type": "x", "msg": "bad"}]))
    assert body == ErrorResponse(
        detail="width: bad", field="width", errors=[{"field": "width", "message": "bad"}]
    )
    assert error_body([]).detail == "body: invalid request"

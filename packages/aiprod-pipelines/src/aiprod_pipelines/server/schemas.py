"""Bodies of the HTTP API: the job request (with limits from the serving config) and answers.

The request model is built per application by :func:`request_model`, so the limits of
``serving`` (max_frames, max_width, max_height, max_steps, max_prompt_length) are part of
the OpenAPI schema and a request over a limit is answered 422 naming the field and the
configuration key behind the limit.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model

from aiprod_core.config import ServingConfig
from aiprod_core.problems import shorten, validation_problems

JobState = Literal["queued", "running", "succeeded", "failed"]
JOB_STATES: tuple[JobState, ...] = ("queued", "running", "succeeded", "failed")

#: Seeds are stored in a torch generator; keep them in its signed 64-bit range.
MAX_SEED = 2**63 - 1
MAX_FPS = 240
MAX_GUIDANCE_SCALE = 100.0

#: Request field -> the serving configuration key that bounds it.
LIMIT_KEYS: dict[str, str] = {
    "prompt": "serving.max_prompt_length",
    "negative_prompt": "serving.max_prompt_length",
    "width": "serving.max_width",
    "height": "serving.max_height",
    "frames": "serving.max_frames",
    "steps": "serving.max_steps",
}

#: An ISO 8601 time stamp in UTC, such as ``2025-01-31T12:00:00.000Z``.
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


class VideoRequest(BaseModel):
    """What to generate: the body of ``POST /v1/videos``.

    ``steps`` and ``guidance_scale`` default to the model's own defaults; a missing
    ``seed`` is drawn at random and reported back in the job's ``request``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str = Field(min_length=1, description="what the video shows")
    negative_prompt: str = Field(default="", description="what the video should not show")
    width: int = Field(ge=1, description="pixels; a multiple of the model's spatial factor")
    height: int = Field(ge=1, description="pixels; a multiple of the model's spatial factor")
    frames: int = Field(ge=1, description="frame count: 1 + k * the model's temporal factor")
    steps: int | None = Field(
        default=None, ge=1, description="denoising steps (null: model default)"
    )
    guidance_scale: float | None = Field(
        default=None,
        ge=1.0,
        le=MAX_GUIDANCE_SCALE,
        allow_inf_nan=False,
        description="classifier-free guidance (null: model default)",
    )
    seed: int | None = Field(
        default=None, ge=0, le=MAX_SEED, description="same seed, same video (null: random)"
    )
    fps: int = Field(default=24, ge=1, le=MAX_FPS, description="frames per second of the mp4")


def request_model(serving: ServingConfig) -> type[VideoRequest]:
    """A :class:`VideoRequest` subclass whose fields carry the limits of ``serving``."""

    def limit(key: str) -> str:
        return f"at most {key} ({getattr(serving, key.removeprefix('serving.'))})"

    text = serving.max_prompt_length
    fields: dict[str, Any] = {
        "prompt": (
            str,
            Field(
                min_length=1,
                max_length=text,
                description=f"what the video shows; {limit(LIMIT_KEYS['prompt'])} characters",
            ),
        ),
        "negative_prompt": (
            str,
            Field(default="", max_length=text, description="what the video should not show"),
        ),
        "width": (
            int,
            Field(ge=1, le=serving.max_width, description=f"pixels, {limit(LIMIT_KEYS['width'])}"),
        ),
        "height": (
            int,
            Field(
                ge=1, le=serving.max_height, description=f"pixels, {limit(LIMIT_KEYS['height'])}"
            ),
        ),
        "frames": (
            int,
            Field(
                ge=1,
                le=serving.max_frames,
                description=f"frame count, {limit(LIMIT_KEYS['frames'])}",
            ),
        ),
        "steps": (
            int | None,
            Field(
                default=None,
                ge=1,
                le=serving.max_steps,
                description=f"denoising steps, {limit(LIMIT_KEYS['steps'])}",
            ),
        ),
    }
    return create_model(
        "VideoRequestBody", __base__=VideoRequest, __doc__=VideoRequest.__doc__, **fields
    )


class FieldProblem(BaseModel):
    """One invalid field of a request."""

    field: str = Field(description="the field, dotted for nested values; 'body' for the whole body")
    message: str


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer: one message; for 422 also the field(s) at fault."""

    detail: str
    field: str | None = None
    errors: list[FieldProblem] = Field(default_factory=list)


def field_problems(errors: list[dict[str, Any]]) -> list[FieldProblem]:
    """Pydantic/FastAPI validation errors as (field, message), limits naming their config key."""
    problems = []
    found = validation_problems(
        errors,
        unknown="Extra inputs are not permitted",
        missing="Field required",
        skip_loc=("body",),
    )
    for problem in found:
        field = problem.key if problem.loc and problem.kind != "json_invalid" else "body"
        message = problem.message if field != "body" else problem.summary
        if field in LIMIT_KEYS and problem.kind in ("less_than_equal", "string_too_long"):
            message = f"{problem.summary} (limit {LIMIT_KEYS[field]}), got {shorten(problem.value)}"
        problems.append(FieldProblem(field=field, message=message))
    return problems


def error_body(problems: list[FieldProblem]) -> ErrorResponse:
    """The 422 body: the first problem as ``detail`` ("frames: ..."), all in ``errors``."""
    first = problems[0] if problems else FieldProblem(field="body", message="invalid request")
    return ErrorResponse(
        detail=f"{first.field}: {first.message}", field=first.field, errors=problems
    )


class JobAccepted(BaseModel):
    """The answer to a submitted job (202)."""

    id: str
    status: JobState
    created_at: Timestamp


class JobView(BaseModel):
    """A job's state, progress and, once it succeeded, where its video is."""

    id: str
    status: JobState
    progress: float = Field(ge=0.0, le=1.0)
    error: str | None
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    request: VideoRequest = Field(description="the request as run (seed filled in)")
    content_url: str | None = Field(
        description="where to download the mp4; null until succeeded or once removed"
    )


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """``ready`` once the model is loaded; ``loading`` or ``failed`` (with detail) before."""

    status: Literal["ready", "loading", "failed"]
    model: str
    detail: str | None = None

"""Bodies of the HTTP API: the job request (with limits from the serving config) and answers.

The request model is built per application by :func:`request_model`, so the limits of
``serving`` (max_frames, max_width, max_height, max_steps, max_prompt_length) are part of
the OpenAPI schema and a request over a limit is answered 422 naming the field and the
configuration key behind the limit.

``width``, ``height``, ``frames`` and ``fps`` may be left out: they are filled in from the
served model's generation defaults (what it was trained on) by
:meth:`VideoRequest.resolved`, and :func:`resolved_problems` checks that a default is
within the serving limits (the generator then checks the request against its model,
image frames included). The job's view reports the resolved request, with each image as
its frame and size (never its data).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model, field_validator

from aiprod_core.config import ServingConfig
from aiprod_core.models.configs import GenerationDefaults
from aiprod_core.problems import shorten, validation_problems
from aiprod_pipelines.pipelines.request import MAX_FPS, MAX_GUIDANCE_SCALE, MAX_SEED
from aiprod_pipelines.server.images import (
    MAX_IMAGE_BYTES,
    MAX_IMAGE_DATA_CHARS,
    MAX_IMAGE_PIXELS,
    check_image_data,
)

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JOB_STATES: tuple[JobState, ...] = ("queued", "running", "succeeded", "failed", "cancelled")
#: The states a job ends in; it never leaves them.
FINAL_STATES: tuple[JobState, ...] = ("succeeded", "failed", "cancelled")

#: Conditioning images one request may carry (first and last frame, a few leading ones).
MAX_IMAGES = 8
#: The longest ``webhook_url`` accepted.
MAX_WEBHOOK_URL = 2048

#: Request field -> the serving configuration key that bounds it.
LIMIT_KEYS: dict[str, str] = {
    "prompt": "serving.max_prompt_length",
    "negative_prompt": "serving.max_prompt_length",
    "width": "serving.max_width",
    "height": "serving.max_height",
    "frames": "serving.max_frames",
    "steps": "serving.max_steps",
}
#: The request fields that default to the served model's generation defaults.
MODEL_DEFAULTS = ("width", "height", "frames", "fps")
_FROM_MODEL = "null: the served model's default, what it was trained on"
#: The size and frame rules in general; the OpenAPI document states the served model's
#: numbers in their place once it is loaded (``aiprod_pipelines.server.openapi``).
SIZE_RULE = "a multiple of the model's spatial compression x patch"
FRAMES_RULE = "1 + t*k with t the model's temporal compression"

#: An ISO 8601 time stamp in UTC, such as ``2025-01-31T12:00:00.000Z``.
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]


class VideoImage(BaseModel):
    """An image the video shows at pixel frame ``frame``: frame 0 is image-to-video, the
    first and the last frame make keyframe interpolation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: str = Field(
        description=(
            f"base64 (standard alphabet, padded, no line breaks) of a PNG or JPEG file of at "
            f"most {MAX_IMAGE_BYTES} bytes and {MAX_IMAGE_PIXELS} pixels; it is scaled and "
            "center-cropped to the video's size"
        ),
        json_schema_extra={"maxLength": MAX_IMAGE_DATA_CHARS},
    )
    frame: int = Field(
        default=0, ge=0, description="the video's frame that shows the image, 0 .. frames - 1"
    )

    @field_validator("data")
    @classmethod
    def _readable(cls, data: str) -> str:
        check_image_data(data)
        return data

    @property
    def size(self) -> int:
        """Bytes of the image file (the decoded base64)."""
        return len(self.data) // 4 * 3 - self.data[-2:].count("=")


class VideoRequest(BaseModel):
    """What to generate: the body of ``POST /v1/videos``.

    ``width``, ``height``, ``frames`` and ``fps`` default to the served model's generation
    defaults (what it was trained on), ``steps`` and ``guidance_scale`` to its sampling
    defaults; a missing ``seed`` is drawn at random. The job's ``request`` reports the
    values the job runs with.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt: str = Field(min_length=1, description="what the video shows")
    negative_prompt: str = Field(default="", description="what the video should not show")
    width: int | None = Field(
        default=None, ge=1, description=f"pixels, {SIZE_RULE} ({_FROM_MODEL})"
    )
    height: int | None = Field(
        default=None, ge=1, description=f"pixels, {SIZE_RULE} ({_FROM_MODEL})"
    )
    frames: int | None = Field(
        default=None, ge=1, description=f"frame count, {FRAMES_RULE} ({_FROM_MODEL})"
    )
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
        default=None,
        ge=0,
        le=MAX_SEED,
        description="same seed, same video; at most 2**53 - 1, so every JSON client reads it "
        "back exactly (null: drawn at random)",
    )
    fps: int | None = Field(
        default=None, ge=1, le=MAX_FPS, description=f"frames per second of the mp4 ({_FROM_MODEL})"
    )
    images: list[VideoImage] = Field(
        default_factory=list,
        max_length=MAX_IMAGES,
        description=f"images shown at chosen frames, at most {MAX_IMAGES}, no two in one "
        "latent frame (the frames the VAE encodes together); none: text-to-video",
    )
    webhook_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_WEBHOOK_URL,
        description="called once when the job ends (POST of the job's view, signed with "
        "X-Aiprod-Signature); must start with a prefix of serving.webhook_allow",
    )

    def resolved(self, defaults: GenerationDefaults) -> ResolvedVideoRequest:
        """This request with ``width``, ``height``, ``frames`` and ``fps`` filled in from
        ``defaults`` where they were left out."""
        values = dict(self)  # shallow: the images stay the validated objects they are
        for name in MODEL_DEFAULTS:
            if values[name] is None:
                values[name] = getattr(defaults, name)
        return ResolvedVideoRequest(**values)


class ResolvedVideoRequest(VideoRequest):
    """A :class:`VideoRequest` with the model's defaults filled in (what a job runs)."""

    width: int = Field(ge=1, description="pixels")
    height: int = Field(ge=1, description="pixels")
    frames: int = Field(ge=1, description="frame count")
    fps: int = Field(ge=1, le=MAX_FPS, description="frames per second of the mp4")


def request_model(serving: ServingConfig) -> type[VideoRequest]:
    """A :class:`VideoRequest` subclass whose fields carry the limits of ``serving``."""

    def limit(key: str) -> str:
        return f"at most {key} ({getattr(serving, key.removeprefix('serving.'))})"

    def sized(maximum: int, what: str, rule: str, field: str) -> tuple[Any, Any]:
        description = f"{what}, {rule}; {limit(LIMIT_KEYS[field])} ({_FROM_MODEL})"
        return (int | None, Field(default=None, ge=1, le=maximum, description=description))

    text = serving.max_prompt_length
    if serving.webhook_allow:
        webhooks = (
            f"must start with one of serving.webhook_allow: {', '.join(serving.webhook_allow)}"
        )
    else:
        webhooks = "this server sends no webhooks (serving.webhook_allow is empty)"
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
        "width": sized(serving.max_width, "pixels", SIZE_RULE, "width"),
        "height": sized(serving.max_height, "pixels", SIZE_RULE, "height"),
        "frames": sized(serving.max_frames, "frame count", FRAMES_RULE, "frames"),
        "steps": (
            int | None,
            Field(
                default=None,
                ge=1,
                le=serving.max_steps,
                description=f"denoising steps, {limit(LIMIT_KEYS['steps'])}",
            ),
        ),
        "webhook_url": (
            str | None,
            Field(
                default=None,
                min_length=1,
                max_length=MAX_WEBHOOK_URL,
                description="called once when the job ends (a POST of the job's view, signed "
                f"with X-Aiprod-Signature); {webhooks}",
            ),
        ),
    }
    return create_model(
        "VideoRequestBody", __base__=VideoRequest, __doc__=VideoRequest.__doc__, **fields
    )


def resolved_problems(request: ResolvedVideoRequest, serving: ServingConfig) -> list[FieldProblem]:
    """What the body's schema could not check before the model's defaults were filled in:
    a default over a serving limit."""
    problems = []
    for field in ("width", "height", "frames"):
        key = LIMIT_KEYS[field]
        maximum = getattr(serving, key.removeprefix("serving."))
        value = getattr(request, field)
        if value > maximum:
            problems.append(
                FieldProblem(
                    field=field,
                    message=f"{field}={value} (the model's default) is over {key} "
                    f"({maximum}): give {field} <= {maximum}",
                )
            )
    return problems


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
        skip_loc=("body", "query", "header", "path"),
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
    """The answer to a submitted job: 202, or 200 when its ``Idempotency-Key`` named it."""

    id: str
    status: JobState
    created_at: Timestamp


class ImageView(BaseModel):
    """One conditioning image of a job, as its view reports it (its data is not kept)."""

    frame: int
    size: int = Field(description="bytes of the image file")


class JobRequest(BaseModel):
    """The request a job runs: the model's defaults filled in, the seed drawn if need be."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    frames: int
    steps: int | None = Field(description="null: the model's default")
    guidance_scale: float | None = Field(description="null: the model's default")
    seed: int
    fps: int
    images: list[ImageView]


class JobView(BaseModel):
    """A job's state, progress and, once it succeeded, where its video is."""

    id: str
    status: JobState
    progress: float = Field(ge=0.0, le=1.0)
    error: str | None
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    expires_at: Timestamp | None = Field(
        description="when the finished job and its video are deleted "
        "(serving.output_ttl_seconds after it ended); null until it ends"
    )
    queue_position: int | None = Field(
        ge=1, description="1 for the next job to start, among all queued jobs; null unless queued"
    )
    request: JobRequest = Field(
        description="the request as run: the model's defaults and the seed filled in"
    )
    content_url: str | None = Field(
        description="where to download the mp4; null until succeeded or once removed"
    )


class JobList(BaseModel):
    """A page of jobs, newest first (``GET /v1/videos``)."""

    data: list[JobView]
    has_more: bool = Field(description="whether older jobs follow")
    next_page_token: str | None = Field(
        description="pass as page_token for the next page; null on the last page"
    )


class JobDeleted(BaseModel):
    """The answer to ``DELETE /v1/videos/{id}``."""

    id: str
    deleted: bool = Field(
        description="true: the job and its video are gone; false: the job was running, is "
        "cancelled at its next denoising step and deleted then"
    )


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """``ready`` once the model is loaded; ``loading`` or ``failed`` (with detail) before."""

    status: Literal["ready", "loading", "failed"]
    model: str
    detail: str | None = None

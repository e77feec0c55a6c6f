"""What the OpenAPI document says beyond the routes: error answers, the bearer scheme, and
the served model's size and frame rules.

Once the model is loaded the request body's schema states what the model takes, in terms
a schema-driven client or fuzzer generates from: ``width`` and ``height`` carry
``multipleOf`` (the VAE's spatial compression x the transformer's patch) and that multiple
as ``minimum``; ``frames`` says ``1 + t*k`` (``t`` the VAE's temporal compression) in its
description and lists the valid counts up to ``serving.max_frames`` as an ``enum``. The
server checks the same rules (``GenerationRequest.validate``), so a request the schema
allows is accepted and one it refuses is answered 422 naming the nearest valid values.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from aiprod_core.models.geometry import ModelGeometry
from aiprod_pipelines.server.limits import MAX_BODY_BYTES
from aiprod_pipelines.server.schemas import FRAMES_RULE, SIZE_RULE, ErrorResponse, Readiness

_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 1},
    }
}
_LOCATION = {
    "Location": {"description": "URL of the new job", "schema": {"type": "string"}},
}


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description, **extra}


#: ``responses=`` of each route, by route.
RESPONSES: dict[str, dict[int | str, dict[str, Any]]] = {
    "submit": {
        202: {"description": "the job is queued", "headers": _LOCATION},
        400: _error("the body cannot be read at all (for example, it is not UTF-8)"),
        413: _error(f"the body is larger than {MAX_BODY_BYTES} bytes"),
        422: _error(
            "a field is invalid or over a configured limit, a size the model cannot take, an "
            "image that is not strict base64 of a PNG or JPEG within the size limits, or an "
            "image frame outside the video or given twice; `field` names it (e.g. "
            "`images.1.frame`)"
        ),
        429: _error("the job queue is full", headers=_RETRY_AFTER),
        503: _error("the model is not loaded yet, or the server is shutting down"),
    },
    "job": {404: _error("no job with this id")},
    "content": {
        200: {
            "description": "the video",
            "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}},
        },
        404: _error("no job with this id"),
        409: _error("the job has not succeeded (yet)"),
        410: _error("the video was deleted by retention"),
    },
    "readyz": {503: {"model": Readiness, "description": "the model is loading or failed to load"}},
    "metrics": {
        200: {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
}

_ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
_UNAUTHORIZED = {
    "description": "missing or wrong bearer token",
    "headers": {
        "WWW-Authenticate": {"description": "the Bearer challenge", "schema": {"type": "string"}}
    },
    "content": _ERROR_CONTENT,
}


#: The request body's schema (the model :func:`~aiprod_pipelines.server.schemas.request_model`
#: builds).
REQUEST_BODY = "VideoRequestBody"
#: Longest ``enum`` of valid frame counts; beyond it the description alone states the rule.
MAX_FRAME_CHOICES = 1024


def install_openapi(
    app: FastAPI,
    *,
    bearer: bool,
    open_paths: Collection[str],
    geometry: Callable[[], ModelGeometry | None] | None = None,
) -> None:
    """Make ``app.openapi()`` describe the real answers.

    422 answers use :class:`ErrorResponse` (the app's handler replaces FastAPI's default
    body); with ``bearer``, every operation outside ``open_paths`` requires the token
    and may answer 401. ``geometry`` returns the served model's geometry once it is
    loaded (None before): the document then states its size and frame rules
    (:func:`state_geometry`). The document is built once per geometry.
    """
    built: dict[ModelGeometry | None, dict[str, Any]] = {}

    def openapi() -> dict[str, Any]:
        current = geometry() if geometry is not None else None
        if current in built:
            return built[current]
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                _document_operation(operation, bearer=bearer, open_path=path in open_paths)
        schemas = schema.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        if bearer:
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}
            }
        if current is not None:
            state_geometry(schemas.get(REQUEST_BODY, {}), current)
        built[current] = app.openapi_schema = schema
        return schema

    # Replacing app.openapi is FastAPI's documented way to customise the schema; mypy
    # refuses assignments to methods.
    app.openapi = openapi  # type: ignore[method-assign]


def _document_operation(operation: dict[str, Any], *, bearer: bool, open_path: bool) -> None:
    responses = operation.setdefault("responses", {})
    invalid = responses.get("422")
    if invalid is not None and "HTTPValidationError" in str(invalid):
        responses["422"] = {"description": "a parameter is invalid", "content": _ERROR_CONTENT}
    if not bearer:
        return
    if open_path:
        operation["security"] = []
    else:
        operation["security"] = [{"bearer": []}]
        responses["401"] = _UNAUTHORIZED


def state_geometry(body: dict[str, Any], geometry: ModelGeometry) -> None:
    """Write ``geometry``'s rules into the request body's JSON schema ``body`` (in place).

    A field whose limit leaves no valid value (a ``serving.max_*`` below the model's
    smallest size) keeps its schema: the server answers 422 whatever is sent.
    """
    properties = body.get("properties", {})
    spatial = geometry.video.spatial_compression
    heights, widths = geometry.pixel_multiples
    for name, multiple, patch in (
        ("width", widths, geometry.patch_size[2]),
        ("height", heights, geometry.patch_size[1]),
    ):
        field = properties.get(name)
        branch = _integer_branch(field)
        if field is None or branch is None or branch.get("maximum", multiple) < multiple:
            continue
        branch.update(multipleOf=multiple, minimum=multiple)
        rule = (
            f"a multiple of {multiple} (the model's spatial compression {spatial} x patch {patch})"
        )
        field["description"] = _with_rule(field.get("description", ""), SIZE_RULE, rule)
    field = properties.get("frames")
    branch = _integer_branch(field)
    if field is None or branch is None:
        return
    first, step = geometry.first_frames, geometry.frame_step
    temporal = geometry.video.temporal_compression
    rule = f"{first} + {step}k (the model's temporal compression {temporal}"
    if geometry.patch_size[0] > 1:
        rule += f" x its patch length {geometry.patch_size[0]}"
    rule += ")"
    maximum = int(branch.get("maximum", first + step * MAX_FRAME_CHOICES))
    choices = list(range(first, maximum + 1, step))
    if not choices:
        return
    branch["minimum"] = first
    if len(choices) <= MAX_FRAME_CHOICES:
        branch["enum"] = choices
        shown = ", ".join(map(str, choices[:4])) + (", ..." if len(choices) > 4 else "")
        rule += f": {shown}"
    field["description"] = _with_rule(field.get("description", ""), FRAMES_RULE, rule)


def _integer_branch(field: dict[str, Any] | None) -> dict[str, Any] | None:
    """The integer schema of an optional integer field (``anyOf: [integer, null]``)."""
    if field is None:
        return None
    if field.get("type") == "integer":
        return field
    branches: list[dict[str, Any]] = field.get("anyOf", [])
    return next((branch for branch in branches if branch.get("type") == "integer"), None)


def _with_rule(description: str, general: str, rule: str) -> str:
    """``description`` with the ``general`` rule replaced by the served model's ``rule``."""
    if general in description:
        return description.replace(general, rule)
    return f"{description}; {rule}" if description else rule

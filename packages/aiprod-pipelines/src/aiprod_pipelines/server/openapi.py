"""What the OpenAPI document says beyond the routes: error answers and the bearer scheme."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from aiprod_pipelines.server.limits import MAX_BODY_BYTES
from aiprod_pipelines.server.schemas import ErrorResponse, Readiness

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


def install_openapi(app: FastAPI, *, bearer: bool, open_paths: Collection[str]) -> None:
    """Make ``app.openapi()`` describe the real answers.

    422 answers use :class:`ErrorResponse` (the app's handler replaces FastAPI's default
    body); with ``bearer``, every operation outside ``open_paths`` requires the token
    and may answer 401.
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
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
        app.openapi_schema = schema
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

"""The ``/v1/videos`` routes: submit, list, read, cancel, delete, download.

- ``POST /v1/videos`` queues a job: 202 with ``Location``. With an ``Idempotency-Key``
  header, the same key and body again answer 200 with the same job, the same key with
  another body 409. 429 (``Retry-After``) when ``serving.queue_size`` jobs are queued.
- ``GET /v1/videos`` lists jobs newest first, ``limit`` per page, filtered by ``status``;
  ``next_page_token`` continues the list.
- ``GET /v1/videos/{id}``: the job's state, progress, ``queue_position``, ``expires_at``.
- ``POST /v1/videos/{id}/cancel``: a queued job is cancelled at once (200) and never
  starts; a running job stops at its next denoising step (202) and ends ``cancelled``; a
  job that already succeeded or failed answers 409.
- ``DELETE /v1/videos/{id}``: the job and its video are deleted (200); a running job is
  cancelled and deleted once it has stopped (202).
- ``GET /v1/videos/{id}/content`` streams the mp4 from the video storage, whichever
  replica wrote it.

Routes that touch the store are plain functions: FastAPI runs them on its thread pool, so
a slow database never blocks the event loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

from fastapi import FastAPI, Header, Query, status
from fastapi.responses import JSONResponse, Response, StreamingResponse

from aiprod_pipelines.pipelines.request import InvalidRequestError
from aiprod_pipelines.server.jobs import (
    SHUTTING_DOWN,
    IdempotencyConflict,
    QueueFullError,
    ShuttingDownError,
)
from aiprod_pipelines.server.openapi import RESPONSES
from aiprod_pipelines.server.schemas import (
    ErrorResponse,
    FieldProblem,
    JobAccepted,
    JobDeleted,
    JobList,
    JobState,
    JobView,
    VideoRequest,
    error_body,
    resolved_problems,
)
from aiprod_pipelines.server.storage import StorageError, VideoNotFound
from aiprod_pipelines.server.store import request_hash
from aiprod_pipelines.server.views import iso, job_view

if TYPE_CHECKING:
    from aiprod_pipelines.server.app import ServerState

CHUNK_BYTES = 1 << 16
#: Retry-After while the model loads.
LOADING_RETRY_AFTER_S = 30
#: Jobs per page of ``GET /v1/videos``: the default and the most.
DEFAULT_PAGE = 20
MAX_PAGE = 100
#: An Idempotency-Key: 1 to 255 visible ASCII characters.
IDEMPOTENCY_KEY = r"^[!-~]{1,255}$"
#: A page token: the cursor ``GET /v1/videos`` returned.
PAGE_TOKEN = r"^[0-9]{1,18}$"

_LOCATION = {"Location": {"description": "URL of the job", "schema": {"type": "string"}}}


def _problem(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


_NOT_FOUND = _problem("no job with this id (never submitted, deleted, or expired)")
SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    **RESPONSES["submit"],
    200: {
        "model": JobAccepted,
        "description": "the Idempotency-Key names a job submitted earlier with the same body",
        "headers": _LOCATION,
    },
    409: _problem("the Idempotency-Key was used with a different body"),
}
LIST_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: _problem("limit, status or page_token is invalid"),
}
CANCEL_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {
        "model": JobView,
        "description": "the job is running; it stops at its next denoising step and ends cancelled",
    },
    404: _NOT_FOUND,
    409: _problem("the job already succeeded or failed"),
}
DELETE_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {
        "model": JobDeleted,
        "description": "the job is running: it is cancelled and deleted once it has stopped",
    },
    404: _NOT_FOUND,
}


def error(code: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An answer in the error format."""
    return JSONResponse(ErrorResponse(detail=detail).model_dump(), code, headers=headers)


def _stream(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk


def add_video_routes(app: FastAPI, state: ServerState, request_cls: type[VideoRequest]) -> None:
    """Add the ``/v1/videos`` routes; the body of a submission is ``request_cls``."""

    def submit_video(
        body: VideoRequest,
        response: Response,
        idempotency_key: Annotated[
            str | None,
            Header(
                alias="Idempotency-Key",
                pattern=IDEMPOTENCY_KEY,
                description="the same key with the same body returns the same job (200) "
                "instead of a new one; with another body it answers 409",
            ),
        ] = None,
    ) -> JobAccepted | JSONResponse:
        """Queue a generation job; poll the URL in ``Location`` for its progress."""
        if state.loader.state != "ready":
            detail = state.loader.error or "the model is still loading; retry later"
            return error(503, detail, {"Retry-After": str(LOADING_RETRY_AFTER_S)})
        request = body.resolved(state.generator.defaults())
        problems = resolved_problems(request, state.settings.serving)
        webhook_url = body.webhook_url
        if not problems:
            try:
                state.generator.validate(request)
                if webhook_url is not None:
                    state.webhook_policy.check(webhook_url)
            except InvalidRequestError as exc:
                problems = [FieldProblem(field=exc.field, message=str(exc))]
        if problems:
            return JSONResponse(error_body(problems).model_dump(), 422)
        try:
            submission = state.jobs.submit(
                request,
                idempotency_key=idempotency_key,
                request_hash=request_hash(body.model_dump(mode="json"))
                if idempotency_key
                else None,
                webhook_url=webhook_url,
            )
        except QueueFullError as exc:
            return error(429, str(exc), {"Retry-After": str(exc.retry_after)})
        except ShuttingDownError:
            return error(503, SHUTTING_DOWN)
        except IdempotencyConflict as exc:
            return error(409, str(exc))
        job = submission.job
        response.headers["Location"] = f"/v1/videos/{job.id}"
        if not submission.created:
            response.status_code = status.HTTP_200_OK
        return JobAccepted(id=job.id, status=job.status, created_at=iso(job.created_at) or "")

    # The body's model is built from the config at runtime, so it is set after definition.
    submit_video.__annotations__["body"] = request_cls
    app.add_api_route(
        "/v1/videos",
        submit_video,
        methods=["POST"],
        status_code=status.HTTP_202_ACCEPTED,
        response_model=JobAccepted,
        responses=SUBMIT_RESPONSES,
        tags=["videos"],
    )

    @app.get("/v1/videos", response_model=JobList, responses=LIST_RESPONSES, tags=["videos"])
    def list_videos(
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="jobs per page")] = DEFAULT_PAGE,
        status_filter: Annotated[
            JobState | None, Query(alias="status", description="only jobs in this state")
        ] = None,
        page_token: Annotated[
            str | None,
            Query(pattern=PAGE_TOKEN, description="next_page_token of the previous page"),
        ] = None,
    ) -> JobList:
        """Jobs of every replica, newest first, ``limit`` at a time."""
        before = int(page_token) if page_token is not None else None
        jobs, cursor = state.jobs.page(limit=limit, status=status_filter, before=before)
        return JobList(
            data=[job_view(job) for job in jobs],
            has_more=cursor is not None,
            next_page_token=None if cursor is None else str(cursor),
        )

    @app.get("/v1/videos/{id}", response_model=JobView, responses=RESPONSES["job"], tags=["videos"])
    def get_video(id: str) -> JobView | JSONResponse:
        """The job's status, progress, queue position and, once it succeeded, its ``content_url``."""
        job = state.jobs.get(id)
        if job is None:
            return error(404, f"no video job with id {id!r}")
        return job_view(job)

    @app.post(
        "/v1/videos/{id}/cancel",
        response_model=JobView,
        responses=CANCEL_RESPONSES,
        tags=["videos"],
    )
    def cancel_video(id: str, response: Response) -> JobView | JSONResponse:
        """Cancel a queued job (it never starts) or stop a running one at its next step."""
        job = state.jobs.cancel(id)
        if job is None:
            return error(404, f"no video job with id {id!r}")
        if job.status in ("succeeded", "failed"):
            return error(409, f"video job {id} already {job.status}; it cannot be cancelled")
        if job.status == "running":
            response.status_code = status.HTTP_202_ACCEPTED
        return job_view(job)

    @app.delete(
        "/v1/videos/{id}",
        response_model=JobDeleted,
        responses=DELETE_RESPONSES,
        tags=["videos"],
    )
    def delete_video(id: str, response: Response) -> JobDeleted | JSONResponse:
        """Delete the job and its video; a running job is cancelled first."""
        job, gone = state.jobs.delete(id)
        if job is None:
            return error(404, f"no video job with id {id!r}")
        if not gone:
            response.status_code = status.HTTP_202_ACCEPTED
        return JobDeleted(id=id, deleted=gone)

    @app.get(
        "/v1/videos/{id}/content",
        response_class=StreamingResponse,
        responses=RESPONSES["content"],
        tags=["videos"],
    )
    def get_video_content(id: str) -> Response:
        """The finished video as ``video/mp4``."""
        job = state.jobs.get(id)
        if job is None:
            return error(404, f"no video job with id {id!r}")
        if job.status != "succeeded" or job.video_key is None:
            reason = f": {job.error}" if job.error else ""
            return error(409, f"video job {id} has not succeeded; it is {job.status}{reason}")
        gone = f"the video of job {id} was deleted by retention (serving.output_retention)"
        if job.video_removed:
            return error(410, gone)
        try:
            size = state.videos.size(job.video_key)
            handle = state.videos.open(job.video_key)
        except VideoNotFound:
            return error(410, gone)
        except (StorageError, OSError) as exc:
            return error(503, f"cannot read the video of job {id}: {exc}", {"Retry-After": "5"})
        return StreamingResponse(
            _stream(handle),
            media_type="video/mp4",
            headers={
                "Content-Length": str(size),
                "Content-Disposition": f'inline; filename="{id}.mp4"',
            },
        )

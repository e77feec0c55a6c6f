"""The FastAPI application: job submission, status, video download, probes and metrics.

    app = create_app(ServerSettings.from_config(config, api_token=api_token()), generator)

The model loads in a background thread when the app starts (``/readyz`` answers 503
until it is loaded); jobs run on worker threads; when the app stops, queued jobs are
marked failed, a running one gets ``settings.shutdown_grace_seconds`` to finish before it
is cancelled, and the worker and loader threads are joined (:meth:`ServerState.stop`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aiprod_pipelines.server import jobs as job_queue
from aiprod_pipelines.server.auth import BearerAuthMiddleware
from aiprod_pipelines.server.generator import InvalidVideoRequest, VideoGenerator
from aiprod_pipelines.server.jobs import (
    SHUTTING_DOWN,
    Job,
    JobManager,
    QueueFullError,
    ShuttingDownError,
    iso,
)
from aiprod_pipelines.server.limits import BodyLimitMiddleware
from aiprod_pipelines.server.loading import THREAD_NAME as LOADER_THREAD
from aiprod_pipelines.server.loading import ModelLoader
from aiprod_pipelines.server.metrics import MetricsMiddleware, ServerMetrics
from aiprod_pipelines.server.openapi import RESPONSES, install_openapi
from aiprod_pipelines.server.outputs import OutputStore
from aiprod_pipelines.server.schemas import (
    ErrorResponse,
    FieldProblem,
    Health,
    JobAccepted,
    JobRequest,
    JobView,
    Readiness,
    VideoRequest,
    error_body,
    field_problems,
    request_model,
    resolved_problems,
)
from aiprod_pipelines.server.settings import ServerSettings

logger = logging.getLogger(__name__)

DESCRIPTION = (
    "Submit text-to-video jobs (or image-to-video: images shown at chosen frames), poll "
    "them, download the mp4. Width, height, frames and fps left out of a request are the "
    "served model's defaults, what it was trained on; a job reports the values it runs with."
)
CHUNK_BYTES = 1 << 16
#: Retry-After while the model loads.
LOADING_RETRY_AFTER_S = 30


class ServerState:
    """What the routes share: settings, generator, loader, jobs, outputs and metrics."""

    def __init__(self, settings: ServerSettings, generator: VideoGenerator) -> None:
        self.settings = settings
        self.generator = generator
        self.metrics = ServerMetrics()
        self.outputs = OutputStore(settings.output_dir, settings.serving.output_retention)
        self.jobs = JobManager(
            generator,
            self.outputs,
            queue_size=settings.serving.queue_size,
            workers=settings.workers,
            history=settings.job_history,
            observe_generation=self.metrics.generation_seconds.observe,
        )
        self.metrics.track_jobs(self.jobs.counts, self.jobs.queue_depth)
        self.loader = ModelLoader(generator, on_ready=self.jobs.start)
        #: Threads still running after :meth:`stop` (None until it ran; empty when clean).
        self.unfinished: list[str] | None = None

    def hurry(self) -> None:
        """Make a shutdown in progress (or to come) stop waiting: a forced stop."""
        self.jobs.hurry()

    def stop(self) -> list[str]:
        """Stop the jobs, then join the worker and loader threads; the names still running.

        Bounded: ``shutdown_grace_seconds`` for a running job to finish, then
        :data:`~aiprod_pipelines.server.jobs.CANCEL_WAIT_S` for the cancelled job to reach
        its next step; a model still loading gets the same total. :meth:`hurry` ends the
        waits. The result is also kept in :attr:`unfinished`.
        """
        grace = self.settings.shutdown_grace_seconds
        cancel_wait = job_queue.CANCEL_WAIT_S
        deadline = time.monotonic() + max(grace, 0.0) + cancel_wait
        unfinished = self.jobs.shutdown(grace, cancel_wait)
        if not self.loader.wait(deadline - time.monotonic(), self.jobs.hurried):
            unfinished.append(LOADER_THREAD)
        self.unfinished = unfinished
        return unfinished


def _error(code: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorResponse(detail=detail).model_dump(), code, headers=headers)


def _view(job: Job) -> JobView:
    available = job.status == "succeeded" and not job.removed
    return JobView(
        id=job.id,
        status=job.status,
        progress=job.progress,
        error=job.error,
        created_at=iso(job.created_at) or "",
        started_at=iso(job.started_at),
        finished_at=iso(job.finished_at),
        request=JobRequest.of(job.request, job.images),
        content_url=f"/v1/videos/{job.id}/content" if available else None,
    )


def _stream(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk


def create_app(settings: ServerSettings, generator: VideoGenerator) -> FastAPI:
    """The server app for ``settings``, generating with ``generator`` (loaded at startup)."""
    state = ServerState(settings, generator)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        removed = state.outputs.prepare()
        if removed:
            logger.info("retention: deleted %d old video(s)", len(removed))
        state.loader.start()
        try:
            yield
        finally:
            logger.info(
                "shutting down: a running job gets up to %gs to finish, then is cancelled",
                settings.shutdown_grace_seconds,
            )
            await asyncio.to_thread(state.stop)

    app = FastAPI(
        title=settings.title,
        version=settings.version,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.server = state
    _add_routes(app, state, request_model(settings.serving))
    _add_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware)
    if settings.api_token:
        app.add_middleware(
            BearerAuthMiddleware, token=settings.api_token, open_paths=settings.open_paths
        )
    install_openapi(app, bearer=bool(settings.api_token), open_paths=settings.open_paths)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics, routes=lambda: app.routes)
    return app


def _add_routes(app: FastAPI, state: ServerState, request_cls: type[VideoRequest]) -> None:
    async def submit_video(body: VideoRequest, response: Response) -> JobAccepted | JSONResponse:
        """Queue a generation job; poll the URL in ``Location`` for its progress."""
        if state.loader.state != "ready":
            detail = state.loader.error or "the model is still loading; retry later"
            return _error(503, detail, {"Retry-After": str(LOADING_RETRY_AFTER_S)})
        request = body.resolved(state.generator.defaults())
        problems = resolved_problems(request, state.settings.serving)
        if not problems:
            try:
                state.generator.validate(request)
            except InvalidVideoRequest as exc:
                problems = [FieldProblem(field=exc.field, message=str(exc))]
        if problems:
            return JSONResponse(error_body(problems).model_dump(), 422)
        try:
            job = state.jobs.submit(request)
        except QueueFullError as exc:
            return _error(429, str(exc), {"Retry-After": str(exc.retry_after)})
        except ShuttingDownError:
            return _error(503, SHUTTING_DOWN)
        response.headers["Location"] = f"/v1/videos/{job.id}"
        return JobAccepted(id=job.id, status=job.status, created_at=iso(job.created_at) or "")

    # The body's model is built from the config at runtime, so it is set after definition.
    submit_video.__annotations__["body"] = request_cls
    app.add_api_route(
        "/v1/videos",
        submit_video,
        methods=["POST"],
        status_code=status.HTTP_202_ACCEPTED,
        response_model=JobAccepted,
        responses=RESPONSES["submit"],
        tags=["videos"],
    )

    @app.get("/v1/videos/{id}", response_model=JobView, responses=RESPONSES["job"], tags=["videos"])
    async def get_video(id: str) -> JobView | JSONResponse:
        """The job's status, progress and, once it succeeded, its ``content_url``."""
        job = state.jobs.get(id)
        if job is None:
            return _error(404, f"no video job with id {id!r}")
        return _view(job)

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
            return _error(404, f"no video job with id {id!r}")
        if job.status != "succeeded" or job.output is None:
            reason = f": {job.error}" if job.error else ""
            return _error(409, f"video job {id} has not succeeded; it is {job.status}{reason}")
        gone = f"the video of job {id} was deleted by retention (serving.output_retention)"
        if job.removed:
            return _error(410, gone)
        try:
            handle = Path(job.output).open("rb")  # noqa: SIM115 - closed by the stream
        except FileNotFoundError:
            return _error(410, gone)
        size = os.fstat(handle.fileno()).st_size
        return StreamingResponse(
            _stream(handle),
            media_type="video/mp4",
            headers={
                "Content-Length": str(size),
                "Content-Disposition": f'inline; filename="{id}.mp4"',
            },
        )

    @app.get("/healthz", response_model=Health, tags=["probes"])
    async def healthz() -> Health:
        """The process is alive (never needs the token)."""
        return Health()

    @app.get("/readyz", response_model=Readiness, responses=RESPONSES["readyz"], tags=["probes"])
    async def readyz() -> Readiness | JSONResponse:
        """200 once the model is loaded, 503 while loading or after it failed to load."""
        name = state.generator.model_name
        if state.loader.state == "ready":
            return Readiness(status="ready", model=name)
        body = Readiness(status=state.loader.state, model=name, detail=state.loader.error)
        return JSONResponse(body.model_dump(), 503)

    @app.get("/metrics", response_class=Response, responses=RESPONSES["metrics"], tags=["probes"])
    async def metrics() -> Response:
        """Prometheus metrics: queue depth, jobs by state, latencies, request counts."""
        return Response(state.metrics.render(), media_type=state.metrics.content_type)


def _add_error_handlers(app: FastAPI) -> None:
    # The decorator registers with add_exception_handler; unlike a direct call, its typing
    # accepts handlers of one exception class (Starlette only calls them with that class).
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors: list[Any] = list(exc.errors())
        return JSONResponse(error_body(field_problems(errors)).model_dump(), 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return _error(exc.status_code, str(exc.detail), dict(exc.headers or {}))

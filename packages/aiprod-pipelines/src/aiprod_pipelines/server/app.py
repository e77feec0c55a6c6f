"""The FastAPI application: the video routes, probes and metrics, on a job store.

    app = create_app(ServerSettings.from_config(config, api_token=api_token()), generator)

Jobs live in the job store (SQLite in the videos folder, or PostgreSQL named by
``settings.database_url``) and videos in the storage of ``serving.output_url`` (the
videos folder when null), so several replicas serve the same jobs. When the app starts it
applies the store's migrations and the retention rules, then loads the model in a
background thread (``/readyz`` answers 503 until it is loaded); jobs run on worker
threads. When the app stops, queued jobs stay queued in the store, a running one gets
``settings.shutdown_grace_seconds`` to finish before it is cancelled and marked failed,
the worker and loader threads are joined and the store is closed (:meth:`ServerState.stop`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from aiprod_pipelines.server import jobs as job_queue
from aiprod_pipelines.server.auth import BearerAuthMiddleware
from aiprod_pipelines.server.generator import VideoGenerator
from aiprod_pipelines.server.jobs import JobManager, WebhookNotifier
from aiprod_pipelines.server.limits import BodyLimitMiddleware
from aiprod_pipelines.server.loading import THREAD_NAME as LOADER_THREAD
from aiprod_pipelines.server.loading import ModelLoader
from aiprod_pipelines.server.metrics import MetricsMiddleware, ServerMetrics
from aiprod_pipelines.server.openapi import RESPONSES, install_openapi
from aiprod_pipelines.server.routes import add_video_routes, error
from aiprod_pipelines.server.schemas import (
    Health,
    Readiness,
    error_body,
    field_problems,
    request_model,
)
from aiprod_pipelines.server.settings import ServerSettings
from aiprod_pipelines.server.storage import VideoStorage, open_storage
from aiprod_pipelines.server.store import JobStore, StoreError, open_store
from aiprod_pipelines.server.webhooks import WebhookPolicy, WebhookSender

logger = logging.getLogger(__name__)

DESCRIPTION = (
    "Submit text-to-video jobs (or image-to-video: images shown at chosen frames), poll "
    "them, list, cancel and delete them, download the mp4. Width, height, frames and fps "
    "left out of a request are the served model's defaults, what it was trained on; a job "
    "reports the values it runs with."
)
#: Retry-After when the job store cannot be reached.
STORE_RETRY_AFTER_S = 5
#: Seconds a stopping server gives webhooks still queued to go out.
WEBHOOK_CLOSE_S = 5.0


class ServerState:
    """What the routes share: settings, generator, loader, job store, videos, jobs, metrics.

    ``store`` and ``videos`` default to those of the settings (:func:`open_store` of
    ``settings.database_url``, :func:`open_storage` of ``serving.output_url`` or
    ``settings.output_dir``); ``webhook_policy`` (default: ``serving.webhook_allow`` and
    ``AIPROD_WEBHOOK_SECRET``) decides which ``webhook_url`` a request may name, and
    ``webhooks`` (default: a :class:`WebhookSender` of that policy) calls them.
    """

    def __init__(
        self,
        settings: ServerSettings,
        generator: VideoGenerator,
        *,
        store: JobStore | None = None,
        videos: VideoStorage | None = None,
        webhook_policy: WebhookPolicy | None = None,
        webhooks: WebhookNotifier | None = None,
    ) -> None:
        serving = settings.serving
        self.settings = settings
        self.generator = generator
        self.metrics = ServerMetrics()
        self.store = store or open_store(settings.database_url, settings.output_dir)
        self.videos = videos or open_storage(
            serving.output_url or settings.output_dir,
            storage_options=serving.output_storage_options,
        )
        self.webhook_policy = webhook_policy or WebhookPolicy.from_config(serving)
        self.webhooks = webhooks or WebhookSender(self.webhook_policy)
        self.jobs = JobManager(
            generator,
            self.store,
            self.videos,
            queue_size=serving.queue_size,
            workers=settings.workers,
            lease_seconds=serving.lease_seconds,
            ttl_seconds=serving.output_ttl_seconds,
            keep=serving.output_retention,
            observe_generation=self.metrics.generation_seconds.observe,
            webhooks=self.webhooks,
        )
        self.metrics.track_jobs(self.jobs.counts, self.jobs.queue_depth)
        self.loader = ModelLoader(generator, on_ready=self.jobs.start)
        #: Threads still running after :meth:`stop` (None until it ran; empty when clean).
        self.unfinished: list[str] | None = None

    def open(self) -> None:
        """Bring the store's schema up to date and apply retention once (at start-up)."""
        applied = self.store.migrate()
        if applied:
            logger.info("job store %s: applied migrations %s", self.store.url, ", ".join(applied))
        try:
            self.jobs.keeper.sweep()
        except (StoreError, OSError) as exc:
            logger.warning("retention at start-up failed (the keeper retries): %s", exc)

    def hurry(self) -> None:
        """Make a shutdown in progress (or to come) stop waiting: a forced stop."""
        self.jobs.hurry()

    def stop(self) -> list[str]:
        """Stop the jobs, join the worker and loader threads, close the store; the threads
        still running.

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
        self.webhooks.close(0.0 if self.jobs.hurried.is_set() else WEBHOOK_CLOSE_S)
        if not unfinished:  # a thread still inside a job may yet write to the store
            self.store.close()
        self.unfinished = unfinished
        return unfinished


def create_app(
    settings: ServerSettings,
    generator: VideoGenerator,
    *,
    store: JobStore | None = None,
    videos: VideoStorage | None = None,
    webhook_policy: WebhookPolicy | None = None,
    webhooks: WebhookNotifier | None = None,
) -> FastAPI:
    """The server app for ``settings``, generating with ``generator`` (loaded at startup)."""
    state = ServerState(
        settings,
        generator,
        store=store,
        videos=videos,
        webhook_policy=webhook_policy,
        webhooks=webhooks,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(state.open)
        state.jobs.keeper.start()
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
    add_video_routes(app, state, request_model(settings.serving))
    _add_probes(app, state)
    _add_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware)
    if settings.api_token:
        app.add_middleware(
            BearerAuthMiddleware, token=settings.api_token, open_paths=settings.open_paths
        )
    install_openapi(
        app,
        bearer=bool(settings.api_token),
        open_paths=settings.open_paths,
        geometry=lambda: generator.geometry() if state.loader.state == "ready" else None,
    )
    app.add_middleware(MetricsMiddleware, metrics=state.metrics, routes=lambda: app.routes)
    return app


def _add_probes(app: FastAPI, state: ServerState) -> None:
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
    def metrics() -> Response:
        """Prometheus metrics: queue depth, jobs by state (all replicas'), latencies, requests."""
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
        return error(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(StoreError)
    async def store_unavailable(request: Request, exc: StoreError) -> Response:
        logger.error("%s %s: %s", request.method, request.url.path, exc)
        detail = f"the job store is unavailable; retry later ({exc})"
        return error(503, detail, {"Retry-After": str(STORE_RETRY_AFTER_S)})

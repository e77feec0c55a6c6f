"""Prometheus metrics of one server, in a registry of its own (several apps may share a process).

Names match ``config/cloud/monitoring.yaml`` and the alerts rendered from it:

- ``aiprod_queue_depth`` (gauge): jobs waiting for a worker, in the whole job store (every
  replica reports the same number: aggregate with ``max``, not ``sum``);
- ``aiprod_jobs{state}`` (gauge): jobs in the job store, per state (every replica's);
- ``aiprod_generation_seconds`` (histogram): generation + encoding time of succeeded jobs;
- ``aiprod_request_duration_seconds{method,path}`` (histogram): HTTP request duration;
- ``aiprod_requests_total{code,method,path}`` (counter): finished HTTP requests.

``path`` is the route template (``/v1/videos/{id}``), or ``unmatched``, so ids never
become label values.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aiprod_pipelines.server.schemas import JOB_STATES, JobState

GENERATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600)
UNMATCHED = "unmatched"


class ServerMetrics:
    """The metrics of one app and the text Prometheus scrapes."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.queue_depth = Gauge(
            "aiprod_queue_depth",
            "Jobs waiting for a worker (all replicas).",
            registry=self.registry,
        )
        self.jobs = Gauge(
            "aiprod_jobs",
            "Jobs in the job store (all replicas), by state.",
            ["state"],
            registry=self.registry,
        )
        self.generation_seconds = Histogram(
            "aiprod_generation_seconds",
            "Seconds to generate and encode one video (succeeded jobs).",
            buckets=GENERATION_BUCKETS,
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "aiprod_request_duration_seconds",
            "Seconds to answer one HTTP request.",
            ["method", "path"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "aiprod_requests",
            "Finished HTTP requests, by status code, method and route.",
            ["code", "method", "path"],
            registry=self.registry,
        )

    def track_jobs(
        self, counts: Callable[[], Mapping[JobState, int]], queue_depth: Callable[[], int]
    ) -> None:
        """Read the job gauges from ``counts()`` and ``queue_depth()`` at every scrape."""
        self.queue_depth.set_function(queue_depth)
        for state in JOB_STATES:
            self.jobs.labels(state=state).set_function(_count_of(counts, state))

    def observe_request(self, method: str, path: str, code: int, seconds: float) -> None:
        self.request_duration.labels(method=method, path=path).observe(seconds)
        self.requests.labels(code=str(code), method=method, path=path).inc()

    def render(self) -> bytes:
        """The exposition text of every metric."""
        return generate_latest(self.registry)


def _count_of(counts: Callable[[], Mapping[JobState, int]], state: JobState) -> Callable[[], int]:
    """A reader of ``counts()[state]``, for a gauge's ``set_function``."""
    return lambda: counts()[state]


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The path template of the route ``scope`` goes to, or ``unmatched``."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "path", UNMATCHED))
        if match is Match.PARTIAL and partial is None:
            partial = str(getattr(route, "path", UNMATCHED))
    return partial or UNMATCHED


class MetricsMiddleware:
    """ASGI middleware timing and counting every HTTP request (401s and 500s included)."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: ServerMetrics,
        routes: Callable[[], Sequence[BaseRoute]],
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = route_template(self.routes(), scope)
            self.metrics.observe_request(
                scope["method"], path, status, time.perf_counter() - started
            )

"""The AIPROD HTTP server: video jobs from text and images over JSON (``aiprod-serve``).

    from aiprod_pipelines.server import PipelineVideoGenerator, ServerSettings, create_app

    app = create_app(ServerSettings.from_config(config), PipelineVideoGenerator(config))

Routes: ``POST /v1/videos`` (202 + Location; ``Idempotency-Key``), ``GET /v1/videos``
(newest first, paginated), ``GET /v1/videos/{id}``, ``POST /v1/videos/{id}/cancel``,
``DELETE /v1/videos/{id}``, ``GET /v1/videos/{id}/content`` (video/mp4), ``/healthz``,
``/readyz``, ``/metrics``. Jobs live in a job store (:mod:`aiprod_pipelines.server.store`:
SQLite by default, PostgreSQL for several replicas).

The server is the ``server`` extra of aiprod-pipelines (``pip install
'aiprod-pipelines[server]'``); without it, importing this package raises
:class:`~aiprod_pipelines.serve.ServerNotInstalledError` naming the extra.
"""

from __future__ import annotations

from aiprod_pipelines.serve import require_server

require_server()  # the `server` extra: without it, one error naming it

from aiprod_pipelines.pipelines.request import InvalidRequestError  # noqa: E402
from aiprod_pipelines.server.app import create_app  # noqa: E402
from aiprod_pipelines.server.generator import (  # noqa: E402
    PipelineVideoGenerator,
    ServerSetupError,
    VideoGenerator,
)
from aiprod_pipelines.server.jobs import Job, JobManager  # noqa: E402
from aiprod_pipelines.server.schemas import JobState, VideoRequest  # noqa: E402
from aiprod_pipelines.server.settings import ServerSettings  # noqa: E402

__all__ = [
    "InvalidRequestError",
    "Job",
    "JobManager",
    "JobState",
    "PipelineVideoGenerator",
    "ServerSettings",
    "ServerSetupError",
    "VideoGenerator",
    "VideoRequest",
    "create_app",
]

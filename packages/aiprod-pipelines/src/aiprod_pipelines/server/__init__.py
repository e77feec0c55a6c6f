"""The AIPROD HTTP server: video jobs from text and images over JSON (``aiprod-serve``).

    from aiprod_pipelines.server import PipelineVideoGenerator, ServerSettings, create_app

    app = create_app(ServerSettings.from_config(config), PipelineVideoGenerator(config))

Routes: ``POST /v1/videos`` (202 + Location), ``GET /v1/videos/{id}``,
``GET /v1/videos/{id}/content`` (video/mp4), ``/healthz``, ``/readyz``, ``/metrics``.
"""

from __future__ import annotations

from aiprod_pipelines.server.app import create_app
from aiprod_pipelines.server.generator import (
    InvalidVideoRequest,
    PipelineVideoGenerator,
    ServerSetupError,
    VideoGenerator,
)
from aiprod_pipelines.server.jobs import Job, JobManager
from aiprod_pipelines.server.schemas import JobState, VideoRequest
from aiprod_pipelines.server.settings import ServerSettings

__all__ = [
    "InvalidVideoRequest",
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

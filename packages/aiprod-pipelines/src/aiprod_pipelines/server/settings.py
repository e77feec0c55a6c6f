"""Everything the server app needs to know, built from the configuration once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from aiprod_core.config import AiprodConfig, ServingConfig

#: Paths answered without the bearer token: the liveness probe.
DEFAULT_OPEN_PATHS = frozenset({"/healthz"})
#: Seconds a running job may take to finish once shutdown begins.
DEFAULT_SHUTDOWN_GRACE_S = 600.0
#: Finished jobs remembered (404 after that); at least ``serving.output_retention``.
DEFAULT_JOB_HISTORY = 10_000


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """Limits, folders and security of one server app.

    Attributes:
        serving: the ``serving`` section of the configuration (limits, queue, retention).
        output_dir: where finished videos are written (``<paths.outputs>/server``).
        api_token: the bearer token every request must carry; None disables auth.
        workers: worker threads, one per device (``serving.workers_per_device``).
        shutdown_grace_seconds: how long a running job may finish during shutdown.
        open_paths: paths answered without the token.
        job_history: finished jobs remembered before the oldest are forgotten.
        title: the API's title in its OpenAPI document.
        version: the API's version in its OpenAPI document.
    """

    serving: ServingConfig
    output_dir: Path
    api_token: str | None = None
    workers: int = 1
    shutdown_grace_seconds: float = DEFAULT_SHUTDOWN_GRACE_S
    open_paths: frozenset[str] = DEFAULT_OPEN_PATHS
    job_history: int = DEFAULT_JOB_HISTORY
    title: str = "AIPROD video generation"
    version: str = "0.1.0"

    @staticmethod
    def videos_folder(config: AiprodConfig) -> Path:
        """Where the server of ``config`` writes videos: ``<paths.outputs>/server``."""
        return config.resolve(config.paths.outputs) / "server"

    @classmethod
    def from_config(
        cls,
        config: AiprodConfig,
        *,
        api_token: str | None = None,
        shutdown_grace_seconds: float = DEFAULT_SHUTDOWN_GRACE_S,
        open_paths: frozenset[str] = DEFAULT_OPEN_PATHS,
    ) -> ServerSettings:
        """Settings of ``config``; the token comes from ``aiprod_core.config.api_token()``."""
        return cls(
            serving=config.serving,
            output_dir=cls.videos_folder(config),
            api_token=api_token,
            workers=config.serving.workers_per_device,
            shutdown_grace_seconds=shutdown_grace_seconds,
            open_paths=frozenset(open_paths) | DEFAULT_OPEN_PATHS,
            version=config.project.version,
        )

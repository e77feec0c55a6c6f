"""Everything the server app needs to know, built from the configuration once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from aiprod_core.config import AiprodConfig, ServingConfig

#: Paths answered without the bearer token: the liveness probe.
DEFAULT_OPEN_PATHS = frozenset({"/healthz"})
#: Seconds a running job may take to finish once shutdown begins.
DEFAULT_SHUTDOWN_GRACE_S = 600.0


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """Limits, folders, stores and security of one server app.

    Attributes:
        serving: the ``serving`` section of the configuration (limits, queue, retention,
            leases, where videos go).
        output_dir: the server's local folder (``<paths.outputs>/server``): its videos
            unless ``serving.output_url`` names object storage, and the SQLite job store
            (``jobs.sqlite3``) unless ``database_url`` names PostgreSQL.
        api_token: the bearer token every request must carry; None disables auth.
        database_url: the PostgreSQL job store shared by replicas
            (``aiprod_core.config.database_url()``, a secret); None: SQLite in
            ``output_dir``.
        workers: worker threads, one per device (``serving.workers_per_device``).
        shutdown_grace_seconds: how long a running job may finish during shutdown.
        open_paths: paths answered without the token.
        title: the API's title in its OpenAPI document.
        version: the API's version in its OpenAPI document.
    """

    serving: ServingConfig
    output_dir: Path
    api_token: str | None = dataclasses.field(default=None, repr=False)
    database_url: str | None = dataclasses.field(default=None, repr=False)
    workers: int = 1
    shutdown_grace_seconds: float = DEFAULT_SHUTDOWN_GRACE_S
    open_paths: frozenset[str] = DEFAULT_OPEN_PATHS
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
        database_url: str | None = None,
        shutdown_grace_seconds: float = DEFAULT_SHUTDOWN_GRACE_S,
        open_paths: frozenset[str] = DEFAULT_OPEN_PATHS,
    ) -> ServerSettings:
        """Settings of ``config``; the secrets come from ``aiprod_core.config``'s
        ``api_token()`` and ``database_url()``."""
        return cls(
            serving=config.serving,
            output_dir=cls.videos_folder(config),
            api_token=api_token,
            database_url=database_url,
            workers=config.serving.workers_per_device,
            shutdown_grace_seconds=shutdown_grace_seconds,
            open_paths=frozenset(open_paths) | DEFAULT_OPEN_PATHS,
            version=config.project.version,
        )

"""Deployment inputs: config/cloud/{cloud-run,monitoring,logging}.yaml as one validated object.

These files say where and how the HTTP server is deployed (service name, region, image,
resources, per-environment project and scaling, monitoring and log settings); the
application settings themselves stay in config/AIPROD.json and its overlays. Like
``load_config``, ``load_cloud_config`` turns every problem into one ConfigError whose
message names the file, the key path and what was expected. Every model forbids unknown
keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from aiprod_core.config.loader import _describe, _display, _read_mapping
from aiprod_core.errors import ConfigError

CLOUD_DIR = "cloud"
CloudSection = Literal["cloud_run", "monitoring", "logging"]
#: section of CloudConfig -> its file in config/cloud/.
CLOUD_FILES: dict[CloudSection, str] = {
    "cloud_run": "cloud-run.yaml",
    "monitoring": "monitoring.yaml",
    "logging": "logging.yaml",
}

Quantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti)?$")]
DnsLabel = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]
GcpId = Annotated[str, Field(pattern=r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")]
Duration = Annotated[str, Field(pattern=r"^[0-9]+[smh]$")]
MetricName = Annotated[str, Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")]
Fraction = Annotated[float, Field(gt=0, lt=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ------------------------------------------------------------------- cloud-run.yaml
class ImageSettings(_Strict):
    """The server image; a null tag means the project version."""

    repository: str = Field(pattern=r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+$")
    tag: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class CpuResources(_Strict):
    """Compute of one CPU instance, in Kubernetes quantity syntax."""

    cpu: Quantity
    memory: Quantity


class GpuResources(CpuResources):
    """Compute of one GPU instance: CPU and memory plus the accelerator type and count."""

    type: str = Field(pattern=r"^nvidia-[a-z0-9-]+$")
    count: int = Field(ge=1, le=8)


class Resources(_Strict):
    """The two variants a deployment renders in."""

    cpu: CpuResources
    gpu: GpuResources


class SecretSettings(_Strict):
    """A secret: Kubernetes Secret / Secret Manager name, key and version."""

    name: DnsLabel
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$")
    version: str = Field(default="latest", pattern=r"^(latest|[1-9][0-9]*)$")


class Secrets(_Strict):
    """The secrets the server reads from its environment, referenced by name only.

    ``database_url`` (AIPROD_DATABASE_URL) is the PostgreSQL job store that replicas share;
    without it each server keeps its jobs in SQLite in its own folder, so only one replica
    can run. ``webhook_secret`` (AIPROD_WEBHOOK_SECRET) signs webhooks; without it the
    server refuses requests that ask for one.
    """

    api_token: SecretSettings
    database_url: SecretSettings | None = None
    webhook_secret: SecretSettings | None = None


class ServerVolume(_Strict):
    """The persistent volume of a server that keeps its jobs or videos in its own folder.

    Rendered (a PersistentVolumeClaim) only when the job store is the embedded SQLite file
    or the videos stay in the local folder; a null storage class is the cluster's default.
    """

    size: Quantity = "20Gi"
    storage_class: DnsLabel | None = None


class ServiceAccounts(_Strict):
    kubernetes: DnsLabel
    cloud_run: GcpId


class EnvironmentSettings(_Strict):
    """Where and at what scale one environment (a config/env/<name>.yaml) is deployed."""

    gcp_project: GcpId
    namespace: DnsLabel
    hostname: str = Field(pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z]{2,}$")
    tls_secret: DnsLabel
    models_bucket: str = Field(pattern=r"^[a-z0-9][-a-z0-9_.]{1,61}[a-z0-9]$")
    gpu: bool
    replicas: int = Field(ge=1)
    min_instances: int = Field(ge=0)
    max_instances: int = Field(ge=1)
    concurrency: int = Field(ge=1, le=1000)

    @model_validator(mode="after")
    def _instances_ordered(self) -> EnvironmentSettings:
        if self.min_instances > self.max_instances:
            raise ValueError(
                f"min_instances ({self.min_instances}) is above max_instances ({self.max_instances})"
            )
        return self


class CloudRunConfig(_Strict):
    """config/cloud/cloud-run.yaml: the service, its image, compute and environments."""

    service_name: DnsLabel
    kubernetes_version: str = Field(pattern=r"^1\.[0-9]+$")
    region: str = Field(pattern=r"^[a-z]+-[a-z]+[0-9]+$")
    image: ImageSettings
    request_timeout_seconds: int = Field(ge=1, le=3600)
    resources: Resources
    secrets: Secrets
    server_volume: ServerVolume = Field(default_factory=ServerVolume)
    service_accounts: ServiceAccounts
    environments: dict[str, EnvironmentSettings] = Field(min_length=1)

    @model_validator(mode="after")
    def _replicas_share_a_database(self) -> CloudRunConfig:
        """More than one server (replicas, Cloud Run instances) needs secrets.database_url."""
        if self.secrets.database_url is not None:
            return self
        # Raised as a ValidationError so that each problem is reported at its key path
        # (environments.<env>.replicas), one line per environment.
        problems: list[Any] = []
        for env, site in self.environments.items():
            key = "replicas" if site.replicas > 1 else "max_instances"
            count: int = getattr(site, key)
            if count == 1:
                continue
            what = "replicas" if key == "replicas" else "Cloud Run instances"
            message = (
                f"{count} {what} need PostgreSQL to share jobs: set secrets.database_url (the "
                f"Secret holding AIPROD_DATABASE_URL), or {key}: 1 to keep jobs in the embedded "
                "SQLite file"
            )
            loc = ("environments", env, key)
            problems.append(
                {"type": "value_error", "loc": loc, "input": count, "ctx": {"error": message}}
            )
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self


# ------------------------------------------------------------------ monitoring.yaml
class Scrape(_Strict):
    """How Prometheus scrapes the server; a null port means the serving port."""

    path: str = Field(pattern=r"^/[-/._a-zA-Z0-9]*$")
    port: int | None = Field(default=None, ge=1, le=65535)
    interval: Duration


class Metrics(_Strict):
    """Names of the metrics the server exports."""

    queue_depth: MetricName
    request_duration: MetricName
    requests_total: MetricName


class Alerts(_Strict):
    """Alert thresholds; ``for`` is how long a condition holds before an alert fires."""

    queue_depth_ratio: Fraction
    p95_latency_seconds: float = Field(gt=0)
    error_rate: Fraction
    for_: Duration = Field(alias="for")
    severity: str = Field(pattern=r"^[a-z]+$")


class CloudMonitoringConfig(_Strict):
    """config/cloud/monitoring.yaml."""

    scrape: Scrape
    metrics: Metrics
    alerts: Alerts


# --------------------------------------------------------------------- logging.yaml
class LogSettings(_Strict):
    """How much one deployed environment logs, and how long the logs are kept."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"]
    retention_days: int = Field(ge=1, le=3650)


class CloudLoggingConfig(_Strict):
    """config/cloud/logging.yaml."""

    environments: dict[str, LogSettings] = Field(min_length=1)


# ------------------------------------------------------------------------ together
class CloudConfig(_Strict):
    """The three deployment input files, validated."""

    cloud_run: CloudRunConfig
    monitoring: CloudMonitoringConfig
    logging: CloudLoggingConfig
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    def source(self, section: CloudSection) -> str:
        """The file ``section`` was read from, as error messages show it."""
        return self._sources.get(section, f"config/{CLOUD_DIR}/{CLOUD_FILES[section]}")

    def environment(self, env: str) -> EnvironmentSettings:
        """cloud-run.yaml's settings of ``env``; a ConfigError when it has none."""
        return _entry(self.cloud_run.environments, env, self.source("cloud_run"))

    def log_settings(self, env: str) -> LogSettings:
        """logging.yaml's settings of ``env``; a ConfigError when it has none."""
        return _entry(self.logging.environments, env, self.source("logging"))


_MODELS: dict[CloudSection, type[BaseModel]] = {
    "cloud_run": CloudRunConfig,
    "monitoring": CloudMonitoringConfig,
    "logging": CloudLoggingConfig,
}
_Entry = TypeVar("_Entry")


def _entry(entries: dict[str, _Entry], env: str, where: str) -> _Entry:
    if env not in entries:
        known = ", ".join(sorted(entries))
        raise ConfigError(
            f"{where}: environments: no entry for environment {env!r}; expected one of: {known}"
        )
    return entries[env]


def load_cloud_config(config_dir: Path) -> CloudConfig:
    """Read and validate config_dir/cloud/{cloud-run,monitoring,logging}.yaml.

    Raises:
        ConfigError: a file is missing, unreadable, not YAML, not a mapping, or breaks its
            schema; the message names the file and every failing key path.
    """
    sections: dict[str, BaseModel] = {}
    sources: dict[str, str] = {}
    for section, model in _MODELS.items():
        path = config_dir / CLOUD_DIR / CLOUD_FILES[section]
        sources[section] = where = _display(path)
        try:
            sections[section] = model.model_validate(_read_mapping(path, "yaml"))
        except ValidationError as exc:
            raise ConfigError(_describe(exc, {}, where)) from None
    cloud = CloudConfig.model_validate(sections)
    cloud._sources = sources
    return cloud

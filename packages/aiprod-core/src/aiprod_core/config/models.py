"""The typed configuration: what config/AIPROD.json and its overlays may contain.

Every model forbids unknown keys, so a misspelt key is an error rather than a silent default.
The JSON Schema committed as config/AIPROD.schema.json is generated from these models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    field_validator,
    model_validator,
)

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="lowercase hex sha256")]
ModelLocation = Literal["pretrained", "checkpoints", "cache"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProjectConfig(_Strict):
    """Who we are: shown in logs, the server's metadata and rendered deployment manifests."""

    name: str = Field(min_length=1, description="project name")
    version: str = Field(pattern=r"^\d+\.\d+\.\d+", description="project version (semver)")
    description: str = ""


class PathsConfig(_Strict):
    """Folders, relative to the repository root unless absolute."""

    models_cache: Path = Field(description="downloaded or derived artefacts (latents, embeddings)")
    checkpoints: Path = Field(description="weights this project trains")
    pretrained: Path = Field(description="released weights placed here by hand")
    outputs: Path = Field(description="generated videos, reports and logs")

    def for_location(self, location: ModelLocation) -> Path:
        """The folder a registry entry's ``location`` refers to."""
        return {
            "pretrained": self.pretrained,
            "checkpoints": self.checkpoints,
            "cache": self.models_cache,
        }[location]


class ModelEntry(_Strict):
    """One model in the registry: which file holds it and which preset builds it."""

    file: str = Field(min_length=1, description="file name inside the location's folder")
    location: ModelLocation = Field(description="which models/ folder holds the file")
    preset: str = Field(min_length=1, description="model preset the weights belong to")
    sha256: Sha256 | None = Field(default=None, description="expected sha256 of the file")
    description: str = ""
    obtain: str = Field(default="", description="how to obtain the file when it is missing")

    @field_validator("file")
    @classmethod
    def _plain_file_name(cls, value: str) -> str:
        if Path(value).name != value:
            raise ValueError("must be a file name without folders")
        return value


#: Storage option names that carry credentials (lower case; matched anywhere in the nesting).
CREDENTIAL_OPTION_NAMES = frozenset(
    {"key", "secret", "password", "access_key", "secret_key", "aws_access_key_id",
     "aws_secret_access_key", "aws_session_token", "session_token", "account_key",
     "sas_token", "connection_string", "client_secret", "private_key"}
)  # fmt: skip


def _credential_keys(options: JsonValue, prefix: str = "") -> list[str]:
    """Dotted names of the credential-like keys in ``options`` (nested mappings included)."""
    if not isinstance(options, dict):
        return []
    found: list[str] = []
    for name, value in options.items():
        dotted = f"{prefix}{name}"
        lowered = name.lower()
        if lowered in CREDENTIAL_OPTION_NAMES or "secret" in lowered or "password" in lowered:
            found.append(dotted)
        found.extend(_credential_keys(value, f"{dotted}."))
    return found


class ServingConfig(_Strict):
    """Defaults and limits of the HTTP server."""

    host: str = Field(default="127.0.0.1", description="address to bind")
    port: int = Field(default=8000, ge=1, le=65535)
    default_model: str = Field(min_length=1, description="registry name served by default")
    queue_size: int = Field(default=16, ge=1, description="jobs waiting before 429")
    workers_per_device: int = Field(default=1, ge=1)
    max_frames: int = Field(default=121, ge=1)
    max_width: int = Field(default=1280, ge=8)
    max_height: int = Field(default=720, ge=8)
    max_steps: int = Field(default=50, ge=1)
    max_prompt_length: int = Field(default=2000, ge=1, description="characters")
    output_retention: int = Field(default=100, ge=1, description="finished videos kept on disk")
    lease_seconds: int = Field(
        default=30,
        ge=2,
        le=3600,
        description="a running job's lease in the job store, renewed while its replica works "
        "on it; a job whose lease expired (its replica died) is queued again once, then failed",
    )
    output_url: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$",
        description="where finished videos go: null for the local folder <paths.outputs>/server "
        "(one replica), or object storage that every replica shares, s3://<bucket>[/<prefix>] "
        "or gs://<bucket>[/<prefix>] (needs the aiprod-pipelines[server] extra)",
    )
    output_ttl_seconds: int = Field(
        default=86400,
        ge=1,
        description="seconds a finished job and its video are kept after the job ended; then "
        "both are deleted from whichever store holds them",
    )
    output_storage_options: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="non-secret options of the object store's fsspec filesystem, e.g. "
        '{"endpoint_url": "http://minio:9000"} for an S3-compatible server; credentials come '
        "from the platform (AWS_* variables, an instance or workload identity, Application "
        "Default Credentials), never from configuration",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="weights and compute dtype of the served model; auto: bfloat16 on a "
        "CUDA device with bf16 tensor cores, float32 elsewhere (aiprod_core.precision)",
    )
    offload_text_encoder: bool = Field(
        default=False,
        description="keep the text encoder on the CPU between requests and move it to the "
        "device only to encode prompts (frees its device memory for the transformer)",
    )
    webhook_allow: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="URL prefixes a request's webhook_url may start with, each "
        "http(s)://host[:port]/path/, e.g. https://hooks.example.com/aiprod/; empty: webhooks "
        "are refused. The signing key is the secret AIPROD_WEBHOOK_SECRET (unset: refused too)",
    )

    @field_validator("webhook_allow")
    @classmethod
    def _url_prefixes(cls, value: list[str]) -> list[str]:
        for index, prefix in enumerate(value):
            problem = webhook_prefix_problem(prefix)
            if problem:
                raise ValueError(f"[{index}] {prefix[:200]!r} {problem}")
        return value

    @field_validator("output_storage_options")
    @classmethod
    def _no_credentials(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        found = _credential_keys(value)
        if found:
            raise ValueError(
                f"{found[0]!r} looks like a credential, and credentials never go in "
                "configuration; give the platform's: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
                "or an instance or workload identity for s3://, Application Default Credentials "
                "(GOOGLE_APPLICATION_CREDENTIALS or workload identity) for gs://"
            )
        return value


def webhook_prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` is not a webhook URL prefix ``http(s)://host[:port]/path``, or None.

    The host ends where the first ``/`` of the path begins, so a prefix never matches a
    longer host name (``https://hooks.example.com/`` does not allow
    ``https://hooks.example.com.evil.net/``).
    """
    expected = "expected http(s)://host[:port]/path, e.g. https://hooks.example.com/aiprod/"
    if any(c.isspace() for c in prefix) or len(prefix) > 2048:
        return f"is not a URL prefix: {expected}"
    parts = urlsplit(prefix)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return f"is not an http(s) URL: {expected}"
    if "@" in parts.netloc:
        return f"has user info before the host: {expected}"
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        return f"has an invalid port: {expected}"
    if not parts.path.startswith("/"):
        return f"has no path after the host: add '/' ({prefix}/), {expected}"
    if parts.query or parts.fragment or prefix.endswith(("?", "#")):
        return f"has a query or fragment: {expected}"
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        return f"has '.' or '..' segments: {expected}"
    return None


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class AiprodConfig(_Strict):
    """The whole configuration of one environment, after overlays and overrides."""

    schema_ref: str | None = Field(
        default=None, alias="$schema", description="editor hint: path of the JSON Schema"
    )
    project: ProjectConfig
    paths: PathsConfig
    models: dict[str, ModelEntry] = Field(description="model registry: name -> entry")
    serving: ServingConfig
    logging: LoggingConfig = LoggingConfig()

    _root: Path = PrivateAttr(default=Path())
    _env: str = PrivateAttr(default="development")

    @field_validator("models")
    @classmethod
    def _names_are_slugs(cls, value: dict[str, ModelEntry]) -> dict[str, ModelEntry]:
        for name in value:
            if not name or not all(c.isalnum() or c in "-_." for c in name):
                raise ValueError(f"model name {name!r} must use letters, digits, '-', '_' or '.'")
        return value

    @model_validator(mode="after")
    def _default_model_registered(self) -> AiprodConfig:
        if self.serving.default_model not in self.models:
            known = ", ".join(sorted(self.models)) or "(none)"
            raise ValueError(
                f"serving.default_model {self.serving.default_model!r} is not a registered "
                f"model; expected one of: {known}"
            )
        return self

    @property
    def root(self) -> Path:
        """The repository root that relative paths are resolved against."""
        return self._root

    @property
    def env(self) -> str:
        """The environment these settings were loaded for."""
        return self._env

    def resolve(self, path: Path) -> Path:
        """An absolute path: ``path`` itself when absolute, else under the root."""
        return path if path.is_absolute() else self._root / path

    def model_file(self, name: str) -> Path:
        """The absolute path where the registry expects the weights of model ``name``."""
        entry = self.model(name)
        return self.resolve(self.paths.for_location(entry.location)) / entry.file

    def model(self, name: str) -> ModelEntry:
        """The registry entry ``name``; a ConfigError lists the known names otherwise."""
        from aiprod_core.errors import ConfigError

        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "(none)"
            raise ConfigError(
                f"model {name!r} is not in the registry (config 'models'); known: {known}"
            ) from None

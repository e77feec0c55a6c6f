"""The typed configuration: what config/AIPROD.json and its overlays may contain.

Every model forbids unknown keys, so a misspelt key is an error rather than a silent default.
The JSON Schema committed as config/AIPROD.schema.json is generated from these models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

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

"""AIPROD configuration: one typed, validated object from config/ and AIPROD_* variables."""

from aiprod_core.config.loader import (
    DEFAULT_ENV,
    RESERVED_VARIABLES,
    available_envs,
    find_config_dir,
    load_config,
)
from aiprod_core.config.models import (
    AiprodConfig,
    LoggingConfig,
    ModelEntry,
    PathsConfig,
    ProjectConfig,
    ServingConfig,
)
from aiprod_core.config.schema import json_schema, schema_text
from aiprod_core.errors import ConfigError

__all__ = [
    "DEFAULT_ENV",
    "RESERVED_VARIABLES",
    "AiprodConfig",
    "ConfigError",
    "LoggingConfig",
    "ModelEntry",
    "PathsConfig",
    "ProjectConfig",
    "ServingConfig",
    "available_envs",
    "find_config_dir",
    "json_schema",
    "load_config",
    "schema_text",
]

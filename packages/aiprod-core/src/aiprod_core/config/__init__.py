"""AIPROD configuration: one typed, validated object from config/ and AIPROD_* variables.

The deployment inputs in config/cloud/ load separately, with ``load_cloud_config``.
"""

from aiprod_core.config.cloud import (
    CLOUD_FILES,
    CloudConfig,
    CloudLoggingConfig,
    CloudMonitoringConfig,
    CloudRunConfig,
    CpuResources,
    EnvironmentSettings,
    GpuResources,
    LogSettings,
    load_cloud_config,
)
from aiprod_core.config.loader import (
    DEFAULT_ENV,
    RESERVED_VARIABLES,
    api_token,
    available_envs,
    database_url,
    find_config_dir,
    load_config,
    webhook_secret,
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
    "CLOUD_FILES",
    "DEFAULT_ENV",
    "RESERVED_VARIABLES",
    "AiprodConfig",
    "CloudConfig",
    "CloudLoggingConfig",
    "CloudMonitoringConfig",
    "CloudRunConfig",
    "ConfigError",
    "CpuResources",
    "EnvironmentSettings",
    "GpuResources",
    "LogSettings",
    "LoggingConfig",
    "ModelEntry",
    "PathsConfig",
    "ProjectConfig",
    "ServingConfig",
    "api_token",
    "available_envs",
    "database_url",
    "find_config_dir",
    "json_schema",
    "load_cloud_config",
    "load_config",
    "schema_text",
    "webhook_secret",
]

"""The repository's committed config/ loads in every environment and its schema is current."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiprod_core.config import available_envs, load_config, schema_text
from aiprod_core.config.schema import SCHEMA_FILE

pytestmark = pytest.mark.integration


def test_every_committed_environment_loads(repo_config_dir: Path) -> None:
    envs = available_envs(repo_config_dir)
    assert envs == ["development", "production", "staging"]
    for env in envs:
        config = load_config(repo_config_dir, env=env, environ={})
        assert config.serving.default_model in config.models


def test_production_binds_all_interfaces_and_development_loopback(repo_config_dir: Path) -> None:
    assert load_config(repo_config_dir, env="development", environ={}).serving.host == "127.0.0.1"
    assert load_config(repo_config_dir, env="production", environ={}).serving.host == "0.0.0.0"


def test_committed_schema_matches_the_models(repo_config_dir: Path) -> None:
    committed = (repo_config_dir / SCHEMA_FILE).read_text()
    assert committed == schema_text(), (
        "config/AIPROD.schema.json is out of date; regenerate it with "
        "`nox -s maintenance -- export_config_schema`"
    )


def test_schema_rejects_unknown_keys(repo_config_dir: Path) -> None:
    schema = json.loads((repo_config_dir / SCHEMA_FILE).read_text())
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"project", "paths", "models", "serving"}
    assert "$schema" in schema["properties"]

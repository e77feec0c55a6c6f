"""Loading the deployment inputs config/cloud/*.yaml, and every error a user can cause."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiprod_core.config import (
    CLOUD_FILES,
    CloudConfig,
    ConfigError,
    GpuResources,
    available_envs,
    load_cloud_config,
)


@pytest.fixture
def cloud_dir(config_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fixture's config/cloud, with the working folder at the repository copy."""
    monkeypatch.chdir(config_dir.parent)
    return config_dir / "cloud"


def edit_yaml(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")


def set_key(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        node = data
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def error_of(config_dir: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_cloud_config(config_dir)
    return str(info.value)


# --------------------------------------------------------------------- valid inputs
def test_fixture_inputs_load_into_typed_sections(cloud_dir: Path) -> None:
    cloud = load_cloud_config(cloud_dir.parent)
    assert cloud.cloud_run.service_name == "aiprod-test"
    assert cloud.cloud_run.image.tag is None
    assert cloud.cloud_run.secrets.api_token.version == "latest"  # the default
    gpu = cloud.cloud_run.resources.gpu
    assert isinstance(gpu, GpuResources)
    assert (gpu.type, gpu.count, gpu.memory) == ("nvidia-l4", 1, "32Gi")
    assert cloud.monitoring.scrape.port == 9100
    assert cloud.monitoring.alerts.for_ == "5m"  # the YAML key is `for`
    assert cloud.monitoring.alerts.queue_depth_ratio == 0.5
    assert cloud.environment("development").gpu is False
    assert cloud.environment("production").max_instances == 4
    assert cloud.log_settings("production").level == "WARNING"
    assert cloud.source("cloud_run") == "config/cloud/cloud-run.yaml"
    assert cloud.source("logging") == "config/cloud/logging.yaml"


def test_secrets_and_the_server_volume(cloud_dir: Path) -> None:
    secrets = load_cloud_config(cloud_dir.parent).cloud_run.secrets
    assert secrets.database_url is not None
    assert (secrets.database_url.name, secrets.database_url.key) == ("test-database-url", "url")
    assert secrets.database_url.version == "3"
    assert secrets.webhook_secret is None  # optional: the server then refuses webhooks
    volume = load_cloud_config(cloud_dir.parent).cloud_run.server_volume
    assert (volume.size, volume.storage_class) == ("20Gi", None)  # the defaults

    def change(data: dict[str, Any]) -> None:
        data["secrets"]["webhook_secret"] = {"name": "hooks", "key": "secret"}
        data["server_volume"] = {"size": "100Gi", "storage_class": "premium-rwo"}

    edit_yaml(cloud_dir / "cloud-run.yaml", change)
    run = load_cloud_config(cloud_dir.parent).cloud_run
    assert run.secrets.webhook_secret is not None
    assert (run.secrets.webhook_secret.name, run.secrets.webhook_secret.version) == (
        "hooks",
        "latest",
    )
    assert (run.server_volume.size, run.server_volume.storage_class) == ("100Gi", "premium-rwo")


def test_repository_inputs_cover_the_deployed_environments(repo_config_dir: Path) -> None:
    cloud = load_cloud_config(repo_config_dir)
    deployed = set(cloud.cloud_run.environments)
    assert deployed == set(cloud.logging.environments) == {"staging", "production"}
    assert deployed <= set(available_envs(repo_config_dir))
    assert cloud.cloud_run.service_name == "aiprod-server"
    assert cloud.environment("production").namespace == "aiprod"
    assert cloud.log_settings("staging").level == "DEBUG"
    assert cloud.monitoring.scrape.port is None
    secrets = cloud.cloud_run.secrets
    assert secrets.database_url is not None
    assert secrets.database_url.name == "aiprod-database-url"
    assert secrets.webhook_secret is not None
    assert secrets.webhook_secret.name == "aiprod-webhook-secret"


def test_sections_are_frozen(cloud_dir: Path) -> None:
    cloud = load_cloud_config(cloud_dir.parent)
    with pytest.raises(ValueError, match="frozen"):
        cloud.environment("production").replicas = 3  # type: ignore[misc]


def test_source_of_a_config_built_in_code(cloud_dir: Path) -> None:
    loaded = load_cloud_config(cloud_dir.parent)
    built = CloudConfig(
        cloud_run=loaded.cloud_run, monitoring=loaded.monitoring, logging=loaded.logging
    )
    assert built.source("monitoring") == "config/cloud/monitoring.yaml"
    assert CLOUD_FILES["monitoring"] == "monitoring.yaml"


def test_paths_outside_the_working_folder_are_shown_whole(
    config_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cloud = load_cloud_config(config_dir)
    assert cloud.source("cloud_run") == str(config_dir / "cloud" / "cloud-run.yaml")


# ---------------------------------------------------------------- environment lookup
def test_environment_without_an_entry(cloud_dir: Path) -> None:
    cloud = load_cloud_config(cloud_dir.parent)
    with pytest.raises(ConfigError) as info:
        cloud.environment("staging")
    assert str(info.value) == (
        "config/cloud/cloud-run.yaml: environments: no entry for environment 'staging'; "
        "expected one of: development, production"
    )
    with pytest.raises(ConfigError, match=r"^config/cloud/logging\.yaml: environments: no entry"):
        cloud.log_settings("staging")


# ------------------------------------------------------------------ invalid contents
@pytest.mark.parametrize(
    ("file", "path", "value", "expected"),
    [
        (
            "cloud-run.yaml",
            ("environments", "production", "replicaz"),
            2,
            (
                "config/cloud/cloud-run.yaml: environments.production.replicaz: unknown key "
                "(not part of the configuration schema)"
            ),
        ),
        (
            "cloud-run.yaml",
            ("environments", "production", "replicas"),
            "two",
            (
                "config/cloud/cloud-run.yaml: environments.production.replicas: Input should be a "
                "valid integer, unable to parse string as an integer, got 'two'"
            ),
        ),
        (
            "cloud-run.yaml",
            ("environments", "development", "min_instances"),
            5,
            (
                "config/cloud/cloud-run.yaml: environments.development: "
                "min_instances (5) is above max_instances (1)"
            ),
        ),
        (
            "cloud-run.yaml",
            ("resources", "gpu", "memory"),
            "lots",
            "config/cloud/cloud-run.yaml: resources.gpu.memory: String should match pattern",
        ),
        (
            "cloud-run.yaml",
            ("kubernetes_version",),
            "v1.30",
            "config/cloud/cloud-run.yaml: kubernetes_version: String should match pattern",
        ),
        (
            "cloud-run.yaml",
            ("environments",),
            {},
            "config/cloud/cloud-run.yaml: environments: Dictionary should have at least 1 item",
        ),
        (
            "monitoring.yaml",
            ("alerts", "for"),
            "10 minutes",
            "config/cloud/monitoring.yaml: alerts.for: String should match pattern",
        ),
        (
            "monitoring.yaml",
            ("alerts", "queue_depth_ratio"),
            1.0,
            "config/cloud/monitoring.yaml: alerts.queue_depth_ratio: Input should be less than 1",
        ),
        (
            "logging.yaml",
            ("environments", "production", "level"),
            "LOUD",
            (
                "config/cloud/logging.yaml: environments.production.level: Input should be 'DEBUG', "
                "'INFO', 'WARNING' or 'ERROR', got 'LOUD'"
            ),
        ),
        (
            "logging.yaml",
            ("environments", "production"),
            None,
            (
                "config/cloud/logging.yaml: environments.production: Input should be a valid "
                "dictionary or instance of LogSettings, got None"
            ),
        ),
    ],
)
def test_invalid_value_names_file_and_key(
    cloud_dir: Path, file: str, path: tuple[str, ...], value: Any, expected: str
) -> None:
    edit_yaml(cloud_dir / file, set_key(path, value))
    message = error_of(cloud_dir.parent)
    assert message.startswith("invalid configuration:\n  ")
    assert expected in message
    assert message.count("\n") == 1, "one problem, one line"


def test_missing_and_unknown_keys_are_reported_together(cloud_dir: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        del data["region"]
        data["regoin"] = "europe-west4"

    edit_yaml(cloud_dir / "cloud-run.yaml", change)
    assert error_of(cloud_dir.parent) == (
        "invalid configuration (2 problems):\n"
        "  config/cloud/cloud-run.yaml: region: required key is missing\n"
        "  config/cloud/cloud-run.yaml: regoin: unknown key (not part of the configuration schema)"
    )


def test_empty_file_lacks_every_required_key(cloud_dir: Path) -> None:
    (cloud_dir / "monitoring.yaml").write_text("# nothing yet\n")
    message = error_of(cloud_dir.parent)
    assert message.startswith("invalid configuration (3 problems):\n")
    for key in ("scrape", "metrics", "alerts"):
        assert f"config/cloud/monitoring.yaml: {key}: required key is missing" in message


# ------------------------------------------------- several replicas need PostgreSQL
def test_several_replicas_without_a_database_secret_are_refused(cloud_dir: Path) -> None:
    edit_yaml(cloud_dir / "cloud-run.yaml", lambda data: data["secrets"].pop("database_url"))
    assert error_of(cloud_dir.parent) == (
        "invalid configuration:\n"
        "  config/cloud/cloud-run.yaml: environments.production.replicas: 2 replicas need "
        "PostgreSQL to share jobs: set secrets.database_url (the Secret holding "
        "AIPROD_DATABASE_URL), or replicas: 1 to keep jobs in the embedded SQLite file"
    )


def test_several_cloud_run_instances_without_a_database_secret_are_refused(
    cloud_dir: Path,
) -> None:
    def change(data: dict[str, Any]) -> None:
        del data["secrets"]["database_url"]
        data["environments"]["production"]["replicas"] = 1
        data["environments"]["development"]["max_instances"] = 3

    edit_yaml(cloud_dir / "cloud-run.yaml", change)
    message = error_of(cloud_dir.parent)
    assert message.startswith("invalid configuration (2 problems):\n")
    assert (
        "config/cloud/cloud-run.yaml: environments.development.max_instances: 3 Cloud Run "
        "instances need PostgreSQL to share jobs: set secrets.database_url"
    ) in message
    assert "environments.production.max_instances: 4 Cloud Run instances need PostgreSQL" in (
        message
    )
    assert "or max_instances: 1 to keep jobs in the embedded SQLite file" in message


def test_one_replica_everywhere_needs_no_database_secret(cloud_dir: Path) -> None:
    def change(data: dict[str, Any]) -> None:
        del data["secrets"]["database_url"]
        data["environments"]["production"].update(replicas=1, max_instances=1)

    edit_yaml(cloud_dir / "cloud-run.yaml", change)
    cloud = load_cloud_config(cloud_dir.parent)
    assert cloud.cloud_run.secrets.database_url is None
    assert cloud.environment("production").replicas == 1


# --------------------------------------------------------------- unreadable files
def test_missing_file(cloud_dir: Path) -> None:
    (cloud_dir / "logging.yaml").unlink()
    assert error_of(cloud_dir.parent) == "config/cloud/logging.yaml: file not found"


def test_malformed_yaml_names_line_and_column(cloud_dir: Path) -> None:
    (cloud_dir / "monitoring.yaml").write_text("scrape:\n  path: [unclosed\n")
    message = error_of(cloud_dir.parent)
    assert re.fullmatch(
        r"config/cloud/monitoring\.yaml: invalid YAML at line 3 column 1: .+", message
    )


def test_top_level_must_be_a_mapping(cloud_dir: Path) -> None:
    (cloud_dir / "cloud-run.yaml").write_text("- a list\n")
    assert error_of(cloud_dir.parent) == (
        "config/cloud/cloud-run.yaml: expected a mapping of keys at the top level, got list"
    )


def test_unreadable_file(cloud_dir: Path) -> None:
    (cloud_dir / "logging.yaml").unlink()
    (cloud_dir / "logging.yaml").mkdir()
    assert error_of(cloud_dir.parent).startswith("config/cloud/logging.yaml: cannot be read: ")


def test_first_invalid_file_is_reported(cloud_dir: Path) -> None:
    (cloud_dir / "monitoring.yaml").write_text("- a list\n")
    (cloud_dir / "logging.yaml").unlink()
    assert error_of(cloud_dir.parent).startswith("config/cloud/monitoring.yaml: ")

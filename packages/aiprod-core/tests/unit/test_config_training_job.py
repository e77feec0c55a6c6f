"""Loading config/cloud/training.yaml (the Kubernetes training job's inputs), and its errors."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiprod_core.config import ConfigError
from aiprod_core.config.training_job import TrainingJobConfig, load_training_job_config

VALID: dict[str, Any] = {
    "job_name": "aiprod-train",
    "config": "packages/aiprod-trainer/configs/dit-19b-fsdp.yaml",
    "nodes": 2,
    "gpus_per_node": 8,
    "resources": {
        "accelerator": "nvidia-h100-80gb",
        "cpu": "180",
        "memory": "1400Gi",
        "shared_memory": "64Gi",
    },
    "storage": {"storage_class": "standard-rwx", "size": "4Ti"},
    "rendezvous_port": 29500,
    "max_restarts": 3,
    "backoff_limit": 6,
}


def write(tmp_path: Path, data: Any) -> Path:
    """A config folder whose cloud/training.yaml holds ``data``; returns the config folder."""
    config_dir = tmp_path / "config"
    (config_dir / "cloud").mkdir(parents=True, exist_ok=True)
    (config_dir / "cloud" / "training.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return config_dir


def changed(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data = {key: dict(v) if isinstance(v, dict) else v for key, v in VALID.items()}
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


def error_of(tmp_path: Path, data: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    config_dir = write(tmp_path, data)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_training_job_config(config_dir)
    return str(info.value)


def test_repository_file_loads(repo_config_dir: Path) -> None:
    job = load_training_job_config(repo_config_dir)
    assert (job.job_name, job.nodes, job.gpus_per_node, job.world_size) == (
        "aiprod-train",
        2,
        8,
        16,
    )
    assert job.config == "packages/aiprod-trainer/configs/dit-19b-fsdp.yaml"
    assert (repo_config_dir.parent / job.config).is_file()
    assert job.storage.storage_class == "standard-rwx"
    assert job.resources.accelerator == "nvidia-h100-80gb"


def test_valid_inputs_are_typed_and_frozen(tmp_path: Path) -> None:
    job = load_training_job_config(write(tmp_path, VALID))
    assert isinstance(job, TrainingJobConfig)
    assert job.rendezvous_port == 29500
    assert job.resources.shared_memory == "64Gi"
    with pytest.raises(ValueError, match="frozen"):
        job.nodes = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("nodes",), 0, "config/cloud/training.yaml: nodes: Input should be greater than or equal to 1"),
        (("gpus_per_node",), "eight", "gpus_per_node: Input should be a valid integer"),
        (("job_name",), "AIPROD_train", "job_name: String should match pattern"),
        (("config",), "/etc/passwd.yaml", "config: String should match pattern"),
        (("config",), "../outside/train.yaml", "config: String should match pattern"),
        (("config",), "configs/../../x.yaml", "config: String should match pattern"),
        (("config",), "configs/train.json", "config: String should match pattern"),
        (("config",), "configs//train.yaml", "config: String should match pattern"),
        (("config",), "./train.yaml", "config: String should match pattern"),
        (("resources", "memory"), "lots", "resources.memory: String should match pattern"),
        (("resources", "accelerator"), "h100", "resources.accelerator: String should match pattern"),
        (("storage", "storage_class"), "Standard_RWX", "storage.storage_class: String should match pattern"),
        (("rendezvous_port",), 80, "rendezvous_port: Input should be greater than or equal to 1024"),
        (("max_restarts",), -1, "max_restarts: Input should be greater than or equal to 0"),
        (("storage", "sise"), "1Ti", "storage.sise: unknown key"),
    ],
)  # fmt: skip
def test_each_mistake_names_the_key(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    path: tuple[str, ...],
    value: Any,
    expected: str,
) -> None:
    message = error_of(tmp_path, changed(path, value), monkeypatch)
    assert message.startswith("invalid configuration")
    assert expected in message


def test_job_name_must_leave_room_for_the_pod_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "a" * 61
    assert load_training_job_config(write(tmp_path, changed(("job_name",), name))).nodes == 2
    message = error_of(tmp_path, {**changed(("job_name",), name), "nodes": 11}, monkeypatch)
    assert (
        f"job_name {name!r} is too long for 11 nodes: the last pod's host name "
        f"'{name}-10' has 64 characters, at most 63 are allowed"
    ) in message


def test_missing_file_is_one_error(
    tmp_path: Path, repo_config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "config"
    shutil.copytree(repo_config_dir, config_dir)
    (config_dir / "cloud" / "training.yaml").unlink()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_training_job_config(config_dir)
    assert str(info.value) == "config/cloud/training.yaml: file not found"


def test_a_list_instead_of_a_mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    message = error_of(tmp_path, ["nodes", 2], monkeypatch)
    assert message == (
        "config/cloud/training.yaml: expected a mapping of keys at the top level, got list"
    )

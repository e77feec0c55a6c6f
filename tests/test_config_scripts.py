"""validate_config and export_config_schema on real and broken inputs."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture
def config_copy(tmp_path: Path, repo_root: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(repo_root / "config", target)
    return target


@pytest.fixture
def validate_config(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("testing/validate_config.py")


@pytest.fixture
def export_schema(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("maintenance/export_config_schema.py")


def test_validate_config_passes_on_the_repository(
    validate_config: ModuleType, repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert validate_config.main(["--config-dir", str(repo_root / "config")]) == 0
    out = capsys.readouterr().out
    assert "4/4 checks passed" in out
    assert "cloud        ok" in out
    assert "production   ok" in out


def test_validate_config_reports_the_broken_environment(
    validate_config: ModuleType, config_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (config_copy / "env" / "staging.yaml").write_text("serving:\n  port: high\n")
    assert validate_config.main(["--config-dir", str(config_copy)]) == 1
    out = capsys.readouterr().out
    assert "staging      FAILED" in out
    assert "staging.yaml: serving.port: Input should be a valid integer" in out
    assert "3/4 checks passed" in out


def test_validate_config_json_and_env_selection(
    validate_config: ModuleType, config_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (config_copy / "AIPROD.json").write_text("{")
    code = validate_config.main(["--config-dir", str(config_copy), "--env", "production", "--json"])
    assert code == 1
    report = json.loads(capsys.readouterr().out)
    assert list(report["environments"]) == ["production", "cloud"]
    assert "invalid JSON at line 1" in report["environments"]["production"]


def test_validate_config_reports_bad_cloud_inputs(
    validate_config: ModuleType, config_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (config_copy / "cloud" / "logging.yaml").write_text("unknown_section: 1\n")
    assert validate_config.main(["--config-dir", str(config_copy)]) == 1
    out = capsys.readouterr().out
    assert "cloud        FAILED" in out
    assert "logging.yaml: unknown_section" in out


def test_validate_config_missing_folder(
    validate_config: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert validate_config.main([]) == 2
    assert "config/AIPROD.json not found" in capsys.readouterr().out


def test_validate_config_without_environments(
    validate_config: ModuleType, config_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(config_copy / "env")
    assert validate_config.main(["--config-dir", str(config_copy)]) == 2
    assert "no environments" in capsys.readouterr().out


def test_export_schema_check_and_write(
    export_schema: ModuleType, config_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert export_schema.main(["--config-dir", str(config_copy), "--check"]) == 0
    schema = config_copy / "AIPROD.schema.json"
    good = schema.read_text()
    schema.write_text("{}\n")
    assert export_schema.main(["--config-dir", str(config_copy), "--check"]) == 1
    assert "out of date" in capsys.readouterr().out
    assert schema.read_text() == "{}\n"  # --check never writes
    assert export_schema.main(["--config-dir", str(config_copy)]) == 0
    assert schema.read_text() == good
    assert export_schema.main(["--config-dir", str(config_copy)]) == 0
    assert "already up to date" in capsys.readouterr().out
    assert not list(config_copy.glob(".*.tmp"))


def test_export_schema_failed_write_keeps_the_old_file(
    export_schema: ModuleType, config_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = config_copy / "AIPROD.schema.json"
    schema.write_text("old\n")

    def fail(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        export_schema.main(["--config-dir", str(config_copy)])
    assert schema.read_text() == "old\n"
    assert not list(config_copy.glob(".*.tmp"))


def test_export_schema_missing_folder(
    export_schema: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert export_schema.main([]) == 2

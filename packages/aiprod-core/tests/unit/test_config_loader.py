"""Loading, merging and overriding configuration, and every error a user can cause."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiprod_core.config import ConfigError, available_envs, find_config_dir, load_config


def test_base_and_development_overlay_merge(config_dir: Path) -> None:
    config = load_config(config_dir, environ={})
    assert config.env == "development"
    assert config.project.name == "aiprod-test"
    assert config.serving.queue_size == 2  # from the overlay
    assert config.serving.port == 8000  # from the base
    assert config.serving.host == "127.0.0.1"  # model default
    assert config.root == config_dir.parent.resolve()


def test_env_selected_by_variable(config_dir: Path) -> None:
    config = load_config(config_dir, environ={"AIPROD_ENV": "production"})
    assert config.env == "production"
    assert config.serving.host == "0.0.0.0"
    assert config.serving.default_model == "big"
    assert config.logging.format == "json"
    assert config.serving.queue_size == 16


def test_explicit_env_wins_over_variable(config_dir: Path) -> None:
    config = load_config(config_dir, env="development", environ={"AIPROD_ENV": "production"})
    assert config.env == "development"


def test_paths_resolve_against_root(config_dir: Path) -> None:
    config = load_config(config_dir, environ={})
    root = config_dir.parent.resolve()
    assert config.model_file("tiny") == root / "models" / "checkpoints" / "tiny.safetensors"
    assert config.model_file("big") == Path("/srv/pretrained/big.safetensors")
    assert config.resolve(config.paths.outputs) == root / "outputs"


def test_unknown_model_lists_known_names(config_dir: Path) -> None:
    config = load_config(config_dir, environ={})
    with pytest.raises(ConfigError, match=r"'nope' is not in the registry.*known: big, tiny"):
        config.model_file("nope")


def test_environment_variable_overrides_single_key(config_dir: Path) -> None:
    environ = {"AIPROD_SERVING__PORT": "9001", "AIPROD_LOGGING__LEVEL": "ERROR"}
    config = load_config(config_dir, environ=environ)
    assert config.serving.port == 9001
    assert config.logging.level == "ERROR"


def test_environment_variable_reaches_hyphenated_model_names(config_dir: Path) -> None:
    data = json.loads((config_dir / "AIPROD.json").read_text())
    data["models"]["tiny-v2"] = data["models"].pop("tiny")
    data["serving"]["default_model"] = "tiny-v2"
    (config_dir / "AIPROD.json").write_text(json.dumps(data))
    config = load_config(config_dir, environ={"AIPROD_MODELS__TINY_V2__PRESET": "small"})
    assert config.models["tiny-v2"].preset == "small"


def test_reserved_variables_are_not_overrides(config_dir: Path) -> None:
    config = load_config(config_dir, environ={"AIPROD_API_TOKEN": "secret"})
    assert "secret" not in config.model_dump_json()


def test_unknown_plain_variable_is_rejected(config_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"AIPROD_PORT: not a known AIPROD variable"):
        load_config(config_dir, environ={"AIPROD_PORT": "1"})


def test_unknown_variable_key_names_the_section(config_dir: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(config_dir, environ={"AIPROD_SERVING__PROT": "1"})
    message = str(info.value)
    assert "AIPROD_SERVING__PROT: unknown key 'prot' in serving" in message
    assert "port" in message


def test_variable_below_a_scalar_is_rejected(config_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"serving.port is not a section"):
        load_config(config_dir, environ={"AIPROD_SERVING__PORT__X": "1"})


def test_bad_variable_value_names_the_variable(config_dir: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(config_dir, environ={"AIPROD_SERVING__PORT": "eighty"})
    assert "environment variable AIPROD_SERVING__PORT: serving.port:" in str(info.value)
    assert "'eighty'" in str(info.value)


def test_unknown_env_lists_the_known_ones(config_dir: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(config_dir, environ={"AIPROD_ENV": "prod"})
    message = str(info.value)
    assert "AIPROD_ENV='prod' is not a known environment" in message
    assert "expected one of: development, production" in message


def test_unknown_key_in_overlay_names_the_overlay_file(config_dir: Path) -> None:
    (config_dir / "env" / "development.yaml").write_text("serving:\n  prot: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(config_dir, environ={})
    message = str(info.value)
    assert "development.yaml: serving.prot: unknown key" in message
    assert "Traceback" not in message


def test_wrong_type_in_base_names_the_base_file(config_dir: Path) -> None:
    data = json.loads((config_dir / "AIPROD.json").read_text())
    data["serving"]["port"] = "not-a-port"
    (config_dir / "AIPROD.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError) as info:
        load_config(config_dir, environ={})
    assert "AIPROD.json: serving.port: Input should be a valid integer" in str(info.value)


def test_missing_required_key(config_dir: Path) -> None:
    data = json.loads((config_dir / "AIPROD.json").read_text())
    del data["project"]["version"]
    (config_dir / "AIPROD.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"project.version: required key is missing"):
        load_config(config_dir, environ={})


def test_several_problems_are_all_reported(config_dir: Path) -> None:
    (config_dir / "env" / "development.yaml").write_text(
        "serving:\n  port: 0\n  queue_size: -1\nextra_section: {}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(config_dir, environ={})
    message = str(info.value)
    assert "(3 problems)" in message
    assert "serving.port" in message
    assert "serving.queue_size" in message
    assert "extra_section: unknown key" in message


def test_overlay_replacing_a_section_is_attributed_to_the_overlay(config_dir: Path) -> None:
    (config_dir / "env" / "development.yaml").write_text("logging:\n  level: LOUD\n")
    with pytest.raises(ConfigError, match=r"development.yaml: logging.level"):
        load_config(config_dir, environ={})


def test_malformed_json_gives_line_and_column(config_dir: Path) -> None:
    (config_dir / "AIPROD.json").write_text('{\n  "project": {,}\n}\n')
    with pytest.raises(ConfigError, match=r"AIPROD.json: invalid JSON at line 2 column 15"):
        load_config(config_dir, environ={})


def test_malformed_yaml_gives_line_and_column(config_dir: Path) -> None:
    (config_dir / "env" / "development.yaml").write_text("serving:\n  port: [1,\n")
    with pytest.raises(ConfigError, match=r"development.yaml: invalid YAML at line 3"):
        load_config(config_dir, environ={})


def test_top_level_must_be_a_mapping(config_dir: Path) -> None:
    (config_dir / "env" / "development.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=r"expected a mapping of keys at the top level, got list"):
        load_config(config_dir, environ={})


def test_empty_overlay_is_allowed(config_dir: Path) -> None:
    (config_dir / "env" / "development.yaml").write_text("# nothing to change\n")
    assert load_config(config_dir, environ={}).serving.queue_size == 16


def test_missing_base_file(config_dir: Path) -> None:
    (config_dir / "AIPROD.json").unlink()
    with pytest.raises(ConfigError, match=r"AIPROD.json: file not found"):
        load_config(config_dir, environ={})


def test_unreadable_base_file(config_dir: Path) -> None:
    (config_dir / "AIPROD.json").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match=r"AIPROD.json: cannot be read"):
        load_config(config_dir, environ={})


def test_default_model_must_be_registered(config_dir: Path) -> None:
    (config_dir / "env" / "development.yaml").write_text("serving:\n  default_model: ghost\n")
    with pytest.raises(ConfigError, match=r"'ghost' is not a registered model"):
        load_config(config_dir, environ={})


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("file", "sub/dir.safetensors", "must be a file name without folders"),
        ("sha256", "ABC", "String should match pattern"),
        ("location", "elsewhere", "Input should be 'pretrained', 'checkpoints' or 'cache'"),
    ],
)
def test_registry_entry_validation(config_dir: Path, field: str, value: str, expected: str) -> None:
    data = json.loads((config_dir / "AIPROD.json").read_text())
    data["models"]["tiny"][field] = value
    (config_dir / "AIPROD.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError) as info:
        load_config(config_dir, environ={})
    assert f"models.tiny.{field}" in str(info.value)
    assert expected in str(info.value)


def test_model_names_must_be_slugs(config_dir: Path) -> None:
    data = json.loads((config_dir / "AIPROD.json").read_text())
    data["models"]["bad name"] = data["models"]["tiny"]
    (config_dir / "AIPROD.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"model name 'bad name' must use letters"):
        load_config(config_dir, environ={})


def test_find_config_dir_walks_up(config_dir: Path) -> None:
    nested = config_dir.parent / "a" / "b"
    nested.mkdir(parents=True)
    assert find_config_dir(nested, environ={}) == config_dir.resolve()


def test_find_config_dir_from_variable(config_dir: Path, tmp_path: Path) -> None:
    found = find_config_dir(tmp_path, environ={"AIPROD_CONFIG_DIR": str(config_dir)})
    assert found == config_dir.resolve()


def test_find_config_dir_bad_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"AIPROD_CONFIG_DIR=.*no AIPROD.json there"):
        find_config_dir(tmp_path, environ={"AIPROD_CONFIG_DIR": str(tmp_path)})


def test_find_config_dir_nowhere(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config/AIPROD.json not found in"):
        find_config_dir(tmp_path, environ={})


def test_load_config_finds_the_folder_itself(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(config_dir.parent)
    assert load_config(environ={}).project.name == "aiprod-test"


def test_available_envs(config_dir: Path) -> None:
    assert available_envs(config_dir) == ["development", "production"]


def test_config_is_immutable(config_dir: Path) -> None:
    config = load_config(config_dir, environ={})
    with pytest.raises(ValueError, match="frozen"):
        config.serving.port = 1  # type: ignore[misc]


def test_api_token_is_read_only_from_its_variable() -> None:
    from aiprod_core.config import api_token

    assert api_token({"AIPROD_API_TOKEN": " s3cret \n"}) == "s3cret"
    assert api_token({"AIPROD_API_TOKEN": "   "}) is None
    assert api_token({}) is None


def test_database_url_is_a_secret_read_only_from_its_variable(config_dir: Path) -> None:
    from aiprod_core.config import database_url

    url = "postgresql://aiprod:s3cret@db:5432/aiprod"
    assert database_url({"AIPROD_DATABASE_URL": f" {url}\n"}) == url
    assert database_url({"AIPROD_DATABASE_URL": ""}) is None
    assert database_url({}) is None
    # Reserved: it never reads as a config override, and loading with it set works.
    environ = {"AIPROD_DATABASE_URL": url, "AIPROD_REQUIRE_POSTGRES": "1"}
    config = load_config(config_dir, environ=environ)
    assert "s3cret" not in config.model_dump_json()

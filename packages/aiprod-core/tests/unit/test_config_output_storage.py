"""serving.output_url, output_ttl_seconds and output_storage_options: defaults, checks, overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from aiprod_core.config import ConfigError, ServingConfig, load_config


def serving(**keys: Any) -> ServingConfig:
    return ServingConfig(default_model="tiny", **keys)


def test_defaults_keep_videos_in_the_local_folder_for_a_day() -> None:
    config = serving()
    assert config.output_url is None
    assert config.output_ttl_seconds == 86400
    assert config.output_storage_options == {}


def test_the_repository_config_states_the_defaults(repo_config_dir: Path) -> None:
    config = load_config(repo_config_dir, environ={})
    assert config.serving.output_url is None
    assert config.serving.output_ttl_seconds == 86400
    assert config.serving.output_storage_options == {}


@pytest.mark.parametrize("url", ["s3://bucket", "s3://bucket/videos/", "gs://b/p", "memory://x"])
def test_object_storage_urls_are_accepted(url: str) -> None:
    assert serving(output_url=url).output_url == url


@pytest.mark.parametrize("url", ["", "bucket/videos", "s3://", "s3:/bucket", "s3://a b"])
def test_anything_but_a_url_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="should match pattern"):
        serving(output_url=url)


@pytest.mark.parametrize("ttl", [0, -5])
def test_ttl_must_be_positive(ttl: int) -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        serving(output_ttl_seconds=ttl)


def test_non_secret_options_pass_through() -> None:
    options = {
        "endpoint_url": "http://minio:9000",
        "client_kwargs": {"region_name": "eu-west-1"},
        "s3_additional_kwargs": {"ServerSideEncryption": "aws:kms"},
        "token": "google_default",  # gcsfs: how to find credentials, not a credential
    }
    assert serving(output_storage_options=options).output_storage_options == options


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"key": "AKIA", "secret": "x"}, "key"),
        ({"client_kwargs": {"aws_secret_access_key": "x"}}, "client_kwargs.aws_secret_access_key"),
        ({"endpoint_url": "http://minio", "Password": "x"}, "Password"),
        ({"account_key": "x"}, "account_key"),
    ],
)
def test_credentials_in_options_are_refused(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as caught:
        serving(output_storage_options=options)
    message = str(caught.value)
    assert (
        f"{named!r} looks like a credential, and credentials never go in configuration" in message
    )
    assert "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in message


def test_output_keys_take_environment_overrides(config_dir: Path) -> None:
    environ = {
        "AIPROD_SERVING__OUTPUT_URL": "s3://videos/prod",
        "AIPROD_SERVING__OUTPUT_TTL_SECONDS": "3600",
    }
    config = load_config(config_dir, environ=environ)
    assert config.serving.output_url == "s3://videos/prod"
    assert config.serving.output_ttl_seconds == 3600


def test_a_bad_override_names_the_variable(config_dir: Path) -> None:
    environ = {"AIPROD_SERVING__OUTPUT_URL": "videos-bucket"}
    with pytest.raises(ConfigError, match=r"AIPROD_SERVING__OUTPUT_URL: serving\.output_url"):
        load_config(config_dir, environ=environ)

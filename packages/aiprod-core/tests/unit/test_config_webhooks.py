"""Webhook settings: the allow-list in config (serving.webhook_allow), the secret in the env."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aiprod_core.config import RESERVED_VARIABLES, ServingConfig, webhook_secret
from aiprod_core.config.models import webhook_prefix_problem


def test_the_secret_is_read_only_from_its_reserved_variable() -> None:
    assert webhook_secret({"AIPROD_WEBHOOK_SECRET": " whsec \n"}) == "whsec"
    assert webhook_secret({"AIPROD_WEBHOOK_SECRET": "  "}) is None
    assert webhook_secret({}) is None
    assert "AIPROD_WEBHOOK_SECRET" in RESERVED_VARIABLES


def test_webhooks_are_off_by_default() -> None:
    assert ServingConfig(default_model="m").webhook_allow == []


@pytest.mark.parametrize(
    "prefix",
    [
        "https://hooks.example.com/",
        "https://hooks.example.com/aiprod/",
        "http://127.0.0.1:8123/hooks",
        "HTTPS://Hooks.Example.com:8443/a/b/",
    ],
)
def test_url_prefixes_with_a_path_are_accepted(prefix: str) -> None:
    assert webhook_prefix_problem(prefix) is None
    assert ServingConfig(default_model="m", webhook_allow=[prefix]).webhook_allow == [prefix]


@pytest.mark.parametrize(
    ("prefix", "words"),
    [
        ("https://hooks.example.com", "has no path after the host: add '/'"),
        ("ftp://hooks.example.com/", "is not an http(s) URL"),
        ("hooks.example.com/", "is not an http(s) URL"),
        ("https://user@hooks.example.com/", "has user info before the host"),
        ("https://hooks.example.com:99999/", "has an invalid port"),
        ("https://hooks.example.com/a?b=1", "has a query or fragment"),
        ("https://hooks.example.com/a/#", "has a query or fragment"),
        ("https://hooks.example.com/a/../b/", "has '.' or '..' segments"),
        ("https://hooks.example.com/a b/", "is not a URL prefix"),
    ],
)
def test_other_prefixes_are_refused_with_the_expected_form(prefix: str, words: str) -> None:
    problem = webhook_prefix_problem(prefix)
    assert problem is not None
    assert words in problem
    assert problem.endswith("e.g. https://hooks.example.com/aiprod/")
    with pytest.raises(ValidationError, match=r"\[1\] .*" + words.split("'")[0][:12]):
        ServingConfig(default_model="m", webhook_allow=["https://ok.example.com/", prefix])

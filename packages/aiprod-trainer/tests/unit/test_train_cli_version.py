"""``aiprod-train --version``: the name and the installed aiprod-trainer version."""

from __future__ import annotations

import importlib.metadata
import re

import pytest

from aiprod_trainer import cli

INSTALLED = importlib.metadata.version("aiprod-trainer")


def test_prints_its_name_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0

    captured = capsys.readouterr()
    assert captured.out == f"aiprod-train {INSTALLED}\n"
    assert captured.err == ""
    assert re.fullmatch(r"\d+(\.\d+)+\S*", INSTALLED)


def test_version_without_an_installed_distribution_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(cli, "version", not_installed)

    assert cli.version_text() == "aiprod-train (version unknown: aiprod-trainer is not installed)"

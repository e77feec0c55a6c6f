"""``--version`` of ``aiprod-generate`` and ``aiprod-serve``: the installed aiprod-pipelines."""

from __future__ import annotations

import importlib.metadata
import re
from types import ModuleType

import pytest

from aiprod_pipelines.cli import arguments, main
from aiprod_pipelines.server import cli as server_cli

INSTALLED = importlib.metadata.version("aiprod-pipelines")


def test_installed_version_is_a_release_number() -> None:
    assert re.fullmatch(r"\d+(\.\d+)+\S*", INSTALLED)


def test_generate_prints_its_name_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0

    captured = capsys.readouterr()
    assert captured.out == f"aiprod-generate {INSTALLED}\n"
    assert captured.err == ""


def test_serve_prints_its_name_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        server_cli.main(["--version"])

    assert exited.value.code == 0
    captured = capsys.readouterr()
    assert captured.out == f"aiprod-serve {INSTALLED}\n"
    assert captured.err == ""


@pytest.mark.parametrize(
    ("module", "prog"), [(arguments, "aiprod-generate"), (server_cli, "aiprod-serve")]
)
def test_version_without_an_installed_distribution_says_so(
    monkeypatch: pytest.MonkeyPatch, module: ModuleType, prog: str
) -> None:
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(module, "version", not_installed)

    assert module.version_text() == f"{prog} (version unknown: aiprod-pipelines is not installed)"

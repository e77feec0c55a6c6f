"""The HTTP server is the `server` extra: without it, one line naming the extra."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from aiprod_core.errors import AiprodError
from aiprod_pipelines import serve
from aiprod_pipelines.serve import (
    EXIT_NOT_INSTALLED,
    SERVER_EXTRA,
    SERVER_MODULES,
    ServerNotInstalledError,
    missing_server_modules,
    require_server,
)

#: Python code that makes the web stack unimportable, as if the extra were not installed.
WITHOUT_EXTRA = f"import sys\nfor name in {SERVER_MODULES!r}: sys.modules[name] = None\n"


def run_without_extra(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRA + code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_with_the_extra_nothing_is_missing() -> None:
    assert missing_server_modules() == []
    require_server()


def test_aiprod_serve_without_the_extra_prints_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    assert missing_server_modules() == ["uvicorn", "prometheus_client"]
    assert serve.main(["--help"]) == EXIT_NOT_INSTALLED == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "aiprod-serve: the HTTP server is not installed (no uvicorn, prometheus_client): "
        "install the server extra with pip install 'aiprod-pipelines[server]'\n"
    )


def test_the_error_is_an_aiprod_error_and_an_import_error() -> None:
    assert issubclass(ServerNotInstalledError, AiprodError)
    assert issubclass(ServerNotInstalledError, ImportError)
    assert SERVER_EXTRA == "aiprod-pipelines[server]"


def test_importing_the_server_without_the_extra_names_it() -> None:
    result = run_without_extra("import aiprod_pipelines.server\n")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("aiprod_pipelines.serve.ServerNotInstalledError: ")
    assert "pip install 'aiprod-pipelines[server]'" in last


def test_the_console_script_without_the_extra_exits_2_with_one_line() -> None:
    result = run_without_extra(
        "from aiprod_pipelines.serve import main\nraise SystemExit(main(['--port', '1']))\n"
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "aiprod-pipelines[server]" in result.stderr


def test_generation_does_not_need_the_extra() -> None:
    result = run_without_extra(
        "import aiprod_pipelines.cli.command, aiprod_pipelines.pipelines\n"
        "print(sorted(m for m in sys.modules if m.startswith('aiprod_pipelines.serve')))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_with_the_extra_the_console_script_runs_the_server_cli(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        serve.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("aiprod-serve ")


def test_the_console_script_is_the_checking_entry_point() -> None:
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    assert project["scripts"]["aiprod-serve"] == "aiprod_pipelines.serve:main"
    server = {r.split(">")[0].split("[")[0] for r in project["optional-dependencies"]["server"]}
    assert {"fastapi", "uvicorn", "prometheus-client", "starlette"} <= server
    assert not server & {r.split(">")[0] for r in project["dependencies"]}

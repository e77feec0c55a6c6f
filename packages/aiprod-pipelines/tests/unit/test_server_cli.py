"""``aiprod-serve``: arguments, configuration errors, and a real start and stop."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import uvicorn

from aiprod_pipelines.server import cli
from aiprod_pipelines.server.logs import JsonFormatter
from aiprod_pipelines.server.testing import wait_until

BASE = {
    "project": {"name": "aiprod", "version": "0.3.0"},
    "paths": {
        "models_cache": "models/cache",
        "checkpoints": "models/checkpoints",
        "pretrained": "models/pretrained",
        "outputs": "outputs",
    },
    "models": {
        "aiprod-tiny": {
            "file": "aiprod-tiny.safetensors",
            "location": "checkpoints",
            "preset": "tiny",
            "obtain": "train it with the demo",
        }
    },
    "serving": {"host": "127.0.0.1", "port": 8123, "default_model": "aiprod-tiny"},
}


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config folder (AIPROD_CONFIG_DIR) with development and production overlays."""
    folder = tmp_path / "config"
    (folder / "env").mkdir(parents=True)
    (folder / "AIPROD.json").write_text(json.dumps(BASE))
    (folder / "env" / "development.yaml").write_text("logging:\n  level: DEBUG\n")
    (folder / "env" / "production.yaml").write_text(
        "serving:\n  host: 0.0.0.0\nlogging:\n  format: json\n"
    )
    for name in ("AIPROD_ENV", "AIPROD_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIPROD_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


class RecordingServer:
    """Stands in for the CLI's uvicorn server: records its config instead of serving."""

    instances: ClassVar[list[RecordingServer]] = []
    stopped_by: str | None = None

    def __init__(self, config: uvicorn.Config) -> None:
        self.config = config
        self.started = False
        RecordingServer.instances.append(self)

    def run(self) -> None:
        self.started = self.config.host != "fail"


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[RecordingServer]:
    RecordingServer.instances = []
    monkeypatch.setattr(cli, "GracefulServer", RecordingServer)
    return RecordingServer.instances


def test_help_lists_the_flags_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--help"])
    assert stopped.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--model",
        "--checkpoint",
        "--random-weights",
        "--preset",
        "--host",
        "--port",
        "--device",
        "--env",
    ):
        assert flag in text
    assert "examples:" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "70000"], "--port must be 0..65535"),
        (["--shutdown-grace", "-1"], "--shutdown-grace must be >= 0"),
        (["--open-path", "readyz"], "--open-path must start with '/'"),
        (["--port", "eighty"], "invalid int value"),
    ],
)
def test_bad_arguments_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "weights file"),
        (["--model", "nope"], "model 'nope' is not in the registry"),
        (["--preset", "tiny"], "--preset only applies with --random-weights"),
        (["--checkpoint", "missing.safetensors"], "no such file"),
        (["--env", "nowhere"], "AIPROD_ENV='nowhere' is not a known environment"),
    ],
)
def test_setup_errors_are_one_line_and_exit_2(
    config_dir: Path,
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    recorded: list[Any],
) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("aiprod-serve: error: ")
    assert message in err
    assert "Traceback" not in err
    assert recorded == []


def test_serves_on_the_configured_host_and_port(
    config_dir: Path, capsys: pytest.CaptureFixture[str], recorded: list[RecordingServer]
) -> None:
    assert cli.main(["--random-weights", "--device", "cpu"]) == 0
    (server,) = recorded
    assert (server.config.host, server.config.port) == ("127.0.0.1", 8123)
    state = server.config.app.state.server
    assert state.settings.api_token is None
    assert state.settings.version == "0.3.0"
    assert state.settings.output_dir == config_dir.parent / "outputs" / "server"
    assert state.generator.device == "cpu"
    err = capsys.readouterr().err
    assert "RANDOM WEIGHTS of preset 'tiny' (untrained)" in err
    assert "on http://127.0.0.1:8123" in err
    assert "auth off" in err
    assert logging.getLogger().level == logging.DEBUG


def test_flags_and_environment_override_the_config(
    config_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    recorded: list[RecordingServer],
) -> None:
    monkeypatch.setenv("AIPROD_API_TOKEN", "tok")
    argv = ["--env", "production", "--random-weights", "--port", "9000", "--shutdown-grace", "5"]
    assert cli.main([*argv, "--open-path", "/readyz"]) == 0
    (server,) = recorded
    assert (server.config.host, server.config.port) == ("0.0.0.0", 9000)
    settings = server.config.app.state.server.settings
    assert settings.api_token == "tok"
    assert settings.shutdown_grace_seconds == 5.0
    assert settings.open_paths == frozenset({"/healthz", "/readyz"})
    assert "environment production; auth on" in capsys.readouterr().err
    assert any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


def test_a_server_that_cannot_start_exits_1(config_dir: Path, recorded: list[Any]) -> None:
    assert cli.main(["--random-weights", "--host", "fail"]) == 1


def test_a_real_start_answers_and_stops_cleanly(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    servers: list[uvicorn.Server] = []

    class Captured(cli.GracefulServer):
        def __init__(self, config: uvicorn.Config) -> None:
            super().__init__(config)
            servers.append(self)

    monkeypatch.setattr(cli, "GracefulServer", Captured)
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(
            cli.main(["--random-weights", "--port", "0", "--device", "cpu"])
        )
    )
    thread.start()
    try:
        assert wait_until(lambda: bool(servers) and servers[0].started, 30.0)
        port = servers[0].servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/healthz", timeout=5).json() == {"status": "ok"}
        assert wait_until(lambda: httpx.get(url + "/readyz", timeout=5).status_code == 200, 60.0)
        assert (
            httpx.get(url + "/readyz", timeout=5).json()["model"]
            == "tiny (random weights, untrained)"
        )
    finally:
        if servers:
            servers[0].should_exit = True
        thread.join(60.0)
    assert not thread.is_alive()
    assert result == [0]


def test_graceful_server_stops_on_first_signal_and_forces_on_second() -> None:
    import signal
    import threading

    import uvicorn

    from aiprod_pipelines.server.cli import GracefulServer

    server = GracefulServer(uvicorn.Config(app=lambda scope, receive, send: None))
    with server.capture_signals():
        assert signal.getsignal(signal.SIGTERM) == server._on_signal
        server._on_signal(signal.SIGTERM, None)
        assert (server.should_exit, server.force_exit, server.stopped_by) == (
            True,
            False,
            "SIGTERM",
        )
        server._on_signal(signal.SIGINT, None)
        assert server.force_exit is True
    assert signal.getsignal(signal.SIGTERM) != server._on_signal

    seen: list[bool] = []

    def in_thread() -> None:
        with server.capture_signals():
            seen.append(signal.getsignal(signal.SIGINT) != server._on_signal)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(timeout=10)
    assert seen == [True]

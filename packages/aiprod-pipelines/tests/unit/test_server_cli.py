"""``aiprod-serve``: arguments, configuration errors, and a real start and stop."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import torch
import uvicorn

from aiprod_pipelines.server import cli
from aiprod_pipelines.server.logs import JsonFormatter
from aiprod_pipelines.server.store import SQLiteJobStore
from aiprod_pipelines.server.store.schema import migrations
from aiprod_pipelines.server.testing import wait_until

#: The server tests' base configuration (tests/fixtures/server_config.json) and its serving.
BASE = {
    **json.loads((Path(__file__).parents[1] / "fixtures" / "server_config.json").read_text()),
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
    for name in ("AIPROD_ENV", "AIPROD_API_TOKEN", "AIPROD_DATABASE_URL"):
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
    fail: ClassVar[bool] = False
    stopped_by: str | None = None

    def __init__(self, config: uvicorn.Config, on_force: Any = None) -> None:
        self.config = config
        self.on_force = on_force
        self.started = False
        self.sockets: list[socket.socket] = []
        self.bound: list[tuple[str, int]] = []
        RecordingServer.instances.append(self)

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        self.sockets = list(sockets or [])
        self.bound = [sock.getsockname()[:2] for sock in self.sockets]
        self.started = not RecordingServer.fail


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[RecordingServer]:
    RecordingServer.instances = []
    monkeypatch.setattr(RecordingServer, "fail", False)
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
        "--shutdown-grace",
    ):
        assert flag in text
    assert "examples:" in text
    assert "exit status:" in text
    for status in ("0 stopped cleanly", "1 the server could not start", "2 bad arguments"):
        assert status in text
    assert "the address cannot be listened on" in text
    assert "3 stopped, but a generation or model load was still running" in text


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
    assert "(float32 on cpu)" in err  # serving.dtype "auto" on the CPU
    assert "auth off" in err
    assert logging.getLogger().level == logging.DEBUG


def test_dtype_flag_and_offload_setting_reach_the_generator(
    config_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    recorded: list[RecordingServer],
) -> None:
    monkeypatch.setenv("AIPROD_SERVING__OFFLOAD_TEXT_ENCODER", "true")
    assert cli.main(["--random-weights", "--device", "cpu", "--dtype", "bf16"]) == 0
    (server,) = recorded
    generator = server.config.app.state.server.generator
    assert generator.torch_dtype is torch.bfloat16
    assert generator.offload_text_encoder is True
    err = capsys.readouterr().err
    assert "(bfloat16 on cpu, text encoder offloaded to the CPU)" in err


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


def test_a_server_that_cannot_start_exits_1(
    config_dir: Path, recorded: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RecordingServer, "fail", True)
    assert cli.main(["--random-weights", "--port", "0"]) == 1


def test_the_server_is_handed_the_bound_socket_and_announces_its_port(
    config_dir: Path, capsys: pytest.CaptureFixture[str], recorded: list[RecordingServer]
) -> None:
    assert cli.main(["--random-weights", "--port", "0"]) == 0
    (server,) = recorded
    (listener,) = server.sockets
    port = server.config.port
    assert port != 0
    assert server.bound == [("127.0.0.1", port)]
    assert f"on http://127.0.0.1:{port} " in capsys.readouterr().err
    assert server.on_force == server.config.app.state.server.hurry
    assert listener.fileno() == -1  # closed once the server stopped


@pytest.mark.fault("server")
def test_a_port_in_use_is_one_line_exit_2_before_the_model_is_announced(
    config_dir: Path,
    capsys: pytest.CaptureFixture[str],
    recorded: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_load(self: Any) -> None:
        raise AssertionError("the model must not be loaded")

    monkeypatch.setattr(cli.PipelineVideoGenerator, "load", no_load)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["--random-weights", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"aiprod-serve: error: cannot listen on 127.0.0.1:{port}: address already in use; "
        "choose another port with --port or AIPROD_SERVING__PORT (serving.port in config)\n"
    )
    assert recorded == []


@pytest.mark.fault("server")
def test_an_address_not_on_this_machine_names_the_host_flag(
    config_dir: Path, capsys: pytest.CaptureFixture[str], recorded: list[Any]
) -> None:
    assert cli.main(["--random-weights", "--host", "192.0.2.1", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aiprod-serve: error: cannot listen on 192.0.2.1:0: ")
    assert "--host or AIPROD_SERVING__HOST" in err
    assert err.count("\n") == 1
    assert recorded == []


def test_a_real_start_answers_and_stops_cleanly(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    servers: list[uvicorn.Server] = []

    class Captured(cli.GracefulServer):
        def __init__(self, config: uvicorn.Config, on_force: Any = None) -> None:
            super().__init__(config, on_force)
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

    forced: list[bool] = []
    server = GracefulServer(
        uvicorn.Config(app=lambda scope, receive, send: None),
        on_force=lambda: forced.append(True),
    )
    with server.capture_signals():
        assert signal.getsignal(signal.SIGTERM) == server._on_signal
        server._on_signal(signal.SIGTERM, None)
        assert (server.should_exit, server.force_exit, server.stopped_by) == (
            True,
            False,
            "SIGTERM",
        )
        assert forced == []
        server._on_signal(signal.SIGINT, None)
        assert server.force_exit is True
        assert forced == [True]
    assert signal.getsignal(signal.SIGTERM) != server._on_signal

    seen: list[bool] = []

    def in_thread() -> None:
        with server.capture_signals():
            seen.append(signal.getsignal(signal.SIGINT) != server._on_signal)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(timeout=10)
    assert seen == [True]


@pytest.mark.fault("server")
def test_an_unwritable_videos_folder_is_one_line_exit_2_before_the_model_loads(
    config_dir: Path, capsys: pytest.CaptureFixture[str], recorded: list[Any]
) -> None:
    blocker = config_dir.parent / "outputs"
    blocker.write_text("a file where the outputs folder should be\n")
    assert cli.main(["--random-weights", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aiprod-serve: error: videos folder ")
    assert "(paths.outputs in config, or AIPROD_PATHS__OUTPUTS)" in err
    assert f"{blocker} exists and is not a folder" in err
    assert err.count("\n") == 1
    assert recorded == []
    assert blocker.read_text() == "a file where the outputs folder should be\n"


def test_the_videos_folder_is_not_needed_with_a_bucket_and_postgresql(
    config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rendered manifests of several replicas mount nothing there (read-only root).
    (config_dir.parent / "outputs").write_text("a file where the outputs folder should be\n")
    monkeypatch.setenv("AIPROD_SERVING__OUTPUT_URL", "gs://videos-bucket/videos")
    monkeypatch.delenv("AIPROD_DATABASE_URL", raising=False)
    with pytest.raises(cli.ServerSetupError, match=r"^videos folder .* exists and is not a folder"):
        cli.check_videos_folder(cli.load_config())  # SQLite still lives in the folder
    monkeypatch.setenv("AIPROD_DATABASE_URL", "postgresql://aiprod@db.internal/aiprod")
    assert cli.check_videos_folder(cli.load_config()) is None


def test_the_job_store_is_opened_and_migrated_before_serving(
    config_dir: Path, capsys: pytest.CaptureFixture[str], recorded: list[RecordingServer]
) -> None:
    assert cli.main(["--random-weights", "--device", "cpu"]) == 0
    database = config_dir.parent / "outputs" / "server" / "jobs.sqlite3"
    err = capsys.readouterr().err
    assert f"jobs in sqlite:///{database}; videos in {database.parent})" in err
    store = SQLiteJobStore(database)
    try:
        assert store.schema_version() == len(migrations("sqlite"))
    finally:
        store.close()


@pytest.mark.fault("server")
def test_an_unreachable_job_store_is_one_line_exit_2_before_the_model_is_announced(
    config_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    recorded: list[RecordingServer],
) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AIPROD_DATABASE_URL", f"postgresql://aiprod:s3cret@127.0.0.1:{port}/jobs")
    assert cli.main(["--random-weights", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"aiprod-serve: error: job store postgresql://aiprod@127.0.0.1:{port}/jobs "
        "(AIPROD_DATABASE_URL): cannot connect: "
    )
    assert "s3cret" not in err
    assert err.count("\n") == 1
    assert recorded == []

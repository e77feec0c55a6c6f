"""Server logging: JSON lines for collectors, text for people."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator

import pytest

from aiprod_core.config import LoggingConfig
from aiprod_pipelines.server.logs import JsonFormatter, configure_logging


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def test_json_log_lines_carry_time_level_logger_and_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "aiprod.test", logging.ERROR, __file__, 1, "job %s failed", ("42",), sys.exc_info()
        )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "aiprod.test"
    assert entry["message"] == "job 42 failed"
    assert entry["time"].endswith("Z")
    assert "ValueError: boom" in entry["exception"]
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "héllo", (), None)
    line = JsonFormatter().format(plain)
    assert "héllo" in line
    assert "exception" not in json.loads(line)


@pytest.mark.parametrize(("fmt", "json_lines"), [("json", True), ("text", False)])
def test_logging_goes_to_one_handler_at_the_configured_level(fmt: str, json_lines: bool) -> None:
    before = len(logging.getLogger().handlers)
    configure_logging(LoggingConfig(level="WARNING", format=fmt))
    root = logging.getLogger()
    assert root.level == logging.WARNING
    assert len(root.handlers) == before + 1
    assert isinstance(root.handlers[-1].formatter, JsonFormatter) == json_lines

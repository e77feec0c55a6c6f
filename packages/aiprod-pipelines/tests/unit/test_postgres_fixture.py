"""The PostgreSQL test server's binaries are found on PATH or under /usr/lib/postgresql."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

FIXTURE = Path(__file__).parents[1] / "fixtures" / "postgres_server.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("postgres_server_under_test", FIXTURE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tools(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_text("#!/bin/sh\n")
        (folder / name).chmod(0o755)
    return folder


def test_path_comes_first_then_the_newest_system_version(tmp_path: Path) -> None:
    postgres = load()
    system = tmp_path / "lib"
    tools(system / "13" / "bin", "initdb", "pg_ctl")
    newest = tools(system / "16" / "bin", "initdb", "pg_ctl")
    tools(system / "17" / "bin", "initdb")  # incomplete: no pg_ctl
    tools(system / "notes" / "bin", "initdb", "pg_ctl")
    assert postgres.find_binaries(path="", system=system) == newest
    on_path = tools(tmp_path / "bin", "initdb", "pg_ctl")
    assert postgres.find_binaries(path=str(on_path), system=system) == on_path


def test_without_binaries_nothing_is_found_and_the_skip_says_why(tmp_path: Path) -> None:
    postgres = load()
    assert postgres.find_binaries(path="", system=tmp_path / "none") is None
    assert postgres.SKIP_REASON == (
        "no PostgreSQL server binaries (initdb, pg_ctl) on PATH; .ci/run installs them"
    )
    assert postgres.REQUIRE_VARIABLE == "AIPROD_REQUIRE_POSTGRES"
